"""The package's layers point one way: no import cycle (function-level and TYPE_CHECKING
imports included), asyncio only under hosts/, the Machine contract at the bottom."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "hvbench"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from . import kernel`` names a module, not an attribute
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_package_has_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_asyncio_lives_in_hosts_only() -> None:
    users = {name for name, path in ((_module_name(p), p) for p in PACKAGE.rglob("*.py"))
             if "asyncio" in _imports_anything(path)}
    assert "hvbench.hosts.base" in users  # the check sees what it looks for
    assert {n for n in users if not n.startswith("hvbench.hosts.")} == set()


def _imports_anything(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_lower_layers_never_import_upper_ones() -> None:
    """The ground floor (machine, localproc, appliance, guest) and the hosts never reach
    up into platforms, workloads, campaign, runner or the CLI."""
    upper = ("hvbench.platforms", "hvbench.workloads", "hvbench.campaign", "hvbench.runner",
             "hvbench.cli", "hvbench.analysis", "hvbench.report")
    edges = graph()
    for name, targets in edges.items():
        if name.startswith(("hvbench.machine", "hvbench.localproc", "hvbench.appliance",
                            "hvbench.guest", "hvbench.hosts")):
            assert not [t for t in targets if t.startswith(upper)], name
