"""Liveness and readiness (false while starting or draining), which need no API key so
probes work without one; Prometheus metrics, which do when one is set."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.schemas import RETRY_AFTER, Readiness

router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["metrics"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "starting or draining", "headers": RETRY_AFTER}})
def readyz(request: Request, response: Response) -> Readiness:
    d = request.app.state.dispatcher
    ready = d.ready.is_set() and not d.draining
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "2"
    return Readiness(ready=ready, draining=d.draining, error=d.fatal)


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(request: Request) -> Response:
    m = request.app.state.metrics
    m.refresh()
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
