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
