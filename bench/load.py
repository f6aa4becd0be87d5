"""The API under load while heavy work runs (`python -m bench.load`, part of `make bench`).

A paced client sends cheap requests (`GET /healthz`) at a steady rate while CPU-heavy jobs are
in progress, three ways, alternating round by round:

- idle: offload's API (uvicorn) with nothing else running;
- offload: the same API while `reports.pdf` jobs run on a cpu worker (one pool process);
- naive: `bench/naive_app.py` under uvicorn, the same PDF rendering as `BackgroundTasks`.

The client is open-loop: each request leaves at its scheduled time whether or not earlier
ones have answered, so a stalled server shows up as latency rather than as fewer requests.
Goal (issue 8): offload's p99 within 1.2x of the idle API's, from the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import pinning, plots, record
from bench.processes import interrupt_on_sigterm, local_system, running, wait_http
from bench.report import table, update_section
from bench.stats import Spread, percentile
from infra.local.dev import LocalSystem, free_port

NAME = "load"
GOAL_RATIO = 1.2
VARIANTS = ("idle", "offload", "naive")
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}
# 2800 rows of 20 one-digit cells: just under offload's 128 KiB payload limit, and about a
# second of reportlab layout on this machine's cores.
ROWS, COLUMNS = 2800, 20


@dataclass(frozen=True)
class Sizing:
    """How much load and heavy work one round has."""

    requests: int
    seconds: float
    jobs: int
    rounds: int


FULL = Sizing(requests=100, seconds=10.0, jobs=20, rounds=3)
QUICK = Sizing(requests=20, seconds=2.0, jobs=4, rounds=1)


def heavy_payload() -> dict[str, Any]:
    """A `reports.pdf` request whose layout takes about a second of CPU."""
    return {
        "title": "Load benchmark",
        "columns": [f"c{i}" for i in range(COLUMNS)],
        "rows": [[(row + col) % 10 for col in range(COLUMNS)] for row in range(ROWS)],
    }


async def _paced(url: str, count: int, seconds: float) -> list[float]:
    interval = seconds / count
    latencies: list[float] = []

    async with httpx.AsyncClient(timeout=60) as client:

        async def one() -> None:
            sent = time.perf_counter()
            response = await client.get(url)
            response.raise_for_status()
            latencies.append((time.perf_counter() - sent) * 1000)

        start = time.perf_counter()
        pending = []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
            pending.append(asyncio.create_task(one()))
        await asyncio.gather(*pending)
    return latencies


def paced(url: str, count: int, seconds: float) -> list[float]:
    """Latencies (ms) of `count` GETs of `url`, sent evenly over `seconds`."""
    return asyncio.run(_paced(url, count, seconds))


def post_all(base: str, path: str, body: dict[str, Any], count: int) -> list[Any]:
    """POST `body` to `path` `count` times at once; the responses' JSON."""
    limits = httpx.Limits(max_connections=count)
    with (
        httpx.Client(base_url=base, timeout=120, limits=limits) as api,
        ThreadPoolExecutor(count) as pool,
    ):

        def post(_: int) -> Any:
            response = api.post(path, json=body)
            response.raise_for_status()
            return response.json()

        return list(pool.map(post, range(count)))


def offload_round(system: LocalSystem, sizing: Sizing) -> tuple[list[float], int]:
    """Latencies while `reports.pdf` jobs run on the cpu worker; how many ended meanwhile."""
    body = {"task": "reports.pdf", "payload": heavy_payload()}
    ids = [job["job_id"] for job in post_all(system.api_url, "/jobs", body, sizing.jobs)]
    with httpx.Client(base_url=system.api_url, timeout=60) as api:
        # The window opens once the worker is busy with one of them (any: they were sent at
        # once, so the queue holds them in no particular order).
        started = {"status": "STARTED", "task": "reports.pdf", "limit": "1"}
        deadline = time.monotonic() + 60
        while not api.get("/jobs", params=started).json()["jobs"]:
            if time.monotonic() > deadline:
                raise TimeoutError("no reports.pdf job started within 60 s")
            time.sleep(0.05)
        latencies = paced(f"{system.api_url}/healthz", sizing.requests, sizing.seconds)
        done = sum(api.get(f"/jobs/{i}").json()["status"] == "SUCCESS" for i in ids)
        # Leave nothing behind for the next round: cancel what is left and let it end.
        for job_id in ids:
            api.post(f"/jobs/{job_id}/cancel")
        for job_id in ids:
            while api.get(f"/jobs/{job_id}", params={"wait": 5}).json()["status"] not in TERMINAL:
                pass
    return latencies, done


