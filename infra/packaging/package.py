"""The API function's deployment package, built without Docker: `python -m infra.packaging.package`
(`make package`) fills `build/api/`, the template's CodeUri, and zips it to `build/api.zip`.

Dependencies come from PyPI as wheels for the runtime and architecture that template.yaml
declares, so the package matches the function whatever machine builds it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.packaging.bytecode import compile_bytecode, runtime_python
from infra.packaging.lambda_target import (
    InstalledDist,
    LambdaTarget,
    PackageError,
    dependency_graph,
    function_target,
    package_problems,
    reachable,
)
from infra.template import load_template

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "ApiFunction"
EXTRAS = ("lambda",)
# What `import functions.api.main` loads of this repository
# (tests/unit/infra/packaging/test_package.py checks it with an import trace): never
# workers/, infra/ or tests/.
PROJECT_PACKAGES = ("functions", "offload", "tasks")
# Lambda's quotas: a zip uploaded directly, and the function unzipped (layers included).
ZIPPED_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024
# Zip entries carry this time, so the same tree always gives the same bytes (and hash).
_EPOCH = (1980, 1, 1, 0, 0, 0)

# boto3 is bundled, not taken from the runtime. The python3.12 runtime ships a boto3 too, but
# AWS moves its version on its own schedule and recommends packaging the SDK you depend on;
# offload's conditional writes, retries and error codes are tested against the pinned one.
# Measured 2026-11-21 (boto3/botocore 1.44.5, with s3transfer, urllib3, python-dateutil and
# six, which only it needs; bytecode included): with it 45.8 MB unzipped / 24.9 MB zipped,
# without it 20.6 / 7.8. Both fit the limits (250 / 50) with room; botocore's models are
# gzipped already, hence its zipped share. The handler's import costs the same either way
# (offload imports boto3 at its first AWS call); only the code download grows, which cannot be
# measured off AWS. `make package` prints the share at every build.
SDK = ("boto3",)


def requirements(pyproject: Mapping[str, Any], extras: Iterable[str]) -> list[str]:
    """The project's core dependencies, then those of each extra in `extras`, self-references
    (`offload[x]`) expanded, each requirement once."""
    project = pyproject["project"]
    own_name = canonicalize_name(project["name"])
    optional: Mapping[str, list[str]] = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    done: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop(0)
        if extra in done:
            continue
        if extra not in optional:
            raise PackageError(f"pyproject.toml has no optional dependency group {extra!r}")
        done.add(extra)
        for spec in optional[extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == own_name:
                pending.extend(sorted(req.extras))
            else:
                found.append(spec)
    return list(dict.fromkeys(found))


def pip_install(specs: Sequence[str], site: Path, target: LambdaTarget, constraints: Path) -> None:
    """Install `specs` and their dependencies into `site` as wheels for `target`."""
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
        *("--platform", target.pip_platform, "--implementation", "cp"),
        *("--python-version", target.python_version, "--only-binary=:all:"),
        # pip would compile bytecode for the interpreter running it, which the runtime
        # ignores when it is another version; compile_bytecode() uses the runtime's.
        "--no-compile",
        *("--constraint", str(constraints), "--target", str(site)),
        *specs,
    ]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise PackageError(f"pip install failed ({result.returncode}): {' '.join(command)}")


def tested_versions(exclude: str) -> str:
    """Pins (`name==version`) of every distribution in this environment but `exclude`: the
    package holds the versions the tests ran against, not whatever is newest today."""
    own = canonicalize_name(exclude)
    pins = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and canonicalize_name(dist.metadata["Name"]) != own
    }
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def installed(site: Path) -> dict[str, InstalledDist]:
    """The distributions in `site` by canonical name."""
    return {
        canonicalize_name(dist.metadata["Name"]): InstalledDist(
            dist.version, tuple(dist.requires or ())
        )
        for dist in importlib.metadata.distributions(path=[str(site)])
    }


def copy_project(root: Path, site: Path, packages: Iterable[str]) -> None:
    """Copy this repository's runtime packages into `site`, without bytecode caches."""
    for name in packages:
        shutil.copytree(
            root / name, site / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


def strip(site: Path) -> int:
    """Remove what Lambda never reads; the bytes removed.

    Kept: every `*.dist-info` whole. importlib.metadata reads METADATA for versions and
    entry_points.txt at import (pydantic's plugin loader scans them); RECORD is a few
    hundred KB and dropping it would leave `files()` answering None.
    """
    doomed = [site / "bin"]  # console scripts whose shebang is this machine's python
    doomed += site.rglob("__pycache__")
    doomed += site.rglob("*.pyi")  # stubs, for type checkers only
    removed = 0
    for path in doomed:
        if path.is_dir():
            removed += tree_size(path)
            shutil.rmtree(path)
        elif path.is_file():
            removed += path.stat().st_size
            path.unlink()
    return removed


def tree_size(path: Path) -> int:
    """Bytes of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_zip(site: Path, archive: Path) -> None:
    """Zip `site` to `archive` deterministically: sorted entries, one timestamp, one mode."""
    archive.unlink(missing_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(p for p in site.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(site).as_posix(), date_time=_EPOCH)
            # Readable by the runtime's user whatever this checkout's umask.
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)


def sdk_share(
    site: Path, archive: Path, graph: Mapping[str, set[str]], specs: Iterable[str]
) -> tuple[int, int]:
    """Unzipped and zipped bytes of the SDK and what only it needs, in the built package."""
    tops = {canonicalize_name(Requirement(spec).name) for spec in specs}
    sdk = {canonicalize_name(name) for name in SDK}
    only_sdk = reachable(graph, tops) - reachable(graph, tops - sdk)
    names: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(site)]):
        if canonicalize_name(dist.metadata["Name"]) in only_sdk:
            names |= {file.as_posix() for file in dist.files or ()}
    # RECORD lists the sources; their bytecode, compiled after pip, lies in __pycache__/.
    names |= {
        pyc.relative_to(site).as_posix()
        for pyc in site.rglob("__pycache__/*.pyc")
        if (pyc.parent.parent / (pyc.name.split(".")[0] + ".py")).relative_to(site).as_posix()
        in names
    }
    unzipped = sum((site / name).stat().st_size for name in names if (site / name).is_file())
    with zipfile.ZipFile(archive) as zf:
        zipped = sum(info.compress_size for info in zf.infolist() if info.filename in names)
    return unzipped, zipped


def build(root: Path, out: Path, logical_id: str = FUNCTION, python: str | None = None) -> None:
    """Build `out/api/` and `out/api.zip` for `logical_id`; raise PackageError when they
    would not run on its runtime or do not fit Lambda's limits.

    :param python: an interpreter of the runtime's version, for the bytecode (found when
        not given; without one the package has none, and a warning says what it costs).
    """
    target = function_target(load_template(root / "template.yaml"), logical_id)
    with (root / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    specs = requirements(pyproject, EXTRAS)
    site, archive = out / "api", out / "api.zip"
    say(f"{logical_id}: {target.runtime} on {target.architecture}; installing {', '.join(specs)}")

    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    constraints = out / "constraints.txt"
    constraints.write_text(tested_versions(pyproject["project"]["name"]), encoding="utf-8")
    pip_install(specs, site, target, constraints)
    # pip chose dependencies by its own interpreter's markers: check them as the runtime's.
    graph, unmet = dependency_graph(specs, installed(site), target)
    if unmet:
        raise PackageError("dependencies missing on the runtime:\n  " + "\n  ".join(unmet))
    copy_project(root, site, PROJECT_PACKAGES)
    say(f"stripped {mb(strip(site))} (bin/, __pycache__/, *.pyi)")
    compiler = runtime_python(target.python_version, python)
    if compiler:
        compile_bytecode(site, compiler)
        say(f"bytecode compiled with {compiler}")
    else:
        say(
            f"WARNING: no Python {target.python_version} here (pass --python): the package has "
            "no bytecode, and every cold start compiles what it imports (~0.4 s for the API)"
        )
    problems = package_problems(site, target)
    if problems:
        raise PackageError(f"not loadable on {target}:\n  " + "\n  ".join(problems))
    write_zip(site, archive)

    unzipped, zipped = tree_size(site), archive.stat().st_size
    sdk_unzipped, sdk_zipped = sdk_share(site, archive, graph, specs)
    say(f"{shown(site, root)}: {mb(unzipped)} unzipped (limit {mb(UNZIPPED_LIMIT)})")
    say(f"{shown(archive, root)}: {mb(zipped)} zipped (limit {mb(ZIPPED_LIMIT)})")
    say(
        f"of which {'/'.join(SDK)} and what only it needs: {mb(sdk_unzipped)} unzipped, "
        f"{mb(sdk_zipped)} zipped (without: {mb(unzipped - sdk_unzipped)}, "
        f"{mb(zipped - sdk_zipped)})"
    )
    if unzipped > UNZIPPED_LIMIT or zipped > ZIPPED_LIMIT:
        raise PackageError("the package is over Lambda's size limits")


def shown(path: Path, root: Path) -> str:
    """`path` relative to `root` when it lies under it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def mb(size: int) -> str:
    """`size` bytes in MB (MiB, as Lambda's quotas count)."""
    return f"{size / 1024 / 1024:.1f} MB"


def say(line: str) -> None:
    """One line of the build's report."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m infra.packaging.package`."""
    parser = argparse.ArgumentParser(prog="python -m infra.packaging.package", description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="default: build/")
    parser.add_argument("--function", default=FUNCTION, help="the template's logical id")
    parser.add_argument(
        "--python", help="an interpreter of the runtime's version, for the bytecode"
    )
    args = parser.parse_args(argv)
    try:
        build(ROOT, args.out.resolve(), args.function, args.python)
    except PackageError as exc:
        sys.stderr.write(f"package: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
