"""BENCHMARKS.md: one file, one marked section per benchmark, each rewritten by its own run
while the rest of the file stays as it was."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "bench" / "results"

HEADER = """# Benchmarks

Reproduce every figure below with `make bench`. Each benchmark rewrites its own section, between
its `<!-- name:begin -->` and `<!-- name:end -->` markers, and keeps its samples and the machine
it ran on in `bench/results/<name>.json`; text outside the markers is left alone.
"""


class MarkerError(ValueError):
    """A section's markers are missing one half, repeated, or in the wrong order."""


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of section `name`."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name` holding `body`; appended at the end when it has none yet."""
    begin, end = markers(name)
    counts = (text.count(begin), text.count(end))
    block = f"{begin}\n{body.strip()}\n{end}"
    if counts == (0, 0):
        return f"{text.rstrip()}\n\n{block}\n"
    if counts != (1, 1) or text.index(begin) > text.index(end):
        raise MarkerError(f"section {name!r} needs exactly one {begin} before one {end}")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    return head + block + tail


def update_section(name: str, body: str, path: Path = BENCHMARKS) -> None:
    """Write `body` into section `name` of `path`, creating the file with its header."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    path.write_text(replace_section(text, name, body), encoding="utf-8")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
