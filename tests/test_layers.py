"""The package's import graph, read from the source (every import statement, those inside functions
and under TYPE_CHECKING included): no module imports itself back through others, and the layers import
one way (orchestration → evaluation, ops, models; evaluation → models; ops and models import neither)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestration", "evaluation", "ops", "models")
MAY_IMPORT = {"orchestration": {"orchestration", "evaluation", "ops", "models"}, "evaluation": {"evaluation", "models"},
              "ops": {"ops"}, "models": {"models"}}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules `name` imports (a `from X import Y` of a submodule Y counts as X.Y)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_no_module_imports_itself_back(graph):
    """Tarjan's strongly connected components: any with more than one module is a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_layers_import_one_way(graph):
    wrong = sorted(f"{a} imports {b}" for a, targets in graph.items() for b in targets
                   if b.split(".")[0] not in MAY_IMPORT[a.split(".")[0]])
    assert not wrong, "\n".join(wrong)


def test_the_graph_is_read(graph):
    """The reader finds what is there (so an empty graph cannot pass the tests above)."""
    assert "ops.cache" in graph["ops.difference_inversion"]
    assert "evaluation.scoring.stats" in graph["evaluation.scoring.pairwise"]
    assert {"orchestration.storage", "evaluation.presentation.views"} <= graph["orchestration.cli.sql"]
