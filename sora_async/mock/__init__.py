"""A faithful offline stand-in for both provider APIs, on one aiohttp application.

    from sora_async.mock import MockServer, MockConfig, Fault

    async with MockServer(MockConfig(task_seconds=1.0)) as mock:
        mock.freesora_url    # http://127.0.0.1:PORT/api
        mock.sora2api_url    # http://127.0.0.1:PORT/api/v1/sora2
        mock.inject("status", Fault.SERVER_ERROR, times=2)

Tasks progress on ``MockConfig.clock`` (a :class:`ManualClock` in tests), accounts are API
keys, and every fault, cap rejection and download is counted in ``mock.counters``.
"""

from __future__ import annotations

from .app import create_app, state_of
from .clock import Clock, ManualClock
from .config import MockConfig
from .counters import MockCounters
from .faults import Fault
from .server import MockServer, serve
from .state import MockState
from .tasks import Outcome, TaskRecord
from .trips import Trip

__all__ = [
    "Clock",
    "Fault",
    "ManualClock",
    "MockConfig",
    "MockCounters",
    "MockServer",
    "MockState",
    "Outcome",
    "TaskRecord",
    "Trip",
    "create_app",
    "serve",
    "state_of",
]
