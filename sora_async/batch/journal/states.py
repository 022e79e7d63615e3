"""The item state machine as a table: which event may move an item from which states to which.

Every state change of the store goes through :func:`check`, so a change the table does not
list cannot reach the disk, whatever a method's own checks say. The methods still refuse
early, with messages that say why (an item with a task must not be created again, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from .types import ItemState, JournalTransitionError

__all__ = ["TRANSITIONS", "Transition", "check"]

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


def check(index: int, event: str, old: ItemState, new: ItemState) -> None:
    """Raise :class:`JournalTransitionError` unless the table allows ``old -> new`` by ``event``."""
    rule = TRANSITIONS.get(event)
    if rule is None or old not in rule.sources or new not in rule.targets:
        raise JournalTransitionError(
            index, old, f"{event!r} cannot move an item from {old.value} to {new.value}"
        )