def naive_round(sizing: Sizing, log_dir: Path, api_cpus: set[int] | None) -> list[float]:
    """Latencies of the naive app while it renders the same PDFs as background tasks."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.naive_app:app", "--port", str(port)]
    log = log_dir / "naive.log"
    # A fresh process each round: its background threads cannot be cancelled (and uvicorn
    # would wait for them at shutdown: it gets no grace).
    with running(argv, log, grace_s=0) as process:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", process, log, timeout_s=60)
        if api_cpus:
            pinning.pin(process.pid, api_cpus)
        post_all(base, "/reports", heavy_payload(), sizing.jobs)
        return paced(f"{base}/healthz", sizing.requests, sizing.seconds)


def measure(sizing: Sizing, log_dir: Path) -> list[dict[str, Any]]:
    """Every round's latencies per variant, the variants' order rotating each round."""
    rounds: list[dict[str, Any]] = []
    # One pool process, as many as the cores the worker gets; the API's core is its own.
    env = {"OFFLOAD_WORKER_CONCURRENCY": "1"}
    halves = pinning.split()
    api_cpus = halves[0] if halves else None
    original = set(pinning.cpus())
    if halves:
        pinning.pin_self(halves[1])  # what starts from here on inherits it
    with contextlib.ExitStack() as stack:
        if halves:
            stack.callback(pinning.pin_self, original)
        system = stack.enter_context(local_system(log_dir, lanes=("cpu",), extra_env=env))
        if api_cpus:
            pinning.pin(next(c.process.pid for c in system.children if c.name == "api"), api_cpus)
            # The load client too: behind a busy worker it would be late to read its answers
            # and count that as the API's latency. (In production it is elsewhere.)
            pinning.pin_self(api_cpus)
        paced(f"{system.api_url}/healthz", 10, 1.0)  # warm the API's first requests
        for n in range(sizing.rounds):
            order = VARIANTS[n % 3 :] + VARIANTS[: n % 3]
            one: dict[str, Any] = {"order": list(order)}
            for variant in order:
                if variant == "idle":
                    one["idle"] = paced(
                        f"{system.api_url}/healthz", sizing.requests, sizing.seconds
                    )
                elif variant == "offload":
                    one["offload"], one["offload_jobs_done"] = offload_round(system, sizing)
                else:
                    one["naive"] = naive_round(sizing, log_dir, api_cpus)
                time.sleep(1)  # let the machine settle between variants
            rounds.append(one)
            sys.stdout.write(f"load: round {n + 1}/{sizing.rounds}: {_line(one)}\n")
    return rounds


def _line(one: dict[str, Any]) -> str:
    return ", ".join(f"{v} p99 {percentile(one[v], 99):.1f} ms" for v in VARIANTS)


def summarize(rounds: list[dict[str, Any]], sizing: Sizing) -> dict[str, Any]:
    """Per variant: the median over rounds of each round's p50 and p99; ratios to idle."""
    variants = {
        v: {
            "p50_ms": Spread.of([percentile(r[v], 50) for r in rounds]).as_dict(2),
            "p99_ms": Spread.of([percentile(r[v], 99) for r in rounds]).as_dict(2),
        }
        for v in VARIANTS
    }
    ratios = {
        v: Spread.of([percentile(r[v], 99) / percentile(r["idle"], 99) for r in rounds]).as_dict(3)
        for v in ("offload", "naive")
    }
    return {
        "benchmark": NAME,
        "machine": record.machine(),
        "sizing": sizing.__dict__,
        "heavy_job": f"reports.pdf, {ROWS} rows x {COLUMNS} columns",
        "pinning": _pinning(),
        "goal_p99_ratio": GOAL_RATIO,
        "variants": variants,
        "p99_ratio_to_idle": ratios,
        "passed": ratios["offload"]["median"] <= GOAL_RATIO,
        "offload_jobs_done_in_window": [r["offload_jobs_done"] for r in rounds],
        "rounds": [
            {
                k: [round(x, 2) for x in v] if isinstance(v, list) and k != "order" else v
                for k, v in r.items()
            }
            for r in rounds
        ],
    }


