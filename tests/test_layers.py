"""The import contract (docs/discussion/architecture.md): gamesim's layers import only downwards, no module
imports itself back through any chain, and every import inside a function says why it is lazy.

Read from the source with `ast`, imports inside functions included, so a back-arrow hidden in a
function body fails as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gamesim"
LAYERS = ("core", "dynamics", "bandit", "engine", "lm", "studies")
"""Bottom to top. A module of a layer imports its own layer and those before it; the package's
namespace (`gamesim/__init__.py`) and the CLI (`gamesim/cli.py`) sit on top and may import all."""
TOP = ("gamesim", "gamesim.cli")


def module_name(path: Path, root: Path) -> str:
    parts = path.with_suffix("").relative_to(root.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, name: str, is_package: bool) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import of `source`."""
    tree = ast.parse(source)
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out += [(t, node.lineno, id(node) in inner) for t in targets]
    return out


def graph(root: Path) -> dict[str, set[str]]:
    """Module → the package's modules it imports (anywhere in its source)."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: {t for t, _, _ in imports(p.read_text(), name, p.name == "__init__.py")
                   if t in paths and t != name}
            for name, p in paths.items()}


def layer(module: str) -> int:
    if module in TOP:
        return len(LAYERS)
    return LAYERS.index(module.split(".")[1])


def back_arrows(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} → {b}" for a, targets in edges.items() for b in targets
                  if layer(b) > layer(a) or (b in TOP and a not in TOP))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def unexplained_lazy_imports(root: Path) -> list[str]:
    """Imports inside functions whose block (consecutive import lines) has no comment on its first line."""
    out = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        name = module_name(path, root)
        inner = sorted({line for _, line, lazy in imports("\n".join(lines), name, path.name == "__init__.py") if lazy})
        for line in inner:
            prev = line - 1
            while prev >= 1 and not lines[prev - 1].strip():
                prev -= 1
            starts_block = prev < 1 or prev not in inner
            if starts_block and "#" not in lines[line - 1]:
                out.append(f"{path.relative_to(root.parent)}:{line}: {lines[line - 1].strip()}")
    return out


def test_every_module_belongs_to_a_layer():
    for name in graph(PACKAGE):
        assert name in TOP or name.split(".")[1] in LAYERS, f"{name} is in no layer: put it in one of {LAYERS}"


def test_imports_point_down():
    assert back_arrows(graph(PACKAGE)) == []


def test_no_import_cycle():
    assert cycles(graph(PACKAGE)) == []


def test_lazy_imports_say_why():
    assert unexplained_lazy_imports(PACKAGE) == []


def _fake_package(tmp_path, files: dict[str, str]) -> Path:
    root = tmp_path / "gamesim"
    for rel, text in {"__init__.py": "", "core/__init__.py": "", "engine/__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_the_contract_fails_on_a_back_arrow_inside_a_function(tmp_path):
    """A core module importing the engine from a function body, and a lazy import without its reason."""
    root = _fake_package(tmp_path, {
        "core/games.py": """
            def load():
                from gamesim.engine.simulation import simulate
                return simulate
            """,
        "engine/simulation.py": "from gamesim.core.games import load\n"})
    edges = graph(root)
    assert back_arrows(edges) == ["gamesim.core.games → gamesim.engine.simulation"]
    assert cycles(edges) == [["gamesim.core.games", "gamesim.engine.simulation"]]
    assert unexplained_lazy_imports(root) == [
        "gamesim/core/games.py:3: from gamesim.engine.simulation import simulate"]


def test_the_contract_fails_on_a_relative_import_upwards_and_on_the_top(tmp_path):
    root = _fake_package(tmp_path, {"core/games.py": "from .. import cli  # for a reason\n", "cli.py": ""})
    assert back_arrows(graph(root)) == ["gamesim.core.games → gamesim", "gamesim.core.games → gamesim.cli"]


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    import jax  # JAX loads on first use\n    import optax\n", []),
    ("def f():\n    import jax\n", ["gamesim/core/x.py:2: import jax"]),
])
def test_a_comment_on_a_block_explains_it(tmp_path, source, expected):
    assert unexplained_lazy_imports(_fake_package(tmp_path, {"core/x.py": source})) == expected


def test_module_paths_from_before_the_layers_still_import():
    """`from gamesim.claims import Claim` (as docs and users' plugins wrote it) is the same module."""
    import importlib

    import gamesim

    for old, new in gamesim.MOVED.items():
        assert importlib.import_module(f"gamesim.{old}") is importlib.import_module(f"gamesim.{new}")
    from gamesim.claims import Claim
    from gamesim.studies.claims import Claim as Same

    assert Claim is Same
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("gamesim.no_such_module")
