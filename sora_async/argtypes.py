"""argparse types for numbers, shared by the command line and the benchmark harness."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

__all__ = ["fraction", "non_negative_float", "positive_float", "positive_int"]


def _number(
    convert: Callable[[str], float], accept: Callable[[float], bool], wanted: str
) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, and refuse what ``accept`` does not take."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
positive_float = _number(float, lambda v: v > 0, "a positive number")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
