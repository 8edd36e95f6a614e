"""Layout numbers of PatchSamplerLib: modules per folder, import cycles, the longest function
and the largest parameter list (the package-layout issue's before/after numbers).

    python results/layout/measure.py [PACKAGE_DIR]

Imports are read with `ast` (also those inside functions); a cycle is a strongly connected
component of more than one module in the import graph.
"""
from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "Testing"))
from import_graph import cycles, import_graph  # noqa: E402


def functions(root: Path):
    """(qualified name, lines, parameters) of every function under `root`."""
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                params = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - (
                    1 if a.args and a.args[0].arg in ("self", "cls") else 0)
                yield f"{path.relative_to(root.parent)}:{node.name}", node.end_lineno - node.lineno + 1, params


def main(root: Path) -> None:
    graph = import_graph(root)
    files = [p for p in root.rglob("*.py") if p.name != "__init__.py"]
    print(f"modules: {len(files)}")
    for folder, count in sorted(Counter(str(p.parent.relative_to(root.parent)) for p in files).items()):
        print(f"  {folder}/: {count}")
    found = cycles(graph)
    print(f"import cycles: {len(found)}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    fns = list(functions(root))
    longest = max(fns, key=lambda f: f[1])
    widest = max(fns, key=lambda f: f[2])
    print(f"longest function: {longest[0]} ({longest[1]} lines)")
    print(f"largest parameter list: {widest[0]} ({widest[2]} parameters)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "PatchSamplerLib"))
