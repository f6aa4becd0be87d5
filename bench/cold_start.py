"""Cold start of the API function: `import functions.api.main` against a bare FastAPI + Mangum
app (`bench.bare_app`), each in fresh interpreters (`python -m bench.cold_start`, `make bench`).

Budget (from the issue): the handler's import takes at most 1.25x the bare app's, comparing
medians of one run. The two alternate, and swap which goes first, so that whatever else the
machine is doing slows both alike. Only the import is timed: starting the interpreter costs
both the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import record
from bench.report import ROOT, table, update_section
from infra.packaging.lambda_target import PackageError
from infra.packaging.package import UNZIPPED_LIMIT, ZIPPED_LIMIT, build, mb, tree_size

NAME = "cold-start"
BARE = "bench.bare_app"
API = "functions.api.main"
BUDGET = 1.25
# Packages the API must never import: the workers' and models'
# (as tests/unit/functions/api/test_main_imports.py).
HEAVY = frozenset(
    {
        "celery",
        "kombu",
        "pycurl",
        "torch",
        "transformers",
        "sentence_transformers",
        "sagemaker",
        "reportlab",
    }
)
# Run in each child. json is imported after the clock stops, so that it cannot pre-load
# anything the measured import would have paid for.
_PROBE = """\
import importlib, sys, time
before = len(sys.modules)
start = time.perf_counter()
importlib.import_module(sys.argv[1])
seconds = time.perf_counter() - start
loaded = len(sys.modules) - before
top = sorted({name.partition(".")[0] for name in sys.modules})
import json
json.dump({"seconds": seconds, "loaded": loaded, "top_level": top}, sys.stdout)
"""


class BenchError(RuntimeError):
    """A child interpreter failed to import the module it was timing."""


@dataclass
class Samples:
    """Import times of one module, one per fresh interpreter, and what it loaded."""

    module: str
    seconds: list[float]
    loaded: int = 0
    top_level: frozenset[str] = frozenset()

    @property
    def median_ms(self) -> float:
        """Median import time in milliseconds."""
        return statistics.median(self.seconds) * 1000

    @property
    def p90_ms(self) -> float:
        """90th percentile import time in milliseconds."""
        if len(self.seconds) < 2:
            return self.seconds[0] * 1000
        return statistics.quantiles(self.seconds, n=10, method="inclusive")[-1] * 1000


def child_env() -> dict[str, str]:
    """This environment as on Lambda (`AWS_LAMBDA_FUNCTION_NAME`: the handler sets up its JSON
    logs at import, as it does there), less the Runtime API (there is none to register the
    extension with: one call to a local endpoint, not timed here) and the local AWS endpoint.

    PYTHONDONTWRITEBYTECODE goes too: with it, every module edited since its cache was
    written would be compiled in every sample, and only our own modules are being edited.
    """
    dropped = {"AWS_LAMBDA_RUNTIME_API", "OFFLOAD_AWS_ENDPOINT_URL", "PYTHONDONTWRITEBYTECODE"}
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env["AWS_LAMBDA_FUNCTION_NAME"] = "offload-api"
    return env


def time_import(module: str, env: dict[str, str]) -> dict[str, Any]:
    """Import `module` in a fresh interpreter; its import time and the modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"importing {module} failed:\n{result.stderr}")
    sample: dict[str, Any] = json.loads(result.stdout)
    return sample


def measure(runs: int, modules: Sequence[str] = (BARE, API)) -> dict[str, Samples]:
    """`runs` fresh imports of each module, interleaved, the first of each order swapped."""
    env = child_env()
    for module in modules:
        # Writes the bytecode caches, so that no sample pays for compiling.
        time_import(module, env)
    samples = {module: Samples(module, []) for module in modules}
    for run in range(runs):
        order = modules if run % 2 == 0 else tuple(reversed(modules))
        for module in order:
            sample = time_import(module, env)
            target = samples[module]
            target.seconds.append(sample["seconds"])
            target.loaded = sample["loaded"]
            target.top_level = target.top_level | set(sample["top_level"])
    return samples


def package_size(rebuild: bool) -> dict[str, Any]:
    """The API function's deployment package as `make package` builds it (`build/api/`,
    `build/api.zip`); with `rebuild` False, the one already built when there is one."""
    out = ROOT / "build"
    site, archive = out / "api", out / "api.zip"
    if rebuild or not archive.exists():
        try:
            build(ROOT, out)
        except PackageError as exc:  # no index to install from: the imports still count
            return {"error": str(exc)}
    return {
        "zipped_bytes": archive.stat().st_size,
        "unzipped_bytes": tree_size(site),
        "zipped_limit_bytes": ZIPPED_LIMIT,
        "unzipped_limit_bytes": UNZIPPED_LIMIT,
    }


