"""What a command prints on stdout: a task's status or result as one JSON object."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..models import TaskResult, TaskStatus

__all__ = ["print_json", "result_json", "status_json"]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def status_json(status: TaskStatus) -> dict[str, Any]:
    return {
        "task_id": status.task_id,
        "state": status.state.value,
        "progress": status.progress,
        "video_urls": list(status.video_urls),
        "error": status.error,
        "refunded": status.refunded,
    }


def result_json(result: TaskResult, files: Sequence[Path] = ()) -> dict[str, Any]:
    return {
        "task_id": result.task_id,
        "state": result.state.value,
        "video_urls": list(result.video_urls),
        "error": result.error,
        "refunded": result.refunded,
        "expires_at": result.expires_at.isoformat() if result.expires_at else None,
        "files": [str(path) for path in files] or [str(path) for path in result.files],
    }
