"""Print broke's import graph health: circles between modules (function-level imports count), imports
that run upward across the layers, and the largest files. Dev-only; exits 1 when a circle or an
upward import is found.

    python tools/import_graph.py [PACKAGE_DIR]
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

#: Lower layers never import higher ones (a module's layer is that of its longest matching prefix).
LAYERS = {
    "broke.errors": 0, "broke.paths": 0, "broke.fileio": 0, "broke.procs": 0, "broke.lifeline": 0,
    "broke.plotting": 0,
    "broke.state": 1, "broke.catalog": 1, "broke.keys": 1, "broke.health": 2,
    "broke.sandbox": 2, "broke.preflight": 2,
    "broke.routing": 3, "broke.router": 3,
    "broke.baselines": 4, "broke.machine": 4,
    "broke.context": 4, "broke.changes": 4, "broke.presets": 4, "broke.diagnostics": 4, "broke.local": 4,
    "broke.control": 5, "broke.cost": 5, "broke.cost.prices": 4, "broke.cost.usage": 4,
    "broke.bench": 6, "broke.launch": 6, "broke.launch_sandbox": 6, "broke.gateway": 7, "broke.cli": 8,
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The broke modules a file imports anywhere in it (in functions and under TYPE_CHECKING too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("broke"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("broke"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {target for target in out if target != name}


def layer(module: str) -> int | None:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def main(root: Path) -> int:
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    graph = {}
    for name, path in files.items():
        targets = imports(path, name, known)
        # a package's own __init__ is imported with any of its modules; it is not an edge of its own
        graph[name] = {t for t in targets if t in known and not name.startswith(t + ".")}
    circles = cycles(graph)
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))  # type: ignore[operator]
    print(f"{len(files)} modules, {sum(map(len, graph.values()))} import edges")
    print(f"circles: {len(circles)}")
    for circle in circles:
        print("  " + " <-> ".join(circle))
    print(f"upward imports: {len(upward)}")
    for a, b in upward:
        print(f"  {a} -> {b}")
    sizes = sorted(((len(p.read_text(encoding='utf-8').splitlines()), n) for n, p in files.items()), reverse=True)
    print("largest files: " + ", ".join(f"{n} {lines}" for lines, n in sizes[:5]))
    return 1 if circles or upward else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "broke"))
