"""The report: the markdown tables and the issue's targets, each with its measured figure.

The targets are reported, never asserted: a miss is a finding, shown like any other number.

Modules, one job each: :mod:`.goals` (each target's limit, and :class:`Target`), :mod:`.reach`
(what a run shows about a target's reach), :mod:`.targets` (every target a run measured) and
:mod:`.batch_targets` (the batch scenario's), :mod:`.batch_runs` (a batch's runs paired by
size), :mod:`.cells` (how a figure is written), :mod:`.fanout_tables`, :mod:`.client_tables`
(one generate, memory, CPU) and :mod:`.batch_tables`, :mod:`.verdicts` (the targets' table)
and :mod:`.markdown` (the whole report, in order).
"""

from __future__ import annotations

from .goals import Target
from .markdown import headline, to_markdown
from .targets import targets

__all__ = ["Target", "headline", "targets", "to_markdown"]
