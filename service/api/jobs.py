"""Asynchronous jobs: submit (202 + Location), status with long-poll, paged or streamed
results, cancel (partial results kept), delete, list."""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, WithJsonSchema

from service.api.body import JsonBodyRoute
from service.api.deps import DefaultsDep, DispatcherDep, JobDep, SettingsDep, StoreDep, check_caps, resolve_spec
from service.dispatcher import QueueFull
from service.jobs.store import FINISHED, IdempotencyConflict, JobRecord, JobStore
from service.schemas import (NDJSON, JobList, JobRead, SampleBatch, SampleRequest, batch_json, documented_header,
                             errors)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=JsonBodyRoute)
POLL_S = 0.2
STREAM_PAGE = 256
LOCATION = {"Location": documented_header("/v1/jobs/{job_id}: where the job's status is")}
# OpenAPI links: a client (and schemathesis' stateful phase) goes from a submitted job, by
# its id (the same id as in Location), to the operations on it.
JOB_LINKS = {name: {"operationId": operation_id, "parameters": {"job_id": "$response.body#/id"}}
             for name, operation_id in (("ReadJob", "read_job_v1_jobs__job_id__get"),
                                        ("ReadJobSamples", "read_job_samples_v1_jobs__job_id__samples_get"),
                                        ("CancelJob", "cancel_job_v1_jobs__job_id__cancel_post"),
                                        ("DeleteJob", "delete_job_v1_jobs__job_id__delete"))}


KEY_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"  # printable ASCII, no blank at either end (HTTP strips those)


def _printable_ascii(key: str) -> str:
    if len(key) > 200 or not re.fullmatch(KEY_PATTERN, key):
        raise ValueError("must be 1 to 200 printable ASCII characters, no blank at either end")
    return key


IdempotencyKey = Annotated[
    Annotated[str, AfterValidator(_printable_ascii),
              WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 200, "pattern": KEY_PATTERN})] | None,
    Header(description="the same key with the same body returns the job it made")]


def job_read(job: JobRecord) -> JobRead:
    return JobRead(id=job.id, state=job.state, spec=json.loads(job.spec_json),
                   progress={"total": job.total, "completed": job.completed, "failed": job.failed},
                   created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
                   error=job.error)


def _status_response(job: JobRecord, response: Response, status: int = 200) -> JobRead:
    response.status_code = status
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if job.state not in FINISHED:
        response.headers["Retry-After"] = "1"
    return job_read(job)


@router.post("", status_code=202, response_model=JobRead, summary="Submit a job",
             responses={202: {"description": "accepted", "headers": LOCATION, "links": JOB_LINKS},
                        200: {"model": JobRead, "description": "the job this Idempotency-Key already made",
                              "headers": LOCATION, "links": JOB_LINKS}, **errors(413, 415, 429, 503)})
def create_job(body: SampleRequest, response: Response, settings: SettingsDep, defaults: DefaultsDep,
               store: StoreDep, dispatcher: DispatcherDep, idempotency_key: IdempotencyKey = None):
    """Runs `count` samples in the background; results persist as they arrive. The same
    `Idempotency-Key` with the same body returns the same job (200); with another body, 422.
    A FLOPs bound the body leaves out is the server's default for its validating device;
    the job's spec says which window it got. (The key's body is what the client sent.)"""
    check_caps(body, settings, "max_job_count")
    request_hash = hashlib.sha256(body.model_dump_json(by_alias=True).encode()).hexdigest()
    if idempotency_key is not None:
        existing = store.find_job_by_idempotency_key(key=idempotency_key)
        if existing is not None:
            return _same_job(existing, request_hash, response)
    if dispatcher.draining:
        raise HTTPException(503, "the service is shutting down; retry later", headers={"Retry-After": "5"})
    spec = resolve_spec(body, defaults)
    try:
        with dispatcher.job_slot() as submit:  # held from the cap check until the job is queued
            job = store.create_job(job_id=uuid.uuid4().hex, spec_json=spec.model_dump_json(by_alias=True),
                                   total=spec.count, now=time.time(), idempotency_key=idempotency_key,
                                   request_hash=request_hash)
            submit(job.id, spec)
    except QueueFull:
        raise HTTPException(429, f"{settings.max_queued_jobs} jobs are queued or running; retry later",
                            headers={"Retry-After": "10"}) from None
    except IdempotencyConflict as conflict:  # a concurrent request with the same key won
        return _same_job(conflict.job, request_hash, response)
    return _status_response(job, response, 202)


