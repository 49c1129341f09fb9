"""Security: the API key guards every route but health (routes enumerated from the app, so a
new route is covered by itself); caps bound what one request may ask for; the service binds
loopback unless told otherwise; no client text is executed, run by a shell, or rendered
into a program.

Real servers (service/local_server.py) on 127.0.0.1, one worker each; no TCGEN_* variable
of the caller's environment reaches them.
"""
from __future__ import annotations

import ast
import json
import re
import time
import typing
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import generator_core.solve as solve_module
from generator_core import OPERATORS, GenerationError, GenerationSpec, generate
from generator_core.generate import MAX_ATTEMPTS
from helpers import HI, LO, served
from service.api.deps import require_api_key
from service.app import create_app
from service.local_server import LocalServer
from service.schemas import SampleRequest
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "tcgen-test-key-7f3a"
SMALL = {"min_flops": LO, "max_flops": HI, "validate": False, "seed": 1}
FINISHED = {"succeeded", "failed", "cancelled"}
CAPS = {"TCGEN_MAX_SYNC_COUNT": 3, "TCGEN_MAX_JOB_COUNT": 40, "TCGEN_MAX_FLOPS": 2**30,
        "TCGEN_MAX_TOTAL_BYTES": 2**24, "TCGEN_MAX_BODY_BYTES": 2048, "TCGEN_MAX_QUEUED_JOBS": 2,
        "TCGEN_MAX_PENDING_SYNC": 1}
# Served without a key, on purpose:
PUBLIC = {
    "/healthz": "liveness probe (README: needs no key)",
    "/readyz": "readiness probe (README: needs no key)",
    # FastAPI's documentation routes. Accepted: they serve the API's schema, which is public
    # anyway (openapi.yaml is checked in), hold no data or secret, and run no generation.
    "/openapi.json": "the schema, equal to the checked-in openapi.yaml",
    "/docs": "Swagger UI page for the schema",
    "/docs/oauth2-redirect": "Swagger UI helper page",
    "/redoc": "ReDoc page for the schema",
}
PAGE_LIMITS = ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/samples")


# -- servers -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """API key and small caps; started without TCGEN_HOST."""
    yield from served(tmp_path_factory, "sec", workers=1,
                      env={"TCGEN_API_KEY": KEY, **{k: str(v) for k, v in CAPS.items()}})


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120) as c:
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


def wait_finished(c: httpx.Client, job_id: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}", params={"wait": 5}).json()
        if job["state"] in FINISHED:
            return job
    raise TimeoutError(job_id)


def messages(r: httpx.Response) -> str:
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(e["message"] for e in detail)


# -- the API key -------------------------------------------------------------------------------

def app_routes() -> list[tuple[str, str, object]]:
    """(method, path, route) of every route the app serves, however FastAPI nests included
    routers (0.1xx: _IncludedRouter.effective_route_contexts; before: plain APIRoutes)."""
    app = create_app(Settings(api_key=KEY, device="cpu", max_total_bytes=2**24))
    found = []

    def walk(routes):
        for r in routes:
            if hasattr(r, "effective_route_contexts"):
                walk(r.effective_route_contexts())
            elif hasattr(r, "methods") and hasattr(r, "path"):
                found.extend((m, r.path, r) for m in sorted(r.methods) if m != "HEAD")
            elif hasattr(r, "routes"):
                walk(r.routes)
            else:
                raise AssertionError(f"route of an unknown kind: {r!r}")

    walk(app.routes)
    return found


def _calls(dependant) -> set:
    return {dependant.call} | {c for d in dependant.dependencies for c in _calls(d)}


def test_every_route_but_the_public_ones_depends_on_the_key_check():
    """Statically: each route the app serves (all of openapi.yaml's operations among them)
    has require_api_key in its dependency tree, unless it is one of PUBLIC."""
    routes = app_routes()
    served = {(m, p) for m, p, _ in routes}
    schema = create_app(Settings(device="cpu", max_total_bytes=2**24)).openapi()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert documented <= served, documented - served  # the walk misses nothing
    assert {("POST", "/v1/samples"), ("DELETE", "/v1/jobs/{job_id}")} <= served
    for method, path, route in routes:
        guarded = hasattr(route, "dependant") and require_api_key in _calls(route.dependant)
        assert guarded != (path in PUBLIC), (method, path)


