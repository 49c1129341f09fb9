"""Shared dependencies: the API key check, the app's parts, caps, and get_job_or_404."""
from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.dispatcher import Dispatcher
from service.jobs.store import JobRecord, JobStore
from service.schemas import SampleRequest
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False)
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def require_api_key(settings: Annotated[Settings, Depends(get_settings)],
                    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                    header: Annotated[str | None, Depends(_header)]) -> None:
    """With TCGEN_API_KEY set, `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    if not key_matches(settings, header or (bearer.credentials if bearer else None)):
        raise HTTPException(401, "missing or wrong API key (Authorization: Bearer <key> or X-API-Key)",
                            headers={"WWW-Authenticate": "Bearer"})


def key_matches(settings: Settings, given: str | None) -> bool:
    """True without a configured key, else for exactly the key's UTF-8 bytes (compared in
    constant time). `given` is header text, which Starlette decodes byte for byte as latin-1:
    encoding it back gives the bytes the client sent, so a key that is not ASCII passes as
    its UTF-8 (what curl sends from a UTF-8 shell). Text that no header can hold (a character
    past U+00FF, from a Python caller) is compared as UTF-8; a lone surrogate cannot crash it."""
    if settings.api_key is None:
        return True
    if given is None:
        return False
    try:
        sent = given.encode("latin-1")
    except UnicodeEncodeError:
        sent = given.encode("utf-8", "surrogatepass")
    return secrets.compare_digest(sent, settings.api_key.get_secret_value().encode("utf-8", "surrogatepass"))


def check_caps(request: SampleRequest, settings: Settings, count_cap: str) -> None:
    """Caps from settings (`count_cap` names the one for count: max_sync_count or
    max_job_count), each failure a 422 naming its field, like any other bad spec."""
    problems = []
    max_count = getattr(settings, count_cap)
    if request.count > max_count:
        problems.append(("count", f"{request.count} is above the {max_count} allowed here (TCGEN_{count_cap.upper()})"))
    if request.max_flops > settings.max_flops:
        problems.append(("max_flops", f"{request.max_flops} is above this service's cap {settings.max_flops}"))
    cap = settings.max_total_bytes
    if cap is not None and "max_total_bytes" in request.model_fields_set and request.max_total_bytes > cap:
        problems.append(("max_total_bytes", f"{request.max_total_bytes} is above this service's cap {cap}"))
    if problems:
        raise RequestValidationError([{"loc": ("body", field), "msg": msg, "type": "value_error"}
                                      for field, msg in problems])


def apply_device_default(request: SampleRequest, settings: Settings) -> SampleRequest:
    """A request that leaves max_total_bytes unset gets what the validating device holds."""
    if "max_total_bytes" in request.model_fields_set or settings.max_total_bytes is None:
        return request
    return request.model_copy(update={"max_total_bytes": settings.max_total_bytes})


def get_job_or_404(job_id: str, store: Annotated[JobStore, Depends(get_store)]) -> JobRecord:
    job = store.get_job(job_id=job_id) if len(job_id) <= 64 else None
    if job is None:
        raise HTTPException(404, f"job_id: no job {job_id[:64]!r} (finished jobs expire; see GET /v1/jobs)")
    return job


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
JobDep = Annotated[JobRecord, Depends(get_job_or_404)]
