"""Synchronous samples: POST /v1/samples (JSON, or NDJSON streamed) and a curl-friendly
GET /v1/samples that answers one sample (as Python source with format=py)."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from generator_core import GenerationSpec
from generator_core.spec import MAX_FLOPS_LIMIT
from service.api.body import JsonBodyRoute
from service.api.deps import DefaultsDep, DeviceDefaults, DispatcherDep, SettingsDep, check_caps, resolve_spec
from service.dispatcher import Dispatcher, QueueFull
from service.engine import Outcome
from service.schemas import NDJSON, SampleBatch, SampleRequest, batch_json, documented_header, errors
from service.settings import Settings

router = APIRouter(prefix="/v1/samples", tags=["samples"], route_class=JsonBodyRoute)
RETRY_AFTER_S = "2"


async def _outcomes(dispatcher: Dispatcher, spec) -> AsyncIterator[Outcome]:
    """Outcomes as the dispatcher thread delivers them; a client that goes away cancels
    the rest of its request."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    try:
        ticket = dispatcher.submit_sync(spec, lambda o: loop.call_soon_threadsafe(inbox.put_nowait, o))
    except QueueFull as exc:
        raise HTTPException(429, f"busy: {exc}; retry later", headers={"Retry-After": RETRY_AFTER_S}) from None
    try:
        while (outcome := await inbox.get()) is not None:
            yield outcome
    finally:
        ticket.cancelled = True


def _batch_json(seed: int, outcomes: list[Outcome]) -> str:
    return batch_json({"seed": seed}, ((o.index, o.json, o.error) for o in outcomes))


def _prepare(body: SampleRequest, settings: Settings, defaults: DeviceDefaults, where: str = "body") -> GenerationSpec:
    check_caps(body, settings, "max_sync_count", where)
    return resolve_spec(body, defaults, where)


# What the samples were made with where the request may have left it to the server.
SPEC_HEADERS = {"X-Tcgen-Seed": documented_header("the seed (drawn by the server when the request gave none)"),
                "X-Tcgen-Min-Flops": documented_header("the FLOPs window's lower bound (the request's, else the "
                                                       "server's default)"),
                "X-Tcgen-Max-Flops": documented_header("the FLOPs window's upper bound (the request's, else the "
                                                       "server's default)")}


def _spec_headers(spec: GenerationSpec) -> dict[str, str]:
    return {"X-Tcgen-Seed": str(spec.seed), "X-Tcgen-Min-Flops": str(spec.min_flops),
            "X-Tcgen-Max-Flops": str(spec.max_flops)}


@router.post("", response_model=SampleBatch, summary="Generate samples now",
             responses={200: {"content": {NDJSON: {}}, "headers": SPEC_HEADERS}, **errors(413, 415, 429)})
async def create_samples(body: SampleRequest, request: Request, settings: SettingsDep, defaults: DefaultsDep,
                         dispatcher: DispatcherDep):
    """Up to TCGEN_MAX_SYNC_COUNT samples, in index order. With `Accept: application/x-ndjson`
    each sample is streamed as one line as soon as it is ready (failed indices are skipped).
    A FLOPs bound the body leaves out is the server's default for its validating device."""
    spec = _prepare(body, settings, defaults)
    stream = _outcomes(dispatcher, spec)
    if NDJSON in request.headers.get("accept", ""):
        first = await anext(stream, None)  # a 429 is still an HTTP status, not a broken stream

        async def lines():
            outcome = first
            while outcome is not None:
                if outcome.json is not None:
                    yield outcome.json + "\n"
                outcome = await anext(stream, None)

        return StreamingResponse(lines(), media_type=NDJSON, headers=_spec_headers(spec))
    outcomes = [o async for o in stream]
    return Response(_batch_json(spec.seed, outcomes), media_type="application/json", headers=_spec_headers(spec))


@router.get("", summary="One sample, curl-friendly", response_model=SampleBatch,
            responses={200: {"content": {"text/x-python": {}}}, **errors(429, 503)})
async def read_sample(settings: SettingsDep, defaults: DefaultsDep, dispatcher: DispatcherDep,
                      level: int = Query(..., ge=0, le=4), seed: int | None = Query(None, ge=0, lt=2**63),
                      index: int = Query(0, ge=0, lt=2**63),
                      min_flops: int = Query(2**16, ge=0, le=MAX_FLOPS_LIMIT),
                      max_flops: int = Query(2**22, ge=0, le=MAX_FLOPS_LIMIT),
                      dtype: Literal["float32", "float16", "bfloat16"] = "float32",
                      topology: Literal["dag", "chain"] = "dag",
                      format: Literal["json", "py", "kernelbench"] = "json"):
    """The sample at `index`. The FLOPs window defaults to 2**16..2**22 here (quick to
    validate); `format=py` or `kernelbench` answers the program as text/x-python."""
    body = SampleRequest(level=level, seed=seed, start_index=index, min_flops=min_flops, max_flops=max_flops,
                         dtype=dtype, topology=topology, format="kernelbench" if format == "kernelbench" else
                         "fused_operator")
    spec = _prepare(body, settings, defaults, "query")
    outcomes = [o async for o in _outcomes(dispatcher, spec)]
    if not outcomes:
        raise HTTPException(503, "the service is shutting down", headers={"Retry-After": RETRY_AFTER_S})
    outcome = outcomes[0]
    if outcome.json is None:
        raise RequestValidationError([{"loc": ("query", "index"), "msg": outcome.error, "type": "value_error"}])
    if format == "json":
        return Response(_batch_json(spec.seed, outcomes), media_type="application/json")
    return PlainTextResponse(outcome.sample.pytorch, media_type="text/x-python")
