"""HTTP request and response models. Requests are the core's GenerationSpec with the
HTTP defaults (a seed the server draws when none is given); they convert themselves into
the spec the engine runs."""
from __future__ import annotations

import json
import secrets
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from generator_core import GenerationSpec

NDJSON = "application/x-ndjson"


class SampleRequest(GenerationSpec):
    """A spec for POST /v1/samples and POST /v1/jobs. `seed` is drawn by the server (and
    returned) when omitted, so two requests without one get different samples."""

    seed: int | None = Field(None, ge=0, lt=2**63, description="everything random derives from (seed, index); "
                             "drawn by the server when omitted")

    def to_spec(self) -> GenerationSpec:
        fields = self.model_dump(by_alias=True)
        if fields["seed"] is None:
            fields["seed"] = secrets.randbelow(2**31)
        return GenerationSpec(**fields)


class Progress(BaseModel):
    total: int
    completed: int
    failed: int


class JobRead(BaseModel):
    id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelling", "cancelled"]
    spec: dict[str, Any]
    progress: Progress
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
    objects, see `tcgen sample`; kept as the engine wrote them)."""

    model_config = ConfigDict(extra="allow")
    seed: int | None = None
    samples: list[dict[str, Any]]
    failed: list[FailedIndex] = []


def batch_json(head: dict[str, Any], results: Iterable[tuple[int, str | None, str | None]]) -> str:
    """A SampleBatch body from (index, sample JSON or None, error) results: the head fields,
    then the samples kept byte for byte as the engine serialised them, then the failures."""
    results = list(results)
    samples = ",".join(sample for _, sample, _ in results if sample is not None)
    failed = json.dumps([{"index": index, "error": error} for index, sample, error in results if sample is None])
    return json.dumps(head, separators=(",", ":"))[:-1] + f',"samples":[{samples}],"failed":{failed}}}'
