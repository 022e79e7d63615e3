"""What a client and every CLI run import at start-up: only what they use.

A batch of a thousand prompts pays its start-up once per process; aiohttp.web (the callback
receiver's server) and importlib.metadata cost tens of milliseconds there and serve nothing
unless a receiver is asked for.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

_PROBE = """
import sys
import sora_async, sora_async.cli, sora_async.batch.run
from sora_async import SoraClient
SoraClient("freesora", "k" * 20, base_url="http://127.0.0.1:9")
print(",".join(sorted(name for name in ("aiohttp.web", "importlib.metadata",
    "sora_async.callbacks") if name in sys.modules)))
"""


def _imported(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=50
    )
    return done.stdout.strip()


def test_a_client_and_the_cli_do_not_import_the_callback_server() -> None:
    assert _imported(_PROBE) == ""


def test_the_receiver_is_still_importable_from_the_package() -> None:
    code = "import sys, sora_async; r = sora_async.CallbackReceiver; print(r.__name__)"
    assert _imported(code) == "CallbackReceiver"
    with pytest.raises(subprocess.CalledProcessError):
        _imported("import sora_async; sora_async.NoSuchName")


def test_the_wire_converters_are_made_only_for_an_answer_that_needs_one() -> None:
    # The fast readers take the usual answers; cattrs and its generated hooks cost a process
    # tens of milliseconds at start-up.
    code = (
        "import sys; from sora_async import SoraClient; import sora_async.providers.sora2api; "
        "SoraClient('freesora', 'k' * 20, base_url='http://127.0.0.1:9'); "
        "print('cattrs' in sys.modules)"
    )
    assert _imported(code) == "False"
