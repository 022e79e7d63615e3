"""Completion-callback receiver for sora2api's ``callBackUrl``.

sora2api POSTs to ``callBackUrl`` when a task is done. Callbacks are not signed, so their body is
never trusted: a callback only *wakes* the poller of that task, which then asks ``record-info``
for the real state. A forged callback can therefore cost at most one early poll, never a wrong
result. The URL carries a per-run secret token so that strangers cannot even do that.

Standalone (local use, tests, or a host the provider can reach directly)::

    async with CallbackReceiver(host="0.0.0.0", port=8080,
                                public_url="https://hooks.example.com") as receiver:
        url = receiver.callback_url          # put this into the request's callBackUrl
        hint = receiver.watch(task_id)       # woken when that task's callback arrives
        ...
        receiver.unwatch(task_id, hint)

Inside your own aiohttp application (``public_url`` is then required: it is the external URL
of the root of the application the routes are added to)::

    receiver = CallbackReceiver(public_url="https://app.example.com")
    receiver.mount(app)                      # or app.add_routes(receiver.routes())
    # or as a sub-application, with the sub-app prefix in public_url:
    #   CallbackReceiver(public_url="https://app.example.com/hooks")
    #   app.add_subapp("/hooks", receiver.app)
    runner = web.AppRunner(app, access_log_class=receiver.access_log_class)

The callback path embeds the token, so an ordinary access log would write it out; the standalone
server logs through :attr:`CallbackReceiver.access_log_class`, which redacts it, and a mounting

Modules, one job each: :mod:`.receiver` (:class:`CallbackReceiver`: its addresses, its route
and its standalone server), :mod:`.intake` (one request checked and read, its task woken),
:mod:`.wakes` (the watchers, and the task ids that had a callback), :mod:`.wake_hint`,
:mod:`.statistics`, :mod:`.checks` (the settings checked), :mod:`.addresses` (prefix, public
URL, bound host), :mod:`.redaction` (the access logger that hides the token),
:mod:`.defaults` and :mod:`.from_settings` (the receiver a client's options ask for). Every
module logs as ``sora_async.callbacks``.
"""

from __future__ import annotations

from .defaults import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REMEMBERED,
    DEFAULT_PATH_PREFIX,
    DEFAULT_REWAKE_AFTER,
)
from .from_settings import receiver_from_settings
from .intake import CallbackBodyReader
from .receiver import CallbackReceiver
from .statistics import CallbackStatistics
from .wake_hint import WakeHint

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_REMEMBERED",
    "DEFAULT_PATH_PREFIX",
    "DEFAULT_REWAKE_AFTER",
    "CallbackBodyReader",
    "CallbackReceiver",
    "CallbackStatistics",
    "WakeHint",
    "receiver_from_settings",
]
