"""The server's edges, over real sockets to a real `tcgen serve` on 127.0.0.1: clients
that connect and send nothing, send their headers or body too slowly, or open far more
connections than allowed (service/server.py); workers left behind by a server killed with
-9; and the structured log (service/logs.py)."""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import time

import httpx
import psutil
import pytest

from helpers import SMALL, TCGEN, served, wait_finished
from local_server import LocalServer

HEADER_S, BODY_S, MAX_CONNECTIONS = 1.0, 2.0, 64
IDLE_CLIENTS = 1000
EDGES = {"TCGEN_HEADER_TIMEOUT_SECONDS": str(HEADER_S), "TCGEN_BODY_TIMEOUT_SECONDS": str(BODY_S),
         "TCGEN_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory, "edges", workers=1, env=EDGES)


def _connect(server: LocalServer, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    if data:
        sock.sendall(data)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends before it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def _rss_mb(server: LocalServer) -> float:
    return psutil.Process(server.proc.pid).memory_info().rss / 2**20


def test_a_body_that_never_finishes_gets_408_and_holds_no_engine_slot(server):
    """Content-Length 500 and 70 bytes sent: held open indefinitely on main. Now 408 after
    TCGEN_BODY_TIMEOUT_SECONDS, and meanwhile a sample request is served at once."""
    head = ("POST /v1/samples HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 500\r\n\r\n").encode()
    slow = [_connect(server, head + b'{"level": 0, ' + b" " * 57) for _ in range(8)]
    started = time.monotonic()
    r = httpx.post(server.url + "/v1/samples", json={"level": 0, "seed": 1, **SMALL}, timeout=60)
    assert r.status_code == 200 and len(r.json()["samples"]) == 1, r.text
    answers = [_read_until_closed(s) for s in slow]
    waited = time.monotonic() - started
    assert all(a.startswith(b"HTTP/1.1 408 ") and b"TCGEN_BODY_TIMEOUT_SECONDS" in a for a in answers), answers[0]
    assert waited < BODY_S + 10, waited
    print(f"8 slow bodies answered 408 after {waited:.2f} s (limit {BODY_S} s)")


def test_headers_sent_a_byte_at_a_time_are_cut_off(server):
    """A slow-loris client (each byte well within any per-read timeout) is closed with 408
    once the whole request has taken TCGEN_HEADER_TIMEOUT_SECONDS."""
    sock = _connect(server)
    started = time.monotonic()
    answer = b""
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        answer = _read_until_closed(sock)
    except ConnectionResetError:
        pass
    waited = time.monotonic() - started
    assert waited < HEADER_S + 5, waited
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_thousand_idle_connections_are_capped_closed_and_cost_little_memory(server):
    """1,000 connections that send nothing stayed open on main. Now: beyond
    TCGEN_MAX_CONNECTIONS each gets 503 at once, the rest are closed after
    TCGEN_HEADER_TIMEOUT_SECONDS, the server's memory stays flat, and it serves again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, IDLE_CLIENTS + 256)), hard))
    before = _rss_mb(server)
    started = time.monotonic()
    socks = []
    for _ in range(IDLE_CLIENTS):
        try:
            socks.append(_connect(server))
        except OSError:  # the listen backlog is full for a moment: the server is shedding them
            time.sleep(0.01)
    opened = time.monotonic() - started
    peak = _rss_mb(server)
    answers = [_read_until_closed(s) for s in socks]
    all_closed = time.monotonic() - started
    refused = sum(a.startswith(b"HTTP/1.1 503 ") for a in answers)
    silent = sum(a == b"" for a in answers)
    assert refused + silent == len(answers), {a[:40] for a in answers}
    assert refused >= len(socks) - MAX_CONNECTIONS - 8, refused
    assert silent <= MAX_CONNECTIONS, silent
    assert all_closed < opened + HEADER_S + 10, all_closed
    after = _rss_mb(server)
    assert peak - before < 50 and after - before < 50, (before, peak, after)
    assert httpx.get(server.url + "/healthz").status_code == 200
    print(f"{len(socks)} idle connections: {refused} refused with 503, {silent} closed silently; all closed "
          f"{all_closed:.2f} s after the first opened; server RSS {before:.0f} -> {peak:.0f} -> {after:.0f} MB")


def test_the_log_is_json_with_engine_job_and_worker_events(tmp_path):
    """One JSON object per line: the engine's start (workers, devices, backend, default
    window), each job transition, worker restarts and an index given up (a planted crash:
    index 1 kills its solver every time)."""
    s = LocalServer(tmp_path / "jobs.db", workers=1, env={"TCGEN_TEST_CRASH": "solve:1"}).start()
    try:
        job = httpx.post(s.url + "/v1/jobs", json={"level": 0, "count": 3, "seed": 2, **SMALL}).json()
        assert wait_finished(httpx.Client(base_url=s.url, timeout=60), job["id"])["progress"]["failed"] == 1
    finally:
        assert s.stop() == 0, s.log()
    records = [json.loads(line) for line in s.log_path.read_text().splitlines() if line.strip()]
    events = [r for r in records if "event" in r]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    started = next(r for r in events if r["event"] == "engine.started")
    assert started["devices"] == ["cpu"] and started["solver_workers"] == 1 and started["backend"] == "LocalBackend"
    assert (started["default_min_flops"], started["default_max_flops"]) == (2**16, 2**22)
    states = [r["state"] for r in events if r["event"] == "job.state" and r["job_id"] == job["id"]]
    assert states == ["queued", "running", "succeeded"], states
    assert sum(r["event"] == "worker.restarted" for r in events) == 3
    given_up = [r for r in events if r["event"] == "index.given_up"]
    assert [r["index"] for r in given_up] == [1] and "given up" in given_up[0]["message"]
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any(r["method"] == "POST" and r["path"] == "/v1/jobs" and r["status"] == 202 for r in access), access[:3]
    assert not any("color_message" in r for r in records)


def _running(process: psutil.Process) -> bool:
    """Still running: an exited orphan stays a zombie until its new parent reaps it."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_exit_quietly_when_the_server_is_killed(tmp_path):
    """kill -9 of the server mid-job: its workers noticed only at their next send, lived on
    for seconds and logged BrokenPipe tracebacks. Now they are gone within moments, silently."""
    s = LocalServer(tmp_path / "jobs.db", workers=2).start()
    httpx.post(s.url + "/v1/jobs", json={"level": 3, "count": 200, "seed": 1, "min_flops": 2**20,
                                         "max_flops": 2**24}).raise_for_status()
    time.sleep(3)
    workers = psutil.Process(s.proc.pid).children(recursive=True)
    assert len(workers) >= 2
    s.kill9()
    killed = time.monotonic()
    while (alive := [w for w in workers if _running(w)]) and time.monotonic() - killed < 10:
        time.sleep(0.01)
    waited = time.monotonic() - killed
    time.sleep(0.5)
    assert not alive and waited < 5, (alive, waited)
    assert "Traceback" not in s.log_path.read_text(), s.log()
    print(f"workers gone {waited:.2f} s after kill -9 of the server")


@pytest.mark.parametrize("variable, value, says", [
    ("TCGEN_API_KEY", "", "TCGEN_API_KEY: set but empty"),
    ("TCGEN_MAX_CONNECTIONS", "0", "TCGEN_MAX_CONNECTIONS: Input should be greater than or equal to 1"),
    ("TCGEN_HEADER_TIMEOUT_SECONDS", "soon", "TCGEN_HEADER_TIMEOUT_SECONDS: Input should be a valid number"),
])
def test_a_bad_setting_is_one_error_line_naming_the_variable(variable, value, says):
    """An empty TCGEN_API_KEY served every protected route as 401 to every client; a bad
    setting was reported as an 'invalid spec'. Now: exit 2, the variable named, no server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCGEN_")}
    done = subprocess.run([*TCGEN, "serve", "--port", "1"], env={**env, variable: value}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith(f"error: settings: {says}"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
