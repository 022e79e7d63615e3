"""The public surface: every name in ``sora_async.__all__`` exists, and the list is sorted."""

from __future__ import annotations

import sora_async


def test_all_is_sorted_and_complete() -> None:
    assert sora_async.__all__ == sorted(sora_async.__all__)
    for name in sora_async.__all__:
        assert hasattr(sora_async, name), name


def test_the_contract_names_are_public() -> None:
    for name in ("SoraClient", "VideoRequest", "TaskStatus", "TaskResult", "TaskState"):
        assert name in sora_async.__all__
    assert sora_async.TaskState.SUCCEEDED == "succeeded"


def test_the_types_users_annotate_with_are_public() -> None:
    # Hooks are Protocols a caller can type against; the rest are values the API hands out.
    for name in (
        "DownloadedFile",
        "EventHook",
        "FileHook",
        "FileNamer",
        "FileReuser",
        "PreparedImage",
        "ProgressHook",
        "Settings",
        "Slot",
    ):
        assert name in sora_async.__all__, name
