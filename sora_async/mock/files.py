"""Result files: deterministic mp4-looking bytes per task, and single-range Range parsing."""

from __future__ import annotations

import functools
import random
import struct

__all__ = ["Unsatisfiable", "make_file_bytes", "parse_range"]

# ftyp box: size, type, major brand, minor version, compatible brands (24 bytes).
_FTYP = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 512, b"isommp42")


@functools.lru_cache(maxsize=16)
def make_file_bytes(seed: int, task_id: str, size: int) -> bytes:
    """The file served for ``task_id``: the same bytes for the same seed, id and size.

    An ``ftyp`` box, then an ``mdat`` box filling the rest with seeded noise, so tools that
    sniff the type see an mp4 and every task's file differs.
    """
    if size < len(_FTYP) + 8:
        raise ValueError(f"file size too small for an mp4 header: {size}")
    body = size - len(_FTYP)
    rng = random.Random(f"sora_async.mock:{seed}:{task_id}")
    return _FTYP + struct.pack(">I4s", body, b"mdat") + rng.randbytes(body - 8)


class Unsatisfiable(Exception):
    """The Range header names no byte of the file (answer 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single ``bytes=`` range, or None for the whole file.

    Headers we do not honour (other units, several ranges, bad syntax) mean the whole file, as
    RFC 9110 allows; a well-formed range that starts past the end raises :class:`Unsatisfiable`.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text.isdigit() or last_text.isdigit()):
        return None
    if not first_text:
        if not last_text.isdigit():
            return None
        suffix = int(last_text)
        if suffix == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return None
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        raise Unsatisfiable
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)
