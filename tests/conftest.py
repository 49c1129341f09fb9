"""Fixtures shared by the service and fault tests."""
from __future__ import annotations

import subprocess

import pytest

from helpers import JOB_SPEC, TCGEN


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
