"""Schemathesis fuzzing of the real service (a `tcgen serve` subprocess, as in
test_service.py) against its own OpenAPI schema.

The schema is openapi.yaml, which test_service.py checks equals the app's schema, and which
test_openapi_json_is_openapi_yaml here checks equals what the server under test serves. It
is loaded at import (schemathesis' pytest fixture loader does not work with pytest 9), and
each call goes to the live server's URL.

Checks: all of schemathesis 4.32's, as `--checks all` runs them, on every response:
not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance, response_headers_conformance, negative_data_rejection,
positive_data_acceptance (off for the spec-taking operations, see below),
missing_required_header, unsupported_method, allow_header_conformance, ignored_auth,
object_level_authorization, use_after_free and ensure_resource_availability (the default
set), max_response_time (the one `all` adds; its 10 s, the long-poll's 60 s more on
GET /v1/jobs/{job_id}); and location_names_the_job below. test_every_check_is_on holds it
to that when schemathesis adds one.

- test_every_operation: each operation with >= EXAMPLES (40) generated examples (positive and
  negative), plus schemathesis' explicit and coverage cases.
- test_stateful: scenarios that POST /v1/jobs and follow its links (the job's id, the one
  Location names) to GET /v1/jobs/{job_id}, its /samples, /cancel and DELETE.
"""
from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.core.failures import FailureGroup

from helpers import served
from service.api.openapi import SCHEMA_PATH

KEY = "fuzz-key"
# Caps that keep every accepted request cheap (a few ms of solving and validation each);
# larger asks get 422, which the schema documents. With an API key set, ignored_auth can
# check that a missing or wrong key gets 401.
ENV = {"TCGEN_API_KEY": KEY, "TCGEN_MAX_SYNC_COUNT": "2", "TCGEN_MAX_JOB_COUNT": "3",
       "TCGEN_MAX_FLOPS": str(2**22)}
# Per operation: enough for every check to meet each operation; the deep run is bench.fuzz
# (300 per operation, bench/results/fuzz-300-*.json).
EXAMPLES = 40
# Stateful scenarios: with 40, a run could miss a link (none reached /samples of a live job).
SCENARIOS = 100
RESPONSE_S = 10.0  # schemathesis' own limit for max_response_time, which `--checks all` turns on
SPEC_OPERATIONS = ["POST /v1/samples", "GET /v1/samples", "POST /v1/jobs"]
CONFIG = {
    "auth": {"openapi": {"APIKeyHeader": {"api_key": KEY}}},
    "checks": {"enabled": True, "max_response_time": RESPONSE_S},
    "operations": [
        # A request spec has constraints JSON Schema cannot state, so a schema-valid spec may get
        # a (documented) 422 and "schema-valid means accepted" does not hold. Measured with the
        # schema saying what it can (level or op_sequence, op_sequence's length, a non-empty ops):
        # of 100 schema-valid examples each, 61 (POST /v1/samples), 66 (POST /v1/jobs) and 30
        # (GET /v1/samples) got 422: integers spelt 2.0 (JSON Schema counts them as integers, the
        # strict body does not: about 2 in 3 of the body rejections), operator names (the
        # catalogue is GET /v1/ops), the server's caps (TCGEN_MAX_*), min_flops <= max_flops, and
        # an Idempotency-Key already used for another body.
        {"include-name": SPEC_OPERATIONS, "checks": {"positive_data_acceptance": {"enabled": False}}},
        # ?wait= long-polls up to 60 s by design (schemathesis' client gives up after 10 s).
        {"include-name": "GET /v1/jobs/{job_id}", "request-timeout": RESPONSE_S + 60,
         "checks": {"max_response_time": RESPONSE_S + 60}},
    ],
}
# The stateful phase is about what happens to a job once made: its POST /v1/jobs pins the
# spec fields a random value would get 422 for (test_every_operation fuzzes those).
JOB = {"level": 1, "count": 2, "min_flops": 2**16, "max_flops": 2**22, "ops": None, "exclude_ops": [],
       "op_sequence": None}
STATEFUL_CONFIG = {**CONFIG, "operations": [*CONFIG["operations"], {
    "include-name": "POST /v1/jobs", "parameters": {f"body.{k}": v for k, v in JOB.items()}}]}
schema = schemathesis.openapi.from_path(SCHEMA_PATH, config=schemathesis.Config.from_dict(CONFIG))


@schemathesis.check
def location_names_the_job(ctx, response, case):
    """A job's status answer carries Location: /v1/jobs/{its id}, where GET serves it."""
    if case.operation.path.startswith("/v1/jobs") and response.status_code in (200, 202):
        body = response.json()
        if isinstance(body, dict) and "progress" in body:
            assert response.headers.get("location") == [f"/v1/jobs/{body['id']}"], response.headers


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory, "fuzz", workers=1, env=ENV)


