"""create_app(): the FastAPI app of `tcgen serve`. The engine, its dispatcher thread, the
job store and the metrics are built once at start-up and kept on app.state."""
from __future__ import annotations

import sqlite3
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from generator_core import GenerationSpec
from service.api import health, jobs, ops, samples
from service.api.body import Rejected
from service.api.deps import DeviceDefaults, require_api_key
from service.dispatcher import Dispatcher
from service.engine import Engine, device_defaults
from service.jobs.store import JobStore
from service.metrics import Metrics
from service.middleware import ApiKeyGate, BodyLimit, HeadAsGet, IdentityEncoding
from service.schemas import errors
from service.settings import Settings


STORE_RETRY_AFTER_S = "2"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _spec_error(request: Request, exc: ValidationError) -> JSONResponse:
    """A spec built inside a handler (GET /v1/samples from query parameters) that pydantic
    rejects: the same 422 as a bad body."""
    return _validation_error(request, RequestValidationError(
        [{**e, "loc": ("query", *e.get("loc", ()))} for e in exc.errors()]))


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 whose message names each offending field ('body.min_flops: ...'). A value the
    body parser rejected (body.Rejected: text that is not Unicode, an integer of too many
    digits) is reported as what it is, not as the type the field wanted; FastAPI's JSON
    decode error says where and why."""
    errors = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        rejected = e.get("input")
        if isinstance(rejected, Rejected) and e.get("type") != "extra_forbidden":
            msg, e = rejected.reason, {**e, "type": rejected.type}
        elif e.get("type") == "json_invalid" and (e.get("ctx") or {}).get("error"):
            msg = f"{msg}: {e['ctx']['error']}"
        field = msg.split(":", 1)[0]
        if field in GenerationSpec.model_fields and loc and loc[-1] != field:  # a whole-spec check names its field
            loc.append(field)
            msg = msg.split(":", 1)[1].strip()
        errors.append({"loc": loc, "msg": msg, "type": e.get("type"),
                       "message": f"{'.'.join(str(x) for x in loc)}: {msg}"})
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(request: Request, exc: HTTPException):
    """FastAPI's answer, except for two of its own errors:
    - 400 is FastAPI's answer to a body json.loads failed on other than with a
      JSONDecodeError (nothing here raises 400 itself), raised from that error: a 422 like
      any other body that is not JSON, saying which failure it was;
    - a 405's Allow names every method of the path: Starlette names only those of the
      first route that matched (GET, where DELETE works too), FastAPI's included routers none."""
    if exc.status_code == 400:
        return _validation_error(request, RequestValidationError(
            [{"loc": ("body",), "msg": _unparsable(exc.__cause__), "type": "json_invalid"}]))
    if exc.status_code == 405:
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.scope["path"]))}
    return await http_exception_handler(request, exc)


def _unparsable(cause: BaseException | None) -> str:
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "JSON decode error: not UTF-8 text"
    return f"JSON decode error: {type(cause).__name__}: {cause}" if cause else "JSON decode error"


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method a route serves at `path`, sorted; HEAD wherever GET is (HeadAsGet).
    FastAPI 0.16x keeps included routers as _IncludedRouter entries of app.routes, whose
    routes (with the router's prefix) are its effective_route_contexts()."""
    methods: set[str] = set()

    def walk(routes) -> None:
        for r in routes:
            if hasattr(r, "effective_route_contexts"):
                walk(r.effective_route_contexts())
            elif getattr(r, "path_regex", None) is not None and r.path_regex.match(path):
                methods.update(r.methods or ())

    walk(app.routes)
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


def _store_unavailable(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
    """The job store is locked past its busy_timeout (another process holds the write lock)
    or cannot be written: the request did not happen, so 503 and come back, not 500."""
    return JSONResponse({"detail": f"job store unavailable ({exc}); retry later"}, status_code=503,
                        headers={"Retry-After": STORE_RETRY_AFTER_S})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    device = device_defaults(settings.device, settings.backend)  # builds the backend once, here
    if settings.max_total_bytes is None:
        settings = settings.model_copy(update={"max_total_bytes": device["max_total_bytes"]})
    metrics = Metrics()
    app = FastAPI(title="tcgen", version="0.1.0", lifespan=_lifespan(settings, metrics),
                  description="Synthetic PyTorch kernel-training programs, solved with CP-SAT and validated.")
    app.state.settings, app.state.metrics = settings, metrics
    app.state.device_defaults = DeviceDefaults.of(device, settings)
    _add_exception_handlers(app)
    _include_routers(app)
    _add_middleware(app, settings, metrics)
    return app


def _lifespan(settings: Settings, metrics: Metrics):
    """The app's lifespan: opens the job store and runs the dispatcher while the app serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = JobStore(settings.db_path)
        metrics.track_jobs(store.count_jobs_by_state)
        dispatcher = Dispatcher(settings, store, metrics, lambda: Engine(
            solver_workers=settings.solver_workers, device=settings.device, observer=metrics, backend=settings.backend))
        app.state.store, app.state.dispatcher = store, dispatcher
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()  # SIGTERM: uvicorn has drained the open requests by now
            store.close()

    return lifespan


def _add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _spec_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(sqlite3.OperationalError, _store_unavailable)


def _include_routers(app: FastAPI) -> None:
    """/health is open; every other router needs the API key."""
    protected = {"dependencies": [Depends(require_api_key)], "responses": errors(401)}
    app.include_router(health.router)
    for router in (health.metrics_router, ops.router, samples.router, jobs.router):
        app.include_router(router, **protected)


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Registers the middleware, innermost first (each one added wraps those before it)."""
    # Innermost: every route sees HEAD as GET, and everything outside (the key gate's 401,
    # the request metrics) still sees the HEAD it was.
    app.add_middleware(HeadAsGet)
    # Inside count_requests: that one hands the body on through a task group, which would wrap
    # BodyLimit's 413 in an ExceptionGroup that FastAPI turns into a 400.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    # Outside BodyLimit: a compressed body is refused before any of it is read.
    app.add_middleware(IdentityEncoding)
    # Outside BodyLimit and the routes: a request without the key is turned away before any
    # of its body is read or parsed.
    app.add_middleware(ApiKeyGate, settings=settings)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        # Made-up methods share one label: anyone (no key needed) could otherwise add a time
        # series per method name and grow the server's memory without bound.
        method = request.method if request.method in KNOWN_METHODS else "other"
        metrics.requests.labels(method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response
