"""The item state machine as a table: which event may move an item from which states to which.

Every state change of the store goes through :func:`check`, so a change the table does not
list cannot reach the disk, whatever a method's own checks say. The methods still refuse
early, with messages that say why (an item with a task must not be created again, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from .types import ItemState, JournalTransitionError

__all__ = ["TRANSITIONS", "UNLOGGED", "Transition", "check", "logged"]

_S = ItemState


@attrs.frozen
class Transition:
    sources: frozenset[ItemState]
    targets: frozenset[ItemState]


def _t(sources: set[ItemState], targets: set[ItemState]) -> Transition:
    return Transition(frozenset(sources), frozenset(targets))


#: event name (as written to the event log) -> where it may start and end.
TRANSITIONS: Mapping[str, Transition] = {
    # Before the create is sent (write-ahead); never for an item that has or may have a task.
    "intent": _t({_S.PENDING, _S.NOT_CREATED}, {_S.CREATING}),
    # The task id, right after the answer (or learnt later for an unknown outcome).
    "created": _t({_S.CREATING, _S.UNKNOWN}, {_S.CREATED}),
    # Provably nothing created: sent again later (429, connect error) or refused for good.
    "not_created": _t({_S.CREATING}, {_S.NOT_CREATED}),
    "rejected": _t({_S.CREATING}, {_S.FAILED}),
    # Maybe created, id unknown: never sent again by itself.
    "unknown": _t({_S.CREATING, _S.UNKNOWN}, {_S.UNKNOWN}),
    "interrupted": _t({_S.CREATING}, {_S.UNKNOWN}),
    # Explicit second payments, each asked for by the user.
    "resubmitted": _t({_S.UNKNOWN}, {_S.PENDING}),
    "requeued": _t({_S.FAILED}, {_S.PENDING}),
    "retried": _t({_S.FAILED}, {_S.PENDING}),
    # The task's life: never back from running, never out of an end.
    "status": _t({_S.CREATED, _S.RUNNING}, {_S.CREATED, _S.RUNNING}),
    "terminal": _t({_S.CREATED, _S.RUNNING}, {_S.DOWNLOADING, _S.FAILED}),
    "file": _t({_S.DOWNLOADING}, {_S.DOWNLOADING}),
    "done": _t({_S.DOWNLOADING}, {_S.SUCCEEDED}),
}


#: The usual path's transitions, ``(event, from, to)``: no event row is written for them. The
#: item's own row holds their times (added_at, intent_at, task_created_at, finished_at,
#: done_at; a file's recorded_at), so a row each would only repeat it, at five statements a
#: task; nothing reads the event log but people and tests. Every other transition is logged:
#: a refused or doubtful create, a resubmit or retry (which keeps the released task id), a
#: task id learnt for an unknown item, a failed task, a progress change.
UNLOGGED: frozenset[tuple[str, ItemState | None, ItemState]] = frozenset(
    {
        ("added", None, _S.PENDING),
        ("intent", _S.PENDING, _S.CREATING),
        ("created", _S.CREATING, _S.CREATED),
        ("terminal", _S.CREATED, _S.DOWNLOADING),
        ("terminal", _S.RUNNING, _S.DOWNLOADING),
        ("file", _S.DOWNLOADING, _S.DOWNLOADING),
        ("done", _S.DOWNLOADING, _S.SUCCEEDED),
    }
)


def logged(event: str, old: ItemState | None, new: ItemState) -> bool:
    """Whether ``old -> new`` by ``event`` gets a row in the event log (see UNLOGGED)."""
    return (event, old, new) not in UNLOGGED


def check(index: int, event: str, old: ItemState, new: ItemState) -> None:
    """Raise :class:`JournalTransitionError` unless the table allows ``old -> new`` by ``event``."""
    rule = TRANSITIONS.get(event)
    if rule is None or old not in rule.sources or new not in rule.targets:
        raise JournalTransitionError(
            index, old, f"{event!r} cannot move an item from {old.value} to {new.value}"
        )