def _same_job(job: JobRecord, request_hash: str, response: Response) -> JobRead:
    if job.request_hash != request_hash:
        raise RequestValidationError([{"loc": ("header", "Idempotency-Key"), "type": "value_error",
                                       "msg": "already used for a different request body"}])
    return _status_response(job, response, 200)


@router.get("", response_model=JobList, summary="List jobs")
def list_jobs(store: StoreDep, state: Literal["queued", "running", "succeeded", "failed", "cancelling",
                                              "cancelled"] | None = None,
              offset: int = Query(0, ge=0, le=2**31), limit: int = Query(50, ge=1, le=500)):
    jobs = store.list_jobs(state=state, offset=offset, limit=limit)
    return JobList(jobs=[job_read(j) for j in jobs], total=store.count_jobs(state=state), offset=offset, limit=limit)


@router.get("/{job_id}", response_model=JobRead, summary="Job status",
            responses={200: {"headers": LOCATION}, **errors(404)})
async def read_job(job: JobDep, store: StoreDep, response: Response,
                   wait: float = Query(0, ge=0, le=60, description="long-poll: wait up to this many seconds "
                                                                   "for the job to finish")):
    deadline = time.monotonic() + wait
    while job.state not in FINISHED and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        job = await asyncio.to_thread(store.get_job, job_id=job.id) or job
    return _status_response(job, response)


@router.get("/{job_id}/samples", response_model=SampleBatch, summary="Job results",
            responses={200: {"content": {NDJSON: {}}}, **errors(404)})
async def read_job_samples(job: JobDep, store: StoreDep, request: Request,
                           offset: int = Query(0, ge=0, le=2**31), limit: int = Query(100, ge=1, le=1000)):
    """A page of results in index order (`offset`, `limit` count stored results, failed
    indices included). With `Accept: application/x-ndjson`: every sample stored so far, and
    then as they arrive until the job finishes, one per line, the bytes `tcgen generate`
    writes (failed indices are skipped, as there)."""
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_stream(store, job.id, offset), media_type=NDJSON)
    rows = await asyncio.to_thread(store.read_results, job_id=job.id, offset=offset, limit=limit)
    head = {"job_id": job.id, "state": job.state, "offset": offset, "count": len(rows)}
    return Response(batch_json(head, (r[1:] for r in rows)), media_type="application/json")


async def _stream(store: JobStore, job_id: str, position: int):
    while True:
        job = await asyncio.to_thread(store.get_job, job_id=job_id)
        rows = await asyncio.to_thread(store.read_results, job_id=job_id, offset=position, limit=STREAM_PAGE)
        for _, _, sample_json, _ in rows:
            if sample_json is not None:
                yield sample_json + "\n"
        position += len(rows)
        if job is None or (job.state in FINISHED and not rows):
            return
        if not rows:
            await asyncio.sleep(POLL_S)


@router.post("/{job_id}/cancel", response_model=JobRead, summary="Cancel a job (keeps partial results)",
             responses={200: {"headers": LOCATION}, **errors(404, 415, 503)})
def cancel_job(job: JobDep, store: StoreDep, dispatcher: DispatcherDep, response: Response):
    if job.state not in FINISHED:
        store.set_job_state(job_id=job.id, state="cancelling", now=time.time())
        dispatcher.cancel_job(job.id)
        job = store.get_job(job_id=job.id) or job
    return _status_response(job, response)


@router.delete("/{job_id}", status_code=204, summary="Forget a finished job and its results",
               responses=errors(404, 409, 503))
def delete_job(job: JobDep, store: StoreDep):
    if job.state not in FINISHED:
        raise HTTPException(409, f"job_id: job {job.id} is {job.state}; cancel it first, then delete it")
    store.delete_job(job_id=job.id)
    return Response(status_code=204)
