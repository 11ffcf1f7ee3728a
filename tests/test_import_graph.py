"""No import circles among llmgen's modules: each layer imports only the layers below it.

Every import statement counts: inside functions (they only defer a circle to the first call) and
under `if TYPE_CHECKING:` (a type-only import is still a dependency; the engine ⇄ speculative circle
was one). Run as a script to print the graph's circles.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmgen"


def module_names(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in the module: top level, in functions, under TYPE_CHECKING."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """For each llmgen module, the llmgen modules it imports."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_among_llmgen_modules() -> None:
    graph = import_graph()
    assert {"llmgen.engine", "llmgen.batch.runner", "llmgen.decoding._common"} <= set(graph)
    assert circles(graph) == []


def test_the_checker_sees_function_level_relative_and_type_only_imports(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("def f():\n    from pkg import b\n")
    (root / "b.py").write_text("from pkg.sub import d\n")
    (root / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import e\n")
    (root / "e.py").write_text("import pkg.c\n")
    (root / "sub" / "__init__.py").write_text("from .d import x\n")
    (root / "sub" / "d.py").write_text("from ..a import f\n")
    graph = import_graph(root)
    assert graph["pkg.b"] == {"pkg.sub.d"} and graph["pkg.sub"] == {"pkg.sub.d"}
    assert sorted(circles(graph)) == [["pkg.a", "pkg.b", "pkg.sub.d"], ["pkg.c", "pkg.e"]]


if __name__ == "__main__":
    found = circles(import_graph())
    for group in found:
        print("circle:", " ⇄ ".join(group))
    print(f"{len(import_graph())} modules, {len(found)} import circles")
    sys.exit(1 if found else 0)
