"""The summary at the top of BENCHMARKS.md: each goal of issue 8, the figure measured for it
and whether it was met, from the results the benchmarks left in `bench/results/`
(`python -m bench.summary`, the last step of `make bench`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.record import load
from bench.report import BENCHMARKS, HEADER, markers, replace_section, table

NAME = "summary"
# A section's begin marker on a line of its own (the header names the markers in prose).
_FIRST_SECTION = re.compile(r"^<!-- [\w-]+:begin -->$", re.MULTILINE)


def _verdict(result: dict[str, Any]) -> str:
    return "pass" if result["passed"] else "**FAIL**"


def _load(r: dict[str, Any]) -> list[str]:
    ratio = r["p99_ratio_to_idle"]
    naive = ratio["naive"]["median"]
    return [
        f"{ratio['offload']['median']:.2f}x ({ratio['offload']['low']:.2f}-"
        f"{ratio['offload']['high']:.2f}); BackgroundTasks {naive:.1f}x",
        _verdict(r),
    ]


def _dispatch(r: dict[str, Any]) -> list[str]:
    ratio = r["throughput_ratio_offload_to_celery_sqs"]
    v = r["variants"]
    return [
        f"{ratio['median']:.2f}x: {v['offload']['throughput']['median']:.1f} vs "
        f"{v['celery-sqs']['throughput']['median']:.1f} jobs/s",
        _verdict(r),
    ]


def _cost(r: dict[str, Any]) -> list[str]:
    kinds = ", ".join(
        f"{kind} {k['requests_per_job']['median']:.2f} "
        f"(${k['usd_per_million_jobs']['total']['median']:.2f}/M jobs)"
        for kind, k in r["kinds"].items()
    )
    return [kinds, _verdict(r)]


def _cold_start(r: dict[str, Any]) -> list[str]:
    package = r.get("package", {})
    size = (
        f"; package {package['zipped_bytes'] / 2**20:.1f} MB zipped"
        if "zipped_bytes" in package
        else ""
    )
    return [f"{r['ratio']:.2f}x{size}", _verdict(r)]


def _inline(r: dict[str, Any]) -> list[str]:
    v = r["variants"]
    return [
        f"{v['offload']['returned_s']['median'] * 1000:.0f} ms vs Mangum "
        f"{v['mangum']['returned_s']['median'] * 1000:.0f} ms",
        _verdict(r),
    ]


def _embeddings(r: dict[str, Any]) -> list[str]:
    speedups = [
        f"{device}, {case['texts_per_job']} text(s)/job: {case['speedup']:.2f}x"
        for device, result in sorted(r.items())
        for case in result["cases"]
    ]
    return ["; ".join(speedups), "no goal set"]


# (result file, goal, command, figure and verdict from the result)
GOALS: list[tuple[str, str, str, Callable[[dict[str, Any]], list[str]]]] = [
    ("load", "API p99 under heavy work within 1.2x idle", "bench.load", _load),
    ("dispatch", "throughput at least plain Celery on SQS's", "bench.dispatch", _dispatch),
    ("cost", "at most 4.2 AWS requests per job, polling included", "bench.cost", _cost),
    (
        "cold_start",
        "handler import at most 1.25x bare FastAPI + Mangum",
        "bench.cold_start",
        _cold_start,
    ),
    (
        "inline_lambda",
        "Lambda response not held by a 2 s inline task",
        "bench.inline_lambda",
        _inline,
    ),
    ("embeddings", "batched jobs vs one job per forward pass", "bench.embeddings", _embeddings),
]


def section() -> str:
    """The summary table from whatever results exist."""
    rows = []
    for file, goal, module, figures in GOALS:
        result = load(file)
        measured = figures(result) if result else ["not run yet", "-"]
        rows.append([goal, *measured, f"`python -m {module}`"])
    return f"""## Summary

Each goal of issue 8 with the figure measured for it in the last run (medians over rounds,
ratios from the same round); the sections below say how, with the spread of every figure.
`make bench` runs them all (a few minutes); `OFFLOAD_BENCH_QUICK=1 make bench` is a smoke
run whose figures are too few to trust.

{table(["goal", "measured", "result", "command"], rows)}"""


def write(text: str) -> str:
    """`text` with the summary below the header: replaced where it is, else inserted before
    the first section."""
    begin, end = markers(NAME)
    first = _FIRST_SECTION.search(text)
    if begin not in text and first is not None:
        at = first.start()
        text = f"{text[:at]}{begin}\n{end}\n\n{text[at:]}"
    return replace_section(text, NAME, section())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.summary`."""
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else HEADER
    BENCHMARKS.write_text(write(text), encoding="utf-8")
    sys.stdout.write(f"summary: {BENCHMARKS.name} updated\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
