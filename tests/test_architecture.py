"""The rooms import one way (docs/architecture.md), with no cycles.

Parses every product module's imports (never imports them) and fails on:
- an import of a later room (ROOMS is the allowed order: a room may import itself and earlier rooms);
- a cycle between modules through module-level imports;
- a project import inside a function without a ``# lazy: <why>`` comment (imports placed in a
  function to dodge a cycle are what this rules out);
- product code importing the test helpers in ``testing/``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: the allowed order, earliest first (the flow: events -> features -> datasets -> model -> scores -> alerts)
ROOMS = ("core", "events", "labels", "simulator", "validation", "features", "ingestion", "training", "serving",
         "console", "mhp")
NOT_PRODUCT = ("testing", "tests", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _product_modules() -> dict[str, Path]:
    return {_module_name(p): p for room in ROOMS for p in sorted((REPO / room).rglob("*.py"))}


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, module: str, known: set[str]):
    """(target module, line number, inside a function?, source line) for each project import."""
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    in_function: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            # `from pkg import submodule` imports the submodule
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in ROOMS + NOT_PRODUCT:
                yield t, node.lineno, id(node) in in_function, "\n".join(lines[node.lineno - 1:node.end_lineno])


def _graph():
    modules = _product_modules()
    known = set(modules)
    return modules, {m: list(_imports(p, m, known)) for m, p in modules.items()}


def test_rooms_import_only_earlier_rooms():
    modules, graph = _graph()
    backward = []
    for m, imports in graph.items():
        own = ROOMS.index(m.split(".")[0])
        for target, line, _, _ in imports:
            room = target.split(".")[0]
            if room in NOT_PRODUCT:
                backward.append(f"{modules[m].relative_to(REPO)}:{line} imports test helper {target}")
            elif ROOMS.index(room) > own:
                backward.append(f"{modules[m].relative_to(REPO)}:{line} {m} -> {target} (room {room} comes later)")
    assert not backward, "backward imports:\n" + "\n".join(backward)


def test_no_import_cycles():
    modules, graph = _graph()
    edges = {m: sorted({t for t, _, inside, _ in imports if not inside and t in modules and t != m})
             for m, imports in graph.items()}
    # a package's module imports its own __init__ implicitly; only explicit edges count here
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                cycles.append(sorted(component))

    for m in edges:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_function_level_project_imports_say_why():
    modules, graph = _graph()
    unexplained = [f"{modules[m].relative_to(REPO)}:{line}: {text.strip()}"
                   for m, imports in graph.items() for _, line, inside, text in imports
                   if inside and "# lazy:" not in text]
    assert not unexplained, ("project imports inside functions need a '# lazy: <why>' comment "
                             "(or belong at the top of the module):\n" + "\n".join(sorted(set(unexplained))))


def test_the_checker_sees_a_backward_import(tmp_path, monkeypatch):
    """The checks above are only worth something if they can fail: a planted backward import is found."""
    planted = REPO / "core" / "_planted_backward_import.py"
    planted.write_text("from serving import alerts\n")
    try:
        with pytest.raises(AssertionError, match="room serving comes later"):
            test_rooms_import_only_earlier_rooms()
    finally:
        planted.unlink()
