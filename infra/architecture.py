"""The engine's shape, checked by `make lint` beside import-linter's layer contracts
(pyproject.toml): no import cycle among offload's modules, and no engine module too long.

Every import counts, wherever it is written: at the top, inside a function (a lazy import
hides a cycle from the interpreter, not from a reader) or under `TYPE_CHECKING`.

    python -m infra.architecture        # exit 1 and one line per finding
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "offload"
# Longer than this, a module holds more than one idea: split it.
MAX_LINES = 400


def modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of `package`, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The modules of `known` that module `name` imports, anywhere in its text."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(name, is_package, node.module, node.level)
            # `from offload.aws import store` names a module; `from offload.aws.store
            # import JobStore` names the module it comes from.
            named = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in named if t in known]
            if len(targets) < len(named):
                targets.append(base)  # names defined in `base` itself
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # A package's own `__init__` is not an import of the module that names it.
            if target and target != name:
                found.add(target)
    return found


def _absolute(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports."""
    known = modules(root, package)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges) + 100))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def long_modules(root: Path = ROOT, package: str = PACKAGE) -> Iterator[tuple[str, int]]:
    """Modules over `MAX_LINES` lines, with their length."""
    for name, path in modules(root, package).items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            yield name, lines


def findings(root: Path = ROOT, package: str = PACKAGE) -> list[str]:
    """What is wrong with the package's shape, one line each."""
    found = [f"import cycle: {' <-> '.join(group)}" for group in cycles(graph(root, package))]
    found += [
        f"{name}: {lines} lines (at most {MAX_LINES}: split it)"
        for name, lines in long_modules(root, package)
    ]
    return found


def main() -> int:
    problems = findings()
    for line in problems:
        print(line)  # noqa: T201 - a lint tool's report
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
