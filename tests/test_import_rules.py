"""Dependence runs one way: no import cycles, and services/ reaches into appliance/ only where listed.

The list below is what is left to undo (issue 14: each service owns its
settings and reaches state through an interface it declares); it may only
shrink: an import that is gone must leave the list too, and a new one fails.
"""
from __future__ import annotations

import ast

from source_tree import REPO, source_files

PACKAGES = ("appliance", "services", "bootimages")
STILL_TO_UNDO = {
    ("services.dhcp.boot", "appliance.config"),
    ("services.dhcp.export", "appliance.config"),
    ("services.dhcp.export", "appliance.store.records"),
    ("services.dhcp.hosts", "appliance.store"),
    ("services.dhcp.hosts", "appliance.store.records"),
    ("services.dhcp.leases", "appliance.config"),
    ("services.dhcp.leases", "appliance.store"),
    ("services.dhcp.leases", "appliance.store.records"),
    ("services.dhcp.policy", "appliance.config"),
    ("services.dhcp.policy", "appliance.store.records"),
    ("services.rsyncd.render", "appliance.config"),
}


def module_graph() -> dict[str, set[str]]:
    """{module: project modules it imports at its top level} (imports inside functions are lazy)."""
    paths = {}
    for rel in source_files("*.py", under=PACKAGES):
        name = rel[:-3].replace("/", ".")
        paths[name.removesuffix(".__init__")] = REPO / rel
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                # "from . import x" names a module x when there is one, else the package's member
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in paths and t != name}
        graph[name] = deps
    return graph


def test_no_import_cycles():
    graph = module_graph()
    assert "services.dhcp.policy" in graph and graph["appliance.lab.demo"]
    seen, on_path, cycles = set(), [], []

    def visit(name):
        if name in on_path:
            cycles.append(on_path[on_path.index(name):] + [name])
            return
        if name in seen:
            return
        seen.add(name)
        on_path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        on_path.pop()

    for name in sorted(graph):
        visit(name)
    assert not cycles, cycles


def test_services_reach_into_the_appliance_only_where_still_listed():
    graph = module_graph()
    found = {(m, d) for m, deps in graph.items() for d in deps
             if m.startswith("services") and d.startswith("appliance")}
    assert not found - STILL_TO_UNDO, f"new imports of appliance/ from services/: {sorted(found - STILL_TO_UNDO)}"
    assert not STILL_TO_UNDO - found, f"undone, so strike them from the list: {sorted(STILL_TO_UNDO - found)}"
