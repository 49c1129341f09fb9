"""A Ray node dies mid-job: the job completes with the local backend's bytes.

Run as `python tests/ray_node_loss.py OUT_JSON` (tests/test_ray_node_loss.py does). It is a
script, not a test, so that the two-node cluster it starts (`ray.cluster_utils.Cluster`)
lives and dies in its own process, apart from any Ray instance a pytest session holds.

1. The reference: COUNT samples of a level-2 spec from the local backend (2 processes).
2. A cluster of two nodes with one CPU each: the head (the driver's node, which keeps a CPU
   so the job can finish) and a worker node, the one that dies, on which a worker of the
   job is started and warmed up (its imports done) before the job begins.
3. The same spec on `Engine(backend="ray")` (2 solver slots x SOLVER_DEPTH tasks in flight,
   so both nodes run tasks), in a thread. After REMOVE_AFTER outcomes, as soon as a worker
   of the second node is running a solve task, every process of that node gets SIGKILL (its
   raylet's children, then `cluster.remove_node(allow_graceful=False)`), as on a machine
   that drops off, while the job goes on. (`remove_node` alone kills the node's own
   processes but not its workers, which then finish their task and answer the driver
   directly: nothing would be lost.) The task that was running comes back as a lost request
   (a NodeDiedError from ray.get), which the engine sends again; a fresh node then joins, as
   an autoscaler would bring one.

The report in OUT_JSON: identical (byte-identical to the reference), first_difference,
outcomes, progress (done, failed, restarts, rejected), job_finished (false: the job hung,
and every thread's stack is on stderr), job_error, lost (requests the backend reported lost,
counted by wrapping RayBackend.collect), lost_indices, lost_why, solving_when_killed,
processes_killed, and the timings (seconds; *_at_s from the start of the Ray job).
"""
from __future__ import annotations

import faulthandler
import json
import os
import sys
import threading
import time

SEED = 5
COUNT = 200
# Early in the job: outcomes leave in index order, so one slow index holds back the finished
# ones behind it and then releases them at once; from outcome 30 such a burst once ran to the
# end of the job before the node could be killed (80 of 80 done, nothing lost).
REMOVE_AFTER = 10
WINDOW = {"min_flops": 2**16, "max_flops": 2**22}
BUSY_WAIT_S = 60.0  # how long to wait for the doomed node to show a task running
JOB_TIMEOUT_S = 150.0


def main(out_path: str) -> int:
    from generator_core import GenerationSpec
    from service.engine import Engine

    spec = GenerationSpec(level=2, seed=SEED, **WINDOW)
    report: dict = {"seed": SEED, "count": COUNT, "remove_after": REMOVE_AFTER}

    t0 = time.monotonic()
    with Engine(solver_workers=2, device="cpu") as engine:
        reference = [o.json for o in engine.run(spec, range(COUNT))]
    report["reference_s"] = round(time.monotonic() - t0, 2)

    import ray
    from ray._common.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    from service.engine import ray_backend

    # Count what the backend reports lost: every request lost to the dead node goes
    # through collect's second list, which the engine requeues.
    lost: list[tuple[int, str]] = []
    collect = ray_backend.RayBackend.collect

    def counting_collect(self, timeout):
        answers, lost_now, dead = collect(self, timeout)
        lost.extend((sent.index, why) for _, sent, why, _blame in lost_now)
        return answers, lost_now, dead

    ray_backend.RayBackend.collect = counting_collect

    # Cluster writes /tmp/ray/ray_current_cluster and its shutdown deletes it: keep whatever
    # a cluster of this machine had put there.
    address_file = get_ray_address_file(None)
    saved_address = open(address_file).read() if os.path.exists(address_file) else None

    t1 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        report["cluster_start_s"] = round(time.monotonic() - t1, 2)
        report["cluster_cpus"] = int(ray.cluster_resources().get("CPU", 0))
        report["doomed_worker_warm_s"] = _warm(doomed)

        # The job runs in a thread; this (main) thread kills the node meanwhile, so that tasks
        # are running on it when it dies (a paused `run` would let them finish), and starts
        # the replacement (a Ray node is started from the main thread: it sets signals).
        got: list[str | None] = []
        reached = threading.Event()
        runner = threading.Thread(target=_run_job, args=(spec, got, reached, report), daemon=True)
        t2 = time.monotonic()
        runner.start()
        reached.wait()
        if len(got) < COUNT:
            report.update(_kill_node(cluster, doomed, t2))
            cluster.add_node(num_cpus=1)  # the replacement joins while the job runs
            report["replacement_joined_at_s"] = round(time.monotonic() - t2, 2)
        runner.join(timeout=JOB_TIMEOUT_S)
        report["job_finished"] = not runner.is_alive()
        if runner.is_alive():  # hung: where every thread is, on stderr
            faulthandler.dump_traceback(all_threads=True)
        report["ray_run_s"] = round(time.monotonic() - t2, 2)
    finally:
        ray_backend.RayBackend.collect = collect
        ray.shutdown()
        cluster.shutdown()
        if saved_address is not None:
            os.makedirs(os.path.dirname(address_file), exist_ok=True)
            with open(address_file, "w") as f:
                f.write(saved_address)

    report["outcomes"] = len(got)
    report["identical"] = got == reference
    report["first_difference"] = next((i for i, (a, b) in enumerate(zip(got, reference)) if a != b), None)
    report["lost"] = len(lost)
    report["lost_indices"] = sorted({i for i, _ in lost})
    report["lost_why"] = sorted({why for _, why in lost})
    report["total_s"] = round(time.monotonic() - t0, 2)
    with open(out_path, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report))
    return 0


