"""The tree stays easy to read: no function over 50 lines in service/ or generator_core/, and
the README's Layout names every module and package there (and nothing that is gone)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "generator_core")
MAX_FUNCTION_LINES = 50


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_function_is_longer_than_50_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def _layout() -> str:
    section = (ROOT / "README.md").read_text().split("## Layout", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S)[1]


def test_the_readme_layout_names_every_module_and_package():
    """Each module or subpackage directly under service/ and generator_core/ is named (a
    subpackage's own modules may be summed up), and every file the layout names exists."""
    layout = _layout()
    names = set(re.findall(r"[\w./]+\.py|\b\w+/", layout))
    names |= {n.rsplit("/", 1)[0].rsplit("/", 1)[-1] + "/" for n in names if "/" in n.rstrip("/")}  # jobs/store.py
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            name = path.name + "/" if path.is_dir() else path.name
            if (path.is_dir() or path.suffix == ".py") and not any(n.endswith(name) for n in names):
                missing.append(f"{package}/{name}")
    assert not missing, f"README Layout does not name {missing}"
    tree = {p.name for p in _modules()} | {p.relative_to(ROOT / pkg).as_posix() for pkg in PACKAGES
                                           for p in (ROOT / pkg).rglob("*.py")}
    gone = [n for n in re.findall(r"[\w/]+\.py", layout) if n not in tree and Path(n).name not in tree
            and not (ROOT / n).exists()]
    assert not gone, f"README Layout names files that do not exist: {gone}"


def _imports_at_load(path: Path, package: str) -> set[str]:
    """Modules of `package` that `path` imports when it is loaded (not under TYPE_CHECKING,
    not inside functions: those run later and cannot make a cycle at import time)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith(package))
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])

    visit(ast.parse(path.read_text()).body)
    return found


def test_generator_core_has_no_import_cycle():
    """Loading any module of generator_core never comes back to one still loading."""
    modules = {}
    for path in (ROOT / "generator_core").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: {m for m in _imports_at_load(path, "generator_core") if m in modules and m != name}
             for name, path in modules.items()}
    state: dict[str, str] = {}

    def cycle_from(name: str, trail: list[str]) -> list[str] | None:
        state[name] = "loading"
        for nxt in sorted(graph[name]):
            if state.get(nxt) == "loading":
                return trail + [name, nxt]
            if nxt not in state and (found := cycle_from(nxt, trail + [name])):
                return found
        state[name] = "loaded"
        return None

    cycles = [c for name in sorted(graph) if name not in state and (c := cycle_from(name, []))]
    assert not cycles, cycles
