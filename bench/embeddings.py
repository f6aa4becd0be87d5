"""Embedding throughput: jobs batched into shared forward passes vs one job per pass
(`python -m bench.embeddings`, part of `make bench`).

The jobs are `embeddings.embed` payloads run through the task function itself, the way a
gpu worker's batch calls it: batched, `--batch` jobs per call (the task's own batch size);
alone, one job per call, as without batching. The two alternate round by round in one
process so machine noise hits both; the model is loaded and warmed first. Runs on CUDA when
torch sees a GPU (`--device` to force), else on the CPU; results are kept per device, so a
GPU run adds its rows beside the CPU's.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from bench import record
from bench.report import table, update_section

NAME = "embeddings"

# Short, varied texts: the small jobs (a sentence or a chunk each) batching is for.
SENTENCES = [
    "A man is playing a guitar.",
    "The quarterly report shows revenue up eleven percent.",
    "Embeddings map text to vectors whose distances reflect meaning.",
    "Please reset my password, I cannot log in since this morning.",
    "Serverless functions scale to zero when nobody calls them.",
    "The GPU worker loads its model once and keeps it warm.",
    "Cats sleep for most of the day.",
    "Refunds are processed within five business days.",
]


def jobs(count: int, texts_per_job: int) -> list[list[str]]:
    """`count` payloads of `texts_per_job` texts each, all different."""
    return [
        [f"{SENTENCES[(i + k) % len(SENTENCES)]} (#{i}.{k})" for k in range(texts_per_job)]
        for i in range(count)
    ]


def run(payloads: list[Any], batch: int) -> float:
    """Seconds to embed every payload, `batch` jobs per call."""
    from offload import JobContext
    from tasks.embeddings import embed

    nobody = cast(JobContext, None)
    started = time.perf_counter()
    for start in range(0, len(payloads), batch):
        group = payloads[start : start + batch]
        embed(group, [nobody] * len(group))
    return time.perf_counter() - started


def measure(count: int, texts_per_job: int, batch: int, rounds: int) -> dict[str, Any]:
    """Alternate batched and alone rounds over the same jobs; jobs/s for each."""
    from tasks import embeddings
    from tasks.embeddings import Embed

    payloads = [Embed(texts=texts) for texts in jobs(count, texts_per_job)]
    run(payloads[: batch * 2], batch)  # warm: first passes allocate and tune
    samples: dict[str, list[float]] = {"batched": [], "alone": []}
    passes: dict[str, int] = {}
    for round_ in range(rounds):
        order = ("batched", "alone") if round_ % 2 == 0 else ("alone", "batched")
        for mode in order:
            before = embeddings.forward_passes
            seconds = run(payloads, batch if mode == "batched" else 1)
            passes[mode] = embeddings.forward_passes - before
            samples[mode].append(count / seconds)
    medians = {mode: statistics.median(values) for mode, values in samples.items()}
    return {
        "jobs": count,
        "texts_per_job": texts_per_job,
        "batch": batch,
        "rounds": rounds,
        "jobs_per_s": samples,
        "median_jobs_per_s": medians,
        "forward_passes": passes,
        "speedup": medians["batched"] / medians["alone"],
    }


def device_name(device: str) -> str:
    """What the numbers ran on, in words."""
    import torch

    if device == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def section(results: dict[str, Any]) -> str:
    rows = []
    for _, result in sorted(results.items()):
        for case in result["cases"]:
            med = case["median_jobs_per_s"]
            rows.append(
                [
                    result["hardware"],
                    f"{case['texts_per_job']}",
                    f"{case['batch']}",
                    f"{med['alone']:.1f}",
                    f"{med['batched']:.1f}",
                    f"**{case['speedup']:.2f}x**",
                    f"{case['forward_passes']['alone']} / {case['forward_passes']['batched']}",
                ]
            )
    measured = ", ".join(f"{d} {r['measured']}" for d, r in sorted(results.items()))
    missing = (
        ""
        if "cuda" in results
        else "\n- No CUDA figures yet: no GPU machine has run `python -m bench.embeddings`."
    )
    header = [
        "hardware",
        "texts per job",
        "batch",
        "alone (jobs/s)",
        "batched (jobs/s)",
        "speedup",
        "forward passes alone / batched",
    ]
    return f"""## Embedding throughput: batched jobs vs one job per forward pass

`embeddings.embed` (all-MiniLM-L6-v2) over the same jobs, called as a gpu worker's batch
calls it: `batch` jobs per call (one forward pass), against one job per call. Both alternate
round by round in one process (`bench/embeddings.py`); medians of the rounds.

{table(header, rows)}

- measured: {measured}; every round in `bench/results/embeddings.json`
- Batched and single results agree to float rounding (at most 2e-7 apart, asserted below 1e-5
  by `tests/unit/tasks/test_embeddings.py`).{missing}"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embeddings", description=__doc__)
    parser.add_argument("--jobs", type=int, help="jobs per round (256; quick: 32)")
    parser.add_argument("--rounds", type=int, help="rounds (3; quick: 1)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (32 if record.quick() else 256)
    args.rounds = args.rounds or (1 if record.quick() else 3)

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        # The model picks CUDA when it sees one; hide it for a CPU run.
        torch.cuda.is_available = lambda: False

    from tasks.embeddings import BATCH, load_model

    load_model()
    cases = [measure(args.jobs, texts, BATCH.max_size, args.rounds) for texts in (1, 4)]
    results = record.load(NAME) or {}  # other devices' figures stay
    results[device] = {
        "hardware": device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": record.quick(),
        "cases": cases,
    }
    record.save(NAME, results)
    update_section(NAME, section(results))
    for case in cases:
        med = case["median_jobs_per_s"]
        sys.stdout.write(
            f"{device}: {case['texts_per_job']} text(s)/job: alone {med['alone']:.1f} jobs/s, "
            f"batched {med['batched']:.1f} jobs/s ({case['speedup']:.2f}x)\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
