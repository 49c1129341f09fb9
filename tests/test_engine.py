"""The engine: the same bytes whatever the number of workers, killed workers and interruptions."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from generator_core import GenerationSpec, Sample
from helpers import TCGEN
from service.engine import Engine
from service.engine.faults import CRASH_ENV

WINDOW = ["--min_flops", "65536", "--max_flops", "4194304", "--device", "cpu"]
COUNT = 60  # level-1 samples of the reference run
LEVEL1 = ["--level", "1", "--target_count", str(COUNT), *WINDOW]
SPEC1 = GenerationSpec(level=1, min_flops=65536, max_flops=4194304)


def generate_file(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TCGEN, "generate", "--output_file", str(path), *args],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """60 level-1 samples written by one worker: the uninterrupted, fault-free run."""
    path = tmp_path_factory.mktemp("ref") / "one_worker.jsonl"
    done = generate_file(path, *LEVEL1, "--num_workers", "1")
    assert done.returncode == 0, done.stderr
    return path.read_bytes()


def test_file_is_identical_for_one_and_two_workers(reference, tmp_path):
    """Acceptance 1: 60 validated level-1 lines, the same bytes for --num_workers 1 and 2."""
    done = generate_file(tmp_path / "two.jsonl", *LEVEL1, "--num_workers", "2")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "two.jsonl").read_bytes() == reference
    records = [Sample.model_validate_json(line) for line in reference.splitlines()]
    assert [r.index for r in records] == list(range(COUNT))
    assert all(r.validation.passed and r.validation.device == "cpu" for r in records)


def test_a_worker_takes_the_environment_of_its_start_not_the_fork_servers(tmp_path, monkeypatch):
    """Workers fork from one server per process (pool.WORKERS), started with the first engine
    and kept: a setting made after it started (here a planned crash) still reaches the
    workers started after the setting, as it reached a spawned worker."""
    with Engine(solver_workers=1, device="cpu") as engine:  # the fork server runs from here on
        assert engine.worker_pids()["solver"]
    once = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ENV, f"solve:2:{once}")
    with Engine(solver_workers=1, device="cpu") as engine:
        outcomes = list(engine.run(SPEC1, range(4)))
        restarts = engine.progress.restarts
    assert once.exists() and restarts == 1
    assert [o.error for o in outcomes] == [None] * 4


def test_workers_killed_mid_run_change_nothing(reference, tmp_path, monkeypatch):
    """kill -9 from outside of both solver workers mid-run, plus one worker that dies while
    validating (self-inflicted SIGKILL, once): the run completes with the reference bytes."""
    monkeypatch.setenv(CRASH_ENV, f"validate:45:{tmp_path / 'crashed-once'}")
    lines = []
    with Engine(solver_workers=2, device="cpu") as engine:
        for outcome in engine.run(SPEC1, range(COUNT)):
            lines.append(outcome.json)
            if len(lines) in (15, 35):
                victim = engine.worker_pids()["solver"][len(lines) // 35]
                os.kill(victim, signal.SIGKILL)
        restarts = engine.progress.restarts
    assert restarts >= 3  # two external kills and the crash during validation
    assert (tmp_path / "crashed-once").exists()
    assert "".join(line + "\n" for line in lines).encode() == reference


def test_dedicated_validation_worker_killed_from_outside_changes_nothing(reference):
    """The per-device path (one dedicated validation process, as each GPU gets), on the CPU:
    kill -9 from outside of the validation worker and of a solver worker mid-run; both are
    replaced, only their in-flight samples are redone, and the bytes equal the reference."""
    lines = []
    with Engine(solver_workers=2, device="cpu", cpu_validation="worker") as engine:
        for outcome in engine.run(SPEC1, range(COUNT)):
            lines.append(outcome.json)
            if len(lines) == 20:
                os.kill(engine.worker_pids()["validation"][0], signal.SIGKILL)
            if len(lines) == 40:
                os.kill(engine.worker_pids()["solver"][1], signal.SIGKILL)
        assert engine.progress.validated["cpu"] >= COUNT  # validated by the dedicated worker
        restarts = engine.progress.restarts
    assert restarts == 2
    assert "".join(line + "\n" for line in lines).encode() == reference


def test_a_sample_that_always_kills_its_worker_is_given_up(reference, monkeypatch):
    """A request that kills every worker it reaches is given up after a bounded number of
    tries and reported; every other index is unaffected."""
    monkeypatch.setenv(CRASH_ENV, "solve:7")
    with Engine(solver_workers=2, device="cpu") as engine:
        outcomes = list(engine.run(SPEC1, range(12)))
    assert outcomes[7].json is None and "given up" in outcomes[7].error and "index 7" in outcomes[7].error
    expected = reference.splitlines()
    assert [o.json.encode() for o in outcomes if o.index != 7] == [expected[i] for i in range(12) if i != 7]


def _interrupt(path, sig: int, group: bool, *args: str) -> subprocess.CompletedProcess:
    """Start `tcgen generate`, send `sig` once some lines are written (to the whole process
    group, as Ctrl-C in a terminal does, or to the parent only), and wait for it."""
    proc = subprocess.Popen([*TCGEN, "generate", "--output_file", str(path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (path.exists() and path.read_bytes().count(b"\n") >= 20):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be interrupted"
        time.sleep(0.02)
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


RESUMED = ["--level", "2", "--target_count", "60", "--seed", "5", "--num_workers", "1", *WINDOW]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> bytes:
    """The file an uninterrupted run of RESUMED writes."""
    path = tmp_path_factory.mktemp("full") / "full.jsonl"
    done = generate_file(path, *RESUMED)
    assert done.returncode == 0, done.stderr
    return path.read_bytes()


@pytest.mark.parametrize("sig, group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)])
def test_interrupted_run_resumes_to_the_same_file(tmp_path, uninterrupted, sig, group, code):
    """SIGINT (Ctrl-C to the process group) or SIGTERM mid-run: only whole lines are left,
    and --resume ends with the same file as an uninterrupted run."""
    stopped = _interrupt(tmp_path / "run.jsonl", sig, group, *RESUMED)
    assert stopped.returncode == code, stopped.stderr
    assert "--resume" in stopped.stderr
    partial = (tmp_path / "run.jsonl").read_bytes()
    assert partial.endswith(b"\n") and 20 <= partial.count(b"\n") < 60
    resumed = generate_file(tmp_path / "run.jsonl", *RESUMED, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "run.jsonl").read_bytes() == uninterrupted


def test_a_run_stopped_early_leaves_nothing_for_the_next_one(reference):
    """A run that stops early (a job chunk giving way to a sync request) leaves requests in
    flight; their answers, for the same indices of another spec, must not become the next
    run's outcomes."""
    other = GenerationSpec(level=2, min_flops=65536, max_flops=4194304, seed=1)
    with Engine(solver_workers=2, device="cpu") as engine:
        taken = 0
        for _ in engine.run(other, range(100), stop_when=lambda: taken >= 1):
            taken += 1
        lines = [o.json for o in engine.run(SPEC1, range(8))]
    assert 1 <= taken < 100
    assert [line.encode() for line in lines] == reference.splitlines()[:8]
