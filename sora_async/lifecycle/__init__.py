"""One task's life, from account slot to fetched files, owned in one place.

A task is followed by exactly one coroutine, its *follower*, from the moment its id is known
(a create answered, or an id adopted) until it is seen terminal. The follower runs in a task
of the runtime's own (stopped when the client closes), not in the caller's frame, so no caller
can take the task's slot with it. A job of ``generate_many`` sends its create from that very
task, which emits CREATED and then follows (a *launch*, see :meth:`TaskRuntime.create`): one
task a job, its caller woken once the task has news.

* the slot is taken before the create and given back only when the task is seen terminal, or
  when the create provably made no task (:func:`~sora_async.errors.create_was_not_made`);
* a caller that stops waiting (cancellation, ``break``, a timeout, a hook that raises) only
  stops *watching*; the follower goes on polling at the task's own backed-off cadence and
  frees the slot when the task ends, so the next run never over-fills the account;
* ``wait()`` and ``generate_many`` watch a follower; they never poll by themselves, so two
  waiters of one task cost one poller.

Hooks the caller gives us (``on_progress``, event hooks, file hooks) are called by the watcher,
in the watcher's task, never by the follower: a hook that raises is logged once and ignored (it
changes neither the task's fate nor the run); a coroutine hook is awaited. Two events are the
exception, because a write-ahead journal depends on them: a hook that raises on CREATING stops
the create before it is sent, and one that raises on CREATED fails the job with its task id
(:class:`~sora_async.events.HookFailedAfterCreate`), while the task itself is still followed.

:class:`TaskRuntime` (``runtime``) is that one owner. It is built in layers over one state,
``following`` (the followers, a task's end) under ``creating`` (the create path), and uses
``followed`` (a followed task's state), ``launch`` (a create sent from its follower's task,
cancellations held back), ``stopping`` (a run's stop), ``observer`` (calling user hooks) and
``files`` (the download step).
"""

from .followed import Attempt
from .following import UNKNOWN_SLOT_HOLD_FACTOR
from .runtime import TaskRuntime
from .stopping import SendingStop

__all__ = ["UNKNOWN_SLOT_HOLD_FACTOR", "Attempt", "SendingStop", "TaskRuntime"]
