"""Cost: AWS requests per job, counted, and the price per million jobs (`python -m
bench.cost`, part of `make bench`).

Every process of the local system (the API and the cpu worker) talks to the local AWS
through a counting proxy (`bench/aws_counter.py`). Clients submit jobs and follow each as a
normal client does, `GET /jobs/{id}?wait=20` (what `offload submit --wait` sends) until it
ends. Two kinds of job: a no-op on the cpu lane and a no-op on the inline lane. Workers'
empty long polls are counted apart (they are a cost per worker and second, not per job),
from an idle window without jobs and during the jobs. Not counted: the local stand-ins for
AWS's own machinery (the completions queue's poller, the sweep's schedule), whose requests
do not depend on the number of jobs.
Goal (issue 8): at most 4.2 AWS requests per job on average, polling included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import plots, pricing, record
from bench.aws_counter import CountingProxy, Operation
from bench.clients import WAIT_S, run_jobs
from bench.processes import interrupt_on_sigterm, local_system
from bench.report import table, update_section
from bench.stats import Spread
from infra.local.dev import free_port

NAME = "cost"
GOAL = 4.2
EMPTY = "ReceiveMessage (empty)"
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "cpu": ("diag.flaky", {"fail_times": 0}),
    "inline": ("diag.echo", {"note": "cost"}),
}


@dataclass(frozen=True)
class Sizing:
    """Jobs per kind and round, rounds, concurrent clients and the idle window."""

    jobs: int
    rounds: int
    clients: int
    idle_s: float


FULL = Sizing(jobs=40, rounds=3, clients=10, idle_s=15.0)
QUICK = Sizing(jobs=10, rounds=1, clients=5, idle_s=5.0)


def _keyed(counts: Mapping[Operation, float]) -> dict[str, float]:
    return {f"{service}:{op}": n for (service, op), n in sorted(counts.items())}


def measure(sizing: Sizing, logs: Path) -> dict[str, Any]:
    """An idle window, then rounds of each kind of job; every count of each."""
    moto_port = free_port()
    proxy = CountingProxy(moto_port).start()
    rounds: list[dict[str, Any]] = []
    try:
        env = {"OFFLOAD_AWS_ENDPOINT_URL": proxy.url}
        with local_system(logs, aws_port=moto_port, lanes=("cpu",), extra_env=env) as system:
            for kind in KINDS:  # warm: first connections, the API's first requests
                run_jobs(system.api_url, *KINDS[kind], jobs=2, clients=2)
            time.sleep(2)
            proxy.take()
            time.sleep(sizing.idle_s)
            idle, _ = proxy.take()
            for n in range(sizing.rounds):
                order = list(KINDS) if n % 2 == 0 else list(reversed(KINDS))
                for kind in order:
                    started = time.monotonic()
                    client = run_jobs(
                        system.api_url, *KINDS[kind], jobs=sizing.jobs, clients=sizing.clients
                    )
                    time.sleep(2)  # the last acks come after the client saw the end
                    counts, units = proxy.take()
                    rounds.append(
                        {
                            "kind": kind,
                            "jobs": sizing.jobs,
                            "seconds": time.monotonic() - started,
                            "counts": _keyed(counts),
                            "dynamodb_read_units": _keyed(units),
                            **client,
                        }
                    )
                sys.stdout.write(f"cost: round {n + 1}/{sizing.rounds} done\n")
    finally:
        proxy.stop()
    return {"idle": {"seconds": sizing.idle_s, "counts": _keyed(idle)}, "rounds": rounds}


def per_job(rounds: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """For one kind: requests per job by operation (median over rounds), the total without
    empty receives, empty receives per job, and the price per million jobs."""
    mine = [r for r in rounds if r["kind"] == kind]
    ops = sorted({op for r in mine for op in r["counts"]})
    by_op = {
        op: Spread.of([r["counts"].get(op, 0) / r["jobs"] for r in mine]).as_dict(3) for op in ops
    }
    totals = [
        sum(n for op, n in r["counts"].items() if not op.endswith(EMPTY)) / r["jobs"] for r in mine
    ]
    empties = [
        sum(n for op, n in r["counts"].items() if op.endswith(EMPTY)) / r["jobs"] for r in mine
    ]
    prices = [pricing.per_million_jobs(r) for r in mine]
    return {
        "by_operation": by_op,
        "requests_per_job": Spread.of(totals).as_dict(3),
        "empty_receives_per_job": Spread.of(empties).as_dict(3),
        "api_requests_per_job": Spread.of([r["api_requests"] / r["jobs"] for r in mine]).as_dict(3),
        "api_seconds_per_job": Spread.of([r["api_seconds"] / r["jobs"] for r in mine]).as_dict(3),
        "usd_per_million_jobs": {
            item: Spread.of([p[item] for p in prices]).as_dict(4) for item in prices[0]
        },
    }


def summarize(measured: dict[str, Any], sizing: Sizing) -> dict[str, Any]:
    """Per kind figures, the idle rates, and the verdict on the cpu lane's jobs."""
    kinds = {kind: per_job(measured["rounds"], kind) for kind in KINDS}
    idle = measured["idle"]
    per_minute = {op: n * 60 / idle["seconds"] for op, n in idle["counts"].items()}
    worst = max(k["requests_per_job"]["median"] for k in kinds.values())
    return {
        "benchmark": NAME,
        "machine": record.machine(),
        "sizing": sizing.__dict__,
        "wait_s": WAIT_S,
        "kinds": {kind: {"task": KINDS[kind][0], **figures} for kind, figures in kinds.items()},
        "idle_requests_per_minute": per_minute,
        "prices": pricing.PRICES,
        "goal_requests_per_job": GOAL,
        "passed": worst <= GOAL,
        "rounds": measured["rounds"],
        "idle": idle,
    }


