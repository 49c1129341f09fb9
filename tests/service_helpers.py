"""A real `tcgen serve` (uvicorn) on 127.0.0.1, a free port and a temporary SQLite file."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SMALL = {"min_flops": 65536, "max_flops": 4194304}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db: Path, workers: int = 2, env: dict[str, str] | None = None, port: int | None = None):
        self.db, self.workers, self.port = db, workers, port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        log = open(self.db.with_suffix(f".{self.port}.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), "--db", str(self.db),
             "--device", "cpu", "--solver-workers", str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log()}"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("server did not become ready: " + self.log())

    def log(self) -> str:
        return self.db.with_suffix(f".{self.port}.log").read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)  # the server only: its workers see their pipes close and exit
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait; 0 for a clean exit (uvicorn re-raises the signal it
        handled after its graceful shutdown, so SIGTERM's own status counts as clean)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)
        code = self.proc.returncode if self.proc else 0
        return 0 if code == -sig else code
