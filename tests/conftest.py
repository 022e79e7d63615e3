"""Shared fixtures: every async test runs on asyncio through anyio's pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sora_async import waits


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_backoff_waits() -> Iterator[None]:
    """Retries without waiting (``sora_async.waits.set_testing``): the same tries, at once."""
    waits.set_testing(True)
    try:
        yield
    finally:
        waits.set_testing(False)
