"""``python -m sora_async``: the same as the ``sora-async`` console script."""

from .cli import run

run()
