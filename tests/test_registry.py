"""One operator, one declaration (issue 16): docs/operators.md's table is generated from the
registry, and an operator declared in its family module reaches `tcgen ops --json`, the
generated table and the per-operator tests with no other edit."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator_core import OPERATORS
from generator_core.ops import catalogue

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "operators.md"

# The throwaway operator the acceptance test declares in a copy of generator_core, written
# as docs/operators.md tells a contributor to (a unary activation: description, FLOPs, call).
NEW_OP = "ThrowawaySoftsign"
NEW_DESCRIPTION = f"{NEW_OP}: x / (1 + |x|), elementwise; a test's throwaway operator (F.softsign)"
DECLARATION = f'''

@register
class {NEW_OP}(Unary):
    description = "{NEW_DESCRIPTION}"
    flops_per_element = 3
    call = F + ".softsign({{x}})"
'''
# The per-operator test files (parametrised over OPERATORS) whose tests the new operator must get.
PER_OPERATOR_TESTS = ["tests/test_ops.py", "tests/test_grading.py"]


def test_docs_catalogue_is_generated_from_the_registry():
    """docs/operators.md's generated part is exactly what the generator writes now."""
    text = DOCS.read_text(encoding="utf-8")
    assert catalogue.update(text) == text, f"docs/operators.md is out of date: run `{catalogue.COMMAND}`"


def test_generated_table_has_one_row_per_operator():
    """One row per registered operator, with its family, arity, FLOPs and description; the count
    of operators is in the generated part and nowhere else in the file."""
    generated = catalogue.render()
    rows = [line for line in generated.splitlines() if line.startswith("| ") and not line.startswith("| operator")]
    rows = rows[1:]  # the | --- | line
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows] == sorted(OPERATORS, key=lambda n: (
        catalogue._family_key(OPERATORS[n].family), n))
    for name, op in OPERATORS.items():
        assert catalogue.row(op) in rows
        assert op.family in catalogue.row(op) and op.description.removeprefix(f"{name}: ").replace("|", "\\|") in catalogue.row(op)
    assert f"There are {len(OPERATORS)} operators" in generated
    text = DOCS.read_text(encoding="utf-8")
    handwritten = text.split(catalogue.BEGIN)[0] + text.split(catalogue.END)[1]
    assert not re.search(rf"\b{len(OPERATORS)}\b", handwritten), "an operator count outside the generated part"


def test_update_keeps_the_prose_and_needs_the_markers():
    """Only the part between the markers changes; a file without them is an error."""
    text = f"# Title\n\nprose\n{catalogue.BEGIN}\nstale\n{catalogue.END}\nmore prose\n"
    new = catalogue.update(text)
    assert new.startswith("# Title\n\nprose\n" + catalogue.BEGIN) and new.endswith(catalogue.END + "\nmore prose\n")
    assert "stale" not in new and catalogue.update(new) == new
    with pytest.raises(ValueError):
        catalogue.update("no markers")


def test_check_names_the_command(tmp_path):
    """`--check` on a stale file exits 1 and prints the command to run; the command fixes it."""
    stale = tmp_path / "operators.md"
    stale.write_text(f"prose\n{catalogue.BEGIN}\nold table\n{catalogue.END}\n", encoding="utf-8")
    assert catalogue.main([str(stale), "--check"]) == 1
    assert "old table" in stale.read_text(encoding="utf-8")
    assert catalogue.main([str(stale)]) == 0 and catalogue.main([str(stale), "--check"]) == 0
    assert stale.read_text(encoding="utf-8") == f"prose\n{catalogue.render()}\n"


@pytest.fixture(scope="module")
def added(tmp_path_factory) -> dict:
    """A copy of generator_core with one more operator declared in activation.py, and the
    environment that imports the copy (service and the tests still come from this checkout)."""
    assert NEW_OP not in OPERATORS
    tmp = tmp_path_factory.mktemp("one_declaration")
    shutil.copytree(ROOT / "generator_core", tmp / "generator_core", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp / "generator_core" / "ops" / "activation.py", "a", encoding="utf-8") as f:
        f.write(DECLARATION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]), "PYTHONDONTWRITEBYTECODE": "1"}
    # cwd is the copy's folder: `python -m` puts the cwd first on sys.path, and the checkout's
    # generator_core must not shadow the copy.
    return {"tmp": tmp, "env": env}


def run(added: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=added["tmp"], env=added["env"], capture_output=True,
                          text=True, timeout=timeout)


def test_a_declared_operator_is_in_the_cli_catalogue(added):
    """(a) `tcgen ops --json` lists the new operator with its description."""
    done = run(added, "-m", "service.cli", "ops", "--json")
    assert done.returncode == 0, done.stderr
    entries = {e["name"]: e for e in json.loads(done.stdout)}
    assert set(entries) == set(OPERATORS) | {NEW_OP}
    assert entries[NEW_OP]["description"] == NEW_DESCRIPTION and entries[NEW_OP]["category"] == "activation"


def test_a_declared_operator_is_in_the_generated_docs(added):
    """(b) the generator's docs text has the new operator's row and the new count."""
    done = run(added, "-m", "generator_core.ops.catalogue", "--print")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {NEW_OP} |"))
    assert row == (f"| {NEW_OP} | activation | 1 | 1–5 | 3 × output numel | "
                   + NEW_DESCRIPTION.removeprefix(f"{NEW_OP}: ").replace("|", "\\|") + " |")
    assert f"There are {len(OPERATORS) + 1} operators" in done.stdout
    # The checkout's docs are now out of date for the copy's registry: --check says so.
    check = run(added, "-m", "generator_core.ops.catalogue", "--check", str(DOCS))
    assert check.returncode == 1 and catalogue.COMMAND in check.stderr


def test_a_declared_operator_gets_the_per_operator_tests(added):
    """(c) the registry-parametrised tests collect tests for the new operator, and they pass
    (a level-0 sample in the small window: seconds)."""
    # -o pythonpath=: the ini option would put this checkout (its generator_core) before the copy
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-o", "pythonpath="]
    files = [str(ROOT / f) for f in PER_OPERATOR_TESTS]
    done = run(added, *pytest_args, "--collect-only", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if f"[{NEW_OP}" in line or f"-{NEW_OP}]" in line]
    for f in PER_OPERATOR_TESTS:
        assert any(i.startswith(f) for i in ids), (f, done.stdout[-2000:])
    assert len([i for i in ids if i.startswith("tests/test_ops.py")]) >= 5
    done = run(added, *pytest_args, *files, "-k", NEW_OP, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(rf"\b{len(ids)} passed\b", done.stdout), done.stdout[-2000:]
