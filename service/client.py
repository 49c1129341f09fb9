"""A small synchronous client of the tcgen service, for orchestrators (e.g. verl data
workers). Only needs httpx.

    with TcgenClient("http://127.0.0.1:8000", api_key=KEY) as tc:
        job = tc.submit_job({"level": 2, "count": 1000, "seed": 0}, idempotency_key="run-7")
        tc.wait(job["id"], timeout=3600)
        for sample in tc.iter_results(job["id"]):
            ...

Samples come as records (dicts; README "Records"): `rejected`, `graph`, `validation`,
`grading` and `baseline` are JSON text; generator_core.Sample.model_validate(record) types them.

429 and 503 answers are retried after their Retry-After (a bounded number of times);
any other 4xx/5xx raises TcgenError carrying the server's `detail`.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

import httpx

NDJSON = "application/x-ndjson"
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
RETRY_STATUSES = frozenset({429, 503})


class TcgenError(Exception):
    """An error answer of the service: HTTP status and the server's `detail`."""

    def __init__(self, status: int, detail: Any):
        self.status, self.detail = status, detail
        super().__init__(f"HTTP {status}: {_message(detail)}")


def _message(detail: Any) -> str:
    # 422 details are lists of {"message": "body.count: ..."} (see service/app.py).
    if isinstance(detail, list):
        return "; ".join(str(d.get("message") or d.get("msg") or d) if isinstance(d, dict) else str(d)
                         for d in detail)
    return str(detail)


class TcgenClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None,
                 timeout: float = 120.0, max_retries: int = 5, max_retry_after: float = 60.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self.max_retries, self.max_retry_after = max_retries, max_retry_after

    def __enter__(self) -> TcgenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ------------------------------------------------------------------

    def _delay(self, response: httpx.Response, attempt: int) -> float:
        try:
            return min(float(response.headers["Retry-After"]), self.max_retry_after)
        except (KeyError, ValueError):  # missing, or an HTTP date: back off exponentially
            return min(2.0 ** attempt, self.max_retry_after)

    @contextmanager
    def _send(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """One request, streamed so NDJSON can be read line by line; retried on 429/503
        before any body is consumed, so a retry never duplicates delivered samples."""
        for attempt in range(self.max_retries + 1):
            with self._http.stream(method, url, **kwargs) as response:
                if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                    delay = self._delay(response, attempt)
                else:
                    if response.status_code >= 400:
                        response.read()
                        raise TcgenError(response.status_code, _detail(response))
                    yield response
                    return
            time.sleep(delay)

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        with self._send(method, url, **kwargs) as response:
            response.read()
            return response.json() if response.content else None

    def _lines(self, method: str, url: str, **kwargs: Any) -> Iterator[str]:
        headers = {**kwargs.pop("headers", {}), "Accept": NDJSON}
        with self._send(method, url, headers=headers, **kwargs) as response:
            yield from _split_lines(response.iter_bytes())

    # -- samples -------------------------------------------------------------------

    def ops(self) -> list[dict]:
        """The operator catalogue."""
        return self._json("GET", "/v1/ops")

    def samples(self, spec: dict) -> list[dict]:
        """Up to the server's sync cap of samples (failed indices are left out; use
        `samples_batch` to see them)."""
        return self.samples_batch(spec)["samples"]

    def samples_batch(self, spec: dict) -> dict:
        """The whole answer: {"seed", "samples", "failed": [{"index", "error"}]}."""
        return self._json("POST", "/v1/samples", json=spec)

    def iter_samples(self, spec: dict) -> Iterator[dict]:
        """Samples one by one as the server finishes them."""
        for line in self._lines("POST", "/v1/samples", json=spec):
            yield json.loads(line)

    def sample_code(self, level: int, seed: int | None = None, index: int = 0, **query: Any) -> str:
        """One program as Python source (GET /v1/samples?format=py; pass format="kernelbench"
        for that layout; other keywords: min_flops, max_flops, dtype, topology)."""
        params = {"level": level, "index": index, "format": "py", **query}
        if seed is not None:
            params["seed"] = seed
        with self._send("GET", "/v1/samples", params=params) as response:
            response.read()
            return response.text

    # -- jobs ----------------------------------------------------------------------

    def submit_job(self, spec: dict, idempotency_key: str | None = None) -> dict:
        """Submit a job (JobRead). With an idempotency key a retried submit returns the same
        job instead of a second one, so pass one whenever a retry could happen."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/v1/jobs", json=spec, headers=headers)

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 30) -> dict:
        """Long-poll until the job is succeeded, failed or cancelled; TimeoutError past
        `timeout` seconds (None: no limit). Returns the final JobRead."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = min(poll, 60.0)  # the server caps ?wait= at 60 s
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            read = self._http.timeout.read  # the long-poll must not outlast the read timeout
            job = self._json("GET", f"/v1/jobs/{job_id}", params={"wait": round(wait, 3)},
                             timeout=None if read is None else max(read, wait + 30))
            if job["state"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s "
                                   f"({job['progress']['completed']}/{job['progress']['total']} done)")

    def iter_results(self, job_id: str) -> Iterator[dict]:
        """Every sample of the job in index order, following it until it finishes."""
        for line in self.iter_result_lines(job_id):
            yield json.loads(line)

    def iter_result_lines(self, job_id: str) -> Iterator[str]:
        """As iter_results, but the raw lines (without "\\n"), byte for byte what
        `tcgen generate` writes for the same spec."""
        return self._lines("GET", f"/v1/jobs/{job_id}/samples")

    def results_page(self, job_id: str, offset: int = 0, limit: int = 100) -> dict:
        """One page: {"job_id", "state", "offset", "count", "samples", "failed"}."""
        return self._json("GET", f"/v1/jobs/{job_id}/samples", params={"offset": offset, "limit": limit})

    def cancel(self, job_id: str) -> dict:
        """Ask a job to stop; results so far are kept."""
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        """Forget a finished job and its results (TcgenError 409 while it runs)."""
        self._json("DELETE", f"/v1/jobs/{job_id}")

    def jobs(self, state: str | None = None, offset: int = 0, limit: int = 50) -> dict:
        """{"jobs": [JobRead...], "total", "offset", "limit"}."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state is not None:
            params["state"] = state
        return self._json("GET", "/v1/jobs", params=params)


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text


def _split_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """NDJSON lines from raw chunks. Split on b"\\n" only (not str.splitlines, which also
    breaks at \\u2028 and friends) so each line is exactly what the server sent."""
    pending: list[bytes] = []  # pieces of the current line; a list, as lines can be MBs
    for chunk in chunks:
        *ends, rest = chunk.split(b"\n")
        for end in ends:
            yield (b"".join(pending) + end).decode("utf-8")
            pending = []
        if rest:
            pending.append(rest)
    if pending:
        yield b"".join(pending).decode("utf-8")