def plot(result: dict[str, Any]) -> None:
    """Requests per job by operation, stacked, per kind of job, against the goal."""
    fig = plots.figure()
    ax = fig.add_subplot()
    kinds = list(result["kinds"])
    ops = sorted(
        {op for k in kinds for op in result["kinds"][k]["by_operation"] if not op.endswith(EMPTY)}
    )
    bottoms = [0.0] * len(kinds)
    for op in ops:
        heights = [
            result["kinds"][k]["by_operation"].get(op, {"median": 0.0})["median"] for k in kinds
        ]
        ax.bar(kinds, heights, 0.5, bottom=bottoms, label=op)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.axhline(GOAL, color="black", linestyle="--", label=f"goal: {GOAL} per job")
    ax.set_ylabel("AWS requests per job (median of rounds)")
    ax.set_title("AWS requests per job, polling included, empty receives excluded")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    plots.save(NAME, fig)


def _price_line(prices: dict[str, Any]) -> str:
    return (
        f"SQS ${prices['sqs_per_million_requests']:.2f} per million requests; DynamoDB "
        f"on-demand ${prices['dynamodb_per_million_write_units']:.3f} per million write units "
        f"and ${prices['dynamodb_per_million_read_units']:.3f} per million read units (the "
        f"prices since November 2024); S3 ${prices['s3_per_thousand_put']} per 1000 PUTs, "
        f"${prices['s3_per_thousand_get']} per 1000 GETs; Lambda "
        f"${prices['lambda_per_million_requests']:.2f} per million requests and "
        f"${prices['lambda_per_gb_second']:.10f} per GB-s (x86); API Gateway HTTP API "
        f"${prices['api_gateway_http_per_million_requests']:.2f} per million requests"
    )


