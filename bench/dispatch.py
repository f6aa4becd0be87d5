"""Dispatch: no-op jobs through the local stack against plain Celery (`python -m
bench.dispatch`, part of `make bench`).

- offload: `POST /jobs` of `diag.flaky` (`fail_times` 0: a no-op on the cpu lane) to the API,
  which records the job in DynamoDB and sends it to SQS; the cpu worker leases it, runs it
  and records SUCCESS: status tracking end to end.
- celery-sqs: plain Celery (`bench/plain_celery.py`) on a queue of the same moto server, no
  status and no result backend, submitted with `send_task`.
- celery-redis: the same on Debian's `redis-server`, when it is installed.

Each worker has two pool processes and holds up to 16 messages (see PREFETCH_MULTIPLIER);
each variant is submitted by the same number of client threads. Throughput: jobs over the
time from the first submit to the last job's end. Submit-to-start latency: a job's start
(offload: its `started_at`; Celery: the task's first line) minus the moment its submit was
sent, both `time.time()` on this machine.
Goal (issue 8): offload's throughput at least plain Celery on SQS's, from the same round.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import plots, record
from bench.brokers import PLAIN_QUEUE, celery_worker, plain_sqs_queue, redis_server
from bench.dispatchers import Offload, PlainCelery, Variant
from bench.processes import interrupt_on_sigterm, local_system
from bench.report import table, update_section
from bench.stats import Spread

NAME = "dispatch"
CONCURRENCY = 2
# offload's cpu worker holds 16 messages with 2 processes, not 2: the lane has a batched task
# (diag.shout, max_size 8), and workers/batching.py raises the prefetch so a batch can fill.
# The baselines get the same: with prefetch 1 kombu's SQS transport sleeps its 1 s polling
# interval whenever the prefetch is full, which would cap plain Celery at ~2 jobs/s.
PREFETCH_MULTIPLIER = 8


@dataclass(frozen=True)
class Sizing:
    """Jobs per round, rounds, and client threads submitting."""

    jobs: int
    rounds: int
    submitters: int = 4


# 1000 jobs per variant in all, as four rounds: a median with a spread, within minutes.
FULL = Sizing(jobs=250, rounds=4)
QUICK = Sizing(jobs=40, rounds=1)


def measure(sizing: Sizing, logs: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Every round's figures per variant; a note when the Redis variant was skipped."""
    env = {"OFFLOAD_WORKER_CONCURRENCY": str(CONCURRENCY)}
    rounds: list[dict[str, Any]] = []
    with (
        local_system(logs, lanes=("cpu",), extra_env=env) as system,
        redis_server(logs) as redis_url,
    ):
        queue_url = plain_sqs_queue(system.settings())
        variants: list[Variant] = [Offload(system)]
        sqs = f"sqs://testing:testing@{system.host}:{system.aws_port}"
        brokers: list[tuple[str, str, str | None]] = [("celery-sqs", sqs, queue_url)]
        if redis_url:
            brokers.append(("celery-redis", redis_url, None))
        with contextlib.ExitStack() as stack:
            for name, url, q_url in brokers:
                marks = logs / f"{name}.marks"
                marks.touch()
                stack.enter_context(
                    celery_worker(name, url, q_url, marks, CONCURRENCY, PREFETCH_MULTIPLIER, logs)
                )
                variants.append(PlainCelery(name, url, PLAIN_QUEUE, q_url, marks))
            for variant in variants:  # warm each path once: first connections, imports
                variant.run(min(10, sizing.jobs), sizing.submitters)
            for n in range(sizing.rounds):
                one: dict[str, Any] = {}
                shift = n % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    one[variant.name] = variant.run(sizing.jobs, sizing.submitters).figures()
                    time.sleep(1)
                rounds.append(one)
                shown = ", ".join(f"{k} {v['throughput']:.1f} jobs/s" for k, v in one.items())
                sys.stdout.write(f"dispatch: round {n + 1}/{sizing.rounds}: {shown}\n")
    note = None if shutil.which("redis-server") else "redis-server is not installed"
    return rounds, note


FIGURES = ("throughput", "submit_rate", "latency_p50_ms", "latency_p99_ms")


def summarize(rounds: list[dict[str, Any]], sizing: Sizing, note: str | None) -> dict[str, Any]:
    """Medians over rounds per variant, and offload's throughput over Celery-on-SQS's."""
    names = list(rounds[0])
    variants = {
        name: {f: Spread.of([r[name][f] for r in rounds]).as_dict(2) for f in FIGURES}
        for name in names
    }
    ratio = Spread.of(
        [r["offload"]["throughput"] / r["celery-sqs"]["throughput"] for r in rounds]
    ).as_dict(3)
    return {
        "benchmark": NAME,
        "machine": record.machine(),
        "sizing": sizing.__dict__,
        "worker_concurrency": CONCURRENCY,
        "redis_skipped": note,
        "variants": variants,
        "throughput_ratio_offload_to_celery_sqs": ratio,
        "passed": ratio["median"] >= 1.0,
        "rounds": rounds,
    }


