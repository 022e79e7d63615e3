"""Kill points: where a crash lands, drawn from a seed so that a failing point can be re-run."""

from __future__ import annotations

import enum
import random

import attrs

__all__ = ["FINISH_VARIANTS", "Kill", "KillPoint", "draw_points"]

#: Which write of the end of a run the kill interrupts: the file opened (nothing written yet)
#: or the rename that would publish it (written and fsynced).
FINISH_VARIANTS = ("manifest_open", "manifest_replace", "index_open", "index_replace")


class Kill(str, enum.Enum):
    """The moment of a kill."""

    #: The n-th create reached the server; its answer is not sent yet (the server may still
    #: create the task: an "unknown" outcome for the client).
    BEFORE_CREATE_ANSWER = "before_create_answer"
    #: The n-th create's answer (the task id) was sent whole, ``delay`` seconds ago: the kill
    #: lands before or just after the client wrote the id to its journal.
    AFTER_CREATE_ANSWER = "after_create_answer"
    #: Half of the n-th file's bytes were sent.
    MID_DOWNLOAD = "mid_download"
    #: Every video is on disk and the final manifest or index.html is being written
    #: (``variant``, one of FINISH_VARIANTS).
    FINAL_MANIFEST = "final_manifest"
    #: ``delay`` seconds after the first create reached the server, wherever the run is then.
    ANY_TIME = "any_time"

    def __str__(self) -> str:
        return self.value


@attrs.frozen(kw_only=True)
class KillPoint:
    kind: Kill
    #: The seed of the point's mock (file bytes) and of its draws.
    seed: int
    #: Which create or download (1 is the first); 0 where it does not apply.
    n: int = 0
    delay: float = 0.0
    variant: str = ""

    def label(self) -> str:
        parts = [self.kind.value]
        if self.n:
            parts.append(f"#{self.n}")
        if self.variant:
            parts.append(self.variant)
        if self.delay:
            parts.append(f"+{self.delay * 1000:.0f} ms")
        return " ".join(parts)


def _draw(kind: Kill, rng: random.Random, seed: int, items: int, variants: list[str]) -> KillPoint:
    if kind is Kill.BEFORE_CREATE_ANSWER or kind is Kill.MID_DOWNLOAD:
        return KillPoint(kind=kind, seed=seed, n=rng.randint(1, items))
    if kind is Kill.AFTER_CREATE_ANSWER:
        # Half at once, half a few milliseconds later: the journal write takes about that long,
        # so both sides of it are hit.
        delay = 0.0 if rng.random() < 0.5 else round(rng.uniform(0.001, 0.01), 4)
        return KillPoint(kind=kind, seed=seed, n=rng.randint(1, items), delay=delay)
    if kind is Kill.FINAL_MANIFEST:
        if not variants:
            # The manifest's two moments come before index.html's: any point list that has a
            # finishing kill at all has one during the final manifest.
            manifest, index = list(FINISH_VARIANTS[:2]), list(FINISH_VARIANTS[2:])
            rng.shuffle(manifest)
            rng.shuffle(index)
            variants.extend(reversed(manifest + index))
        return KillPoint(kind=kind, seed=seed, variant=variants.pop())
    return KillPoint(kind=kind, seed=seed, delay=round(rng.uniform(0.0, 0.8), 3))


def draw_points(seed: int, count: int, items: int) -> list[KillPoint]:
    """``count`` points for a batch of ``items`` prompts.

    The first is always a kill before the first create's answer; the rest go round every kind
    in a shuffled order, so any six points hold each kind at least once.
    """
    if count < 1 or items < 1:
        raise ValueError(f"count and items must be >= 1: {count!r}, {items!r}")
    rng = random.Random(seed)
    points = [KillPoint(kind=Kill.BEFORE_CREATE_ANSWER, seed=rng.randrange(2**31), n=1)]
    kinds: list[Kill] = []
    variants: list[str] = []
    while len(points) < count:
        if not kinds:
            kinds = list(Kill)
            rng.shuffle(kinds)
        points.append(_draw(kinds.pop(), rng, rng.randrange(2**31), items, variants))
    return points
