"""The package's shape, checked from the source: layers, no import cycles, unique module names.

Every ``import`` / ``from ... import`` statement in ``src/radzoo`` counts, including the ones
inside functions (a lazy import is still a dependency). The layer order is the table in
docs/architecture.md ("The layers"); a module may import its own layer or lower ones, never higher.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "radzoo"

#: Bottom to top. Matched by longest prefix; ``radzoo`` itself (``__init__``) is lazy glue.
LAYERS: list[tuple[str, ...]] = [
    ("radzoo.errors", "radzoo.extras"),
    ("radzoo.nets", "radzoo.io"),
    ("radzoo.zoo",),
    ("radzoo.onnx", "radzoo.converters", "radzoo.zeroshot", "radzoo.graphs", "radzoo.heads"),
    ("radzoo.resolve", "radzoo.runtimes", "radzoo.artifacts", "radzoo.model_pages"),
    ("radzoo.ct", "radzoo.training", "radzoo.extract", "radzoo.eval", "radzoo.pacs", "radzoo.dicom_out",
     "radzoo.bench", "radzoo.serving", "radzoo.search"),
    ("radzoo.cli",),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """radzoo modules imported anywhere in ``path`` (absolute and relative, at any depth)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import submodule`` depends on the submodule; ``from pkg import name`` on pkg
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        for target in targets:
            # the longest known module prefix of the target (``from radzoo.zoo import spec`` -> radzoo.zoo.spec)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("radzoo"):
                found.add(target)
    return found


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    return None if best is None else best[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def test_every_module_has_a_layer(graph) -> None:
    missing = sorted(m for m in graph if m != "radzoo" and layer_of(m) is None)
    assert not missing, f"modules outside every layer (add them to LAYERS and to the layer table in docs/architecture.md): {missing}"


def test_architecture_page_names_every_layer() -> None:
    """docs/architecture.md's layer table lists every package and module of LAYERS."""
    page = (SRC.parent / "docs" / "architecture.md").read_text()
    table = page.split("## The layers", 1)[1].split("\n## ", 1)[0]
    for prefixes in LAYERS:
        for prefix in prefixes:
            last = prefix.rpartition(".")[2]
            shown = f"{last}/" if (PKG / last).is_dir() else f"{last}.py"
            assert shown in table, f"docs/architecture.md's layer table does not show {shown} ({prefix})"


def test_imports_only_go_down(graph) -> None:
    upward = []
    for module, deps in graph.items():
        if module == "radzoo":
            continue
        mine = layer_of(module)
        for dep in deps:
            theirs = layer_of(dep)
            if dep != "radzoo" and theirs is not None and mine is not None and theirs > mine:
                upward.append(f"{module} (layer {mine}) imports {dep} (layer {theirs})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(sorted(upward))


def test_no_import_cycles(graph) -> None:
    """Tarjan's strongly connected components over the module graph: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w == "radzoo":
                continue  # the package root only re-exports lazily
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_zoo_imports_nothing_above_it(graph) -> None:
    forbidden = ("radzoo.converters", "radzoo.onnx", "radzoo.zeroshot", "radzoo.serving", "radzoo.extract", "radzoo.ct")
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("radzoo.zoo") for d in deps
                 if d.startswith(forbidden))
    assert not bad, bad


def test_module_names_do_not_repeat_across_packages() -> None:
    names = Counter(p.name for p in PKG.rglob("*.py") if p.name != "__init__.py")
    repeated = sorted(n for n, c in names.items() if c > 1)
    assert not repeated, f"module names used in several packages (name them after what they hold): {repeated}"


def test_model_opening_lives_in_the_resolution_layer() -> None:
    """Only the zoo itself and the one door read artifacts or build random weights."""
    pattern = re.compile(r"(?<![\w.])(zoo\.load|zoo\.build|load_artifact|build_random)\(")
    offenders = []
    for path in PKG.rglob("*.py"):
        if path == PKG / "resolve.py" or path.is_relative_to(PKG / "zoo"):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(SRC)}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_facades_reexport_only_what_they_may() -> None:
    """``radzoo`` and ``radzoo.zoo`` re-export names lazily, by module name, so the AST walk above
    cannot see those edges. ``radzoo.zoo`` may point at its own modules, and at the one door
    (``radzoo.resolve``) for ``zoo.load`` / ``zoo.build`` only; ``radzoo`` only at the door."""
    import radzoo
    import radzoo.zoo as zoo

    assert set(radzoo._LAZY.values()) == {"radzoo.resolve"}
    assert all(target.startswith("radzoo.zoo.") for target in zoo._EXPORTS.values())
    assert zoo.DOOR == {"load": "radzoo.resolve", "build": "radzoo.resolve"}
    assert not set(zoo.DOOR) & set(zoo._EXPORTS)
