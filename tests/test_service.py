"""The REST service over real HTTP: a real uvicorn on 127.0.0.1 with a temporary SQLite
file, real engine workers, and `tcgen generate` as the reference for job results."""
from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml

from generator_core import OPERATORS
from helpers import JOB_SPEC, SMALL, ndjson_results, served, wait_finished
from local_server import LocalServer
from service.api.openapi import SCHEMA_PATH, render_schema



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory, "svc")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def test_health_ready_metrics_and_ops(client):
    """Health, readiness, Prometheus text with the service's metrics, and the registry's catalogue."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    ops = client.get("/v1/ops").json()
    assert [o["name"] for o in ops] == list(OPERATORS) and {"name", "category", "arity"} <= set(ops[0])
    client.post("/v1/samples", json={"level": 0, "seed": 1, **SMALL})
    text = client.get("/metrics").text
    for name in ("tcgen_http_requests_total", "tcgen_samples_generated_total", "tcgen_solve_seconds_bucket",
                 "tcgen_validation_seconds_bucket", "tcgen_queue_depth", "tcgen_jobs", "tcgen_attempts_rejected"):
        assert name in text, name


def test_sync_samples_json_ndjson_and_py(client):
    """POST as JSON and as an NDJSON stream give the same samples, equal to the in-process
    library's; GET with format=py answers the program as text/x-python."""
    from generator_core import GenerationSpec, generate

    body = {"level": 2, "count": 3, "seed": 5, "start_index": 4, **SMALL}
    batch = client.post("/v1/samples", json=body).json()
    assert batch["seed"] == 5 and [s["index"] for s in batch["samples"]] == [4, 5, 6]
    lines = client.post("/v1/samples", json=body, headers={"Accept": "application/x-ndjson"}).text.splitlines()
    assert [json.loads(line) for line in lines] == batch["samples"]
    local = generate(GenerationSpec(**{**body, "count": 1}), 5)
    assert batch["samples"][1]["pytorch"] == local.pytorch and batch["samples"][1]["id"] == local.id
    r = client.get("/v1/samples", params={"level": 2, "seed": 5, "index": 5, "format": "py"})
    assert r.headers["content-type"].startswith("text/x-python") and r.text == local.pytorch
    drawn = client.post("/v1/samples", json={"level": 0, **SMALL}).json()
    assert isinstance(drawn["seed"], int) and drawn["samples"][0]["seed"] == drawn["seed"]