def _run_job(spec, got: list, reached, report: dict) -> None:
    """The job on the Ray backend, its outcomes appended to `got`; `reached` is set after
    REMOVE_AFTER outcomes (or when the job ends)."""
    from service.engine import Engine

    try:
        with Engine(device="cpu", backend="ray", solver_workers=report["cluster_cpus"]) as engine:
            for outcome in engine.run(spec, range(COUNT)):
                got.append(outcome.json)
                if len(got) == REMOVE_AFTER:
                    reached.set()
            p = engine.progress
            report["progress"] = {"done": p.done, "failed": p.failed, "restarts": p.restarts, "rejected": p.rejected}
    except BaseException as exc:  # reported; the test fails on it
        report["job_error"] = repr(exc)
    finally:
        reached.set()


def _warm(doomed) -> float:
    """Start a worker of this job on the doomed node, with the engine's imports done, before
    the job begins. A worker starts only when a task needs it, and importing torch and the
    generator takes seconds (more on a loaded machine): meanwhile the head node ran every
    task, and the job once ended with none ever run on the doomed node (solving_when_killed
    0 after a 30 s wait). The job's tasks then reuse this idle worker."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1)
    def warm_up() -> None:
        import generator_core.generate  # noqa: F401
        import generator_core.validate  # noqa: F401
        import service.engine.ray_backend  # noqa: F401
        import torch  # noqa: F401

    started = time.monotonic()
    ray.get(warm_up.options(scheduling_strategy=NodeAffinitySchedulingStrategy(doomed.node_id, soft=False)).remote())
    return round(time.monotonic() - started, 2)


def _kill_node(cluster, doomed, t2: float) -> dict:
    """Kill every process of the node at once, as a machine that drops off would lose them:
    first its raylet's children (its Ray workers and agents; left alone, a worker finishes
    the task it runs and answers its owner directly, raylet or not), then the node's own
    processes. The kill waits (at most BUSY_WAIT_S) for a worker to be running a solve task
    (its process title is then ray::solve_task, ray::IDLE when idle)."""
    import psutil
    from ray._private import ray_constants

    def title(process) -> str:
        try:
            return " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return ""

    raylet = psutil.Process(doomed.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        children = raylet.children(recursive=True)
        solving = [c for c in children if title(c).startswith("ray::solve_task")]
        if solving or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    for c in children:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass
    killed_at = time.monotonic()
    cluster.remove_node(doomed, allow_graceful=False)
    return {"removed_at_s": round(killed_at - t2, 2), "processes_killed": len(children),
            "solving_when_killed": len(solving), "removal_took_s": round(time.monotonic() - killed_at, 2)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
