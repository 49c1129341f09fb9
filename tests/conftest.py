"""Fixtures shared by the service and fault tests."""
from __future__ import annotations

import subprocess

import pytest

from helpers import JOB_SPEC, TCGEN


# The slowest test files first (by their summed --durations in a full run), so that the two
# xdist workers of scripts/test.sh (--dist loadfile, which hands out files in collection order)
# finish together instead of one running a heavy file alone at the end. Order only: a file
# missing here runs after these, in its usual place.
SLOW_FILES_FIRST = ["test_ray_backend.py", "test_faults.py", "test_engine.py", "test_records.py",
                    "test_service.py", "test_grade.py", "test_cli_edges.py", "test_ops.py",
                    "test_ray_node_loss.py", "test_grading.py", "test_backpressure.py", "test_cli.py",
                    "test_server_edges.py", "test_properties.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.fixture(scope="session")
def job_reference(tmp_path_factory) -> bytes:
    """What `tcgen generate` writes for JOB_SPEC: the bytes a job must return, fault or not."""
    path = tmp_path_factory.mktemp("cli") / "ref.jsonl"
    done = subprocess.run([*TCGEN, "generate", "--output_file", str(path), "--level", str(JOB_SPEC["level"]),
                           "--target_count", str(JOB_SPEC["count"]), "--seed", str(JOB_SPEC["seed"]),
                           "--min_flops", str(JOB_SPEC["min_flops"]), "--max_flops", str(JOB_SPEC["max_flops"]),
                           "--device", "cpu", "--num_workers", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return path.read_bytes()
