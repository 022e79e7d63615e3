"""The crash matrix: ``sora-async batch`` killed with SIGKILL at seeded points, then run again.

Each point starts the real CLI as a subprocess against the mock on 127.0.0.1, kills it with
``kill -9`` at one moment (before a create is answered, between a create's answer and its
journal write, half-way through a file, while the final manifest or index.html is written, or
a seeded time into the run), runs it again until it finishes, and checks the evidence the
mock keeps: no prompt created twice unless ``--resubmit-unknown`` asked for it, no item lost,
every file byte-identical (sha256) to what the mock served.

``benchmarks/crash_matrix.py`` runs 20 points and writes the figures; the CI test runs six.
The kill moments that only the server sees come from the mock's trips
(:meth:`~sora_async.mock.MockServer.on`); the ones that only the client's file writes show come
from an audit hook in :mod:`.child`, which then runs the unchanged CLI.
"""

from __future__ import annotations

from .points import Kill, KillPoint, draw_points
from .report import MatrixReport, run_matrix
from .run import MatrixSettings, PointResult, run_point

__all__ = [
    "Kill",
    "KillPoint",
    "MatrixReport",
    "MatrixSettings",
    "PointResult",
    "draw_points",
    "run_matrix",
    "run_point",
]
