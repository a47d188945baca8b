"""fluxbot's layers, checked on the source: no import cycle between modules, and every import
between packages points down the layer order below. Imports inside functions and under
TYPE_CHECKING count too: they are dependencies all the same."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: tuple[tuple[str, ...], ...] = (
    # The package root (its version) and the vocabulary: requests, seeds.
    ("fluxbot", "fluxbot.core"),
    # Settings and log lines, in the vocabulary's terms.
    ("fluxbot.config", "fluxbot.logs"),
    # Prompt parsing and policy; GPU discovery, NVML and memory pressure. Independent.
    ("fluxbot.prompts", "fluxbot.devices"),
    # A validated request into images on one device.
    ("fluxbot.engine",),
    # Who runs what, when (scheduler, workers); what is kept (SQLite, files). Independent.
    ("fluxbot.serving", "fluxbot.store"),
    # The use cases and the composition root.
    ("fluxbot.app",),
    # The adapters: Discord, the web studio.
    ("fluxbot.bot", "fluxbot.web"),
    # The launcher, above the adapters on purpose: its bare command starts the Discord bot
    # (RoboDanny's launcher.py does the same).
    ("fluxbot.cli",),
    # `python -m fluxbot`: the CLI.
    ("fluxbot.__main__",),
)
"""Lowest first. A module may import its own package and the layers below; packages that share
a layer must not import each other."""

NARROW: Mapping[tuple[str, str], frozenset[str]] = {
    # The store writes image files in the engine's formats, and nothing else of the engine.
    ("fluxbot.store", "fluxbot.engine"): frozenset({"fluxbot.engine.encoding"}),
}
"""Where a package may use only some modules of a lower one."""


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(root: Path, top: str = "fluxbot") -> dict[str, set[str]]:
    """Every module under `root/top` and the modules of `top` it imports (`from a import b`
    counts as a.b when that is a module, else as a)."""
    paths = {module_name(root, path): path for path in sorted((root / top).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if _within(a.name, top))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if _within(node.module, top):
                    for alias in node.names:
                        child = f"{node.module}.{alias.name}"
                        targets.add(child if child in paths else node.module)
            elif isinstance(node, ast.ImportFrom):  # relative: fluxbot uses absolute imports
                raise AssertionError(f"{path}: relative import; write it absolute")
        graph[name] = targets - {name}
    return graph


def imports_of(root: Path, top: str, others: tuple[str, ...]) -> list[str]:
    """`module -> name` for each import under `root/top` of a package in `others`."""
    found = []
    for path in sorted((root / top).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [
                f"{module_name(root, path)} -> {name}"
                for name in names
                if any(_within(name, other) for other in others)
            ]
    return found


def _within(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


def package_of(module: str) -> str:
    """`fluxbot.serving.workers.local` -> `fluxbot.serving`; the root stays `fluxbot`."""
    return ".".join(module.split(".")[:2])


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def layer_violations(
    graph: Mapping[str, Iterable[str]],
    layers: tuple[tuple[str, ...], ...] = LAYERS,
    narrow: Mapping[tuple[str, str], frozenset[str]] = NARROW,
) -> list[str]:
    """Each import that does not point down (or into its own package), as one line."""
    rank = {package: level for level, packages in enumerate(layers) for package in packages}
    problems = []
    for module in sorted(graph):
        source = package_of(module)
        if source not in rank:
            problems.append(f"{module}: package {source} has no place in LAYERS")
            continue
        for target in sorted(graph[module]):
            dest = package_of(target)
            if dest == source:
                continue
            if dest not in rank:
                problems.append(f"{module} -> {target}: package {dest} has no place in LAYERS")
            elif rank[dest] >= rank[source]:
                where = "a layer above" if rank[dest] > rank[source] else "its own layer"
                problems.append(f"{module} -> {target}: {dest} is {where} ({source})")
            elif (source, dest) in narrow and target not in narrow[source, dest]:
                allowed = ", ".join(sorted(narrow[source, dest]))
                problems.append(f"{module} -> {target}: {source} may use only {allowed}")
    return problems


def test_no_import_cycles_between_modules() -> None:
    assert find_cycles(module_imports(ROOT)) == []


def test_dependencies_point_down_the_layers() -> None:
    assert layer_violations(module_imports(ROOT)) == []


def test_fluxbot_never_imports_the_benchmark_or_the_tests() -> None:
    """bench/ builds on fluxbot (python -m bench), never the other way round."""
    assert imports_of(ROOT, "fluxbot", ("bench", "tests")) == []


def test_the_checks_catch_a_cycle_an_upward_import_and_an_unplaced_package(
    tmp_path: Path,
) -> None:
    files = {
        "fluxbot/__init__.py": "",
        "fluxbot/core/__init__.py": "",
        "fluxbot/core/requests.py": "from fluxbot.engine.pipeline import FluxRunner\n",
        "fluxbot/engine/__init__.py": "",
        "fluxbot/engine/pipeline.py": "import fluxbot.core.requests\n",
        "fluxbot/engine/speed.py": "def f():\n    from fluxbot.store import files\n",
        "fluxbot/store/__init__.py": "",
        "fluxbot/store/files.py": "from fluxbot.engine import speed\n",
        "fluxbot/extra/__init__.py": "from fluxbot.core import requests\nimport bench.model\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    graph = module_imports(tmp_path)

    assert graph["fluxbot.store.files"] == {"fluxbot.engine.speed"}
    assert imports_of(tmp_path, "fluxbot", ("bench",)) == ["fluxbot.extra -> bench.model"]
    assert find_cycles(graph) == [
        ["fluxbot.core.requests", "fluxbot.engine.pipeline"],
        ["fluxbot.engine.speed", "fluxbot.store.files"],
    ]
    assert layer_violations(graph) == [
        "fluxbot.core.requests -> fluxbot.engine.pipeline: fluxbot.engine is a layer above "
        "(fluxbot.core)",
        "fluxbot.engine.speed -> fluxbot.store.files: fluxbot.store is a layer above "
        "(fluxbot.engine)",
        "fluxbot.extra: package fluxbot.extra has no place in LAYERS",
        "fluxbot.store.files -> fluxbot.engine.speed: fluxbot.store may use only "
        "fluxbot.engine.encoding",
    ]
