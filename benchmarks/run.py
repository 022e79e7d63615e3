"""Run the benchmark from a source checkout: ``python benchmarks/run.py [options]``.

The same as ``sora-async bench [options]`` (see README.md here); every run writes new files
into benchmarks/results/, and ``--publish`` replaces latest.* and the README table.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this directory comes first on sys.path, not the checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sora_async.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
