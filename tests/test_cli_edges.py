"""Edges of the `tcgen` command line, as a user meets them: output paths that cannot be
written, help that shows every default, the FLOPs window of the validating device, errors
in the words of the flags typed, fast spec errors, honest progress lines and the
operators' descriptions. Real subprocesses (the CLI of the checkout this file is in) or
`main([...])` in-process, real files."""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from generator_core.ops import OPERATORS
from service.cli import BACKENDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
LO, HI = 2**16, 2**22
WINDOW = ["--min_flops", str(LO), "--max_flops", str(HI)]
ONE_WORKER = ["--num_workers", "1"]  # for `generate` runs of a few samples: one process to start, not two
HEAVY = ("torch", "ortools", "pandas", "service.engine")


def tcgen(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m service.cli ARGS` in this checkout, stderr a pipe (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, **kwargs)


def one_error_line(stderr: str, start: str) -> str:
    """The run's stderr is one `error: ...` line (no traceback) beginning with `start`."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith(start), stderr
    return lines[0]


# -- 1. the output file ---------------------------------------------------------------------
def test_generate_creates_missing_directories(tmp_path):
    """`--output_file` in directories that do not exist yet: they are created, exit 0."""
    out = tmp_path / "not" / "there" / "out.jsonl"
    done = tcgen("generate", "--output_file", str(out), "--level", "0", "--target_count", "2", "--device", "cpu",
                 *WINDOW, *ONE_WORKER)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["index"] for line in out.read_text().splitlines()] == [0, 1]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_output_path_below_a_file_is_one_error_line(tmp_path, fmt):
    """A path whose parent is a file: exit 2, one `error: output_file:` line, no traceback,
    and the file in the way untouched."""
    blocker = tmp_path / "file"
    blocker.write_text("keep me\n")
    done = tcgen("generate", "--output_file", str(blocker / "sub" / "out.data"), "--output_format", fmt,
                 "--level", "0", "--target_count", "1", "--device", "cpu", *WINDOW, *ONE_WORKER)
    assert done.returncode == 2
    assert str(blocker) in one_error_line(done.stderr, "error: output_file: ")
    assert blocker.read_text() == "keep me\n"


def test_a_full_disk_is_one_error_line():
    """Writing to /dev/full (ENOSPC on every write): exit 2, one `error: output_file:` line."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    done = tcgen("generate", "--output_file", "/dev/full", "--level", "0", "--target_count", "2",
                 "--device", "cpu", *WINDOW, *ONE_WORKER)
    assert done.returncode == 2
    assert "No space left on device" in one_error_line(done.stderr, "error: output_file: cannot write to /dev/full")


def _file_size_limit(limit: int):
    def limit_writes() -> None:  # in the child: a write past `limit` bytes fails (EFBIG), not kills
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_writes


def test_a_failed_write_keeps_what_was_written(tmp_path):
    """The third sample's write fails (the file may not grow past 2.5 samples): exit 2, one
    error line that says to --resume, the first two samples kept, and --resume then ends
    with the same bytes as a run that never failed."""
    args = ["--level", "1", "--target_count", "4", "--seed", "5", "--device", "cpu", *WINDOW, *ONE_WORKER]
    full, cut = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    assert tcgen("generate", "--output_file", str(full), *args).returncode == 0
    lines = full.read_bytes().splitlines(keepends=True)
    limit = len(lines[0]) + len(lines[1]) + len(lines[2]) // 2
    done = tcgen("generate", "--output_file", str(cut), *args, preexec_fn=_file_size_limit(limit))
    assert done.returncode == 2
    message = one_error_line(done.stderr, "error: output_file: cannot write to ")
    assert "the 2 samples before it are kept: continue with --resume" in message
    assert cut.read_bytes().startswith(lines[0] + lines[1])
    resumed = tcgen("generate", "--output_file", str(cut), "--resume", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert cut.read_bytes() == full.read_bytes()


# -- 2. help ------------------------------------------------------------------------------------
def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_flag_has_help_that_shows_its_default():
    """Every flag of every command says what it does and its default (or that it is required)."""
    for name, parser in _commands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = parser._get_formatter()._expand_help(action)
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            assert "default" in text or action.required, f"{name} {action.option_strings[0]}: {text!r}"
    for command, flag, shown in [("sample", "--seed", "(default: 0)"), ("sample", "--index", "(default: 0)"),
                                 ("generate", "--target_count", "(default: 10000)"),
                                 ("generate", "--start_idx", "(default: 0)")]:
        action = next(a for a in _commands()[command]._actions if flag in a.option_strings)
        assert _commands()[command]._get_formatter()._expand_help(action).endswith(shown)


def test_help_gives_the_flops_window_of_each_device(capsys):
    """`--help` names both windows, the same as the engine's (service.engine)."""
    from service.engine import BACKENDS as ENGINE_BACKENDS, CPU_FLOPS_WINDOW, GPU_FLOPS_WINDOW

    assert (CPU_FLOPS_WINDOW, GPU_FLOPS_WINDOW) == ((2**16, 2**22), (2**34, 2**35))
    assert BACKENDS == ENGINE_BACKENDS
    for command in ("sample", "generate"):
        with pytest.raises(SystemExit) as exit:
            main([command, "--help"])
        assert exit.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for flag in ("--max_flops", "--min_flops"):
            block = text.split(f"{flag} {flag.upper()[2:]}, ")[1][:260]
            assert "default: 2**16..2**22 when validating on the CPU, 2**34..2**35 on a GPU" in block, block


# -- 3. the window follows the validating device -----------------------------------------------
def test_sample_takes_the_cpus_window_and_says_so():
    """Validating on the CPU, `tcgen sample` without a window uses the CPU's, records it, and
    says so in one stderr line (stdout is the sample alone); given a window, no note."""
    done = tcgen("sample", "--level", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["min_flops"], record["max_flops"]) == (LO, HI) and LO <= record["flops"] <= HI
    notes = [line for line in done.stderr.splitlines() if "FLOPs window" in line]
    assert notes == ["tcgen: FLOPs window 2**16..2**22 (the CPU's default; --min_flops/--max_flops to choose)"]
    done = tcgen("sample", "--level", "2", "--device", "cpu", "--max_flops", str(2**20))
    assert json.loads(done.stdout)["max_flops"] == 2**20 and json.loads(done.stdout)["min_flops"] == LO
    assert "tcgen: FLOPs window 2**16..2**20 (--min_flops: the CPU's default" in done.stderr
    done = tcgen("sample", "--level", "2", "--device", "cpu", *WINDOW)
    assert done.returncode == 0 and "FLOPs window" not in done.stderr


# -- 4. one bound against the other's default ------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--max_flops", "10"], "error: invalid spec: --max_flops 10 is below the default --min_flops 65536 "
                            "(the CPU's window); pass --min_flops too"),
    (["--min_flops", str(2**30)], f"error: invalid spec: --min_flops {2**30} is above the default --max_flops "
                                  f"4194304 (the CPU's window); pass --max_flops too"),
])
def test_one_bound_against_the_others_default_says_so(capsys, flags, message):
    assert main(["sample", "--level", "2", "--device", "cpu", *flags]) == 2
    assert capsys.readouterr().err.strip() == message


# -- 5. errors name the flags typed -----------------------------------------------------------------
@pytest.mark.parametrize("argv, flag", [
    (["sample", "--level", "2", "--index", "-1"], "--index -1:"),
    (["generate", "--output_file", "{out}", "--level", "2", "--start_idx", "-1"], "--start_idx -1:"),
    (["generate", "--output_file", "{out}", "--level", "2", "--target_count", "0"], "--target_count 0:"),
    (["generate", "--output_file", "{out}", "--level", "2", "--start_idx", str(2**63 - 2), "--target_count", "5"],
     f"--start_idx: {2**63 - 2} + --target_count 5 goes past"),
    (["sample", "--level", "2", "--min_flops", "100", "--max_flops", "10"],
     "--min_flops: 100 is greater than --max_flops 10"),
    (["sample", "--level", "9"], "--level 9:"),
])
def test_errors_name_the_flag_not_the_spec_field(capsys, tmp_path, argv, flag):
    rc = main([a.format(out=tmp_path / "out.jsonl") for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: invalid spec: ") and flag in err, err
    assert not re.search(r"\bstart_index\b|(?<![-_])\bcount\b|(?<!-)\b(min|max)_flops\b", err), err
    assert not (tmp_path / "out.jsonl").exists()


# -- 6. a hint for a misspelt operator ------------------------------------------------------------------
@pytest.mark.parametrize("flag, names, hint", [
    ("--ops", ["relu"], "did you mean ReLU?"),
    ("--exclude_ops", ["Sigmoidd"], "did you mean Sigmoid?"),
    ("--op_sequence", ["conv2D", "Tanh"], "did you mean Conv2d?"),
    ("--ops", ["relu", "tanhh"], "did you mean ReLU for relu, Tanh for tanhh?"),
])
def test_unknown_operator_gets_did_you_mean(capsys, flag, names, hint):
    argv = ["sample", flag, *names] + ([] if flag == "--op_sequence" else ["--level", "1"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: invalid spec: {flag}: unknown operator(s)" in err and err.strip().endswith(hint), err


# -- 7. spec errors before any heavy import -----------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["sample", "--level", "2", "--ops", "relu"],
    ["sample", "--level", "2", "--index", "-1"],
    ["sample", "--level", "2", "--min_flops", "100", "--max_flops", "10"],
    ["sample", "--level", "9"],
    ["generate", "--output_file", "never.jsonl", "--level", "9"],
])
def test_spec_errors_come_before_torch_ortools_pandas_and_the_engine(argv):
    code = (f"import sys; from service.cli import main; rc = main({argv!r}); "
            f"print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "[]"], done.stdout + done.stderr
    assert not (ROOT / "never.jsonl").exists()


def test_generator_core_loads_its_names_on_use():
    """`import generator_core` loads nothing heavy; its names still import, and generate /
    grade stay the functions even after their submodules are imported."""
    code = ("import sys, generator_core; heavy = [m for m in ('torch', 'ortools', 'pandas') if m in sys.modules]; "
            "import generator_core.generate, generator_core.grade; "
            "from generator_core import GenerationSpec, OPERATORS, Sample, arrow_schema, generate, grade; "
            "print(heavy, callable(generate) and generate.__module__, callable(grade) and grade.__module__, "
            "len(OPERATORS), sorted(generator_core.__all__) == sorted(n for n in generator_core.__all__ "
            "if hasattr(generator_core, n)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["[]", "generator_core.generate", "generator_core.grade", str(len(OPERATORS)),
                                  "True"], done.stderr


# -- 8. progress lines -----------------------------------------------------------------------------
PROGRESS = re.compile(r"tcgen: written (\d+)/(\d+), failed (\d+) \((\d+)% done\); validated (\d+) \(cpu=\d+\), "
                      r"rejected attempts \d+, restarts \d+; [\d.]+ samples/s(?:, eta (\d\d:\d\d:\d\d))?$")


def test_plain_progress_lines_agree_with_the_file(tmp_path):
    """With stderr not a terminal and a line after every sample (TCGEN_PROGRESS_INTERVAL=0):
    written counts rise to the file's line count, never past the total; no ETA from the
    first sample; 00:00:00 at the end; the window (the CPU's default) is named."""
    out = tmp_path / "out.jsonl"
    done = tcgen("generate", "--output_file", str(out), "--level", "1", "--target_count", "8", "--device", "cpu",
                 env={"TCGEN_PROGRESS_INTERVAL": "0"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("tcgen: written")]
    parsed = [PROGRESS.match(line) for line in lines]
    assert lines and all(parsed), lines
    written = [int(m[1]) for m in parsed]
    assert written == sorted(written) and all(int(m[2]) == 8 and int(m[1]) + int(m[3]) <= 8 for m in parsed)
    assert parsed[0][6] is None  # one sample is too few to extrapolate from
    assert written[-1] == len(out.read_text().splitlines()) == 8 and parsed[-1][6] == "00:00:00"
    assert parsed[-1][4] == "100" and int(parsed[-1][5]) >= 8
    assert "tcgen: FLOPs window 2**16..2**22 (the CPU's default; --min_flops/--max_flops to choose)" in done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("wrote 8 samples") and "FLOPs window 2**16..2**22;" in summary


def test_progress_interval_must_be_seconds(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TCGEN_PROGRESS_INTERVAL", "soon")
    assert main(["generate", "--output_file", str(tmp_path / "o.jsonl"), "--level", "0", *WINDOW]) == 2
    assert "TCGEN_PROGRESS_INTERVAL: expected seconds, got 'soon'" in capsys.readouterr().err


# -- 9. operator descriptions ------------------------------------------------------------------------
def test_every_operator_has_its_own_description():
    """`tcgen ops --json`: each operator's description is one non-empty line that starts with
    the operator's name, says what PyTorch call it is, and is unlike every other."""
    done = tcgen("ops", "--json")
    assert done.returncode == 0
    entries = json.loads(done.stdout)
    descriptions = [e["description"] for e in entries]
    assert len(entries) == len(OPERATORS) and len(set(descriptions)) == len(OPERATORS)
    for e in entries:
        text = e["description"]
        assert text.startswith(f"{e['name']}: ") and len(text) > len(e["name"]) + 10, text
        assert "\n" not in text and "  " not in text and "()" not in text and "None" not in text, text
        assert re.search(r"\((torch|F)\.\w+", text), text
