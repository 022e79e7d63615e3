"""The neutral ground under providers and transport, and the public task-id check."""

from __future__ import annotations

import pytest

from sora_async import calls, pricing, providers
from sora_async.errors import ValidationError
from sora_async.models import check_task_id
from sora_async.providers import _wire, base, freesora


def test_old_import_paths_name_the_same_objects() -> None:
    # The lead's modules still import from providers/ until they switch over.
    for name in ("ApiCall", "Endpoint", "RawResponse", "parse_retry_after"):
        assert getattr(base, name) is getattr(calls, name)
    assert providers.check_task_id is _wire.check_task_id is check_task_id
    assert pricing.freesora_price is freesora.freesora_price
    assert pricing.FREESORA_PRICES is freesora.FREESORA_PRICES


@pytest.mark.parametrize("task_id", ["", "   ", None, 7])
def test_check_task_id_refuses_what_is_no_task_id(task_id: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_task_id(task_id)  # type: ignore[arg-type]
    assert caught.value.field == "task_id"
    assert "allowed a non-empty task id string" in str(caught.value)


def test_check_task_id_takes_a_task_id() -> None:
    check_task_id("task_1234567890")


def test_retry_after_is_capped_and_read_in_both_forms() -> None:
    assert calls.parse_retry_after("2.5") == 2.5
    assert calls.parse_retry_after("999999") == calls.MAX_RETRY_AFTER
    assert calls.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert calls.parse_retry_after("soon") is None
