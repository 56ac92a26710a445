"""The layout keeps its promises: imports point one way and never in a circle.

Every ``import`` of the three packages is read from the source (also those
inside functions, which run later but still tie the modules together), so a
cycle or a wrong-way arrow fails here before it confuses a reader.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("metadata_content", "configdrive", "hypervisor")
# The content: spec -> model -> render. Pure: no store, no services, no processes.
CONTENT = ("metadata_content.errors", "metadata_content.model", "metadata_content.schemas",
           "metadata_content.spec", "metadata_content.render")
SERVICE_LIBRARIES = ("sqlalchemy", "psycopg", "flask", "werkzeug", "granian", "libvirt", "subprocess")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that *name* (a module or a name inside one) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> dict[str, int]:
    """{imported name: line} for every import statement in *module*, resolved."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.setdefault(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base,
                                 node.lineno)
    return found


def _graph() -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = {}
    for module in MODULES:
        edges: dict[str, int] = {}
        for name, line in _imports(module).items():
            target = _owner(name) if name.split(".")[0] in PACKAGES else None
            if target and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
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
                    found.append(sorted(component))
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_lazy_imports_too():
    """A sanity check on the reader: a function-level import is an edge."""
    assert "metadata_content.spec.checks_network" in GRAPH["metadata_content.spec.checks"]
    assert len(MODULES) > 50


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    described = ["; ".join(f"{a} -> {b} (line {GRAPH[a][b]})" for a in cycle for b in GRAPH[a] if b in cycle)
                 for cycle in cycles]
    assert not cycles, described


def test_cycles_would_be_found():
    """The detector itself finds a cycle of three, also through a lazy import."""
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


ALLOWED = {
    # who: what it may import of ours (besides its own package)
    "metadata_content.errors": (),
    "metadata_content.schemas": (),
    "metadata_content.model": ("metadata_content.errors",),
    "metadata_content.spec": CONTENT,
    "metadata_content.render": ("metadata_content.errors", "metadata_content.model"),
    "metadata_content.store": CONTENT,
    # the configuration file's loader, below every component that has a [section]
    "metadata_content.settings": ("metadata_content.errors",),
    # processes.py is a leaf (pids and signals) that the services use too
    "metadata_content.server": (*CONTENT, "metadata_content.store", "metadata_content.settings",
                                "metadata_content.chain.processes"),
    "metadata_content.chain": (*CONTENT, "metadata_content.store", "metadata_content.server"),
    "configdrive.images": CONTENT,
    # settings: [libvirt] is read as every section is, without the services
    "hypervisor": (*CONTENT, "metadata_content.store", "metadata_content.settings", "configdrive.images"),
}


@pytest.mark.parametrize("layer", ALLOWED)
def test_imports_point_one_way(layer):
    wrong = [f"{module} -> {target} (line {line})"
             for module, edges in GRAPH.items() if _within(module, (layer,))
             and not any(_within(module, (other,)) for other in ALLOWED if other != layer and other.startswith(layer))
             for target, line in edges.items()
             if not _within(target, (layer, *ALLOWED[layer]))
             and target != "metadata_content"]  # the facade: load_instance, MetadataTree (lazy)
    assert not wrong


def test_the_content_never_touches_a_database_a_server_or_a_process():
    """The model, its specs and its renderers are pure: the services adapt to them."""
    wrong = []
    for module in MODULES:
        if _within(module, CONTENT):
            for name, line in _imports(module).items():
                if name.split(".")[0] in SERVICE_LIBRARIES:
                    wrong.append(f"{module} imports {name} (line {line})")
    assert not wrong


def test_building_an_image_loads_no_service(tmp_path):
    """What `configdrive build` imports, in a fresh interpreter: no store, services,
    chain, libvirt or their libraries (their modules are imported only when run)."""
    import subprocess

    # the console script's own path: cli -> commands.images -> images.build, printed at exit
    code = ("import atexit, sys; atexit.register(lambda: print('\\n'.join(sys.modules))); "
            f"sys.argv = ['configdrive', 'build', '-i', 'samples/rich.yaml', '-o', {str(tmp_path / 'cd.iso')!r}]; "
            "from configdrive.cli import main; main()")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True, timeout=60).stdout.split())
    forbidden = {m for m in loaded if m.split(".")[0] in (*SERVICE_LIBRARIES, "hypervisor", "pyfatfs", "jsonschema")
                 or _within(m, ("metadata_content.store", "metadata_content.server", "metadata_content.chain"))}
    assert "configdrive.images.iso" in loaded and not forbidden
