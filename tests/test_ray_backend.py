"""The Ray backend: the same bytes as the local backend from the CLI, the service and the
engine, through a killed validation actor, a crashed task worker and a cancelled run.
(Losing a whole node: tests/test_ray_node_loss.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import ray  # the [ray] extra, which scripts/setup.sh installs: missing, these tests fail, never skip

from helpers import JOB_SPEC, SMALL, TCGEN, ndjson_results, spec, wait_finished
from service.engine import Engine
from service.engine.engine import make_backend
from service.engine.faults import CRASH_ENV
from local_server import LocalServer

SPEC = spec(level=1, seed=4)
COUNT = 40
VICTIM = 20  # the index the crash tests aim at


@pytest.fixture(scope="module")
def ray_address():
    """One Ray instance for this file's tests (2 CPUs, no dashboard), started in the pytest
    process: in-process engines use it directly, and subprocesses (the CLI, the server)
    join it through RAY_ADDRESS, as they would join a trainer's cluster. Shut down with the
    file, not the session: its processes would otherwise use CPU through every later file."""
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def local_lines() -> list[str]:
    with Engine(solver_workers=2, device="cpu") as engine:
        return [o.json for o in engine.run(SPEC, range(COUNT))]


def test_cli_generate_on_ray_equals_local(job_reference, ray_address, tmp_path):
    """Acceptance 1: `tcgen generate --backend ray`, joining the running cluster through
    RAY_ADDRESS, writes the same bytes as the local backend."""
    out = tmp_path / "ray.jsonl"
    done = subprocess.run([*TCGEN, "generate", "--output_file", str(out), "--level", str(JOB_SPEC["level"]),
                           "--target_count", str(JOB_SPEC["count"]), "--seed", str(JOB_SPEC["seed"]),
                           "--min_flops", str(SMALL["min_flops"]), "--max_flops", str(SMALL["max_flops"]),
                           "--device", "cpu", "--backend", "ray"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_ADDRESS": ray_address})
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == job_reference


def test_service_job_on_ray_equals_local(job_reference, ray_address, tmp_path):
    """Acceptance 1: a job of `tcgen serve` with TCGEN_BACKEND=ray returns the local bytes."""
    import httpx

    server = LocalServer(tmp_path / "jobs.db", env={"TCGEN_BACKEND": "ray", "RAY_ADDRESS": ray_address}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            job = wait_finished(client, client.post("/v1/jobs", json=JOB_SPEC).json()["id"])
            assert job["state"] == "succeeded", job
            assert ndjson_results(client, job["id"]) == job_reference
    finally:
        assert server.stop() == 0, server.log()


def test_validation_actor_killed_mid_run_changes_nothing(ray_address, local_lines):
    """The per-device path on Ray (one validation actor, as each GPU gets): the actor is
    killed mid-run, Ray restarts it, its calls are redone, and the bytes equal local's."""
    lines, killed = [], False
    with Engine(device="cpu", backend="ray", cpu_validation="worker") as engine:
        actor = engine._validators[0]
        for outcome in engine.run(SPEC, range(COUNT)):
            lines.append(outcome.json)
            if len(lines) >= 10 and not killed and actor.in_flight:  # while it holds calls
                ray.kill(actor.actor, no_restart=False)
                killed = True
        assert killed
        assert engine.progress.validated["cpu"] >= COUNT
        assert engine.progress.redone >= 1  # the calls in flight on the killed actor
    assert lines == local_lines


def test_task_worker_crash_is_redone(ray_address, local_lines, tmp_path, monkeypatch):
    """A Ray worker process dies (SIGKILL, as a segfault would) while solving index VICTIM: the
    task fails, the engine sends it again, and the output is unchanged."""
    once = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ENV, f"solve:{VICTIM}:{once}")
    with Engine(device="cpu", backend="ray") as engine:
        lines = [o.json for o in engine.run(SPEC, range(COUNT))]
        redone = engine.progress.redone
    assert once.exists() and redone >= 1
    assert lines == local_lines


def test_an_index_that_always_kills_its_worker_is_given_up_alone(ray_address, local_lines, monkeypatch):
    """Index VICTIM kills its Ray worker every time. Solver requests travel in batches, so its
    first death takes its batch-mates with it: they are redone without blame, each alone,
    and only index VICTIM is given up (after MAX_CRASHES deaths), as on the local backend."""
    monkeypatch.setenv(CRASH_ENV, f"solve:{VICTIM}")
    with Engine(device="cpu", backend="ray") as engine:
        outcomes = list(engine.run(SPEC, range(COUNT)))
    assert [o.index for o in outcomes if o.json is None] == [VICTIM]
    assert "killed a solver worker 3 times" in outcomes[VICTIM].error
    assert [o.json for o in outcomes if o.index != VICTIM] == local_lines[:VICTIM] + local_lines[VICTIM + 1:]


def test_a_stopped_run_cancels_its_tasks_and_the_next_run_is_unaffected(ray_address, local_lines):
    """A run stopped early (what a cancelled job does) cancels the tasks it left queued, frees
    their slots, and a following run still gives the local bytes."""
    left: list = []

    def stop_after_five() -> bool:
        if len(seen) < 5:
            return False
        if not left:
            left.extend(ref for w in engine._solvers for ref in w.batches)
        return True

    seen: list = []
    with Engine(device="cpu", backend="ray") as engine:
        for outcome in engine.run(spec(level=2, seed=8), range(1000), stop_when=stop_after_five):
            seen.append(outcome)
        assert len(seen) < 1000 and left  # it stopped (after the outcomes already in order)
        assert all(not w.in_flight for w in engine._solvers + engine._validators)
        cancelled = 0
        for ref in left:
            try:
                ray.get(ref, timeout=60)
            except ray.exceptions.TaskCancelledError:
                cancelled += 1
        assert cancelled >= 1
        outcomes = list(engine.run(SPEC, range(COUNT)))
        assert [o.error for o in outcomes if o.error] == []
        assert [o.json for o in outcomes] == local_lines


def test_the_local_backend_never_imports_ray(tmp_path):
    """Ray is an optional extra: a local run does not import it."""
    script = tmp_path / "local_only.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from service.cli import main

        if __name__ == "__main__":
            code = main(["generate", "--output_file", {str(tmp_path / 'x.jsonl')!r}, "--level", "1",
                         "--target_count", "4", "--min_flops", "65536", "--max_flops", "4194304",
                         "--device", "cpu", "--num_workers", "1"])
            print("ray imported:", "ray" in sys.modules)
            sys.exit(code)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr
    assert "ray imported: False" in done.stdout


def test_an_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend: expected local, ray or auto, got 'slurm'"):
        make_backend("slurm")
    done = subprocess.run([*TCGEN, "generate", "--output_file", "x.jsonl", "--level", "0", "--backend", "slurm"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--backend" in done.stderr and "slurm" in done.stderr
