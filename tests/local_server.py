"""A real `tcgen serve` subprocess on 127.0.0.1 (a free port, a given SQLite file, CPU
validation), for the tests and for bench.service."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    def __init__(self, db: Path, workers: int = 2, env: dict[str, str] | None = None, port: int | None = None):
        self.db, self.workers, self.port = db, workers, port or free_port()
        # No TCGEN_* from the caller's environment (a stray API key or cap), only `env`.
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("TCGEN_")}, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = db.with_suffix(f".{self.port}.log")

    def start(self, timeout: float = 180) -> LocalServer:
        """Start it and wait for /readyz; RuntimeError with the server's log otherwise."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), "--db", str(self.db),
             "--device", "cpu", "--solver-workers", str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError(f"server not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)  # the server only: its workers see their pipes close and exit
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server and wait (killing it past `timeout`); 0 for a clean exit
        (uvicorn re-raises the signal it handled after its graceful shutdown, so the
        signal's own status counts as clean)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode if self.proc else 0
        return 0 if code == -sig else code
