"""What a batch did, for people: ``sora-async report DIR`` and ``DIR/index.html``.

Both read the batch's rows (one per input item, the manifest's shape). The report reads the
journal without writing to it; while a batch holds the journal, it reads the manifest that
batch keeps up to date instead. The page is streamed row by row, so its memory stays flat.
"""

from __future__ import annotations

import collections
import html
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from ..durable import write_lines_atomically
from ..errors import ConfigurationError
from .home import locate_journal
from .journal import JournalError, read_rows

__all__ = ["INDEX_NAME", "manifest_rows", "print_report", "summarise", "write_index"]

INDEX_NAME = "index.html"
_MANIFEST_NAME = "manifest.jsonl"
_STATES = ("succeeded", "failed", "unknown", "downloading", "running", "created", "pending")
#: Failures listed one by one; the rest are counted.
_SHOWN = 50


def _rows(out: Path, journal_flag: Path | None) -> tuple[Iterator[dict[str, Any]], str]:
    journal, _ = locate_journal(out, journal_flag)
    if journal.exists():
        try:
            return read_rows(journal), f"journal {journal}"
        except JournalError:
            pass  # a batch is running and holds the journal: its manifest is current
    manifest = out / _MANIFEST_NAME
    if not manifest.exists():
        raise ConfigurationError(
            f"{out} holds no batch (no journal at {journal}, no {_MANIFEST_NAME}); "
            "pass the batch's --out directory (and --journal PATH if it had one)"
        )

    return manifest_rows(manifest), f"manifest {manifest} (the journal is in use)"


def manifest_rows(manifest: Path) -> Iterator[dict[str, Any]]:
    """The rows of a ``manifest.jsonl``, read a line at a time."""
    with manifest.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if isinstance(row, dict):
                yield row


def _spent(row: Mapping[str, Any]) -> int:
    """Credits a row cost: a created (or maybe created) task that was not refunded."""
    made = row.get("task_id") is not None or row.get("state") == "unknown"
    if not made or row.get("refunded") is True:
        return 0
    return int(row.get("estimated_credits") or 0)


def summarise(rows: Iterable[Mapping[str, Any]], into: TextIO, source: str) -> int:
    """Print the summary of ``rows``; returns how many items did not succeed."""
    counts: collections.Counter[str] = collections.Counter()
    spent = refunded = 0
    problems: list[str] = []
    for row in rows:
        state = str(row.get("state"))
        counts[state] += 1
        spent += _spent(row)
        refunded += row.get("refunded") is True
        if state in ("failed", "unknown") and len(problems) < _SHOWN:
            flag = row.get("refunded")
            refund = "" if flag is None else "refunded" if flag else "not refunded"
            problems.append(
                f"  [{row.get('index')}] {state} {row.get('task_id') or '(no task)'}: "
                f"{' '.join(str(row.get('error') or '').split())[:160]}"
                + (f" ({refund})" if refund else "")
                + f"  prompt: {json.dumps(str(row.get('prompt'))[:60], ensure_ascii=False)}"
            )
    total = sum(counts.values())
    shown = [f"{counts[state]} {state}" for state in _STATES if counts[state]]
    shown += [f"{n} {state}" for state, n in sorted(counts.items()) if state not in _STATES]
    print(f"batch: {total} item(s) from {source}", file=into)
    print(f"states: {', '.join(shown) or 'none'}", file=into)
    print(
        f"credits spent (estimated by the price table): {spent}"
        + (f"; {refunded} failed task(s) refunded" if refunded else ""),
        file=into,
    )
    failures = counts["failed"] + counts["unknown"]
    if failures:
        print(f"failures ({failures}):", file=into)
        for line in problems:
            print(line, file=into)
        if failures > len(problems):
            print(f"  ... and {failures - len(problems)} more", file=into)
    return total - counts["succeeded"]


def print_report(out: Path, journal_flag: Path | None) -> int:
    """``sora-async report DIR``: exit 0 when every item succeeded, 1 otherwise."""
    rows, source = _rows(out, journal_flag)
    left = summarise(rows, sys.stdout, source)
    return 0 if left == 0 else 1


_PAGE_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr));
  gap: 1rem; }}
article {{ background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: .75rem; }}
video {{ width: 100%; border-radius: 4px; background: #000; }}
.state {{ font-weight: 600; }} .succeeded {{ color: #17803d; }} .failed {{ color: #b42318; }}
.unknown {{ color: #b54708; }} .error {{ color: #b42318; font-size: .9em; }}
.meta {{ color: #666; font-size: .85em; word-break: break-all; }}
</style></head><body>
<h1>{title}</h1>
"""


#: html.escape's table, for str.translate: one call a text, not five replaces (a card has four).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


#: A name quote() and the escapes leave as it is (as a batch names its files): taken so, not
#: passed through quote's half a dozen Python calls.
_PLAIN_SRC = re.compile(r"[A-Za-z0-9_.~/-]*")


def _src(name: Any) -> str:
    text = str(name)
    if _PLAIN_SRC.fullmatch(text) is not None:
        return text
    return quote(text).translate(_ESCAPES)


def _card(row: Mapping[str, Any]) -> str:
    # One f-string, not a list of parts, and a manifest row's keys read without a call each:
    # a card a task.
    try:
        index, state, files = row["index"], row["state"], row["files"]
        prompt, error, task_id = row["prompt"], row["error"], row["task_id"]
    except KeyError:  # not a whole manifest row: what it lacks is shown as unset
        get = row.get
        index, state, files = get("index"), get("state"), get("files")
        prompt, error, task_id = get("prompt"), get("error"), get("task_id")
    state = str(state).translate(_ESCAPES)
    videos = (
        "".join(
            [f'<video src="{_src(name)}" controls preload="metadata"></video>' for name in files]
        )
        if files
        else ""
    )
    problem = error or row.get("note")
    shown = f'<p class="error">{str(problem).translate(_ESCAPES)}</p>' if problem else ""
    meta = f"#{index} · {task_id or 'no task'}".translate(_ESCAPES)
    return (
        f'<article id="item-{int(index or 0)}">{videos}'
        f"<p>{str(prompt or '').translate(_ESCAPES)}</p>"
        f'<p><span class="state {state}">{state}</span></p>{shown}'
        f'<p class="meta">{meta}</p></article>\n'
    )


def write_index(out: Path, rows: Iterable[Mapping[str, Any]], title: str) -> Path:
    """Write ``DIR/index.html``: every item with its video, prompt and state (atomically)."""

    def lines() -> Iterator[str]:
        counts: collections.Counter[str] = collections.Counter()
        yield _PAGE_HEAD.format(title=html.escape(title))
        yield "<main>\n"
        for row in rows:
            counts[str(row.get("state"))] += 1
            yield _card(row)
        yield "</main>\n"
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        yield f"<footer><p>{html.escape(summary)}</p></footer>\n</body></html>\n"

    return write_lines_atomically(out / INDEX_NAME, lines())
