"""The packages' import arrows, read from the source (function-level imports included): the runtime is the
foundation and imports nothing above it; no module imports another that imports it back; only the engines
subpackage names an engine library."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("runtime", "adabm_deploy", "export")
ENGINE_LIBRARIES = {"onnxruntime", "openvino"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, as absolute dotted names (`from a import b` counts a.b too,
    b may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def ancestors(name: str) -> set[str]:
    """The packages a module lives in: Python has imported them before the module runs, not because of it."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    return {name: {m for m in imports(path) if m in files and m != name and m not in ancestors(name)}
            for name, path in files.items()}


def test_the_runtime_imports_nothing_from_calibration_or_export():
    for path in (REPO / "runtime").rglob("*.py"):
        above = sorted(m for m in imports(path) if m.split(".")[0] in {"adabm_deploy", "export", "torch", "onnx"})
        assert not above, f"{path.relative_to(REPO)} imports {above}"


def test_no_module_imports_another_that_imports_it_back():
    graph = project_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(path[path.index(nxt):] + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_only_the_engines_subpackage_names_an_engine_library():
    for path in (REPO / "runtime").rglob("*.py"):
        if "engines" in path.relative_to(REPO).parts:
            continue
        named = sorted(m for m in imports(path) if m.split(".")[0] in ENGINE_LIBRARIES)
        assert not named, f"{path.relative_to(REPO)} imports {named}"
