"""Dependence runs one way: no import cycles, and services/ never imports appliance/.

Each service owns its settings (services/<name>/settings.py) and reaches the
appliance's state through protocols it declares; the appliance composes the
services with plain imports.
"""
from __future__ import annotations

import ast

from support.source_tree import REPO, source_files

PACKAGES = ("appliance", "services", "bootimages")


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


def test_services_never_import_the_appliance():
    """Every import counts here, those inside functions too: a lazy import is still a dependence."""
    found = []
    for rel in source_files("*.py", under=("services",)):
        for node in ast.walk(ast.parse((REPO / rel).read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{rel}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "appliance"]
    assert not found, found
    assert source_files("*.py", under=("services",)), "no service sources found: the check looked nowhere"
