"""What a Lambda function's Python runtime can run: its version, CPU and glibc, read from
`template.yaml`, and the checks that an installed package tree fits them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, parse_tag
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# SAM architecture -> the machine name in wheel tags, extension file names and markers.
_MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
# ELF e_machine of each: the extension's own header, whatever its file name claims.
_ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
# The glibc of each runtime's OS (Amazon Linux 2 up to python3.11, Amazon Linux 2023 from
# python3.12): a manylinux wheel built for a newer glibc fails to load there.
_GLIBC = {
    "python3.10": (2, 26),
    "python3.11": (2, 26),
    "python3.12": (2, 34),
    "python3.13": (2, 34),
}
# `name.cpython-312-x86_64-linux-gnu.so`: the interpreter and machine an extension is for.
_CPYTHON_SUFFIX = re.compile(r"\.cpython-(\d+)-([a-z0-9_]+)-linux-gnu\.so$")


class PackageError(RuntimeError):
    """The deployment package cannot be built, or what was built would not run on Lambda."""


@dataclass(frozen=True)
class LambdaTarget:
    """The runtime and architecture of one function (`python3.12`, `x86_64`)."""

    runtime: str
    architecture: str

    def __post_init__(self) -> None:
        if self.runtime not in _GLIBC:
            raise PackageError(f"unsupported runtime {self.runtime!r}; known: {sorted(_GLIBC)}")
        if self.architecture not in _MACHINES:
            raise PackageError(f"unsupported architecture {self.architecture!r}")

    @property
    def python_version(self) -> str:
        """`3.12`, as pip's `--python-version` and the `python_version` marker write it."""
        return self.runtime.removeprefix("python")

    @property
    def abi(self) -> str:
        """`cp312`: the CPython tag of extensions built for this runtime."""
        return "cp" + self.python_version.replace(".", "")

    @property
    def machine(self) -> str:
        """`x86_64` or `aarch64`."""
        return _MACHINES[self.architecture]

    @property
    def pip_platform(self) -> str:
        """The `--platform` for pip; AWS documents manylinux2014 for every Python runtime."""
        return f"manylinux2014_{self.machine}"

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values of the runtime, for evaluating requirements as it would.

        pip evaluates markers with the interpreter running pip, not the `--python-version`
        and `--platform` it installs for, so its choices must be checked against these.
        """
        return {
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "python_version": self.python_version,
            # Markers rarely test the patch level; the runtime's moves with AWS updates.
            "python_full_version": f"{self.python_version}.0",
            "implementation_version": f"{self.python_version}.0",
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
        }

    def supported_tags(self) -> frozenset[Tag]:
        """Every wheel tag the runtime can load, best first."""
        major, minor = (int(part) for part in self.python_version.split("."))
        glibc_major, glibc_minor = _GLIBC[self.runtime]
        platforms = [
            f"manylinux_{glibc_major}_{m}_{self.machine}" for m in range(glibc_minor, 4, -1)
        ]
        # The legacy aliases of manylinux_2_17, _2_12 and _2_5.
        platforms += [f"manylinux{alias}_{self.machine}" for alias in ("2014", "2010", "1")]
        tags = cpython_tags((major, minor), abis=[self.abi], platforms=platforms)
        compatible = compatible_tags((major, minor), interpreter=self.abi, platforms=platforms)
        return frozenset([*tags, *compatible])


def function_target(template: Mapping[str, Any], logical_id: str) -> LambdaTarget:
    """The runtime and architecture of `logical_id`, from its properties or the Globals."""
    resource = template.get("Resources", {}).get(logical_id)
    if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
        raise PackageError(f"{logical_id} is not an AWS::Serverless::Function in the template")
    props = resource.get("Properties", {})
    defaults = template.get("Globals", {}).get("Function", {})
    runtime = props.get("Runtime", defaults.get("Runtime"))
    # Lambda's default when a function declares none.
    architectures = props.get("Architectures", defaults.get("Architectures", ["x86_64"]))
    if not isinstance(runtime, str):
        raise PackageError(f"{logical_id} declares no Runtime")
    if not (isinstance(architectures, list) and len(architectures) == 1):
        raise PackageError(f"{logical_id}: Architectures must list one value: {architectures!r}")
    return LambdaTarget(runtime=runtime, architecture=str(architectures[0]))


def wheel_tags_supported(tag_lines: Iterable[str], target: LambdaTarget) -> bool:
    """Whether a wheel with these `Tag:` values (from its WHEEL file) loads on `target`."""
    supported = target.supported_tags()
    return any(not parse_tag(line).isdisjoint(supported) for line in tag_lines)


def extension_problem(path: Path, target: LambdaTarget) -> str | None:
    """Why the shared object at `path` cannot load on `target`, or None when it can."""
    match = _CPYTHON_SUFFIX.search(path.name)
    if match and (f"cp{match.group(1)}", match.group(2)) != (target.abi, target.machine):
        return f"built for cp{match.group(1)} on {match.group(2)}"
    with path.open("rb") as file:
        header = file.read(20)
    if header[:4] != b"\x7fELF":
        return "not an ELF shared object"
    # EI_CLASS 2 is 64-bit; EI_DATA 1 little-endian, which both Lambda CPUs are.
    if header[4] != 2 or header[5] != 1:
        return "not a 64-bit little-endian ELF object"
    machine = int.from_bytes(header[18:20], "little")
    if machine != _ELF_MACHINES[target.machine]:
        return f"ELF machine {machine}, not {target.machine}"
    return None


def package_problems(site: Path, target: LambdaTarget) -> list[str]:
    """Every wheel whose tags and every shared object that `target` cannot load, in `site`."""
    problems: list[str] = []
    for wheel in sorted(site.glob("*.dist-info/WHEEL")):
        tags = [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text(encoding="utf-8").splitlines()
            if line.startswith("Tag:")
        ]
        if not wheel_tags_supported(tags, target):
            problems.append(f"{wheel.parent.name}: wheel tags {tags} do not fit {target}")
    for path in sorted(_shared_objects(site)):
        problem = extension_problem(path, target)
        if problem:
            problems.append(f"{path.relative_to(site)}: {problem}")
    return problems


def _shared_objects(site: Path) -> Iterator[Path]:
    for path in site.rglob("*"):
        # Vendored libraries are versioned (`libfoo-1a2b.so.1.0`), extensions end in `.so`.
        if path.is_file() and (path.suffix == ".so" or ".so." in path.name):
            yield path


@dataclass(frozen=True)
class InstalledDist:
    """One distribution of a package tree: its version and `Requires-Dist` lines."""

    version: str
    requires: tuple[str, ...]


def dependency_graph(
    top: Iterable[str], installed: Mapping[str, InstalledDist], target: LambdaTarget
) -> tuple[dict[str, set[str]], list[str]]:
    """What each distribution needs on `target`, from the `top` requirements down, and every
    requirement the installed tree does not meet.

    :param installed: the tree's distributions by canonical name.
    """
    environment = target.marker_environment()
    graph: dict[str, set[str]] = {}
    problems: list[str] = []
    expanded: set[tuple[str, str]] = set()
    selected: set[tuple[str, str]] = set()
    pending: list[tuple[str | None, Requirement]] = [(None, Requirement(spec)) for spec in top]
    while pending:
        needer, req = pending.pop()
        if req.marker and not req.marker.evaluate({**environment, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        graph.setdefault(name, set())
        if needer is not None:
            graph[needer].add(name)
        dist = installed.get(name)
        if dist is None:
            problems.append(f"{needer or 'the project'} needs {req}: not installed")
            continue
        if not _satisfies(req, dist.version):
            problems.append(f"{needer or 'the project'} needs {req}: {dist.version} installed")
        # A distribution's plain requirements once, and those an extra adds once per extra.
        for extra in sorted({"", *req.extras} - {e for n, e in expanded if n == name}):
            expanded.add((name, extra))
            for spec in dist.requires:
                sub = Requirement(spec)
                if (name, spec) in selected:
                    continue
                if sub.marker is None or sub.marker.evaluate({**environment, "extra": extra}):
                    selected.add((name, spec))
                    # Evaluated here, with the extra that selected it; not again.
                    sub.marker = None
                    pending.append((name, sub))
    return graph, problems


def _satisfies(req: Requirement, version: str) -> bool:
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def reachable(graph: Mapping[str, set[str]], roots: Iterable[str]) -> set[str]:
    """The distributions that `roots` need, directly or not, the roots included."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(graph.get(name, ()))
    return seen