def section(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for `result`."""
    kinds = result["kinds"]
    ops = sorted({op for k in kinds.values() for op in k["by_operation"]})
    header = ["AWS request", *[f"{k} (`{v['task']}`)" for k, v in kinds.items()]]
    rows = [
        [
            f"`{op}`",
            *[
                Spread(**k["by_operation"][op]).shown("", 2) if op in k["by_operation"] else "0"
                for k in kinds.values()
            ],
        ]
        for op in ops
        if not op.endswith(EMPTY)
    ]
    rows.append(
        [
            "**total per job**",
            *[f"**{Spread(**k['requests_per_job']).shown('', 2)}**" for k in kinds.values()],
        ]
    )
    rows.append(
        [
            "empty receives per job (not in the total)",
            *[Spread(**k["empty_receives_per_job"]).shown("", 2) for k in kinds.values()],
        ]
    )
    rows.append(
        [
            "API requests per job (POST + long polls)",
            *[Spread(**k["api_requests_per_job"]).shown("", 2) for k in kinds.values()],
        ]
    )
    items = list(next(iter(kinds.values()))["usd_per_million_jobs"])
    price_rows = [
        [
            item.replace("_", " "),
            *[f"${k['usd_per_million_jobs'][item]['median']:.2f}" for k in kinds.values()],
        ]
        for item in items
    ]
    idle = (
        ", ".join(f"`{op}` {n:.1f}" for op, n in sorted(result["idle_requests_per_minute"].items()))
        or "none"
    )
    worst = max(k["requests_per_job"]["median"] for k in kinds.values())
    verdict = "pass" if result["passed"] else "FAIL"
    sizing = result["sizing"]
    prices = result["prices"]
    return f"""## Cost: AWS requests per job and the price per million jobs

`python -m bench.cost` ({sizing["jobs"]} jobs per kind and round, {sizing["rounds"]} rounds,
{sizing["clients"]} clients at a time; `OFFLOAD_BENCH_QUICK=1` for a smoke run). The API and
the cpu worker reach the local AWS through a counting proxy (`bench/aws_counter.py`), which
sees every request and its response. Each client submits a job and follows it as `offload
submit --wait` does, `GET /jobs/{{id}}?wait={result["wait_s"]}` until it ends. Figures are
requests per job, median over rounds (min-max).

{table(header, rows)}

![AWS requests per job](bench/results/{NAME}.png)

- goal: at most {GOAL} AWS requests per job, polling included: **{worst:.2f}, {verdict}**
- Empty receives (a worker's long poll that found nothing) are a cost per worker and
  second, not per job, so they are kept out of the total. Idle, with no jobs at all, the
  stack made per minute: {idle}.
- The API's own long poll reads DynamoDB while it waits (`GetItem`, backing off from 0.1 s
  to 1 s): those reads are in the counts above.
- Not counted: the local stand-ins for AWS's own machinery (the completions queue's poller,
  the sweep's schedule), which do not grow with the number of jobs.

Price per million jobs (median of rounds), at us-east-1 list prices stated for
{prices["date"]}: {_price_line(prices)}. Each DynamoDB write is taken as one write unit
(items up to 1 KB) and each read by its consistency; free tiers are ignored. Lambda
duration is the time the API took to answer each request (long polls included) at the API
function's 1024 MB; locally that is uvicorn's time, an estimate of Lambda's.

{table(["USD per million jobs", *kinds], price_rows)}

- {record.where(result["machine"])}; every count in `bench/results/{NAME}.json`"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.cost`."""
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--jobs", type=int, help="jobs per kind and round")
    parser.add_argument("--rounds", type=int, help="rounds")
    args = parser.parse_args(argv)
    base = QUICK if record.quick() else FULL
    sizing = Sizing(args.jobs or base.jobs, args.rounds or base.rounds, base.clients, base.idle_s)
    interrupt_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as logs:
        measured = measure(sizing, Path(logs))
    result = summarize(measured, sizing)
    record.save(NAME, result)
    plot(result)
    update_section(NAME, section(result))
    for kind, figures in result["kinds"].items():
        sys.stdout.write(
            f"cost: {kind}: {figures['requests_per_job']['median']:.2f} requests per job "
            f"(goal {GOAL}), ${figures['usd_per_million_jobs']['total']['median']:.2f} "
            "per million jobs\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
