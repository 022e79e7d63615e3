"""``benchmarks/reliability.py``, the one command of the reliability figures, at a tiny size.

The soak and the crash matrix it runs have CI tests of their own (test_soak.py,
test_crash_matrix.py); here: the fuzzing counts what each decoder was really handed (a real
pytest run of the fuzz file at 3 examples), a failing check is reported as failed, and
``--publish`` replaces only the README's reliability block.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "reliability_script", ROOT / "benchmarks" / "reliability.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reliability = _load()


@pytest.mark.timeout(120)
@pytest.mark.anyio
async def test_the_fuzzing_counts_what_each_decoder_was_handed() -> None:
    with anyio.fail_after(110):  # a hang guard: a subprocess pytest of the fuzz file
        fuzz = await anyio.to_thread.run_sync(reliability.run_fuzz, 3, 0)
    assert fuzz["ok"], fuzz["foreign_exceptions"]
    assert fuzz["foreign_exceptions"] == []
    decoders = fuzz["decoders"]
    assert len(decoders) == 12  # 2 providers x lenient/strict x create/status/credits
    for name, row in decoders.items():
        assert row["hostile"] == 3, (name, row)
        assert row["wrong_types"] == 3, (name, row)
        assert row["corpus"] > 100, (name, row)  # every documented answer cut at every length
        assert row["failed"] == 0
    assert fuzz["answers"] == sum(
        row["hostile"] + row["wrong_types"] + row["corpus"] for row in decoders.values()
    )


def test_a_failed_test_case_is_read_as_failed(tmp_path: Path) -> None:
    junit = tmp_path / "run.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_download_hostile" name="test_ok" />'
        '<testcase classname="tests.test_journal.TestJournalStateMachineShard1" name="runTest">'
        "<failure message=\"KeyError: 'x'&#10;more\">trace</failure></testcase>"
        '<testcase classname="tests.test_network" name="test_ca"><skipped /></testcase>'
        "</testsuite></testsuites>"
    )
    cases = reliability._cases(junit)
    assert cases == [
        {"id": "tests/test_download_hostile.py::test_ok", "outcome": "passed", "failure": ""},
        {
            "id": "tests/test_journal.py::TestJournalStateMachineShard1::runTest",
            "outcome": "failed",
            "failure": "KeyError: 'x'",
        },
        {"id": "tests/test_network.py::test_ca", "outcome": "skipped", "failure": ""},
    ]
    assert [target for _, files in reliability.CHECKS for target in files if "journal" in target]


def test_publish_replaces_only_the_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    start, end = reliability.README_START, reliability.README_END
    readme.write_text(f"# x\n\nbefore\n\n{start}\nold table\n{end}\n\nafter\n")
    reliability.publish("| new | table |\n", readme)
    assert readme.read_text() == f"# x\n\nbefore\n\n{start}\n| new | table |\n{end}\n\nafter\n"
    readme.write_text("no block here\n")
    with pytest.raises(SystemExit, match="no <!-- reliability:start -->"):
        reliability.publish("| t |\n", readme)
