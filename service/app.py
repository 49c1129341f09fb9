"""create_app(): the FastAPI app of `tcgen serve`. The engine, its dispatcher thread, the
job store and the metrics are built once at start-up and kept on app.state."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from generator_core import GenerationSpec
from service.api import health, jobs, ops, samples
from service.api.deps import require_api_key
from service.dispatcher import Dispatcher
from service.engine import Engine, default_max_total_bytes, device_slots
from service.jobs.store import JobStore
from service.metrics import Metrics
from service.settings import Settings


class BodyLimit:
    """413 for a body over `limit` bytes, by Content-Length or while it streams in (no
    request can make the server buffer more than that)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._too_large(send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = f'{{"detail":"request body: larger than {self.limit} bytes (TCGEN_MAX_BODY_BYTES)"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _spec_error(request: Request, exc: ValidationError) -> JSONResponse:
    """A spec built inside a handler (GET /v1/samples from query parameters) that pydantic
    rejects: the same 422 as a bad body."""
    return _validation_error(request, RequestValidationError(
        [{**e, "loc": ("query", *e.get("loc", ()))} for e in exc.errors()]))


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 whose message names each offending field ('body.min_flops: ...')."""
    errors = []
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        field = msg.split(":", 1)[0]
        if field in GenerationSpec.model_fields and loc and loc[-1] != field:  # a whole-spec check names its field
            loc.append(field)
            msg = msg.split(":", 1)[1].strip()
        errors.append({"loc": loc, "msg": msg, "type": e.get("type"),
                       "message": f"{'.'.join(str(x) for x in loc)}: {msg}"})
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if settings.max_total_bytes is None:
        settings = settings.model_copy(update={"max_total_bytes": default_max_total_bytes(device_slots(settings.device))})
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = JobStore(settings.db_path)
        metrics.track_jobs(store.count_jobs_by_state)
        dispatcher = Dispatcher(settings, store, metrics, lambda: Engine(
            solver_workers=settings.solver_workers, device=settings.device, observer=metrics))
        app.state.store, app.state.dispatcher = store, dispatcher
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()  # SIGTERM: uvicorn has drained the open requests by now
            store.close()

    app = FastAPI(title="tcgen", version="0.1.0", lifespan=lifespan,
                  description="Synthetic PyTorch kernel-training programs, solved with CP-SAT and validated.")
    app.state.settings, app.state.metrics = settings, metrics
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _spec_error)
    protected = [Depends(require_api_key)]
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=protected)
    app.include_router(ops.router, dependencies=protected)
    app.include_router(samples.router, dependencies=protected)
    app.include_router(jobs.router, dependencies=protected)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(request.method, getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