def _pinning() -> dict[str, list[int]] | None:
    halves = pinning.split()
    return {"api": sorted(halves[0]), "rest": sorted(halves[1])} if halves else None


def plot(result: dict[str, Any]) -> None:
    """Median p50 and p99 per variant, with min-max over rounds."""
    fig = plots.figure()
    ax = fig.add_subplot()
    series = {
        stat.removesuffix("_ms"): [result["variants"][v][stat] for v in VARIANTS]
        for stat in ("p50_ms", "p99_ms")
    }
    plots.grouped_bars(ax, ["idle API", "offload (cpu lane)", "BackgroundTasks"], series)
    ax.set_yscale("log")
    ax.set_ylabel("GET /healthz latency (ms, log)")
    sizing = result["sizing"]
    ax.set_title(
        f"{sizing['requests']} requests over {sizing['seconds']:g} s while "
        f"{sizing['jobs']} PDF jobs run (median of {sizing['rounds']} rounds, min-max)"
    )
    ax.legend()
    plots.save(NAME, fig)


def section(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for `result`."""
    names = {"idle": "idle API", "offload": "offload, cpu lane", "naive": "BackgroundTasks"}
    ratios = result["p99_ratio_to_idle"]
    rows = []
    for v in VARIANTS:
        p50, p99 = (Spread(**result["variants"][v][s]) for s in ("p50_ms", "p99_ms"))
        ratio = Spread(**ratios[v]).shown("x", 2) if v in ratios else "1"
        rows.append([names[v], p50.shown(" ms"), p99.shown(" ms"), ratio])
    sizing = result["sizing"]
    offload_ratio = ratios["offload"]["median"]
    verdict = "pass" if result["passed"] else "FAIL"
    done = ", ".join(str(d) for d in result["offload_jobs_done_in_window"])
    return f"""## API latency while heavy work runs

`python -m bench.load` ({sizing["rounds"]} rounds; `OFFLOAD_BENCH_QUICK=1` for a smoke run).
{sizing["requests"]} `GET /healthz` requests, paced evenly over {sizing["seconds"]:g} s (open
loop), while {sizing["jobs"]} CPU-heavy jobs are in progress: `{result["heavy_job"]}`, about
a second of reportlab layout each. *offload*: its API under uvicorn, the jobs on one cpu
worker with one pool process. *BackgroundTasks*: `bench/naive_app.py`, the same rendering
in the API's process. *idle*: offload's API with no jobs. The variants alternate round by
round; each figure is the median over rounds of that round's percentile (min-max), each
ratio a round's p99 over the same round's idle p99.

{table(["variant", "p50", "p99", "p99 / idle p99"], rows)}

![latency while heavy work runs](bench/results/{NAME}.png)

- goal: offload's p99 at most {GOAL_RATIO}x idle: **{offload_ratio:.2f}x, {verdict}**
- reports finished by the worker during each window: {done}
- With {sizing["requests"]} requests a round, p99 is about the second-slowest answer: one
  answer a few milliseconds late moves it, hence the spread; the p50s show the typical one.
- {_pinned(result["pinning"])}
- {record.where(result["machine"])}; every latency in `bench/results/{NAME}.json`"""


def _pinned(pins: dict[str, list[int]] | None) -> str:
    if pins is None:
        return "Nothing was pinned (one CPU): the API shared it with everything else."
    return (
        f"The API process (offload's or the naive app's) and the load client were pinned to "
        f"CPU {pins['api']}, everything else (the cpu worker, the moto server standing in for "
        f"AWS) to {pins['rest']}, as when workers run on hosts of their own. The naive app's "
        "background threads live in its API process, so they share the API's CPU and GIL, "
        "as they do in production. The machine was not otherwise idle: other processes "
        "could still run on either CPU."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.load`."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--rounds", type=int, help="rounds of the three variants")
    args = parser.parse_args(argv)
    sizing = QUICK if record.quick() else FULL
    if args.rounds:
        sizing = Sizing(sizing.requests, sizing.seconds, sizing.jobs, args.rounds)
    interrupt_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as logs:
        rounds = measure(sizing, Path(logs))
    result = summarize(rounds, sizing)
    record.save(NAME, result)
    plot(result)
    update_section(NAME, section(result))
    ratio = result["p99_ratio_to_idle"]["offload"]["median"]
    sys.stdout.write(f"load: offload p99 / idle p99 = {ratio:.2f} (goal {GOAL_RATIO})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
