"""Shared dependencies: the API key check, the app's parts, caps, the device's defaults
of a spec, and get_job_or_404."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from generator_core import GenerationSpec
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


def check_caps(request: SampleRequest, settings: Settings, count_cap: str, where: str = "body") -> None:
    """Caps from settings (`count_cap` names the one for count: max_sync_count or
    max_job_count) on what the request asked for, each failure a 422 naming its field, like
    any other bad spec. (The defaults it leaves to the server are within them.)"""
    problems = []
    max_count = getattr(settings, count_cap)
    if request.count > max_count:
        problems.append(("count", f"{request.count} is above the {max_count} allowed here (TCGEN_{count_cap.upper()})"))
    if request.max_flops is not None and request.max_flops > settings.max_flops:
        problems.append(("max_flops", f"{request.max_flops} is above this service's cap {settings.max_flops}"))
    cap = settings.max_total_bytes
    if cap is not None and "max_total_bytes" in request.model_fields_set and request.max_total_bytes > cap:
        problems.append(("max_total_bytes", f"{request.max_total_bytes} is above this service's cap {cap}"))
    if problems:
        raise RequestValidationError([{"loc": (where, field), "msg": msg, "type": "value_error"}
                                      for field, msg in problems])


@dataclass(frozen=True)
class DeviceDefaults:
    """What a request leaves unset and the validating device decides, fixed at start-up
    (create_app): max_total_bytes (TCGEN_MAX_TOTAL_BYTES, else what the device holds) and
    the FLOPs window (service.engine.device_defaults: 2**16..2**22 on a CPU, 2**34..2**35 on
    a GPU), which ends at TCGEN_MAX_FLOPS where that is lower, keeping its ratio max/min."""

    max_total_bytes: int
    min_flops: int
    max_flops: int

    @classmethod
    def of(cls, device: dict[str, int], settings: Settings) -> DeviceDefaults:
        high = min(device["max_flops"], settings.max_flops)
        low = high * device["min_flops"] // device["max_flops"]
        return cls(max_total_bytes=settings.max_total_bytes or device["max_total_bytes"], min_flops=low,
                   max_flops=high)


def get_defaults(request: Request) -> DeviceDefaults:
    return request.app.state.device_defaults


def resolve_spec(request: SampleRequest, defaults: DeviceDefaults, where: str = "body") -> GenerationSpec:
    """The spec the engine runs: what the request leaves unset (max_total_bytes, min_flops,
    max_flops) is the server's default for its validating device. A bound given alone that
    its partner's default contradicts is a 422 naming it and saying so; GenerationSpec then
    checks the whole (SampleRequest checked the rest with the unset bound open)."""
    unset = {f: getattr(defaults, f) for f in ("min_flops", "max_flops") if getattr(request, f) is None}
    if "max_total_bytes" not in request.model_fields_set:
        unset["max_total_bytes"] = defaults.max_total_bytes
    resolved = request.model_copy(update=unset)
    if resolved.min_flops > resolved.max_flops:  # so one bound was given, against the other's default
        given, other = ("max_flops", "min_flops") if "min_flops" in unset else ("min_flops", "max_flops")
        raise RequestValidationError([{"loc": (where, given), "type": "value_error", "msg": (
            f"{getattr(resolved, given)} is {'below' if given == 'max_flops' else 'above'} {other} {unset[other]}, "
            f"this server's default (its validating device's window is {defaults.min_flops}..{defaults.max_flops}); "
            f"give {other} too")}])
    try:
        return resolved.to_spec()
    except ValidationError as err:
        raise RequestValidationError([{**e, "loc": (where, *e["loc"])} for e in err.errors()]) from None


def get_job_or_404(job_id: str, store: Annotated[JobStore, Depends(get_store)]) -> JobRecord:
    job = store.get_job(job_id=job_id) if len(job_id) <= 64 else None
    if job is None:
        raise HTTPException(404, f"job_id: no job {job_id[:64]!r} (finished jobs expire; see GET /v1/jobs)")
    return job


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
DefaultsDep = Annotated[DeviceDefaults, Depends(get_defaults)]
JobDep = Annotated[JobRecord, Depends(get_job_or_404)]
