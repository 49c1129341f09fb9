"""One Settings object for the service and `tcgen serve`, read from TCGEN_* environment
variables (pydantic-settings); CLI flags override single fields. It is also the one place
that reads TCGEN_BACKEND for `tcgen generate` (backend_from_env)."""
from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


ENV_PREFIX = "TCGEN_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    host: str = Field("127.0.0.1", description="bind address; loopback unless told otherwise")
    port: int = Field(8000, ge=0, le=65535)
    solver_workers: int | None = Field(None, ge=1, description="solver processes; default: the CPU count "
                                       "(on Ray: the cluster's CPUs less one per validation actor)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["local", "ray", "auto"] = Field(
        "local", description="local processes, a Ray cluster (RAY_ADDRESS, else one started here), or auto "
                             "(Ray if a cluster is reachable)")
    db_path: str = Field("tcgen.db", description="SQLite job store (WAL)")
    api_key: SecretStr | None = Field(None, description="when set, every route but health needs it")
    # Caps: what one request may ask for.
    max_sync_count: int = Field(16, ge=1, description="samples per POST /v1/samples")
    max_job_count: int = Field(100_000, ge=1, description="samples per job")
    max_flops: int = Field(2**40, ge=1, description="largest max_flops a request may ask for")
    max_total_bytes: int | None = Field(None, description="largest program; default: what the device holds")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="request bodies above this get 413")
    # Queues: beyond these, 429 with Retry-After.
    max_pending_sync: int = Field(32, ge=1, description="sync requests waiting for the engine")
    max_queued_jobs: int = Field(64, ge=1, description="jobs queued or running")
    job_chunk: int = Field(64, ge=1, description="indices a job runs before sync requests get a turn")
    sync_burst: int = Field(8, ge=1, description="sync requests served in a row while a job waits for its turn")
    job_turn: int = Field(4, ge=1, description="samples a job makes in its turn after a sync burst before "
                                               "waiting sync requests stop it")
    # Connections: what one client may hold (service/server.py).
    header_timeout_seconds: float = Field(10.0, gt=0, description="a request's headers must arrive within this of "
                                          "the connection opening or of the previous response; else it is closed")
    body_timeout_seconds: float = Field(30.0, gt=0, description="a request's body must arrive within this of its "
                                        "headers; else 408 and the connection is closed")
    keep_alive_seconds: int = Field(5, ge=1, description="an idle keep-alive connection is closed after this")
    max_connections: int = Field(512, ge=1, description="open connections; one more gets 503 and is closed")
    job_ttl_seconds: float = Field(7 * 24 * 3600, gt=0, description="finished jobs are deleted after this")
    expiry_interval_seconds: float = Field(60.0, gt=0, description="how often finished jobs past their TTL "
                                           "are looked for and deleted")

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        # TCGEN_API_KEY= (set, empty) would otherwise lock every client out of every route.
        if key is not None and not key.get_secret_value():
            raise ValueError("set but empty: unset it to serve without a key, or give a key")
        return key


def backend_from_env() -> str:
    """`tcgen generate`'s default backend: the variable Settings.backend is read from, and
    its default. Only that variable: `generate` does not take the service's other TCGEN_*
    settings, and a bad value is left for the engine to reject (as its --backend would be)."""
    return os.environ.get(f"{ENV_PREFIX}BACKEND", Settings.model_fields["backend"].default)
