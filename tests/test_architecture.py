"""The layering holds: no import cycles, no private names imported across modules, a cheap
``import imagemesh``. (``lint-imports`` in .ci/run checks the layer order itself.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "imagemesh").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """Every ``imagemesh`` module each module imports (at any depth, lazy ones too), and the
    private names imported from another module."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("imagemesh"):
                target = node.module
                for alias in node.names:
                    if f"{target}.{alias.name}" in mods:
                        graph[mod].add(f"{target}.{alias.name}")
                    elif alias.name.startswith("_") and target != mod:
                        private.append(f"{mod} imports {alias.name} from {target}")
                if target in mods and target != mod:
                    graph[mod].add(target)
            elif isinstance(node, ast.ImportFrom) and node.level:
                private.append(f"{mod} uses a relative import (absolute imports only)")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in mods and alias.name != mod:
                        graph[mod].add(alias.name)
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges between modules, ignoring a package's ``__init__`` importing its own children."""
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}


def test_no_import_cycles_and_no_private_cross_module_imports() -> None:
    mods = _modules()
    assert len(mods) > 50
    graph, private = _imports(mods)
    assert _cycles(_package_edges(graph)) == []
    assert private == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_imagemesh_loads_no_heavy_library() -> None:
    code = "import sys, imagemesh; imagemesh.__version__; print(sorted(m for m in ('lancedb', 'faiss', 'torch', 'onnxruntime', 'pyarrow', 'sklearn', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_cli_version_loads_no_heavy_library() -> None:
    code = "import sys; sys.argv=['imagemesh', '--version']\nfrom imagemesh.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('lancedb', 'faiss', 'torch', 'onnxruntime', 'pyarrow', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert out[-1] == "[]"
    assert "version" in out[0]
