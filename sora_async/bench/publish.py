"""Files: every run writes new ones; ``--publish`` also replaces ``benchmarks/results/latest.*``
and the table in README.md between its ``bench`` markers."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Final

import attrs

from .. import ConfigurationError
from .plots import write_plots
from .report import targets, to_markdown
from .runner import BenchReport

__all__ = [
    "BATCH_BLOCK",
    "MAIN_BLOCK",
    "README_END",
    "README_START",
    "Block",
    "RunFiles",
    "publish",
    "source_root",
    "write_run",
]

README_START: Final = "<!-- bench:start -->"
README_END: Final = "<!-- bench:end -->"
_LATEST: Final = "latest"


@attrs.frozen
class Block:
    """Where a published run goes: ``benchmarks/results/<latest>.*`` and a README block."""

    latest: str
    start: str
    end: str


#: The full run.
MAIN_BLOCK: Final = Block(_LATEST, README_START, README_END)
#: The batch scenario, run on its own (it takes longer than the rest together).
BATCH_BLOCK: Final = Block("latest-batch", "<!-- bench-batch:start -->", "<!-- bench-batch:end -->")
_TITLE: Final = "# sora-async bench\n\n"


@attrs.frozen
class RunFiles:
    json: Path
    markdown: Path
    #: caption -> PNG
    plots: dict[str, Path]
    profile: Path | None


def source_root() -> Path | None:
    """The source checkout this package was imported from, if it is one."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir():
        return root
    return None


def default_out_dir() -> Path:
    """``benchmarks/results`` of the source checkout, else a new temporary directory."""
    root = source_root()
    if root is not None:
        return root / "benchmarks" / "results"
    return Path(tempfile.mkdtemp(prefix="sora-async-bench-"))


def _as_json(report: BenchReport) -> str:
    data = report.as_dict()
    data["targets"] = [attrs.asdict(target) for target in targets(report)]
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def write_run(report: BenchReport, out_dir: Path, *, plots: bool = True) -> RunFiles:
    """A new set of files named after the run's date; never overwrites an earlier run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = str(report.environment["date"]).replace(":", "").replace("-", "")
    name = f"run-{stamp}" + ("-quick" if report.quick else "")
    stem = out_dir / name
    suffix = 1
    while stem.with_suffix(".json").exists():
        suffix += 1
        stem = out_dir / f"{name}-{suffix}"
    images_written = write_plots(report, stem) if plots else {}
    profile = None
    if report.profile:
        profile = stem.with_name(stem.name + "-profile.txt")
        profile.write_text(report.profile)
    json_path = stem.with_suffix(".json")
    json_path.write_text(_as_json(report))
    md_path = stem.with_suffix(".md")
    images = {caption: path.name for caption, path in images_written.items()}
    md_path.write_text(_TITLE + to_markdown(report, images=images))
    return RunFiles(json_path, md_path, images_written, profile)


def publish(
    report: BenchReport, files: RunFiles, root: Path, *, block: Block = MAIN_BLOCK
) -> list[Path]:
    """Copy the run to ``benchmarks/results/<latest>.*`` and put its table into README.md."""
    readme = root / "README.md"
    text = readme.read_text()
    if block.start not in text or block.end not in text:
        raise ConfigurationError(
            f"--publish: README.md has no {block.start} ... {block.end} block to replace"
        )
    results = root / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    written = [results / f"{block.latest}.json"]
    shutil.copyfile(files.json, written[0])
    images: dict[str, str] = {}
    readme_images: dict[str, str] = {}
    for caption, path in files.plots.items():
        target = results / path.name.replace(files.json.stem, block.latest)
        shutil.copyfile(path, target)
        written.append(target)
        images[caption] = target.name
        readme_images[caption] = target.relative_to(root).as_posix()
    if files.profile is not None:
        target = results / f"{block.latest}-profile.txt"
        shutil.copyfile(files.profile, target)
        written.append(target)
    latest_md = results / f"{block.latest}.md"
    latest_md.write_text(_TITLE + to_markdown(report, images=images))
    written.append(latest_md)
    head, _, rest = text.partition(block.start)
    _, _, tail = rest.partition(block.end)
    table = to_markdown(report, images=readme_images)
    readme.write_text(f"{head}{block.start}\n{table}{block.end}{tail}")
    written.append(readme)
    return written