def plot(result: dict[str, Any]) -> None:
    """Throughput and submit-to-start latency per variant, medians with min-max."""
    fig = plots.figure(10, 4.5)
    names = list(result["variants"])
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    throughput = [result["variants"][n]["throughput"] for n in names]
    plots.grouped_bars(left, names, {"jobs/s": throughput})
    left.set_ylabel("jobs/s")
    latency = {
        stat.removeprefix("latency_").removesuffix("_ms"): [
            result["variants"][n][stat] for n in names
        ]
        for stat in ("latency_p50_ms", "latency_p99_ms")
    }
    plots.grouped_bars(right, names, latency)
    right.set_yscale("log")
    right.set_ylabel("submit-to-start latency (ms, log)")
    right.legend()
    sizing = result["sizing"]
    fig.suptitle(
        f"{sizing['jobs']} no-op jobs per round, median of {sizing['rounds']} rounds (min-max)"
    )
    plots.save(NAME, fig)


def section(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for `result`."""
    rows = []
    for name, v in result["variants"].items():
        rows.append(
            [
                name,
                Spread(**v["throughput"]).shown(" jobs/s"),
                Spread(**v["submit_rate"]).shown("/s"),
                Spread(**v["latency_p50_ms"]).shown(" ms", 0),
                Spread(**v["latency_p99_ms"]).shown(" ms", 0),
            ]
        )
    ratio = result["throughput_ratio_offload_to_celery_sqs"]
    verdict = "pass" if result["passed"] else "FAIL"
    sizing = result["sizing"]
    redis = (
        f"\n- Celery on Redis: skipped ({result['redis_skipped']}; `make bench` tries "
        "`apt-get install redis-server`)."
        if result["redis_skipped"]
        else ""
    )
    header = ["variant", "throughput", "submitted", "submit-to-start p50", "p99"]
    return f"""## Dispatch: no-op jobs against plain Celery

`python -m bench.dispatch` ({sizing["jobs"]} jobs per variant and round, {sizing["rounds"]}
rounds, the variants' order rotating; `OFFLOAD_BENCH_QUICK=1` for a smoke run). *offload*:
`POST /jobs` of a no-op cpu task (`diag.flaky`, `fail_times` 0) to the API, which records the
job in DynamoDB and sends it to SQS; the worker leases it, runs it and records SUCCESS.
*celery-sqs*: plain Celery (`bench/plain_celery.py`: late acks, no result
backend, no status) on a queue of the same moto server, fed by `send_task`. *celery-redis*:
the same on a local `redis-server`. Every worker has {result["worker_concurrency"]} pool
processes and holds up to {result["worker_concurrency"] * PREFETCH_MULTIPLIER} messages
(offload's cpu worker raises its prefetch to that for the lane's batched task, so the
baselines get the same); {sizing["submitters"]} client threads submit. Throughput counts
from the first submit to the last job's end; latency is a job's start minus the moment its
submit was sent.

{table(header, rows)}

![dispatch throughput and latency](bench/results/{NAME}.png)

- goal: offload's throughput at least plain Celery on SQS's: **{ratio["median"]:.2f}x
  ({ratio["low"]:.2f}-{ratio["high"]:.2f}), {verdict}**{redis}
- Locally every AWS call is a request to one moto server process on the same 2 cores, so
  each SQS or DynamoDB call costs CPU here that it does not cost on AWS; offload makes more
  of them per job (see the cost section), plus an HTTP request to its API per submit. The
  *submitted* column is the rate at which submits were accepted: offload's API (one uvicorn
  process) is its first bottleneck.
- {record.where(result["machine"])}; every round in `bench/results/{NAME}.json`"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.dispatch`."""
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__)
    parser.add_argument("--jobs", type=int, help="jobs per variant and round")
    parser.add_argument("--rounds", type=int, help="rounds")
    args = parser.parse_args(argv)
    sizing = QUICK if record.quick() else FULL
    sizing = Sizing(args.jobs or sizing.jobs, args.rounds or sizing.rounds, sizing.submitters)
    interrupt_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as logs:
        rounds, note = measure(sizing, Path(logs))
    result = summarize(rounds, sizing, note)
    record.save(NAME, result)
    plot(result)
    update_section(NAME, section(result))
    ratio = result["throughput_ratio_offload_to_celery_sqs"]["median"]
    sys.stdout.write(f"dispatch: offload / celery-sqs throughput = {ratio:.2f} (goal >= 1)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
