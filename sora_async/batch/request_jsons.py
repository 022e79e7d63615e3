"""The journal's JSON of each line of a new batch, without building each line's request again.

A new batch reads its input twice: once to check every line (each request built and
validated), once to register the lines in the journal. The second pass needs only each
request's JSON; :class:`RequestJsons` makes it from a template of the line's kind.
"""

from __future__ import annotations

from collections.abc import Hashable
from json.encoder import encode_basestring
from typing import Any

from .input import InputReader
from .journal import request_to_json
from .journal.types import canonical_json, request_fields

__all__ = ["RequestJsons"]

#: Stands for the prompt in a request's JSON made once for many lines (see RequestJsons).
_PROMPT_MARK = "\x00the prompt\x00"
#: Kinds of lines (their fields but the prompt) whose JSON RequestJsons keeps at once.
_KINDS_KEPT = 256


class RequestJsons:
    """``request_to_json`` of a line's request, for lines an earlier pass proved good.

    The request of each kind of line (the fields it gives but the prompt) is built once; the
    JSON of another line of its kind is that request's with the line's prompt put in, escaped
    as the encoder escapes it (a request keeps its prompt as given: no converter, and no other
    field depends on it). A line that is not plain (no prompt, a value that is not hashable)
    has its request built, as a bad line's must be to say what is wrong with it.
    """

    def __init__(self, reader: InputReader) -> None:
        self._reader = reader
        #: The JSON before and after the prompt, by kind of line.
        self._kinds: dict[Hashable, tuple[str, str]] = {}

    def __call__(self, line: int, given: dict[str, Any]) -> str:
        prompt = given.get("prompt")
        try:
            kind: Hashable = (
                ()
                if len(given) == 1
                else frozenset(
                    [(name, type(v), v) for name, v in given.items() if name != "prompt"]
                )
            )
            around = self._kinds.get(kind)
        except TypeError:  # a value that is not hashable (a list of characters)
            return request_to_json(self._reader.request(given, line))
        if around is not None and type(prompt) is str:
            return around[0] + encode_basestring(prompt) + around[1]
        request = self._reader.request(given, line)
        fields = request_fields(request)
        fields["prompt"] = _PROMPT_MARK
        parts = canonical_json(fields).split(encode_basestring(_PROMPT_MARK))
        if len(parts) == 2:  # else another field holds the mark: each such line is built
            if len(self._kinds) >= _KINDS_KEPT:
                self._kinds.clear()
            self._kinds[kind] = (parts[0], parts[1])
        return request_to_json(request)