def test_job_results_equal_tcgen_generate(client, job_reference):
    """A job's NDJSON results are byte-identical to `tcgen generate` with the same spec and seed;
    the paged view holds the same samples; status carries Location and progress."""
    r = client.post("/v1/jobs", json=JOB_SPEC)
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = wait_finished(client, r.json()["id"])
    count = JOB_SPEC["count"]
    assert job["state"] == "succeeded" and job["progress"] == {"total": count, "completed": count, "failed": 0}
    assert job["started_at"] <= job["finished_at"]
    assert ndjson_results(client, job["id"]) == job_reference
    page = client.get(f"/v1/jobs/{job['id']}/samples", params={"offset": count - 8, "limit": 50}).json()
    assert [s["index"] for s in page["samples"]] == list(range(count - 8, count))  # the last page, short
    assert page["samples"] == [json.loads(x) for x in job_reference.splitlines()[count - 8:]]
    listed = client.get("/v1/jobs", params={"state": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed["jobs"]]


def test_idempotency_key(client):
    """Same key and body: the same job; same key, another body: 422 naming the header."""
    body = {"level": 0, "count": 2, "seed": 9, **SMALL}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = client.post("/v1/jobs", json={**body, "seed": 10}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and "Idempotency-Key" in other.text


def test_cancel_keeps_partial_results_then_delete(client):
    """Cancelling a running job keeps what it stored; delete then forgets it (404 after)."""
    job = client.post("/v1/jobs", json={"level": 2, "count": 5000, "seed": 2, **SMALL}).json()
    deadline = time.monotonic() + 60
    while client.get(f"/v1/jobs/{job['id']}").json()["progress"]["completed"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 409
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] in ("cancelling", "cancelled")
    done = wait_finished(client, job["id"])
    assert done["state"] == "cancelled" and 10 <= done["progress"]["completed"] < 5000
    kept = ndjson_results(client, job["id"]).splitlines()
    assert len(kept) == done["progress"]["completed"]
    assert [json.loads(x)["index"] for x in kept] == list(range(len(kept)))
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


BAD_BODIES = [
    ({"level": "two"}, "level"), ({"level": 7}, "level"), ({"level": -1}, "level"), ({}, "level"),
    ({"level": 1, "count": 0}, "count"), ({"level": 1, "count": 17, **SMALL}, "count"), ({"level": 1, "count": "x"}, "count"),
    ({"level": 1, "count": 10**12}, "count"), ({"level": 1, "seed": -1}, "seed"), ({"level": 1, "seed": 2**64}, "seed"),
    ({"level": 1, "seed": 1.5}, "seed"), ({"level": 1, "min_flops": 10, "max_flops": 5}, "min_flops"),
    ({"level": 1, "max_flops": 2**41}, "max_flops"), ({"level": 1, "min_flops": -5}, "min_flops"),
    ({"level": 1, "max_flops": 10**30}, "max_flops"), ({"level": 1, "ops": ["Nope"]}, "Nope"),
    ({"level": 1, "ops": []}, "ops"), ({"level": 1, "exclude_ops": ["Rm -rf"]}, "exclude_ops"),
    ({"level": 1, "ops": "Add"}, "ops"), ({"op_sequence": ["Add", "__import__('os')"]}, "op_sequence"),
    ({"op_sequence": []}, "op_sequence"), ({"op_sequence": ["Add"] * 21}, "op_sequence"),
    ({"num_ops": 21}, "num_ops"), ({"num_ops": 3, "op_sequence": ["Add"]}, "num_ops"),
    ({"level": 1, "dtype": "float64"}, "dtype"), ({"level": 1, "topology": "ring"}, "topology"),
    ({"level": 1, "format": "exec"}, "format"), ({"level": 1, "max_tensor_numel": 2**31}, "max_tensor_numel"),
    ({"level": 1, "max_total_bytes": 2**50}, "max_total_bytes"), ({"level": 1, "validate": "maybe"}, "validate"),
    ({"level": 1, "surprise": True}, "surprise"), ({"level": 0, "max_flops": 10}, "max_flops"),
    ({"level": 1, "start_index": -3}, "start_index"), ({"level": 1, "exclude_ops": list(__import__("generator_core").OPERATORS)}, "ops"),
]


@pytest.mark.parametrize("body, named", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_spec_gets_422_naming_the_problem(client, body, named):
    """Malformed or unsatisfiable specs: 422 whose message names the field (sync and jobs alike)."""
    for path in ("/v1/samples", "/v1/jobs"):
        r = client.post(path, json=body)
        if named == "count" and path == "/v1/jobs" and body.get("count") == 17:
            continue  # 17 is over the sync cap only
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert named in r.text, r.text


BAD_REQUESTS = [
    ("post", "/v1/samples", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/v1/samples", {"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/v1/samples", {"content": b"x" * 70_000, "headers": {"content-type": "application/json"}}, 413),
    ("post", "/v1/jobs", {"content": b" " * 200_000, "headers": {"content-type": "application/json"}}, 413),
    ("get", "/v1/samples?level=9", {}, 422), ("get", "/v1/samples?level=1&index=-1", {}, 422),
    ("get", "/v1/samples?level=1&format=exe", {}, 422), ("get", "/v1/samples?level=1&seed=abc", {}, 422),
    ("get", "/v1/samples?level=1&min_flops=9&max_flops=3", {}, 422), ("get", "/v1/samples", {}, 422),
    ("get", "/v1/jobs/does-not-exist", {}, 404), ("get", "/v1/jobs/" + "a" * 500, {}, 404),
    ("get", "/v1/jobs/nope/samples", {}, 404), ("post", "/v1/jobs/nope/cancel", {}, 404),
    ("delete", "/v1/jobs/nope", {}, 404), ("get", "/v1/jobs?limit=0", {}, 422), ("get", "/v1/jobs?offset=-1", {}, 422),
    ("get", "/v1/jobs?state=exploded", {}, 422), ("get", "/v1/jobs/x?wait=3600", {}, 404),
    ("get", "/v1/nothing-here", {}, 404), ("put", "/v1/samples", {"json": {"level": 1}}, 405),
    ("post", "/v1/jobs", {"json": {"level": 1, "count": 200_001}}, 422),
]


@pytest.mark.parametrize("method, path, kwargs, status", BAD_REQUESTS, ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_abusive_requests_get_the_right_4xx(client, method, path, kwargs, status):
    """Broken JSON, oversized bodies, bad queries and unknown jobs: the right 4xx with a message."""
    r = client.request(method, path, **kwargs)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json().get("detail"), r.text


def test_openapi_yaml_is_the_apps_schema():
    """openapi.yaml at the root equals the app's schema (regenerate: python -m service.api.openapi)."""
    assert yaml.safe_load(SCHEMA_PATH.read_text()) == yaml.safe_load(render_schema())


@pytest.mark.parametrize("crash", ["kill9", "sigterm"])
def test_server_stopped_mid_job_resumes_to_the_same_results(tmp_path, job_reference, crash):
    """kill -9 (or SIGTERM) of the server mid-job, then a restart on the same db: the job
    completes, its results equal an uninterrupted run's, nothing lost or duplicated."""
    db = tmp_path / "crash.db"
    s = LocalServer(db).start()
    with httpx.Client(base_url=s.url, timeout=60) as c:
        job_id = c.post("/v1/jobs", json=JOB_SPEC).json()["id"]
        while c.get(f"/v1/jobs/{job_id}").json()["progress"]["completed"] < 20:
            time.sleep(0.05)
    if crash == "kill9":
        s.kill9()
    else:
        assert s.stop() == 0, s.log()
    s2 = LocalServer(db).start()
    try:
        with httpx.Client(base_url=s2.url, timeout=60) as c:
            job = wait_finished(c, job_id)
            assert job["state"] == "succeeded" and job["progress"]["completed"] == JOB_SPEC["count"]
            assert ndjson_results(c, job_id) == job_reference
    finally:
        s2.stop()


def test_python_client_round_trip(server, job_reference):
    """service.client: submit with an idempotency key, wait, and read the job's lines byte for
    byte as `tcgen generate` writes them; a bad spec raises TcgenError naming the field."""
    from service.client import TcgenClient, TcgenError

    with TcgenClient(server.url) as tc:
        assert [e["name"] for e in tc.ops()] == list(OPERATORS)
        job = tc.submit_job(JOB_SPEC, idempotency_key="client-1")
        assert tc.submit_job(JOB_SPEC, idempotency_key="client-1")["id"] == job["id"]
        assert tc.wait(job["id"], timeout=300)["state"] == "succeeded"
        assert "".join(line + "\n" for line in tc.iter_result_lines(job["id"])).encode() == job_reference
        assert [s["index"] for s in tc.samples({"level": 1, "count": 2, "seed": 1, **SMALL})] == [0, 1]
        with pytest.raises(TcgenError) as err:
            tc.samples({"level": 1, "min_flops": 9, "max_flops": 3})
        assert err.value.status == 422 and "min_flops" in str(err.value)
