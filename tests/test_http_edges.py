"""HTTP edge cases of the REST service, each once seen on main as a user would see it:
client text that is not Unicode (a 500), 405s without Allow, HEAD refused, a schema that did
not say level or op_sequence is required, body-parse failures all called "not UTF-8", loose
integers and booleans, an empty Idempotency-Key, and a CPU server that ran a request without
a FLOPs window at GenerationSpec's GPU-sized default (36 s and 4.4 GB a sample).

One real `tcgen serve` (tests/local_server.py) on 127.0.0.1 for the module, CPU
validation, small caps, and an API key that is not ASCII (the key is compared as the bytes
the header carried). httpx, and raw sockets where httpx would not send the bytes.
"""
from __future__ import annotations

import gzip
import json
import socket
import zlib

import httpx
import jsonschema
import pytest
import yaml

from service.api.deps import DeviceDefaults
from helpers import served
from local_server import LocalServer
from service.api.openapi import SCHEMA_PATH
from service.settings import Settings

KEY = "edge-clé-ü"
AUTH = {"X-API-Key": KEY.encode()}  # httpx sends bytes as they are: the key in UTF-8
LO, HI = 2**16, 2**22  # a CPU server's default FLOPs window
ENV = {"TCGEN_API_KEY": KEY, "TCGEN_MAX_FLOPS": str(HI), "TCGEN_MAX_SYNC_COUNT": "2",
       "TCGEN_MAX_JOB_COUNT": "3"}
JSON = {"content-type": "application/json"}
SMALL = {"min_flops": LO, "max_flops": HI}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory, "edges", workers=1, env=ENV)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def job_id(client):
    """A small finished job, for the routes that take a job id."""
    r = client.post("/v1/jobs", json={"level": 0, "count": 1, "seed": 3, **SMALL})
    assert r.status_code == 202, r.text
    job = client.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
    assert job["state"] == "succeeded", job
    return job["id"]


