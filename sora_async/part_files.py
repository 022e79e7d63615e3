"""Which ``.part`` files a folder may hold, so that a download looks on disk only for one
that may be there.

Before its first request a download asks whether an earlier run left a ``.part`` to resume.
Asked of the disk each time, that is a trip to the disk thread for every file (on the event
loop itself, the lookup of a name not there waits for the folder's lock while other files are
created and renamed). Here a folder is listed once a process, on the disk thread, with the
first download's look into it, and the process's own streamed downloads add and remove their
``.part`` names; a download whose ``.part`` the index does not name sends its request at once.

The index may name a ``.part`` that is gone (a look then finds nothing, as before). It misses
one only when another process makes it after the listing, or this process while the folder is
being listed: a later download of that file then starts over instead of resuming, and writes
the file whole (the ``.part`` replaced, never appended to). A process keeps the listings of the
last ``_FOLDERS`` folders it listed; a folder dropped is listed again.
"""

from __future__ import annotations

import os
from collections import OrderedDict

__all__ = ["forget", "learn", "may_exist", "remember"]

PART_SUFFIX = ".part"
#: Folders whose listing is kept (a process that downloads into a folder a file is not held
#: to a listing of each).
_FOLDERS = 64

#: folder -> the .part paths it may hold. Read on the event loop, written on disk threads:
#: each step is one dict or set operation, whole under the GIL.
_known: OrderedDict[str, set[str]] = OrderedDict()

if hasattr(os, "register_at_fork"):
    # A forked child lists again: other processes may have made .parts since the listing.
    os.register_at_fork(after_in_child=_known.clear)


def may_exist(part: str, folder: str) -> bool:
    """Whether ``part`` (in ``folder``) may be on disk: True unless the folder's listing
    says it is not."""
    names = _known.get(folder)
    return names is None or part in names


def learn(folder: str) -> None:
    """List ``folder``'s .part files, once (on a disk thread: it reads the folder)."""
    if folder in _known:
        return
    try:
        with os.scandir(folder) as entries:
            names = {
                os.path.join(folder, entry.name)
                for entry in entries
                if entry.name.endswith(PART_SUFFIX)
            }
    except FileNotFoundError:
        names = set()  # made with the first file; until then this process makes its .parts
    except OSError:
        return  # unknown: every download into it looks for itself
    _known[folder] = names
    while len(_known) > _FOLDERS:
        _known.popitem(last=False)


def remember(part: str, folder: str) -> None:
    """A .part this process is about to make (before it exists: a look may then find it)."""
    names = _known.get(folder)
    if names is not None:
        names.add(part)


def forget(part: str, folder: str) -> None:
    """A .part this process renamed or removed."""
    names = _known.get(folder)
    if names is not None:
        names.discard(part)
