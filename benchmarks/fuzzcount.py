"""A pytest plugin of ``benchmarks/reliability.py``: how many answers each test decoded.

Loaded with ``-p fuzzcount`` (benchmarks/ on PYTHONPATH). Every hostile answer a fuzz test
hands to a decoder is a :class:`~sora_async.calls.RawResponse` made for it, so the plugin
counts the RawResponse objects built during each test and, at the end of the session, writes
``{test id: count}`` to ``<SORA_RELIABILITY_COUNTS>/<worker>.json`` (one file per xdist
worker). The tests themselves are not touched: the count is of what they really tried, not of
what they were asked to try.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sora_async.calls import RawResponse

_built = [0]
_counts: dict[str, int] = {}
_plain_init = RawResponse.__init__


def _counting_init(self: RawResponse, *args: Any, **kwargs: Any) -> None:
    _built[0] += 1
    _plain_init(self, *args, **kwargs)


RawResponse.__init__ = _counting_init  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    before = _built[0]
    yield
    _counts[item.nodeid] = _counts.get(item.nodeid, 0) + _built[0] - before


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = os.environ.get("SORA_RELIABILITY_COUNTS")
    if not folder or not _counts:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (Path(folder) / f"{worker}.json").write_text(json.dumps(_counts))
