"""The API key guards every route but the public ones (routes enumerated from the app, so a
new route is covered by itself), and the service binds loopback unless told otherwise.

Against the directory's keyed server (conftest.py): a real `tcgen serve` on 127.0.0.1, one
worker; no TCGEN_* variable of the caller's environment reaches it.
"""
from __future__ import annotations

import httpx
import psutil
from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import API_KEY as KEY
from helpers import HI, LO, wait_finished
from service.api.deps import require_api_key
from service.app import create_app
from local_server import LocalServer
from service.settings import Settings

SMALL = {"min_flops": LO, "max_flops": HI, "validate": False, "seed": 1}
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
