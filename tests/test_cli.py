"""The `tcgen` console script, run for real in a subprocess."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from generator_core import OPERATORS
from helpers import HI, LO

SCRIPT = Path(sys.executable).with_name("tcgen")
TCGEN = [str(SCRIPT)] if SCRIPT.exists() else ([shutil.which("tcgen")] if shutil.which("tcgen")
                                               else [sys.executable, "-m", "service.cli"])
WINDOW = ["--min_flops", str(LO), "--max_flops", str(HI)]


def tcgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(TCGEN + list(args), capture_output=True, text=True, timeout=300)


def test_ops_json_lists_the_catalogue():
    """`tcgen ops --json` lists the registry's operators, each with name, category and arity."""
    done = tcgen("ops", "--json")
    assert done.returncode == 0
    entries = json.loads(done.stdout)
    assert len(entries) == len(OPERATORS) and [e["name"] for e in entries] == list(OPERATORS)
    assert all({"name", "category", "arity"} <= set(e) for e in entries)


def test_sample_prints_python_code():
    """`tcgen sample --format py` prints a program starting with `import torch`."""
    done = tcgen("sample", "--level", "1", "--index", "5", "--format", "py", *WINDOW)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("import torch") and "def fused_operator(" in done.stdout


def test_sample_with_num_ops_and_its_bounds():
    """`tcgen sample --num_ops 6` prints a sample of six drawn operators; 21, or --num_ops with
    --op_sequence, exits 2 naming the flag."""
    done = tcgen("sample", "--num_ops", "6", "--seed", "3", "--device", "cpu", *WINDOW)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["ops"]) == 6
    for args in (["--num_ops", "21"], ["--num-ops", "3", "--op_sequence", "ReLU"]):
        bad = tcgen("sample", *args)
        assert bad.returncode == 2 and "--num_ops" in bad.stderr, bad.stderr


def test_generate_writes_jsonl_with_hyphenated_flags(tmp_path):
    """`generate --output-file` (hyphen alias) writes N JSON lines, each with pytorch and difficulty."""
    out = tmp_path / "out.jsonl"
    done = tcgen("generate", "--output-file", str(out), "--level", "2", "--target-count", "3",
                 "--min-flops", str(LO), "--max-flops", str(HI), "--num-workers", "1")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    assert all(r["pytorch"].startswith("import torch") and r["difficulty"] == 2 for r in records)
    assert [r["index"] for r in records] == [0, 1, 2]


def test_bad_spec_exits_2_naming_the_field(tmp_path):
    """An invalid spec exits 2 with `error: invalid spec: <flag>: ...` on stderr."""
    done = tcgen("sample", "--level", "2", "--min_flops", "100", "--max_flops", "10")
    assert done.returncode == 2 and "error: invalid spec: --min_flops:" in done.stderr
    done = tcgen("generate", "--output_file", str(tmp_path / "x.jsonl"), "--level", "2", "--ops", "Foo")
    assert done.returncode == 2 and "invalid spec: --ops: unknown operator(s) Foo" in done.stderr


def test_resume_completes_a_truncated_file(tmp_path):
    """`--resume` drops a truncated last line and completes the file as an uninterrupted run would."""
    full, partial = tmp_path / "full.jsonl", tmp_path / "partial.jsonl"
    args = ["--level", "2", "--target_count", "4", "--seed", "3", "--num_workers", "1", *WINDOW]
    assert tcgen("generate", "--output_file", str(full), *args).returncode == 0
    lines = full.read_text().splitlines(keepends=True)
    partial.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])
    done = tcgen("generate", "--output_file", str(partial), "--resume", *args)
    assert done.returncode == 0, done.stderr
    assert partial.read_bytes() == full.read_bytes()  # byte-identical: samples carry no timings


def test_generate_refuses_to_overwrite_without_resume(tmp_path):
    """An existing non-empty output file is not overwritten unless --resume is given."""
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    done = tcgen("generate", "--output_file", str(out), "--level", "0", "--target_count", "1", "--num_workers", "1",
                 *WINDOW)
    assert done.returncode == 2 and "output_file" in done.stderr and out.read_text() == "keep me\n"