def _request_for(method: str, path: str, job_id: str) -> dict:
    """Arguments that, with the key, make each route do its real work."""
    url = path.replace("{job_id}", job_id)
    kwargs: dict = {}
    if (method, path) == ("GET", "/v1/samples"):
        kwargs["params"] = {"level": 0, "max_flops": HI}
    if method == "POST" and "{" not in path:
        kwargs["json"] = {"level": 0, "count": 1, **SMALL}
    return {"method": method, "url": url, **kwargs}


def test_api_key_on_every_route_over_http(client, settled):
    """Live, every method and path the app serves: 401 (naming the API key, with
    WWW-Authenticate) without a key, with a wrong one, a prefix or extension of it, the
    other header's scheme, or Basic; not 401 with the key as Bearer or X-API-Key. The
    PUBLIC routes answer 200 without a key, and none of them shows the key."""
    job_id = client.post("/v1/jobs", json={"level": 0, "count": 1, **SMALL}).json()["id"]
    wait_finished(client, job_id)
    routes = sorted(app_routes(), key=lambda r: r[0] == "DELETE")  # delete the job last
    wrong = [{}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY[:-1]}, {"X-API-Key": KEY + "x"}, {"X-API-Key": ""},
             {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}, {"Authorization": KEY},
             {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY.upper()}, {"X-Api-Key": f"Bearer {KEY}"}]
    with httpx.Client(base_url=client.base_url, timeout=120) as bare:
        for method, path, _ in routes:
            request = _request_for(method, path, job_id)
            if path in PUBLIC:
                r = bare.request(**request)
                assert r.status_code == 200, (method, path, r.status_code)
                assert KEY not in r.text
                continue
            for headers in wrong:
                r = bare.request(**request, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert "API key" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
            for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
                r = bare.request(**request, headers=headers)
                assert r.status_code != 401 and r.status_code < 500, (method, path, headers, r.status_code, r.text)
                done = (200, 202, 204, 404) if method == "DELETE" else (200, 202)  # 404: deleted by the 1st
                assert r.status_code in done, (method, path, r.status_code, r.text)


def test_api_key_is_checked_before_the_body_is_parsed(server):
    for path in ("/v1/samples", "/v1/jobs"):
        r = httpx.post(server.url + path, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 401, (path, r.status_code, r.text)


@settings(max_examples=300, deadline=None, database=None)
@given(given_key=st.text(max_size=40), via=st.sampled_from(["bearer", "header"]))
def test_only_the_exact_key_passes(given_key, via):
    """require_api_key itself: any other string (prefixes, case, unicode, empty) is 401."""
    s = Settings(api_key=KEY)
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=given_key) if via == "bearer" else None
    header = given_key if via == "header" else None
    try:
        require_api_key(s, bearer, header)
        passed = True
    except HTTPException as exc:
        assert exc.status_code == 401
        passed = False
    assert passed == (given_key == KEY)
    require_api_key(s, HTTPAuthorizationCredentials(scheme="Bearer", credentials=KEY), None)
    require_api_key(s, None, KEY)
    require_api_key(Settings(api_key=None), bearer, header)  # no key configured: open


# -- caps: count, FLOPs, bytes, body, pages, queues ---------------------------------------------

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


# The queue caps (429 + Retry-After) and the expiry of finished jobs (disk) are tested in
# test_backpressure.py.


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


# -- binding ----------------------------------------------------------------------------------

def test_settings_bind_loopback_by_default(monkeypatch):
    monkeypatch.delenv("TCGEN_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    monkeypatch.setenv("TCGEN_HOST", "0.0.0.0")
    assert Settings().host == "0.0.0.0"  # told otherwise


def _listening(pid: int) -> set[tuple[str, int]]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {(c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def test_server_listens_on_loopback_only(server):
    """`tcgen serve` without TCGEN_HOST: its only listening socket (workers included) is
    127.0.0.1:<port>."""
    assert _listening(server.proc.pid) == {("127.0.0.1", server.port)}


def test_server_binds_where_told(tmp_path):
    """TCGEN_HOST is honoured (another loopback address, so nothing is exposed)."""
    s = LocalServer(tmp_path / "h.db", workers=1, env={"TCGEN_HOST": "127.0.0.2"})
    s.url = f"http://127.0.0.2:{s.port}"
    s.start()
    try:
        assert _listening(s.proc.pid) == {("127.0.0.2", s.port)}
    finally:
        assert s.stop() == 0, s.log()


# -- no client text runs ----------------------------------------------------------------------

# Calls that run code, start processes, load native code or unpickle. Any of them in
# service/ or generator_core/ must be listed in ALLOWED with why no client text reaches it.
RISKY = {"eval", "exec", "compile", "__import__", "breakpoint", "os.system", "os.popen", "os.startfile",
         "os.posix_spawn", "os.posix_spawnp", "pty.spawn", "pickle.load", "pickle.loads", "pickle.Unpickler",
         "_pickle.loads", "marshal.load", "marshal.loads", "shelve.open", "dill.load", "dill.loads",
         "yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all", "torch.load",
         "numpy.load", "importlib.import_module", "importlib.__import__", "runpy.run_path", "runpy.run_module",
         "code.interact", "asyncio.create_subprocess_shell", "asyncio.create_subprocess_exec",
         "ctypes.CDLL", "ctypes.cdll.LoadLibrary", "ctypes.PyDLL", "importlib.util.spec_from_file_location"}
RISKY_PREFIXES = ("subprocess.", "os.exec", "os.spawn")
SQL_CALLS = {"execute", "executemany", "executescript"}  # flagged unless the SQL is a literal or a module constant
ALLOWED = {
    ("generator_core/validate.py", "LoadedProgram.__init__", "compile"):
        "compiles the program render.py wrote from a validated spec (registry names, enums, solved ints)",
    ("generator_core/validate.py", "LoadedProgram.__init__", "exec"):
        "executes that program; test_rendered_programs_hold_no_client_text checks what it can contain",
    ("generator_core/grading.py", "Replay.of", "compile"):
        "compiles the node expressions render.py wrote for that same program (Candidate.steps), never client text",
    ("generator_core/grading.py", "Replay.run", "eval"):
        "evaluates those expressions on the program's tensors, with only torch in scope",
    ("generator_core/grade.py", "_Child.__init__", "subprocess.Popen"):
        "a fixed argv list (sys.executable, the grade_worker.py path, a temporary folder), no shell; started "
        "by grade() (tcgen grade, the verl reward function), which no module of service/ but cli.py names "
        "(test_the_service_never_reaches_the_grader)",
    ("generator_core/grade_worker.py", "_load_module", "importlib.util.spec_from_file_location"):
        "the grader's child loads the sample's program and the candidate of grade()'s caller (tcgen grade, the "
        "verl reward function) in its own process, with a time and memory limit; never reached from the service",
    ("generator_core/__init__.py", "__getattr__", "importlib.import_module"):
        "imports one of the package's own submodules, from the constant _WHERE map, for a name in it",
    ("service/local_server.py", "LocalServer.start", "subprocess.Popen"):
        "a fixed argv list (sys.executable -m service.cli serve, ints and a path from the test), no shell",
    ("service/engine/workers.py", "_release_memory", "ctypes.CDLL"): "the constant 'libc.so.6', for malloc_trim",
    ("service/jobs/store.py", "JobStore._one", "sql"):
        "interpolates the _COLUMNS constant and the callers' fixed WHERE clauses; values bound as ?",
    ("service/jobs/store.py", "JobStore._many", "sql"): "the _COLUMNS constant and fixed clauses; values bound as ?",
    ("service/jobs/store.py", "JobStore.count_jobs", "sql"): "a fixed WHERE clause or none; the state bound as ?",
    ("service/jobs/store.py", "JobStore.add_result", "sql"):
        "the column name is 'completed' or 'failed' (a conditional on constants); the id bound as ?",
}


def _imports(tree: ast.Module) -> dict[str, str]:
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, imports: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([imports.get(node.id, node.id), *reversed(parts)])


def risky_calls() -> dict[tuple[str, str, str], ast.Call]:
    """(file, enclosing function, what) of every risky call; `what` is "sql" for SQL built
    from anything but a literal. Fails outright on shell=True."""
    found = {}
    for path in sorted(p for d in ("service", "generator_core") for p in (ROOT / d).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        imports = _imports(tree)
        constants = {t.id for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                     and isinstance(node.value.value, str) for t in node.targets if isinstance(t, ast.Name)}

        def visit(node: ast.AST, scope: list[str]) -> None:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                scope = [*scope, node.name]
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    literal_false = isinstance(kw.value, ast.Constant) and kw.value.value is False
                    assert kw.arg != "shell" or literal_false, f"{rel}:{node.lineno}: shell=True"
                name = _dotted(node.func, imports)
                what = None
                if name in RISKY or (name and name.startswith(RISKY_PREFIXES)):
                    what = name
                elif (isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS and node.args
                      and not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))
                      and not (isinstance(node.args[0], ast.Name) and node.args[0].id in constants)):
                    what = "sql"
                if what:
                    found[(rel, ".".join(scope), what)] = node
            for child in ast.iter_child_nodes(node):
                visit(child, scope)

        visit(tree, [])
    return found


def test_no_eval_exec_shell_or_unpickling_outside_the_allow_list():
    """AST scan of service/ and generator_core/: eval, exec, compile, process starts,
    native loads, unpickling and non-literal SQL appear exactly where ALLOWED says why
    (a stale entry fails too); no shell=True anywhere; the one process start has a literal
    argv list and the one native load a literal library name."""
    found = risky_calls()
    assert set(found) == set(ALLOWED), {"unlisted": sorted(set(found) - set(ALLOWED)),
                                        "stale": sorted(set(ALLOWED) - set(found))}
    popen = found[("service/local_server.py", "LocalServer.start", "subprocess.Popen")]
    assert isinstance(popen.args[0], ast.List)
    cdll = found[("service/engine/workers.py", "_release_memory", "ctypes.CDLL")]
    assert isinstance(cdll.args[0], ast.Constant)


def test_the_service_never_reaches_the_grader():
    """The grader runs candidate source (its caller's, in a child process); the REST
    service must not: no module of service/ but the command line names it."""
    grader = {"grade", "grade_worker", "verl", "GradingTask", "compute_score", "export_verl", "select_sample"}
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name.split(".")[-1] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                  for a in n.names}
        names |= {n.module.split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & grader, (path, names & grader)


def test_sql_sees_client_text_only_as_bound_values(settled):
    """Client strings that reach SQL (job id, Idempotency-Key, state) are bound, not
    spliced: SQL-looking values are just unknown ids or opaque keys."""
    assert settled.get("/v1/jobs/' OR '1'='1").status_code == 404
    assert settled.get("/v1/jobs/x'; DROP TABLE jobs; --/samples").status_code == 404
    assert settled.get("/v1/jobs", params={"state": "queued' OR 1=1 --"}).status_code == 422
    key = "k' OR '1'='1"
    first = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": key})
    again = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": key})
    other = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert settled.get("/v1/jobs").json()["total"] >= 2


# Where a client's string can go. GenerationSpec: these fields only (a new one fails here).
CLIENT_STRING_FIELDS = {"ops": "registry", "exclude_ops": "registry", "op_sequence": "registry",
                        "dtype": "literal", "topology": "literal", "format": "literal"}
# HTTP parameters typed as free strings: never rendered, only looked up (bound SQL values).
FREE_STRING_PARAMS = {("path", "job_id"), ("header", "idempotency-key")}


def _admits_str(annotation) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(annotation))
    return any(_admits_str(a) for a in typing.get_args(annotation))


def test_client_string_fields_are_all_known():
    """Every spec field that takes a string is a registry-name list or a Literal (the
    request model adds none); every free-string HTTP parameter is a job id or the
    Idempotency-Key, and the query strings of GET /v1/samples are enums."""
    for model in (GenerationSpec, SampleRequest):
        strings = {n for n, f in model.model_fields.items() if _admits_str(f.annotation)}
        assert strings == set(CLIENT_STRING_FIELDS), model
    schema = create_app(Settings(device="cpu", max_total_bytes=2**24)).openapi()
    free = set()
    for ops in schema["paths"].values():
        for op in ops.values():
            for p in op.get("parameters", []):
                s = p["schema"]
                options = s.get("anyOf", [s])
                if any(o.get("type") == "string" and "enum" not in o and "const" not in o for o in options):
                    free.add((p["in"], p["name"]))
    assert free == FREE_STRING_PARAMS


MARKERS = ["__import__('os').system('id')", "Add; import os", "Add\nimport os", "$(id)", "`id`",
           "'; DROP TABLE jobs; --",
           "{x}", "%s", "torch.float32", "float32\n", "eval", "Add ", "add", "<script>", "../../etc/passwd",
           "\u0410dd", "kernelbench; rm -rf /"]
marker_st = st.one_of(st.sampled_from(MARKERS), st.text(min_size=1, max_size=20))


@settings(max_examples=200, deadline=None, database=None)
@given(field=st.sampled_from(sorted(CLIENT_STRING_FIELDS)), marker=marker_st,
       model=st.sampled_from([GenerationSpec, SampleRequest]))
def test_client_strings_outside_the_registry_and_enums_are_rejected(field, marker, model):
    """A string in any client string field is either a registry name or enum value, or
    a ValidationError naming that field."""
    literal = GenerationSpec.model_fields[field].annotation
    allowed = set(OPERATORS) if CLIENT_STRING_FIELDS[field] == "registry" else set(typing.get_args(literal))
    value = [marker] if CLIENT_STRING_FIELDS[field] == "registry" else marker
    body = {"op_sequence": ["Add"]} if field != "op_sequence" else {"level": 0}
    try:
        spec = model.model_validate({**body, field: value})
    except ValidationError as err:
        assert marker not in allowed
        assert {e["loc"][0] for e in err.errors()} == {field}
        return
    assert marker in allowed
    assert getattr(spec, field) == value


def test_markers_in_string_fields_get_422_over_http(client):
    """The same over HTTP: POST bodies and GET query strings with a marker are 422s naming
    the field, and nothing is generated."""
    marker = "__import__('os').system('touch /tmp/tcgen-pwned')"
    for field, kind in CLIENT_STRING_FIELDS.items():
        body = {"level": 0, **SMALL, field: [marker] if kind == "registry" else marker}
        for path in ("/v1/samples", "/v1/jobs"):
            r = client.post(path, json=body)
            assert r.status_code == 422 and f"body.{field}" in messages(r), (path, field, r.text)
    for param in ("dtype", "topology", "format"):
        r = client.get("/v1/samples", params={"level": 0, param: marker})
        assert r.status_code == 422 and f"query.{param}" in messages(r), (param, r.text)
    assert not Path("/tmp/tcgen-pwned").exists()


# What a rendered program may consist of: these statements and expressions, names of the
# two templates and tensor_<n>, attributes that exist on torch (or on tensors), keyword
# names from the vocabulary of single-operator programs, numbers, and no string at all.
NODES = (ast.Module, ast.Import, ast.alias, ast.FunctionDef, ast.ClassDef, ast.arguments, ast.arg, ast.Return,
         ast.Assign, ast.Expr, ast.Call, ast.Attribute, ast.Name, ast.Load, ast.Store, ast.keyword, ast.Constant,
         ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.USub, ast.Add, ast.Sub, ast.Mult, ast.IfExp)
TEMPLATE_NAMES = {"torch", "nn", "self", "super", "get_inputs", "get_init_inputs", "fused_operator", "Model",
                  "forward", "__init__", "device"}
TENSOR = re.compile(r"tensor_\d+(_shape)?")  # a tensor, or (KernelBench's format) a weight's shape argument


def program_words(code: str) -> dict[str, set]:
    """Checks the structure and returns the keyword names, for the vocabulary."""
    import torch

    tree = ast.parse(code)
    words: dict[str, set] = {"keywords": set()}
    for node in ast.walk(tree):
        assert isinstance(node, NODES), ast.dump(node)
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] in (["torch"], ["torch.nn"]), ast.dump(node)
        elif isinstance(node, ast.Name):
            assert node.id in TEMPLATE_NAMES or TENSOR.fullmatch(node.id), node.id
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert node.name in TEMPLATE_NAMES, node.name
            assert not node.decorator_list
            if isinstance(node, ast.ClassDef):
                assert [_dotted(b, {"nn": "torch.nn"}) for b in node.bases] == ["torch.nn.Module"] and not node.keywords
            else:
                assert all(TENSOR.fullmatch(a.arg) or a.arg == "self" for a in node.args.args), ast.dump(node.args)
        elif isinstance(node, ast.Constant):
            assert type(node.value) in (int, float, bool, type(None)), repr(node.value)
        elif isinstance(node, ast.keyword):
            assert node.arg is not None
            words["keywords"].add(node.arg)
        elif isinstance(node, ast.Attribute):
            chain = _dotted(node, {"nn": "torch.nn"})
            if chain and chain.startswith("torch."):
                obj = torch
                for part in chain.split(".")[1:]:
                    obj = getattr(obj, part)  # AttributeError: not a torch name
            elif not (chain or "").startswith(("self.", "super.")):
                assert hasattr(torch.Tensor, node.attr) or node.attr == "values", node.attr
    return words


@pytest.fixture(scope="module")
def keyword_vocabulary() -> set[str]:
    """Keyword names of every operator's programs (a few indices, both layouts)."""
    words = set()
    for name in OPERATORS:
        for index in range(3):
            spec = GenerationSpec(op_sequence=[name], min_flops=LO, max_flops=HI, validate=False,
                                  max_total_bytes=2**24, format=("fused_operator", "kernelbench")[index % 2])
            words |= program_words(generate(spec, index).pytorch)["keywords"]
    assert words and all(w.isidentifier() and not w.startswith("_") for w in words), words
    assert not words & {"eval", "exec", "open", "system", "import", "os", "sys", "subprocess", "globals", "builtins"}
    return words


@settings(max_examples=100, deadline=None, database=None)
@given(level=st.integers(0, 4), ops=st.none() | st.lists(st.sampled_from(list(OPERATORS)), min_size=1, max_size=6),
       dtype=st.sampled_from(["float32", "float16", "bfloat16"]),
       fmt=st.sampled_from(["fused_operator", "kernelbench"]),
       topology=st.sampled_from(["dag", "chain"]), seed=st.integers(0, 2**63 - 1), index=st.integers(0, 2**20))
def test_rendered_programs_hold_no_client_text(keyword_vocabulary, level, ops, dtype, fmt, topology, seed, index):
    """Any valid spec: the program holds no string literal, imports torch only, names only
    template names and tensor_<n>, reaches only real torch attributes, and uses keyword
    names from the operators' vocabulary: there is nowhere for client text to be."""
    spec = GenerationSpec(level=level, ops=ops, dtype=dtype, format=fmt, topology=topology, seed=seed,
                          min_flops=LO, max_flops=HI, max_total_bytes=2**24, validate=False)
    try:
        sample = generate(spec, index)
    except GenerationError:
        return
    assert program_words(sample.pytorch)["keywords"] <= keyword_vocabulary
