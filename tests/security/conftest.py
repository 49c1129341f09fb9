"""The security tests' server: a real `tcgen serve` on 127.0.0.1 with an API key and small
caps, started without TCGEN_HOST; one for the whole directory (session scope), since no
test here changes it beyond the jobs `settled` cleans up."""
from __future__ import annotations

import time

import httpx
import pytest

from helpers import API_KEY, served

CAPS = {"TCGEN_MAX_SYNC_COUNT": 3, "TCGEN_MAX_JOB_COUNT": 40, "TCGEN_MAX_FLOPS": 2**30,
        "TCGEN_MAX_TOTAL_BYTES": 2**24, "TCGEN_MAX_BODY_BYTES": 2048, "TCGEN_MAX_QUEUED_JOBS": 2,
        "TCGEN_MAX_PENDING_SYNC": 1}
FINISHED = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """API key and small caps; started without TCGEN_HOST."""
    yield from served(tmp_path_factory, "sec", workers=1,
                      env={"TCGEN_API_KEY": API_KEY, **{k: str(v) for k, v in CAPS.items()}})


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=120) as c:
        yield c


@pytest.fixture
def settled(client):
    """Cancels (and waits out) every job a test leaves running, so queue caps start clean."""
    yield client
    for job in client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]:
        if job["state"] not in FINISHED:
            client.post(f"/v1/jobs/{job['id']}/cancel")
    for job in client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]:
        deadline = time.monotonic() + 120
        while job["state"] not in FINISHED and time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job['id']}", params={"wait": 5}).json()

