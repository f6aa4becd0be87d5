"""Bytecode for the Lambda runtime's Python: finding an interpreter of its version here, and
compiling a package tree with it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from infra.packaging.lambda_target import PackageError


def runtime_python(version: str, given: str | None = None) -> str | None:
    """An interpreter of Python `version`: `given`, else `pythonX.Y` on PATH, else pyenv's
    newest X.Y; None when there is none (only `given` must be there)."""
    if given:
        if _python_version(given) != version:
            raise PackageError(f"{given} is not a Python {version} interpreter")
        return given
    for candidate in (shutil.which(f"python{version}"), _pyenv_python(version)):
        # pyenv's shims are on PATH even for versions they refuse to run: ask each one.
        if candidate and _python_version(candidate) == version:
            return candidate
    return None


def _python_version(python: str) -> str | None:
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _pyenv_python(version: str) -> str | None:
    if not shutil.which("pyenv"):
        return None
    latest = subprocess.run(
        ["pyenv", "latest", version], capture_output=True, text=True, check=False
    )
    if latest.returncode != 0:
        return None
    prefix = subprocess.run(
        ["pyenv", "prefix", latest.stdout.strip()], capture_output=True, text=True, check=False
    )
    if prefix.returncode != 0:
        return None
    return str(Path(prefix.stdout.strip()) / "bin" / f"python{version}")


def compile_bytecode(site: Path, python: str) -> None:
    """Compile every module in `site` with `python`, the runtime's version.

    /var/task is read-only, so without these the runtime compiles every module it imports
    on every cold start: with Python 3.12.1 here, the handler's import took 741 ms without
    them and 307 ms with them (medians of 11).
    unchecked-hash: the runtime trusts the .pyc without comparing the source's mtime, which
    the zip does not keep; the package never changes once deployed.
    """
    command = [python, "-m", "compileall", "-q", "-j", "0"]
    command += ["--invalidation-mode", "unchecked-hash", str(site)]
    # Set and frozenset constants are marshalled in hash order: a fixed seed keeps the
    # bytes, and so the zip, the same from one build to the next.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackageError(f"compileall failed:\n{result.stdout}{result.stderr}")
