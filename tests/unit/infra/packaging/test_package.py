"""The deployment package's pure parts: the target read from the template, the dependencies
read from pyproject.toml, the wheel and extension checks, the zip. No network, no pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.packaging.bytecode import compile_bytecode, runtime_python
from infra.packaging.lambda_target import (
    InstalledDist,
    LambdaTarget,
    PackageError,
    dependency_graph,
    extension_problem,
    function_target,
    package_problems,
    reachable,
    wheel_tags_supported,
)
from infra.packaging.package import PROJECT_PACKAGES, ROOT, requirements, strip, write_zip
from infra.template import load_template

X86 = LambdaTarget("python3.12", "x86_64")
ARM = LambdaTarget("python3.12", "arm64")


def _function(**props: Any) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "m.h", **props}}


def test_target_is_read_from_the_repository_template() -> None:
    target = function_target(load_template(), "ApiFunction")
    assert target == X86
    assert (target.python_version, target.abi) == ("3.12", "cp312")
    assert target.pip_platform == "manylinux2014_x86_64"


def test_target_falls_back_to_globals_and_reads_arm64() -> None:
    template = {
        "Globals": {"Function": {"Runtime": "python3.12", "Architectures": ["arm64"]}},
        "Resources": {"Fn": _function()},
    }
    target = function_target(template, "Fn")
    assert target == ARM
    assert target.pip_platform == "manylinux2014_aarch64"
    assert target.marker_environment()["platform_machine"] == "aarch64"


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ({"Type": "AWS::SQS::Queue"}, "not an AWS::Serverless::Function"),
        (_function(), "no Runtime"),
        (_function(Runtime="nodejs20.x"), "unsupported runtime"),
        (_function(Runtime="python3.12", Architectures=["x86_64", "arm64"]), "one value"),
        (_function(Runtime="python3.12", Architectures=["sparc"]), "unsupported architecture"),
    ],
)
def test_target_refuses_what_it_cannot_package(resource: dict[str, Any], message: str) -> None:
    with pytest.raises(PackageError, match=message):
        function_target({"Resources": {"Fn": resource}}, "Fn")


def test_requirements_are_the_core_and_the_lambda_extra() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        pyproject = tomllib.load(file)
    project = pyproject["project"]
    specs = requirements(pyproject, ["lambda"])
    assert specs == project["dependencies"] + project["optional-dependencies"]["lambda"]
    assert not any(spec.startswith(("uvicorn", "celery", "torch")) for spec in specs)


def test_requirements_expand_self_references_once() -> None:
    pyproject = {
        "project": {
            "name": "Demo_Pkg",
            "dependencies": ["a>=1"],
            "optional-dependencies": {
                "lambda": ["b", "a>=1"],
                "api": ["demo-pkg[lambda]", "c"],
                "all": ["demo.pkg[api,lambda]"],
            },
        }
    }
    assert requirements(pyproject, ["all"]) == ["a>=1", "c", "b"]
    with pytest.raises(PackageError, match="'nope'"):
        requirements(pyproject, ["nope"])


@pytest.mark.parametrize(
    ("tag", "target", "supported"),
    [
        ("cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64", X86, True),
        ("cp312-cp312-manylinux2014_aarch64", ARM, True),
        ("cp312-cp312-manylinux2014_aarch64", X86, False),
        ("cp311-cp311-manylinux2014_x86_64", X86, False),
        ("cp39-abi3-manylinux_2_28_x86_64", X86, True),
        # Built for a newer glibc than Amazon Linux 2023's 2.34.
        ("cp312-cp312-manylinux_2_39_x86_64", X86, False),
        ("cp312-cp312-musllinux_1_2_x86_64", X86, False),
        ("cp312-cp312-macosx_11_0_arm64", ARM, False),
        ("py3-none-any", X86, True),
        ("py2.py3-none-any", ARM, True),
    ],
)
def test_wheel_tags(tag: str, target: LambdaTarget, supported: bool) -> None:
    assert wheel_tags_supported([tag], target) is supported


def _elf(path: Path, machine: int) -> Path:
    # e_ident: magic, 64-bit, little-endian; e_machine sits at byte 18.
    header = b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header)
    return path


@pytest.mark.parametrize(
    ("name", "machine", "problem"),
    [
        ("_core.cpython-312-x86_64-linux-gnu.so", 62, None),
        ("_core.abi3.so", 62, None),
        ("libz-1a2b.so.1.2.13", 62, None),
        ("_core.cpython-311-x86_64-linux-gnu.so", 62, "built for cp311 on x86_64"),
        ("_core.cpython-312-aarch64-linux-gnu.so", 183, "built for cp312 on aarch64"),
        # The name can lie; the header cannot.
        ("_core.abi3.so", 183, "ELF machine 183, not x86_64"),
    ],
)
def test_extension_problem(tmp_path: Path, name: str, machine: int, problem: str | None) -> None:
    assert extension_problem(_elf(tmp_path / name, machine), X86) == problem


def test_package_problems_names_each_bad_wheel_and_extension(tmp_path: Path) -> None:
    good = tmp_path / "good-1.0.dist-info"
    good.mkdir()
    (good / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp312-cp312-manylinux2014_x86_64\n")
    bad = tmp_path / "bad-1.0.dist-info"
    bad.mkdir()
    (bad / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp311-cp311-manylinux2014_x86_64\n")
    _elf(tmp_path / "good" / "_ok.cpython-312-x86_64-linux-gnu.so", 62)
    _elf(tmp_path / "bad" / "_no.cpython-311-x86_64-linux-gnu.so", 62)
    (tmp_path / "bad" / "fake.so").write_text("not elf")

    problems = package_problems(tmp_path, X86)

    assert len(problems) == 3
    assert problems[0].startswith("bad-1.0.dist-info: wheel tags")
    assert problems[1:] == [
        "bad/_no.cpython-311-x86_64-linux-gnu.so: built for cp311 on x86_64",
        "bad/fake.so: not an ELF shared object",
    ]


def test_dependency_graph_evaluates_markers_as_the_runtime() -> None:
    installed = {
        "app": InstalledDist(
            "1.0",
            (
                "new>=2; python_version >= '3.12'",
                "old; python_version < '3.12'",
                "armonly; platform_machine == 'aarch64'",
                "opt; extra == 'fast'",
            ),
        ),
        "new": InstalledDist("1.5", ()),
        "opt": InstalledDist("1.0", ("leaf",)),
        "leaf": InstalledDist("1.0", ()),
    }
    graph, problems = dependency_graph(["app[fast]"], installed, X86)
    assert graph == {"app": {"new", "opt"}, "new": set(), "opt": {"leaf"}, "leaf": set()}
    assert problems == ["app needs new>=2: 1.5 installed"]

    _, problems = dependency_graph(["app"], installed, ARM)
    assert "app needs armonly: not installed" in problems


def test_reachable_follows_the_graph_from_the_roots() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": set(), "d": {"c"}}
    assert reachable(graph, ["a"]) == {"a", "b", "c"}
    assert reachable(graph, ["a"]) - reachable(graph, ["d"]) == {"a", "b"}


def test_project_packages_are_what_the_handler_imports() -> None:
    code = (
        "import json, sys, pathlib; import functions.api.main; root = pathlib.Path.cwd(); "
        "files = {n.split('.')[0]: getattr(m, '__file__', None) for n, m in sys.modules.items()}; "
        "print(json.dumps(sorted(n for n, f in files.items() "
        "if f and pathlib.Path(f).resolve().is_relative_to(root) and '.venv' not in f)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == sorted(PROJECT_PACKAGES)


def test_strip_keeps_metadata_and_drops_what_lambda_never_reads(tmp_path: Path) -> None:
    for name in (
        "bin/fastapi",
        "pkg/__init__.py",
        "pkg/__pycache__/x.cpython-311.pyc",
        "pkg/_core.pyi",
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/RECORD",
        "pkg-1.0.dist-info/entry_points.txt",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert strip(tmp_path) == 3
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/RECORD",
        "pkg-1.0.dist-info/entry_points.txt",
        "pkg/__init__.py",
    ]


def test_zip_is_the_same_bytes_for_the_same_tree(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "pkg" / "b.py").write_text("B = 2\n")
    (site / "pkg" / "a.py").write_text("A = 1\n")
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    write_zip(site, first)
    os.utime(site / "pkg" / "a.py", (0, 0))  # a touched file must not change the zip
    write_zip(site, second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == ["pkg/a.py", "pkg/b.py"]
    assert {(i.date_time, i.external_attr >> 16) for i in infos} == {
        ((1980, 1, 1, 0, 0, 0), 0o100644)
    }


def test_runtime_python_checks_the_version_it_is_given() -> None:
    with pytest.raises(PackageError, match="not a Python 2.0 interpreter"):
        runtime_python("2.0", given=sys.executable)
    assert runtime_python("3.99") is None
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert runtime_python(here, given=sys.executable) == sys.executable


def test_bytecode_is_unchecked_hash_and_the_same_every_build(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("NAMES = {'a', 'b', 'c'}\n")
    compile_bytecode(tmp_path, sys.executable)
    (pyc,) = (tmp_path / "pkg" / "__pycache__").glob("mod.*.pyc")
    first = pyc.read_bytes()
    pyc.unlink()
    compile_bytecode(tmp_path, sys.executable)
    assert pyc.read_bytes() == first
    # PEP 552 flags: hash-based (bit 0) without checking the source (bit 1).
    assert int.from_bytes(first[4:8], "little") == 0b01
