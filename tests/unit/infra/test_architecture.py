"""`python -m infra.architecture` (in `make lint`) finds import cycles, lazy ones included,
and modules too long; the engine has neither."""

from __future__ import annotations

from pathlib import Path

from infra import architecture


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_cycle_through_a_lazy_or_type_checking_import_is_found(tmp_path: Path) -> None:
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/a.py", "from pkg.b import thing\n")
    write(tmp_path, "pkg/b.py", "def thing() -> None:\n    from pkg import c\n")
    write(
        tmp_path,
        "pkg/c.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
    )
    write(tmp_path, "pkg/d.py", "from . import a\n")  # imports into the cycle, not part of it
    assert architecture.findings(tmp_path, "pkg") == ["import cycle: pkg.a <-> pkg.b <-> pkg.c"]


def test_a_module_over_the_limit_is_found(tmp_path: Path) -> None:
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/long.py", "x = 1\n" * (architecture.MAX_LINES + 1))
    assert architecture.findings(tmp_path, "pkg") == [
        f"pkg.long: {architecture.MAX_LINES + 1} lines (at most {architecture.MAX_LINES}: split it)"
    ]


def test_the_engine_has_no_cycle_and_no_module_too_long() -> None:
    assert architecture.findings() == []
    # The probe reads the engine's real imports: the store, say, imports its transitions.
    assert "offload.aws.transitions" in architecture.graph()["offload.aws.store"]