def summary(bare: Samples, api: Samples, runs: int, package: dict[str, Any]) -> dict[str, Any]:
    """The run's verdict and every sample, as written to bench/results/cold_start.json."""
    ratio = api.median_ms / bare.median_ms
    heavy = sorted(api.top_level & HEAVY)
    return {
        "benchmark": NAME,
        "machine": record.machine(),
        "runs": runs,
        "budget_ratio": BUDGET,
        "ratio": round(ratio, 3),
        "heavy_loaded": heavy,
        "passed": ratio <= BUDGET and not heavy,
        "modules": {
            s.module: {
                "median_ms": round(s.median_ms, 1),
                "p90_ms": round(s.p90_ms, 1),
                "modules_loaded": s.loaded,
                "samples_ms": [round(x * 1000, 2) for x in s.seconds],
            }
            for s in (bare, api)
        },
        "extra_top_level": sorted(api.top_level - bare.top_level),
        "package": package,
    }


def section(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for `result`."""
    rows = [
        [
            f"`{module}`",
            f"{m['median_ms']:.1f} ms",
            f"{m['p90_ms']:.1f} ms",
            str(m["modules_loaded"]),
        ]
        for module, m in result["modules"].items()
    ]
    info = result["machine"]
    verdict = "pass" if result["passed"] else "FAIL"
    heavy = ", ".join(result["heavy_loaded"]) or "none"
    checked = ", ".join(sorted(HEAVY))
    where = f"Python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs"
    return f"""## Cold start: importing the API handler

Import time of the Lambda handler (`functions.api.main`) against a bare FastAPI app with one
route wrapped in Mangum (`bench/bare_app.py`), each in fresh interpreters, alternating. Budget:
the handler's median at most the given multiple of the bare app's, and no worker or model
package imported. `python -X importtime -c "import functions.api.main"` shows where it goes.
The handler is timed as on Lambda (`AWS_LAMBDA_FUNCTION_NAME` set: it sets up Powertools'
JSON logs at import, about 10 ms); the extension's registration, one call to the local
Runtime API, is not part of it. The handler pauses garbage collection while it builds the app
and then freezes what it built (`functions/api/main.py`, on Lambda only): without that the
ratio was 1.30 on this machine (over budget), the difference being one full collection
during the import.

{table(["module", "median", "p90", "modules imported"], rows)}

- ratio of medians: **{result["ratio"]:.2f}** (budget {result["budget_ratio"]}): **{verdict}**
- heavy packages imported: {heavy} (checked: {checked})
- {result["runs"]} runs per module; {where}
- deployment package: {_package_line(result.get("package", {}))}
- measured {info["date"]}; every sample in `bench/results/cold_start.json`"""


def _package_line(package: dict[str, Any]) -> str:
    if "zipped_bytes" not in package:
        return f"not built ({package.get('error', 'no build')})"
    return (
        f"{mb(package['zipped_bytes'])} zipped (`build/api.zip`, Lambda's limit "
        f"{mb(package['zipped_limit_bytes'])}), {mb(package['unzipped_bytes'])} unzipped "
        f"(`build/api/`, limit {mb(package['unzipped_limit_bytes'])}), as `make package` "
        "builds it (`infra/packaging/package.py`)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.cold_start`; non-zero when over budget."""
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__)
    parser.add_argument("--runs", type=int, help="interpreters per module (21; quick: 5)")
    parser.add_argument(
        "--reuse-package",
        action="store_true",
        help="measure build/api.zip as it is, when built (default: rebuild; quick: reuse)",
    )
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 5 if record.quick() else 21
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    samples = measure(args.runs)
    package = package_size(rebuild=not (args.reuse_package or record.quick()))
    result = summary(samples[BARE], samples[API], args.runs, package)
    record.save("cold_start", result)
    update_section(NAME, section(result))

    for module, m in result["modules"].items():
        sys.stdout.write(
            f"{module:<20} median {m['median_ms']:7.1f} ms  p90 {m['p90_ms']:7.1f} ms\n"
        )
    sys.stdout.write(
        f"ratio {result['ratio']:.3f} (budget {BUDGET}); heavy: "
        f"{', '.join(result['heavy_loaded']) or 'none'}; "
        f"{'pass' if result['passed'] else 'FAIL'}\n"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
