"""Caps bound what one request may ask for: counts, FLOPs, bytes, bodies, pages, indices, the
solver's time per index, the metrics' label set (the queue caps and the expiry of finished
jobs are in test_backpressure.py).

Against the directory's keyed server (conftest.py), whose caps are conftest.CAPS.
"""
from __future__ import annotations

import json

import httpx
import pytest

import generator_core.solve as solve_module
from generator_core import GenerationError, GenerationSpec, generate
from generator_core.generate import MAX_ATTEMPTS
from helpers import HI, LO, messages, wait_finished

SMALL = {"min_flops": LO, "max_flops": HI, "validate": False, "seed": 1}


def test_sync_count_cap(client):
    """POST /v1/samples: count 3 (TCGEN_MAX_SYNC_COUNT) gives 3 samples; 4 is a 422 naming
    count and the setting. GET /v1/samples answers exactly one sample whatever the query."""
    r = client.post("/v1/samples", json={"level": 0, "count": 3, **SMALL})
    assert r.status_code == 200 and len(r.json()["samples"]) == 3, r.text
    r = client.post("/v1/samples", json={"level": 0, "count": 4, **SMALL})
    assert r.status_code == 422 and "body.count" in messages(r) and "TCGEN_MAX_SYNC_COUNT" in messages(r)
    r = client.get("/v1/samples", params={"level": 0, "count": 100, "max_flops": HI})
    assert r.status_code == 200 and len(r.json()["samples"]) == 1


def test_job_count_cap(settled):
    """POST /v1/jobs: count 40 (TCGEN_MAX_JOB_COUNT) is accepted; 41 is a 422 naming count."""
    r = settled.post("/v1/jobs", json={"level": 0, "count": 40, **SMALL})
    assert r.status_code == 202, r.text
    settled.post(f"/v1/jobs/{r.json()['id']}/cancel")
    r = settled.post("/v1/jobs", json={"level": 0, "count": 41, **SMALL})
    assert r.status_code == 422 and "body.count" in messages(r) and "TCGEN_MAX_JOB_COUNT" in messages(r)


@pytest.mark.parametrize("field, cap", [("max_flops", 2**30), ("max_total_bytes", 2**24)])
def test_flops_and_bytes_caps(settled, field, cap):
    """max_flops (TCGEN_MAX_FLOPS) and max_total_bytes (TCGEN_MAX_TOTAL_BYTES): at the cap a
    sample is made; one above is a 422 naming the field, sync, job and GET alike."""
    at = {"level": 0, **SMALL, field: cap}
    r = settled.post("/v1/samples", json=at)
    assert r.status_code == 200 and len(r.json()["samples"]) == 1, r.text
    assert r.json()["samples"][0]["max_flops" if field == "max_flops" else "bytes"] <= cap
    for path in ("/v1/samples", "/v1/jobs"):
        r = settled.post(path, json={**at, field: cap + 1})
        assert r.status_code == 422 and f"body.{field}" in messages(r), (path, r.text)
    if field == "max_flops":
        r = settled.get("/v1/samples", params={"level": 0, "max_flops": cap + 1})
        assert r.status_code == 422 and "max_flops" in messages(r), r.text


def test_unset_max_total_bytes_gets_the_cap_not_the_spec_default(settled):
    """A request that leaves max_total_bytes unset runs under the service's cap (2**24 here),
    not GenerationSpec's 16 GiB default: a zero-FLOP operator (Tril), which the FLOPs window
    does not bound, stays under it too."""
    r = settled.post("/v1/jobs", json={"op_sequence": ["Tril"], "count": 3, **SMALL})
    assert r.status_code == 202 and r.json()["spec"]["max_total_bytes"] == 2**24
    job = wait_finished(settled, r.json()["id"])
    samples = settled.get(f"/v1/jobs/{job['id']}/samples").json()["samples"]
    assert samples and all(s["bytes"] <= 2**24 for s in samples)


def test_indices_stay_within_63_bits(settled):
    """start_index + count may not pass the last index 2**63 - 1 (a 422 naming start_index):
    a job past it used to kill the service's dispatcher thread (SQLite cannot store the
    index), leaving every later request waiting forever. The last index itself works."""
    r = settled.post("/v1/jobs", json={"level": 0, "count": 2, "start_index": 2**63 - 1, **SMALL})
    assert r.status_code == 422 and "body.start_index" in messages(r), r.text
    r = settled.post("/v1/jobs", json={"level": 0, "count": 1, "start_index": 2**63 - 1, **SMALL})
    assert r.status_code == 202, r.text
    assert wait_finished(settled, r.json()["id"])["state"] == "succeeded"
    assert settled.post("/v1/samples", json={"level": 0, **SMALL}).status_code == 200  # still serving


