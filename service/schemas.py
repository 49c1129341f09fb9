"""HTTP request and response models. Requests are the core's GenerationSpec with the
HTTP defaults (a seed the server draws when none is given); they convert themselves into
the spec the engine runs."""
from __future__ import annotations

import json
import secrets
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from generator_core import GenerationSpec
from generator_core.spec import MAX_FLOPS_LIMIT, MAX_OPS

NDJSON = "application/x-ndjson"
DEFAULT_WINDOW = ("default (null): the validating device's window: 2**16..2**22 on a CPU, 2**34..2**35 on a GPU "
                  "(ending at TCGEN_MAX_FLOPS where that is lower); each sample, a job's spec and POST "
                  "/v1/samples' X-Tcgen-Min-Flops and X-Tcgen-Max-Flops headers say what it was")


def _state_checks(schema: dict[str, Any]) -> None:
    """SampleRequest's JSON schema says what of GenerationSpec's own checks JSON Schema can:
    one of level, num_ops or op_sequence (its validator: "level: required unless num_ops or
    op_sequence is given"), 1 to MAX_OPS operators in op_sequence, a non-empty ops. Not what it
    cannot: caps, min_flops <= max_flops, operator names (the catalogue is GET /v1/ops), and
    a strict integer (JSON Schema counts 2.0 as one)."""
    schema["anyOf"] = [{"required": ["level"], "properties": {"level": {"type": "integer"}}},
                       {"required": ["num_ops"], "properties": {"num_ops": {"type": "integer"}}},
                       {"required": ["op_sequence"], "properties": {"op_sequence": {"type": "array"}}}]
    for field, bounds in (("op_sequence", {"minItems": 1, "maxItems": MAX_OPS}), ("ops", {"minItems": 1})):
        next(s for s in schema["properties"][field]["anyOf"] if s.get("type") == "array").update(bounds)
    # Quick ones (a small FLOPs window): for the reader, and schemathesis sends them too.
    schema["examples"] = [
        {"level": 1, "count": 2, "min_flops": 2**16, "max_flops": 2**22},
        {"num_ops": 6, "seed": 3, "min_flops": 2**16, "max_flops": 2**22},
        {"op_sequence": ["Matmul", "ReLU"], "seed": 7, "min_flops": 2**16, "max_flops": 2**22,
         "dtype": "bfloat16", "format": "kernelbench"}]


class SampleRequest(GenerationSpec):
    """A spec for POST /v1/samples and POST /v1/jobs: `level`, `num_ops` or `op_sequence` (level
    may come with either).
    `seed` is drawn by the server (and returned) when omitted, so two requests without one
    get different samples; a FLOPs bound left out is the validating device's. Strict types:
    true, "1" and 1.0 are not integers, 1 and "true" not booleans (a JSON body has the types
    it means)."""

    model_config = ConfigDict(strict=True, json_schema_extra=_state_checks)

    seed: int | None = Field(None, ge=0, lt=2**63, description="everything random derives from (seed, index); "
                             "drawn by the server when omitted")
    min_flops: int | None = Field(None, ge=0, le=MAX_FLOPS_LIMIT, description="a sample's least FLOPs; "
                                  + DEFAULT_WINDOW)
    max_flops: int | None = Field(None, ge=0, le=MAX_FLOPS_LIMIT, description="a sample's most FLOPs; "
                                  + DEFAULT_WINDOW)

    @model_validator(mode="after")
    def _satisfiable(self):
        """GenerationSpec's checks (this replaces its validator of the same name), with an
        unset FLOPs bound standing for any value: the server fills it in from its device's
        window and checks the whole again (api.deps.resolve_spec)."""
        GenerationSpec._satisfiable(self.model_copy(update={
            "min_flops": 0 if self.min_flops is None else self.min_flops,
            "max_flops": MAX_FLOPS_LIMIT if self.max_flops is None else self.max_flops}))
        return self

    def to_spec(self) -> GenerationSpec:
        """The engine's spec; a seed drawn if none was given. The FLOPs window must be set by
        now (resolve_spec fills in the server's default)."""
        fields = self.model_dump(by_alias=True)
        if fields["seed"] is None:
            fields["seed"] = secrets.randbelow(2**31)
        return GenerationSpec(**fields)


class ErrorMessage(BaseModel):
    """The body of every error but 422: what went wrong, for a person."""

    detail: str


class Readiness(BaseModel):
    ready: bool
    draining: bool
    error: str | None = Field(None, description="why the engine failed to start, if it did")


class JobProgress(BaseModel):
    """A job's counts (the engine's own running tally is service.engine.Progress)."""

    total: int
    completed: int
    failed: int


class JobRead(BaseModel):
    id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    spec: dict[str, Any]
    progress: JobProgress
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None


class JobList(BaseModel):
    jobs: list[JobRead]
    total: int
    offset: int
    limit: int


class FailedIndex(BaseModel):
    index: int
    error: str


class SampleBatch(BaseModel):
    """The body of POST /v1/samples and of a page of job results (samples are Sample
    records, see `tcgen sample`: rejected, graph, validation, grading and baseline as JSON
    text; kept as the engine wrote them)."""

    model_config = ConfigDict(extra="allow")
    seed: int | None = None
    samples: list[dict[str, Any]]
    failed: list[FailedIndex] = []


def documented_header(description: str) -> dict[str, Any]:
    """A response header the answer always carries."""
    return {"description": description, "required": True, "schema": {"type": "string"}}


RETRY_AFTER = {"Retry-After": documented_header("seconds to wait before retrying")}
ERRORS: dict[int, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "missing or wrong API key (when TCGEN_API_KEY is set)",
          "headers": {"WWW-Authenticate": documented_header("Bearer")}},
    404: {"model": ErrorMessage, "description": "no such job (finished jobs expire)"},
    409: {"model": ErrorMessage, "description": "the job is still running; cancel it first"},
    413: {"model": ErrorMessage, "description": "request body over TCGEN_MAX_BODY_BYTES"},
    415: {"model": ErrorMessage, "description": "a Content-Encoding other than identity: bodies are read "
                                                "uncompressed only"},
    429: {"model": ErrorMessage, "description": "busy; retry after Retry-After seconds", "headers": RETRY_AFTER},
    503: {"model": ErrorMessage, "description": "shutting down, or the job store is locked by another process; "
                                                "retry after Retry-After seconds",
          "headers": RETRY_AFTER},
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route, by status code."""
    return {code: ERRORS[code] for code in codes}


def batch_json(head: dict[str, Any], results: Iterable[tuple[int, str | None, str | None]]) -> str:
    """A SampleBatch body from (index, sample JSON or None, error) results: the head fields,
    then the samples kept byte for byte as the engine serialised them, then the failures."""
    results = list(results)
    samples = ",".join(sample for _, sample, _ in results if sample is not None)
    failed = json.dumps([{"index": index, "error": error} for index, sample, error in results if sample is None])
    return json.dumps(head, separators=(",", ":"))[:-1] + f',"samples":[{samples}],"failed":{failed}}}'
