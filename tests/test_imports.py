"""No import cycles in the package: every ``import nerfconvert...`` / ``from nerfconvert... import``
statement, at module level and inside functions, read with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import nerfconvert

ROOT = Path(nerfconvert.__file__).parent


def _modules() -> Dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(node, package: str, modules) -> List[str]:
    """The package modules an import statement names (``from a.b import c``: ``a.b.c`` if it is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.startswith("nerfconvert"):
            out.append(name)
    return out


def import_graphs() -> Tuple[Dict[str, Set[str]], Dict[str, Set[str]]]:
    """(module-level imports, all imports incl. those inside functions) between package modules."""
    modules = _modules()
    top: Dict[str, Set[str]] = {m: set() for m in modules}
    every: Dict[str, Set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        at_top = set()
        for statement in tree.body:  # module level, incl. inside if/try blocks
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for node in ast.walk(statement):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    at_top.add(id(node))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, package, modules):
                    if target == module:
                        continue
                    every[module].add(target)
                    if id(node) in at_top:
                        top[module].add(target)
    return top, every


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    found.append(sorted(component))
    return found


def test_the_walker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_reads_the_package():
    top, every = import_graphs()
    assert "nerfconvert.distill.trainer" in top["nerfconvert.distill.method"]
    assert all(top[m] <= every[m] for m in top)
    assert any(every[m] - top[m] for m in top)  # function-level imports are read too


def test_no_module_level_import_cycles():
    top, _ = import_graphs()
    assert cycles(top) == []


def test_no_import_cycles_through_function_level_imports_either():
    _, every = import_graphs()
    assert cycles(every) == []


def test_the_compression_methods_share_a_core_and_do_not_import_each_other():
    _, every = import_graphs()
    for module, targets in every.items():
        for a, b in (("entropy", "vq"), ("vq", "entropy")):
            if module.startswith(f"nerfconvert.compress.{a}"):
                crossing = sorted(t for t in targets if t.startswith(f"nerfconvert.compress.{b}"))
                assert not crossing, f"{module} imports {crossing}: shared code belongs in nerfconvert/compress/"
