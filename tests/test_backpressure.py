"""Backpressure and expiry over real HTTP: a real `tcgen serve` with queues of one, a burst
of concurrent requests, and a job TTL of seconds.

Beyond TCGEN_MAX_PENDING_SYNC waiting sync requests, or TCGEN_MAX_QUEUED_JOBS jobs queued
or running, the service answers 429 with a Retry-After; what it accepted must still come
out right, and once the burst is over it serves as before. Finished jobs are deleted
TCGEN_JOB_TTL_SECONDS after they finish, by the dispatcher's pass every
TCGEN_EXPIRY_INTERVAL_SECONDS.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from helpers import SMALL, served, wait_finished
from local_server import LocalServer

# Level-0 programs of zero-FLOP operators (Cat, Transpose, Triu, ...) are not bounded by the
# FLOPs window; a cap keeps every sample here small and quick on two shared cores.
CAP = {"TCGEN_MAX_TOTAL_BYTES": str(64 * 2**20)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory, "bp", workers=1,
                      env={"TCGEN_MAX_PENDING_SYNC": "1", "TCGEN_MAX_QUEUED_JOBS": "1", **CAP})


def burst(url: str, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    """Send every (method, path, kwargs) at once, one thread and connection each (opened
    beforehand, so that the requests arrive together)."""
    gate = threading.Barrier(len(requests))

    def send(request):
        method, path, kwargs = request
        with httpx.Client(base_url=url, timeout=120) as http:
            http.get("/healthz").raise_for_status()
            gate.wait()
            return http.request(method, path, **kwargs)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def assert_429s_say_when(responses: list[httpx.Response]) -> None:
    for r in responses:
        assert r.status_code < 500, (r.status_code, r.text)
        if r.status_code == 429:
            assert re.fullmatch(r"[1-9][0-9]*", r.headers.get("retry-after", "")), dict(r.headers)


def test_sync_queue_overflow_gets_429_and_accepted_requests_are_right(server):
    """12 sync requests at once against a queue of one (one runs, one waits): the rest get
    429 + Retry-After, none 5xx; each accepted one answers its own seed and indices, the
    same bytes as the same request sent alone afterwards, when every request succeeds."""
    posts = [("POST", "/v1/samples", {"json": {"level": 0, "count": 8, "seed": 100 + i, "start_index": 3 * i,
                                               **SMALL}}) for i in range(8)]
    gets = [("GET", "/v1/samples", {"params": {"level": 0, "seed": 200 + i, "index": i, **SMALL}}) for i in range(4)]
    responses = burst(server.url, posts + gets)
    statuses = [r.status_code for r in responses]
    assert_429s_say_when(responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 1 and statuses.count(200) >= 1, statuses

    with httpx.Client(base_url=server.url, timeout=120) as http:
        for (method, path, kwargs), r in zip(posts + gets, responses):
            again = http.request(method, path, **kwargs)  # sent alone: served normally
            assert again.status_code == 200, again.text
            if r.status_code != 200:
                continue
            body = r.json()
            sent = kwargs.get("json") or kwargs["params"]
            first = sent.get("start_index", sent.get("index"))
            assert body["seed"] == sent["seed"]
            assert [s["index"] for s in body["samples"]] + [f["index"] for f in body["failed"]] == \
                list(range(first, first + sent.get("count", 1)))
            assert r.content == again.content  # the accepted answer is the sample, not a neighbour's


def test_job_queue_overflow_gets_429_and_the_accepted_job_completes(server):
    """A job queue of one holding a job, then 6 submissions at once: 429 + Retry-After,
    none 5xx; every accepted job finishes with all its samples; once they are done a new
    job is accepted again."""
    spec = {"level": 1, "count": 40, **SMALL}
    first = httpx.post(server.url + "/v1/jobs", json={**spec, "seed": 300}, timeout=60)
    assert first.status_code == 202, first.text
    responses = [first, *burst(server.url, [("POST", "/v1/jobs", {"json": {**spec, "seed": 301 + i}})
                                            for i in range(6)])]
    statuses = [r.status_code for r in responses]
    assert_429s_say_when(responses)
    assert set(statuses) <= {202, 429}, statuses
    assert statuses.count(429) >= 1, statuses

    with httpx.Client(base_url=server.url, timeout=120) as http:
        for r in responses:
            if r.status_code != 202:
                continue
            job = wait_finished(http, r.json()["id"])
            assert job["state"] == "succeeded", job
            assert job["progress"]["completed"] + job["progress"]["failed"] == spec["count"]
            page = http.get(f"/v1/jobs/{job['id']}/samples", params={"limit": 1000}).json()
            assert [s["index"] for s in page["samples"]] + [f["index"] for f in page["failed"]] \
                == list(range(spec["count"]))
            assert len(page["samples"]) == job["progress"]["completed"]
            # The samples are the spec's: the first ones equal what a sync request of it answers.
            sync = http.post("/v1/samples", json={**spec, "seed": job["spec"]["seed"], "count": 8}).json()
            assert page["samples"][:8] == sync["samples"][:8]

        after = http.post("/v1/jobs", json={**spec, "count": 3, "seed": 1})  # the queue is free again
        assert after.status_code == 202, after.text
        assert wait_finished(http, after.json()["id"])["state"] == "succeeded"


def test_at_most_max_queued_jobs_are_accepted_at_once(server):
    """A burst of submissions against a job queue of one accepts one job, not several that
    all passed the 'is the queue full?' check before any of them was queued."""
    spec = {"level": 2, "count": 30, **SMALL}
    responses = burst(server.url, [("POST", "/v1/jobs", {"json": {**spec, "seed": 400 + i}}) for i in range(12)])
    assert_429s_say_when(responses)
    accepted = [r.json()["id"] for r in responses if r.status_code == 202]
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for job_id in accepted:  # leave the queue empty for whatever runs next
            http.post(f"/v1/jobs/{job_id}/cancel")
            wait_finished(http, job_id)
    assert len(accepted) == 1, f"{len(accepted)} jobs accepted with TCGEN_MAX_QUEUED_JOBS=1"


def test_finished_jobs_expire_after_their_ttl(tmp_path):
    """TCGEN_JOB_TTL_SECONDS=2, expiry pass every second: a finished job is there right
    after it finishes and gone (404, results too) no earlier than 2 s after finished_at."""
    ttl = 2.0
    s = LocalServer(tmp_path / "ttl.db", workers=1, env={"TCGEN_JOB_TTL_SECONDS": str(ttl),
                                                          "TCGEN_EXPIRY_INTERVAL_SECONDS": "1", **CAP}).start()
    try:
        with httpx.Client(base_url=s.url, timeout=60) as http:
            job = http.post("/v1/jobs", json={"level": 0, "count": 3, "seed": 5, **SMALL}).json()
            job = wait_finished(http, job["id"])
            assert job["state"] == "succeeded"
            assert http.get(f"/v1/jobs/{job['id']}/samples").status_code == 200
            deadline = time.monotonic() + ttl + 30
            while (r := http.get(f"/v1/jobs/{job['id']}")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            gone_at = time.time()
            assert r.status_code == 404, f"job still there {gone_at - job['finished_at']:.1f} s after it finished"
            assert gone_at - job["finished_at"] >= ttl
            assert http.get(f"/v1/jobs/{job['id']}/samples").status_code == 404
            assert job["id"] not in [j["id"] for j in http.get("/v1/jobs").json()["jobs"]]
    finally:
        assert s.stop() == 0, s.log()