def test_body_size_cap(server, client):
    """A body of exactly TCGEN_MAX_BODY_BYTES is read; one byte more is a 413 naming the
    setting. Without the key the same request is a 401: the key gate answers before any of
    the body is read."""
    body = json.dumps({"level": 0, **SMALL}).encode()
    at = body + b" " * (2048 - len(body))
    r = client.post("/v1/samples", content=at, headers={"content-type": "application/json"})
    assert len(at) == 2048 and r.status_code == 200, r.text
    r = client.post("/v1/samples", content=at + b" ", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "TCGEN_MAX_BODY_BYTES" in r.json()["detail"], r.text
    with httpx.Client(base_url=server.url) as keyless:
        r = keyless.post("/v1/samples", content=at + b" ", headers={"content-type": "application/json"})
        assert r.status_code == 401 and "API key" in r.json()["detail"], r.text


def test_chunked_body_over_the_cap_gets_413(client):
    """A streamed body (no Content-Length) is cut off at the cap with a 413 too."""

    def chunks():
        for _ in range(10):
            yield b" " * 500

    r = client.post("/v1/samples", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "TCGEN_MAX_BODY_BYTES" in r.json()["detail"], (r.status_code, r.text)


def test_chunked_body_under_the_cap_is_read(client):
    body = json.dumps({"level": 0, **SMALL}).encode()
    r = client.post("/v1/samples", content=iter([body[:10], body[10:]]), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_job_page_limits(settled):
    """Page sizes, offsets, the long-poll wait and the Idempotency-Key: at the limit
    accepted, past it a 422 naming the parameter; a job id past 64 characters is a 404."""
    job_id = settled.post("/v1/jobs", json={"level": 0, "count": 2, **SMALL}).json()["id"]
    wait_finished(settled, job_id)
    cases = [("/v1/jobs", "limit", 500, 501), ("/v1/jobs", "offset", 2**31, 2**31 + 1),
             (f"/v1/jobs/{job_id}/samples", "limit", 1000, 1001),
             (f"/v1/jobs/{job_id}/samples", "offset", 2**31, 2**31 + 1), (f"/v1/jobs/{job_id}", "wait", 60, 60.5)]
    for path, param, inside, outside in cases:
        assert settled.get(path, params={param: inside}).status_code == 200, (path, param)
        r = settled.get(path, params={param: outside})
        assert r.status_code == 422 and f"query.{param}" in messages(r), (path, param, r.text)
    assert len(settled.get(f"/v1/jobs/{job_id}/samples", params={"limit": 1}).json()["samples"]) == 1
    r = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": "k" * 200})
    assert r.status_code == 202, r.text
    r = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": "k" * 201})
    assert r.status_code == 422 and "idempotency-key" in messages(r).lower(), r.text
    assert settled.get("/v1/jobs/" + "a" * 65).status_code == 404


def test_one_index_has_a_bounded_solver_budget(monkeypatch):
    """Time: an index whose every solve fails (the worst case) gives up with GenerationError
    after MAX_ATTEMPTS attempts, each a bounded number of single-worker CP-SAT solves, each
    with a deterministic budget and a wall-clock limit."""
    solves = []

    class NeverSolves(solve_module.cp_model.CpSolver):
        def solve(self, model, *args, **kwargs):
            p = self.parameters
            solves.append((p.max_deterministic_time, p.max_time_in_seconds, p.num_workers))
            return solve_module.cp_model.INFEASIBLE

    monkeypatch.setattr(solve_module.cp_model, "CpSolver", NeverSolves)
    spec = GenerationSpec(level=4, min_flops=2**40, max_flops=2**40)  # the largest floor to halve from
    with pytest.raises(GenerationError) as err:
        generate(spec, 0)
    assert str(err.value).count("no solution") == MAX_ATTEMPTS <= 24
    per_attempt = len(solve_module.STAGES) + 41  # the stages, then halving 2**40 down to 0
    assert 0 < len(solves) <= MAX_ATTEMPTS * per_attempt
    assert all(0 < det <= 0.1 and 0 < wall <= 60 and workers == 1 for det, wall, workers in solves), set(solves)


def test_made_up_methods_do_not_grow_the_metrics(client):
    for i in range(20):
        client.request(f"X{i}", "/healthz")
    assert 'method="X1"' not in client.get("/metrics").text