@pytest.fixture(scope="module")
def examples():
    """Examples run per operation; each that ran had >= EXAMPLES, unless it takes no input
    at all (GET /healthz, /readyz: Hypothesis stops once it has tried every case there is)."""
    counts: collections.Counter = collections.Counter()
    yield counts
    operations = [result.ok() for result in schema.get_all_operations()]
    fixed = {op.label for op in operations if not list(op.iter_parameters()) and not len(op.body)}
    short = {label: n for label, n in counts.items() if n < EXAMPLES and label not in fixed}
    print("examples per operation:", dict(sorted(counts.items())))
    assert not short, short


def test_every_check_is_on():
    """Every check schemathesis has, on every operation (`--checks all`), but the one
    CONFIG turns off where it cannot hold."""
    load_all_checks()
    for result in schema.get_all_operations():
        op = result.ok()
        config = schema.config.checks_config_for(operation=op, phase=None)
        off = {name for name in CHECKS.get_all_names() if not config.get_by_name(name=name).enabled}
        assert off == ({"positive_data_acceptance"} if op.label in SPEC_OPERATIONS else set()), (op.label, off)
        assert config.max_response_time.enabled and config.max_response_time.limit >= RESPONSE_S, op.label
        if op.label == "GET /v1/jobs/{job_id}":  # the long-poll
            assert config.max_response_time.limit > 60 and schema.config.request_timeout_for(operation=op) > 60


def test_openapi_json_is_openapi_yaml(server):
    served = httpx.get(server.url + "/openapi.json").json()
    assert served == yaml.safe_load(SCHEMA_PATH.read_text())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None)
def test_every_operation(case, server, examples):
    examples[case.operation.label] += 1
    case.call_and_validate(base_url=server.url)


def test_stateful(server):
    """>= SCENARIOS scenarios of up to 6 calls each; every link from POST /v1/jobs was followed to
    an answer about that job (2xx, or 409 for deleting one still running)."""
    stateful = schemathesis.openapi.from_path(SCHEMA_PATH, config=schemathesis.Config.from_dict(STATEFUL_CONFIG))
    steps: collections.Counter = collections.Counter()  # (call, status); a call over a link names it
    failures: list[FailureGroup] = []
    scenarios = 0

    class Workflow(stateful.as_state_machine()):
        def setup(self):
            nonlocal scenarios
            scenarios += 1

        def get_call_kwargs(self, case):
            return {"base_url": server.url}

        def step(self, input):
            try:
                output = super().step(input)
            except FailureGroup as failure:
                failures.append(failure)
                raise
            linked = input.transition is not None and input.is_applied
            steps[input.transition.id if linked else input.case.operation.label, output.response.status_code] += 1
            return output

    for _ in range(10):
        try:
            # Generate only, as schemathesis runs it: the server keeps its state between scenarios,
            # so a shrunk scenario would not replay faithfully anyway.
            Workflow.run(settings=settings(max_examples=SCENARIOS - scenarios, stateful_step_count=6, deadline=None,
                                           database=None, phases=[Phase.generate]))
        except FlakyStrategyDefinition:
            # For the same reason a scenario Hypothesis replays can take another path (a job that
            # an earlier scenario deleted is gone from GET /v1/jobs), which stops its run. Schemathesis'
            # own runner ends the phase there; this one goes on with a fresh run. No failure is lost:
            # step() keeps each one.
            pass
        if scenarios >= SCENARIOS or failures:
            break
    assert not failures, failures[0]
    print(f"{scenarios} scenarios, {sum(steps.values())} calls:")
    print("\n".join(f"{n:5} {call} [{status}]" for (call, status), n in sorted(steps.items())))
    assert scenarios >= SCENARIOS
    # A link step is named "POST /v1/jobs -> [202] ReadJob -> GET /v1/jobs/{job_id}".
    followed = {call.split(" -> ")[1].split()[1] for call, status in steps
                if call.startswith("POST /v1/jobs -> ") and (status < 300 or status == 409)}
    assert followed >= {"ReadJob", "ReadJobSamples", "CancelJob", "DeleteJob"}, steps


def test_undecodable_and_streamed_bodies(server):
    """Found on the way: a body that is not UTF-8 got FastAPI's undocumented 400, and one
    streamed (no Content-Length) past TCGEN_MAX_BODY_BYTES got 400 instead of 413."""
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    r = httpx.post(server.url + "/v1/jobs", content=b'{"level": "\xff"}', headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"], r.text
    r = httpx.post(server.url + "/v1/samples", content=iter([b" " * 1024] * 100), headers=headers)
    assert r.status_code == 413 and "TCGEN_MAX_BODY_BYTES" in r.json()["detail"], r.text
