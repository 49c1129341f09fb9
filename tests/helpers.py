"""Shared helpers: the small FLOPs window the suite uses and running a rendered program."""
from __future__ import annotations

import shutil
import sys
import time
from functools import lru_cache
from typing import Iterator

import httpx
import torch

from generator_core import OPERATORS, GenerationSpec, Sample, generate
from local_server import LocalServer

LO, HI = 2**16, 2**22  # small window: every test stays fast on two CPU cores
SMALL = {"min_flops": LO, "max_flops": HI}
# The job the service tests submit; conftest's `job_reference` is what `tcgen generate` writes for it.
JOB_SPEC = {"level": 2, "count": 48, "seed": 11, **SMALL}
API_KEY = "tcgen-test-key-7f3a"  # the key of tests/security's server
TCGEN = [shutil.which("tcgen") or sys.executable, *([] if shutil.which("tcgen") else ["-m", "service.cli"])]


def spec(**fields) -> GenerationSpec:
    """A GenerationSpec in the small window unless the test says otherwise."""
    return GenerationSpec(**{"min_flops": LO, "max_flops": HI, **fields})


@lru_cache(maxsize=None)
def level0(name: str, dtype: str = "float32") -> Sample:
    """The validated level-0 sample of one operator (cached: several tests read it)."""
    return generate(spec(op_sequence=[name], dtype=dtype), 0)


def ops_of(*families: str) -> list[str]:
    """Registry names of the given families (tests select operators by data, not by name)."""
    return [name for name, op in OPERATORS.items() if op.family in families]


def run_program(code: str, fmt: str = "fused_operator", seed: int = 0) -> list[torch.Tensor]:
    """Execute rendered code the way a user would and return its outputs as a list."""
    namespace: dict = {}
    exec(compile(code, "<test-sample>", "exec"), namespace)
    torch.manual_seed(seed)
    with torch.no_grad():
        inputs = namespace["get_inputs"]()
        if fmt == "kernelbench":
            result = namespace["Model"](*namespace["get_init_inputs"]())(*inputs)
        else:
            result = namespace["fused_operator"](*inputs)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def tensor_shapes(graph: dict) -> dict[str, list[int]]:
    """Shape of every named tensor of a sample's graph (inputs and node outputs)."""
    shapes = {t["name"]: t["shape"] for t in graph["inputs"]}
    shapes.update({n["output"]: n["shape"] for n in graph["nodes"]})
    return shapes


def wait_finished(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    """Long-poll a job until it is finished; its status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/v1/jobs/{job_id}", params={"wait": 5})
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
    raise TimeoutError(job_id)


def messages(r: httpx.Response) -> str:
    """A 4xx answer's messages: its detail string, or each error's message joined by |."""
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(e["message"] for e in detail)


def ndjson_results(client: httpx.Client, job_id: str) -> bytes:
    """A job's results as NDJSON: the bytes `tcgen generate` writes."""
    r = client.get(f"/v1/jobs/{job_id}/samples", headers={"Accept": "application/x-ndjson"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    return r.content


def served(tmp_path_factory, name: str, **server_args) -> Iterator[LocalServer]:
    """A module's server (a module-scoped fixture yields from this): a real `tcgen serve` on
    a fresh SQLite file, which must stop cleanly (exit 0) when the module is done."""
    s = LocalServer(tmp_path_factory.mktemp(name) / "jobs.db", **server_args).start()
    yield s
    assert s.stop() == 0, s.log()