def raw_request(server: LocalServer, head: bytes, body: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    """Send bytes as they are (httpx refuses some); (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(head + b"Host: x\r\nConnection: close\r\nX-API-Key: " + KEY.encode() + b"\r\n"
                  + (b"Content-Length: %d\r\n" % len(body) if body else b"") + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_part, _, payload = data.partition(b"\r\n\r\n")
    lines = head_part.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, payload


def named(r: httpx.Response, loc: list) -> dict:
    """The 422 error at `loc`, which must carry a message; fails with the answer otherwise."""
    assert r.status_code == 422, (r.status_code, r.text)
    errors = r.json()["detail"]
    found = [e for e in errors if e["loc"] == loc]
    assert found, (loc, errors)
    assert found[0]["message"].startswith(".".join(str(x) for x in loc) + ": ") and found[0]["msg"], found[0]
    return found[0]


# -- 1. client text that is not Unicode ------------------------------------------------------------

# (JSON body text as sent, the loc of the 422). \ud800 is a lone surrogate: JSON can escape it,
# Python's json decodes it, and a str holding one cannot be encoded.
NOT_UNICODE_BODIES = [
    (r'{"level": 0, "ops": ["\ud800"]}', ["body", "ops", 0]),
    (r'{"level": 0, "ops": ["Add", "ReLU\udfff"]}', ["body", "ops", 1]),
    (r'{"level": 0, "exclude_ops": ["\ud800"]}', ["body", "exclude_ops", 0]),
    (r'{"op_sequence": ["Add", "\udc80"]}', ["body", "op_sequence", 1]),
    (r'{"level": 0, "dtype": "\ud800"}', ["body", "dtype"]),
    (r'{"level": 0, "topology": "dag\ud800"}', ["body", "topology"]),
    (r'{"level": 0, "format": "\ud800"}', ["body", "format"]),
    (r'{"level": "\ud800"}', ["body", "level"]),
    (r'{"level": 0, "seed": "\ud800"}', ["body", "seed"]),
    (r'{"level": 0, "validate": "\ud800"}', ["body", "validate"]),
    (r'{"level": 0, "\ud800": 1}', ["body", "\\ud800"]),  # an unknown field, named as escaped text
    (r'{"level": 0, "ops\ud800": ["Add"]}', ["body", "ops\\ud800"]),
]


@pytest.mark.parametrize("body, loc", NOT_UNICODE_BODIES, ids=[str(i) for i in range(len(NOT_UNICODE_BODIES))])
def test_lone_surrogates_in_a_body_get_422_naming_the_field(client, body, loc):
    """A lone surrogate anywhere in a spec (a value, a list item, a field name), sync or
    job, with or without an Idempotency-Key: 422 at that field, never a 500."""
    for path, headers in (("/v1/samples", JSON), ("/v1/jobs", JSON), ("/v1/jobs", {**JSON, "Idempotency-Key": "s"})):
        r = client.post(path, content=body.encode(), headers=headers)
        error = named(r, loc)
        if loc[-1] in (0, 1, "dtype", "topology", "format"):
            assert "not valid Unicode" in error["msg"], error


def test_surrogates_as_raw_utf8_bytes_are_named_too(client):
    """Python's json decodes the UTF-8 bytes of a surrogate (ED A0 80) into one as well."""
    r = client.post("/v1/samples", content=b'{"level": 0, "ops": ["\xed\xa0\x80"]}', headers=JSON)
    assert "not valid Unicode" in named(r, ["body", "ops", 0])["msg"]


def test_a_surrogate_pair_is_text(client):
    """An escaped pair is one character (an emoji here): an unknown operator, not bad text."""
    r = client.post("/v1/samples", content=rb'{"level": 0, "ops": ["\ud83d\ude00"]}', headers=JSON)
    assert "unknown operator" in named(r, ["body", "ops"])["msg"]


# (method, path, extra headers, status, what the answer names)
ODD_TEXT_ELSEWHERE = [
    ("GET", "/v1/samples?level=0&dtype=%ED%A0%80", {}, 422, "query.dtype"),
    ("GET", "/v1/samples?level=%ED%A0%80", {}, 422, "query.level"),
    ("GET", "/v1/jobs?state=%ED%A0%80", {}, 422, "query.state"),
    ("GET", "/v1/jobs?state=%FF%00", {}, 422, "query.state"),
    ("GET", "/v1/jobs/%ED%A0%80", {}, 404, "job_id"),
    ("GET", "/v1/jobs/%ED%A0%80/samples", {}, 404, "job_id"),
    ("POST", "/v1/jobs/%00%FF/cancel", {}, 404, "job_id"),
    ("DELETE", "/v1/jobs/%C0%AF", {}, 404, "job_id"),
    ("GET", "/v1/ops", {"X-API-Key": b"\xed\xa0\x80"}, 401, "API key"),
    ("GET", "/v1/ops", {"X-API-Key": b"\xff\xfe"}, 401, "API key"),
    ("GET", "/v1/ops", {"Authorization": b"Bearer \xed\xa0\x80"}, 401, "API key"),
    ("GET", "/v1/ops", {"X-API-Key": KEY.encode("latin-1")}, 401, "API key"),  # the key's text, other bytes
    ("POST", "/v1/jobs", {"Idempotency-Key": b"\xed\xa0\x80"}, 422, "header.idempotency-key"),
]


@pytest.mark.parametrize("method, path, headers, status, names", ODD_TEXT_ELSEWHERE,
                         ids=[str(i) for i in range(len(ODD_TEXT_ELSEWHERE))])
def test_odd_bytes_in_query_path_and_headers_get_a_4xx_naming_them(server, method, path, headers, status, names):
    kwargs = {"json": {"level": 0, **SMALL}} if method == "POST" else {}
    keyed = {k.lower() for k in headers} & {"x-api-key", "authorization"}
    r = httpx.request(method, server.url + path, headers={**({} if keyed else AUTH), **headers}, **kwargs)
    assert r.status_code == status and names in r.text, (r.status_code, r.text)


def test_odd_accept_header_is_ignored(client):
    r = client.post("/v1/samples", json={"level": 0, "seed": 1, **SMALL}, headers={"Accept": b"\xed\xa0\x80\xff"})
    assert r.status_code == 200 and r.json()["samples"], r.text


def test_a_key_that_is_not_ascii_passes_as_its_utf8_bytes(server):
    """The key is compared as the bytes the header carried, in both headers."""
    for headers in ({"X-API-Key": KEY.encode()}, {"Authorization": b"Bearer " + KEY.encode()}):
        assert httpx.get(server.url + "/v1/ops", headers=headers).status_code == 200, headers
    assert httpx.get(server.url + "/v1/ops").status_code == 401


# -- 2a, 2b. Allow on 405, HEAD ------------------------------------------------------------------

WRONG_METHODS = [
    ("PUT", "/healthz", "GET, HEAD"), ("POST", "/readyz", "GET, HEAD"), ("DELETE", "/metrics", "GET, HEAD"),
    ("POST", "/v1/ops", "GET, HEAD"), ("DELETE", "/v1/samples", "GET, HEAD, POST"),
    ("PATCH", "/v1/jobs", "GET, HEAD, POST"), ("OPTIONS", "/v1/jobs", "GET, HEAD, POST"),
    ("PUT", "/v1/jobs/abc", "DELETE, GET, HEAD"), ("POST", "/v1/jobs/abc", "DELETE, GET, HEAD"),
    ("DELETE", "/v1/jobs/abc/samples", "GET, HEAD"), ("GET", "/v1/jobs/abc/cancel", "POST"),
    ("HEAD", "/v1/jobs/abc/cancel", "POST"), ("POST", "/openapi.json", "GET, HEAD"),
]


@pytest.mark.parametrize("method, path, allow", WRONG_METHODS, ids=[f"{m} {p}" for m, p, _ in WRONG_METHODS])
def test_405_lists_every_method_of_the_path(client, method, path, allow):
    r = client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow, (r.status_code, r.headers)


def get_paths(job_id: str) -> list[str]:
    """Every GET route of the schema, with the job id and query it needs, and FastAPI's pages."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    paths = [p.replace("{job_id}", job_id) for p, ops in schema["paths"].items() if "get" in ops]
    return [p + "?level=0&seed=1" if p == "/v1/samples" else p for p in paths] + ["/openapi.json", "/docs", "/redoc"]


def test_head_answers_every_get_route_like_get_without_a_body(client, job_id):
    """Same status and headers as GET (content-length included where GET's body is fixed),
    no body; the metrics count it as HEAD on its route."""
    fixed = {"/healthz", "/v1/ops", "/openapi.json", "/docs", "/redoc", f"/v1/jobs/{job_id}/samples"}
    for path in get_paths(job_id):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code, got.status_code)
        assert head.content == b"", path
        drop = {"date", "content-length"}
        assert {k: v for k, v in head.headers.items() if k not in drop} == \
               {k: v for k, v in got.headers.items() if k not in drop}, path
        if path in fixed:
            assert head.headers["content-length"] == got.headers["content-length"], path
    metrics = client.get("/metrics").text
    assert 'tcgen_http_requests_total{method="HEAD",route="/healthz",status="200"}' in metrics


def test_head_of_a_stream_and_without_the_key(server, client, job_id):
    """HEAD on the NDJSON stream answers at once; without the key, 401 and no body."""
    r = client.head(f"/v1/jobs/{job_id}/samples", headers={"Accept": "application/x-ndjson"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson" and r.content == b""
    r = httpx.head(server.url + "/v1/ops")
    assert r.status_code == 401 and r.content == b"" and r.headers["www-authenticate"] == "Bearer"
    status, headers, body = raw_request(server, b"HEAD /healthz HTTP/1.1\r\n")
    assert status == 200 and body == b"" and headers[b"content-length"] == b"15"


# -- 2c. the schema says level, num_ops or op_sequence ---------------------------------------------------

def test_schema_requires_level_num_ops_or_op_sequence(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SampleRequest"]
    valid = [{"level": 1}, {"op_sequence": ["Add"]}, {"level": 0, "op_sequence": None},
             {"level": None, "op_sequence": ["Add"]}, {"level": 2, "op_sequence": ["Add"]}, {"num_ops": 3},
             {"level": 1, "num_ops": 20}]
    invalid = [{}, {"level": None}, {"op_sequence": None}, {"level": None, "op_sequence": None}, {"count": 2},
               {"num_ops": None}]
    for body in valid:
        jsonschema.validate(body, schema)
    for body in invalid:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, schema)
        named(client.post("/v1/samples", json=body), ["body", "level"])


def test_num_ops_over_http(client):
    """num_ops in a body draws that many operators per sample; out of range it is named."""
    r = client.post("/v1/samples", json={"num_ops": 4, "count": 2, "seed": 3, "min_flops": 2**16, "max_flops": 2**22})
    assert r.status_code == 200, r.text
    assert [len(s["ops"]) for s in r.json()["samples"]] == [4, 4]
    named(client.post("/v1/samples", json={"num_ops": 21}), ["body", "num_ops"])


# -- 2d. bodies that cannot be parsed, each with its own truthful answer ------------------------------

def test_deeply_nested_json_is_named_as_such(client):
    body = b'{"level": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    error = named(client.post("/v1/samples", content=body, headers=JSON), ["body"])
    assert "nested too deeply" in error["msg"], error


@pytest.mark.parametrize("field", ["seed", "level", "count", "min_flops", "max_total_bytes"])
def test_an_integer_with_too_many_digits_is_named_at_its_field(client, field):
    body = {"level": 0, **SMALL, field: "@"}
    text = json.dumps(body).replace('"@"', "1" * 4400).encode()
    for path in ("/v1/samples", "/v1/jobs"):
        error = named(client.post(path, content=text, headers=JSON), ["body", field])
        assert "too many digits" in error["msg"] and "4400" in error["msg"], error


def test_too_many_digits_inside_a_list(client):
    text = b'{"level": 0, "ops": ["Add", -' + b"9" * 5000 + b"]}"
    assert "too many digits" in named(client.post("/v1/samples", content=text, headers=JSON), ["body", "ops", 1])["msg"]


ENCODED = [("gzip", gzip.compress), ("deflate", zlib.compress), ("br", lambda b: b), ("GZIP", gzip.compress),
           ("identity, gzip", gzip.compress), ("x-unknown", lambda b: b)]


@pytest.mark.parametrize("encoding, encode", ENCODED, ids=[e for e, _ in ENCODED])
def test_a_compressed_body_gets_415(client, encoding, encode):
    body = encode(json.dumps({"level": 0, **SMALL}).encode())
    for path in ("/v1/samples", "/v1/jobs"):
        r = client.post(path, content=body, headers={**JSON, "Content-Encoding": encoding})
        assert r.status_code == 415 and "identity" in r.json()["detail"], (path, r.status_code, r.text)


def test_identity_encoding_and_invalid_utf8(client):
    r = client.post("/v1/samples", json={"level": 0, "seed": 1, **SMALL}, headers={"Content-Encoding": "identity"})
    assert r.status_code == 200, r.text
    error = named(client.post("/v1/samples", content=b'{"level": 0, "dtype": "\xff"}', headers=JSON), ["body"])
    assert "not UTF-8" in error["msg"], error


def test_415_is_documented_on_the_routes_that_read_a_body(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/samples", "/v1/jobs"):
        assert "415" in paths[path]["post"]["responses"], path


# -- 2e. strict types in request bodies ----------------------------------------------------------

NOT_INTEGERS = [True, False, "1", 1.0, 2.5, None, [1], {"v": 1}]
NOT_BOOLEANS = [1, 0, "true", "false", "1", 1.0, None]
INT_FIELDS = ["level", "count", "seed", "start_index", "min_flops", "max_flops", "max_tensor_numel", "max_total_bytes"]
BOOL_FIELDS = ["validate", "baselines", "baseline_compile"]
LOOSE = [(f, v) for f in INT_FIELDS for v in NOT_INTEGERS if not (v is None and f in ("level", "seed", "min_flops",
                                                                                           "max_flops"))]
LOOSE += [(f, v) for f in BOOL_FIELDS for v in NOT_BOOLEANS]


@pytest.mark.parametrize("field, value", LOOSE, ids=[f"{f}={v!r}" for f, v in LOOSE])
def test_loose_integers_and_booleans_get_422(client, field, value):
    body = {"level": 1, "count": 1, **SMALL, field: value}
    for path in ("/v1/samples", "/v1/jobs"):
        named(client.post(path, json=body), ["body", field])


def test_typed_query_values_still_make_a_spec(client):
    """GET /v1/samples builds its spec from query values FastAPI has already typed."""
    r = client.get("/v1/samples", params={"level": 1, "seed": "2", "index": "3", "min_flops": str(LO)})
    assert r.status_code == 200 and r.json()["samples"][0]["index"] == 3, r.text
    named(client.get("/v1/samples", params={"level": 0, "max_flops": 2 * HI}), ["query", "max_flops"])  # was "body"


# -- 2f. Idempotency-Key: 1 to 200 printable ASCII characters --------------------------------------

BAD_KEYS = ["", "a" * 201, "ключ".encode(), b"\xff", "a\tb", b"\xed\xa0\x80"]
GOOD_KEYS = ["k", "a" * 200, "x y", "!~'\"{}", "run-42/shard:0"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=[str(i) for i in range(len(BAD_KEYS))])
def test_bad_idempotency_keys_get_422_naming_the_header(client, key):
    r = client.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": key})
    named(r, ["header", "idempotency-key"])


def test_good_idempotency_keys_make_one_job_each(client):
    for key in GOOD_KEYS:
        body = {"level": 0, **SMALL}
        first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert (first.status_code, again.status_code) == (202, 200), (key, first.text, again.text)
        assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize("key", [b"a\x7fb", b"   ", b"\x01"])
def test_keys_httpx_will_not_send_are_refused(server, key):
    """Blanks only (HTTP strips them: an empty key), DEL and other control bytes."""
    status, _, body = raw_request(server, b"POST /v1/jobs HTTP/1.1\r\nContent-Type: application/json\r\n"
                                          b"Idempotency-Key: " + key + b"\r\n", b'{"level": 0}')
    assert 400 <= status < 500, (status, body)
    if status == 422:
        assert b"header.idempotency-key" in body, body


# -- 3. the FLOPs window a request leaves unset ------------------------------------------------------

def test_a_cpu_server_fills_in_its_own_window(client):
    """POST /v1/samples {"level": 2} on a CPU server: the CPU window 2**16..2**22 (not
    GenerationSpec's 2**34..2**35), said in the samples and the X-Tcgen-*-Flops headers."""
    for accept in ("application/json", "application/x-ndjson"):
        r = client.post("/v1/samples", json={"level": 2, "seed": 4}, headers={"Accept": accept}, timeout=60)
        assert r.status_code == 200, r.text
        samples = r.json()["samples"] if accept == "application/json" else [json.loads(x) for x in r.text.splitlines()]
        assert samples and all((s["min_flops"], s["max_flops"]) == (LO, HI) for s in samples), samples
        assert (r.headers["x-tcgen-min-flops"], r.headers["x-tcgen-max-flops"], r.headers["x-tcgen-seed"]) == \
               (str(LO), str(HI), "4")


def test_one_bound_given_the_other_is_the_default(client):
    r = client.post("/v1/samples", json={"level": 0, "seed": 1, "min_flops": 2**20})
    assert r.status_code == 200 and r.json()["samples"][0]["min_flops"] == 2**20
    assert r.headers["x-tcgen-min-flops"] == str(2**20) and r.headers["x-tcgen-max-flops"] == str(HI)
    r = client.post("/v1/samples", json={"level": 0, "seed": 1, "max_flops": 2**20, "min_flops": None})
    assert r.status_code == 200 and r.json()["samples"][0]["max_flops"] == 2**20, r.text


@pytest.mark.parametrize("path", ["/v1/samples", "/v1/jobs"])
def test_a_bound_against_the_others_default_names_it_and_says_default(client, path):
    error = named(client.post(path, json={"level": 0, "max_flops": 1000}), ["body", "max_flops"])
    assert "default" in error["msg"] and str(LO) in error["msg"], error
    error = named(client.post(path, json={"level": 0, "min_flops": 2**23}), ["body", "min_flops"])
    assert "default" in error["msg"] and str(HI) in error["msg"], error


def test_a_job_stores_the_window_it_got_and_idempotency_stays_on_the_body(client):
    body = {"level": 0, "count": 2, "seed": 8}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "window-1"})
    assert first.status_code == 202, first.text
    spec = first.json()["spec"]
    assert (spec["min_flops"], spec["max_flops"]) == (LO, HI), spec
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "window-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert client.get(f"/v1/jobs/{first.json()['id']}").json()["spec"]["max_flops"] == HI


def test_the_schema_documents_the_default_window(client):
    schema = client.get("/openapi.json").json()
    fields = schema["components"]["schemas"]["SampleRequest"]["properties"]
    for field in ("min_flops", "max_flops"):
        assert fields[field].get("default") is None and "2**16..2**22 on a CPU" in fields[field]["description"]
    headers = schema["paths"]["/v1/samples"]["post"]["responses"]["200"]["headers"]
    assert {"X-Tcgen-Seed", "X-Tcgen-Min-Flops", "X-Tcgen-Max-Flops"} <= set(headers)


@pytest.mark.parametrize("device, cap, window", [
    ({"min_flops": 2**16, "max_flops": 2**22}, 2**40, (2**16, 2**22)),
    ({"min_flops": 2**16, "max_flops": 2**22}, 2**20, (2**14, 2**20)),
    ({"min_flops": 2**34, "max_flops": 2**35}, 2**30, (2**29, 2**30)),
    ({"min_flops": 2**34, "max_flops": 2**35}, 2**35, (2**34, 2**35))])
def test_the_default_window_ends_at_the_flops_cap(device, cap, window):
    """A request that names no window is never over TCGEN_MAX_FLOPS: the device's window
    ends at the cap where that is lower, as wide as it was."""
    defaults = DeviceDefaults.of({**device, "max_total_bytes": 2**30}, Settings(max_flops=cap, max_total_bytes=2**24))
    assert (defaults.min_flops, defaults.max_flops, defaults.max_total_bytes) == (*window, 2**24)
