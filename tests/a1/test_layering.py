"""The import graph of a1 and a1_ext, drawn from the source: no circles (among the imports that run
when a module loads, and among all of them, lazy ones included) and every import points down the
layers, except the one documented lazy arrow up: a1_ext.generate, the public entry point of the
policy, which imports a1.policy when called."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"a1": ROOT / "python" / "a1", "a1_ext": ROOT / "a1_ext"}

# lower rank = lower layer; a package may import its own rank or below
RANKS = {
    "a1_ext": 0, "a1.answers": 1, "a1.data": 1, "a1.models": 2, "a1.calibration": 2, "a1.engine": 3,
    "a1.llm": 4, "a1.remote": 5, "a1.distill": 5, "a1.policy": 6, "a1.eval": 7, "a1.serve": 7, "a1.cli_flags": 8, "a1.cli": 9,
    "a1": 10,
}
# a1_ext.generate() runs the policy, imported when called (with it the package a1)
ALLOWED_UP = {("a1_ext.generate", "a1.policy"), ("a1_ext.generate", "a1")}


def modules() -> dict[str, Path]:
    found = {}
    for name, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [name, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(module: str, path: Path, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def load_time_nodes(body: list) -> list[ast.AST]:
    """Statements that run when the module loads (not in functions, classes or TYPE_CHECKING)."""
    out = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        out.append(node)
        for field in ("body", "orelse", "finalbody", "handlers"):
            if isinstance(getattr(node, field, None), list):
                out += load_time_nodes(getattr(node, field))
    return out


def all_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every statement but those under `if TYPE_CHECKING:` (annotations only, never imported)."""
    out = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        out.append(node)
        out += all_nodes(node)
    return out


def graph(load_time: bool) -> dict[str, set[str]]:
    """module -> modules it imports (and, for another package's module, that package's __init__)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text())
        nodes = load_time_nodes(tree.body) if load_time else all_nodes(tree)
        for node in nodes:
            for target in imported(module, path, node):
                parts = (target or "").split(".")
                while parts and ".".join(parts) not in mods:
                    parts.pop()
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                    name = ".".join(parts[:i])
                    if name in mods and name != module and not module.startswith(name + "."):
                        edges[module].add(name)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "a1_ext":
        return "a1_ext"
    return ".".join(parts[:2]) if len(parts) > 1 else "a1"


def test_no_import_circles():
    """None when modules load, and none among all imports (lazy ones included) but the allowed arrow."""
    assert cycles(graph(load_time=True)) == []
    edges = graph(load_time=False)
    for module, target in ALLOWED_UP:
        edges[module] = {t for t in edges[module] if layer(t) != target}
    assert cycles(edges) == []


def test_every_import_points_down_the_layers():
    assert set(RANKS) == {layer(m) for m in modules()}, "a new package needs a rank"
    up = sorted((m, t) for m, targets in graph(load_time=False).items() for t in targets
                if RANKS[layer(t)] > RANKS[layer(m)] and (m, layer(t)) not in ALLOWED_UP)
    assert up == []


def test_the_checks_see_a_circle_and_an_arrow_up():
    """The graph code on a broken variant: an arrow back up from the policy to the evaluation,
    closing a circle, is reported by both checks."""
    edges = graph(load_time=True)
    edges["a1.policy.stats"].add("a1.eval.metrics")
    edges["a1.eval.metrics"].add("a1.policy.stats")
    assert any("a1.policy.stats" in c for c in cycles(edges))
    assert RANKS[layer("a1.eval.metrics")] > RANKS[layer("a1.policy.stats")]


def test_the_lazy_entry_point_stays_the_function():
    """a1_ext.generate is loaded on first use; importing its module must not leave the module where
    the function is expected (in a fresh interpreter: nothing imported before)."""
    import subprocess
    import sys

    code = ("import a1_ext; f = a1_ext.generate; import a1_ext.generate; "
            "assert callable(a1_ext.generate) and a1_ext.generate is f; import a1; assert callable(a1_ext.generate)")
    subprocess.run([sys.executable, "-c", code], check=True)
