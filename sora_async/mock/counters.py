"""What the mock has seen, readable in-process by tests and benchmarks."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import attrs

__all__ = ["MockCounters"]


@attrs.define(kw_only=True)
class MockCounters:
    """Running totals; :meth:`snapshot` gives an independent copy to compare later."""

    #: Every request by logical endpoint ("create", "status", "credits", "download").
    requests: Counter[str] = attrs.field(factory=Counter)
    #: TCP connections that carried at least one request, and by the endpoint of the first
    #: request each one carried (a client that reuses connections opens far fewer than it
    #: sends requests).
    connections: int = 0
    connections_by_endpoint: Counter[str] = attrs.field(factory=Counter)
    #: Tasks actually created (charged and stored), whatever the answer said.
    creates: int = 0
    creates_by_prompt: Counter[str] = attrs.field(factory=Counter)
    #: Status answers served for an existing task of the caller.
    polls: int = 0
    polls_by_task: Counter[str] = attrs.field(factory=Counter)
    #: Largest number of live tasks any one account had, checked at each create.
    max_live_tasks: int = 0
    #: Every 429 answered, whatever its cause.
    rate_limited: int = 0
    #: Creates refused because the account had ``cap`` live tasks.
    cap_rejections: int = 0
    #: 401 answers (missing, malformed or unknown key).
    unauthorized: int = 0
    #: Failed tasks whose credits went back to the account.
    refunds: int = 0
    #: File answers started (200 or 206) and the body bytes sent with them.
    downloads: int = 0
    download_bytes: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    #: Callbacks withheld by ``drop_callbacks`` (simulated loss).
    callbacks_dropped: int = 0
    faults_fired: int = 0
    #: Fired faults by kind (the Fault value, e.g. "server_error").
    faults_by_kind: Counter[str] = attrs.field(factory=Counter)

    def snapshot(self) -> MockCounters:
        """A deep copy: later traffic does not change it."""
        return copy.deepcopy(self)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (Counters become dicts)."""
        return {
            name: dict(value) if isinstance(value, Counter) else value
            for name, value in attrs.asdict(self, recurse=False).items()
        }
