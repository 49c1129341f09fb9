"""Load: the live server driven by many concurrent clients from a second process.

    python -m bench.load [--clients 32] [--seconds 60] [--workers 2] [--seed 0]
                         [--env TCGEN_NAME=VALUE ...] [--url http://127.0.0.1:PORT [--pid PID]]
                         [--out FILE] [--json]

Starts `tcgen serve` as a subprocess (free loopback port, temporary job store, --device
cpu, --workers solver workers, --env settings), or targets a running server on a loopback
`--url`. After a warm-up (one sample, one small job), `--clients` asyncio clients (httpx,
one request in flight each) run for `--seconds`, each drawing from its own
random.Random(seed, client) a deterministic mix of:

  sync single samples, level 0, window 2**16..2**22 (GET /v1/samples and POST /v1/samples),
  job submissions (POST /v1/jobs, 10-30 samples, level 1-2, same window; at most one
  unfinished job per client), status polls (some long-polls, ?wait=2, reported apart),
  result pages, job lists, and deletes of finished jobs whose results were read.

A 429 is honoured: the client sleeps for its Retry-After, then sends the request again.
At the deadline no request is started; those in flight finish. It prints throughput,
count / p50 / p95 / p99 / max latency per endpoint (nearest rank), status-code counts,
transport errors, the samples the server made, sync and job (its /metrics), and the
RSS of the server and all its children, sampled every second: at start and end, and the
mean over the first and over the last 10 s of the load. The figures are also written as
JSON to bench/results/load-<date>.json.

Exit status 1 on any 5xx, any 429 without a positive integer Retry-After, a transport
error, a 200 whose body is wrong (a sync answer without its one result, a finished job
whose result page disagrees with its progress), RSS growth of 10% or more (mean of the
last 10 s vs the first 10 s), or an unclean server stop.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil

from bench.pipeline import tree_rss
from bench.service import WINDOW
from bench.solve import percentile
from service.jobs.store import FINISHED
from tests.local_server import LocalServer

RESULTS = Path(__file__).parent / "results"
RSS_WINDOW_S = 10.0
ACCEPT_RSS_GROWTH = 0.10
LONG_POLL_S = 2
GRACE_S = 120.0  # in-flight requests at the deadline get this long to finish
# Action weights of the mix: mostly sync single samples.
MIX = {"sync_get": 45, "sync_post": 20, "submit": 8, "poll": 10, "long_poll": 4, "page": 6, "list_jobs": 4,
       "delete": 3}
# Endpoint labels: route templates, the long-poll apart (its latency is mostly the wait).
SYNC_GET, SYNC_POST = "GET /v1/samples", "POST /v1/samples"
SUBMIT, STATUS, LONG_POLL = "POST /v1/jobs", "GET /v1/jobs/{job_id}", f"GET /v1/jobs/{{job_id}}?wait={LONG_POLL_S}"
PAGE, LIST, DELETE = "GET /v1/jobs/{job_id}/samples", "GET /v1/jobs", "DELETE /v1/jobs/{job_id}"
ENDPOINTS = (SYNC_GET, SYNC_POST, SUBMIT, STATUS, LONG_POLL, PAGE, LIST, DELETE)


@dataclass
class Record:
    endpoint: str
    status: int  # 0: transport error
    seconds: float


@dataclass
class Tally:
    records: list[Record] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)  # exception class name -> count
    retry_after_missing: list[str] = field(default_factory=list)  # endpoints of 429s without a good one
    bad_bodies: list[str] = field(default_factory=list)  # 2xx answers whose content is wrong
    sync_samples: int = 0
    jobs_read_whole: int = 0  # finished jobs whose results were read and checked


def retry_after_seconds(response: httpx.Response) -> int | None:
    """The Retry-After of a 429 as a positive integer of seconds, else None."""
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class LoadClient:
    """One client: one request in flight at a time, its own seeded mix, its own jobs."""

    def __init__(self, cid: int, http: httpx.AsyncClient, seed: int, deadline: float, tally: Tally):
        self.cid, self.http, self.deadline, self.tally = cid, http, deadline, tally
        self.rng = random.Random(f"{seed}:{cid}")
        self.jobs: dict[str, dict] = {}  # id -> last status seen
        self.read: set[str] = set()  # finished jobs whose results were read

    async def call(self, endpoint: str, method: str, url: str, **kwargs) -> httpx.Response | None:
        """Send, record; on 429 sleep its Retry-After and send again while time is left."""
        while time.monotonic() < self.deadline:
            start = time.monotonic()
            try:
                r = await self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                self.tally.records.append(Record(endpoint, 0, time.monotonic() - start))
                self.tally.transport_errors[type(exc).__name__] += 1
                await asyncio.sleep(1)  # a server gone away: no flood of refused connections
                return None
            self.tally.records.append(Record(endpoint, r.status_code, time.monotonic() - start))
            if r.status_code != 429:
                return r
            wait = retry_after_seconds(r)
            if wait is None:
                self.tally.retry_after_missing.append(endpoint)
                wait = 1
            await asyncio.sleep(min(wait, max(0.0, self.deadline - time.monotonic())))
        return None

    async def run(self) -> None:
        actions, weights = list(MIX), list(MIX.values())
        while time.monotonic() < self.deadline:
            action = self.rng.choices(actions, weights)[0]
            unfinished = [j for j, s in self.jobs.items() if s["state"] not in FINISHED]
            finished = [j for j, s in self.jobs.items() if s["state"] in FINISHED]
            if action == "submit" and unfinished:
                action = "poll"
            if action in ("poll", "long_poll", "page") and not self.jobs:
                action = "submit"
            if action == "delete" and not (set(finished) & self.read):
                action = "page" if finished else "sync_get"
            await getattr(self, action)(unfinished, finished)

    def _seed_index(self) -> tuple[int, int]:
        return self.rng.randrange(2**31), self.rng.randrange(10**6)

    async def sync_get(self, unfinished, finished) -> None:
        seed, index = self._seed_index()
        r = await self.call(SYNC_GET, "GET", "/v1/samples",
                            params=dict(level=0, seed=seed, index=index, **WINDOW))
        self._check_batch(SYNC_GET, r, 1)

    async def sync_post(self, unfinished, finished) -> None:
        seed, index = self._seed_index()
        r = await self.call(SYNC_POST, "POST", "/v1/samples",
                            json=dict(level=0, count=1, seed=seed, start_index=index, **WINDOW))
        self._check_batch(SYNC_POST, r, 1)

    def _check_batch(self, endpoint: str, r: httpx.Response | None, count: int) -> None:
        if r is None or r.status_code != 200:
            return
        body = r.json()
        got = len(body["samples"]) + len(body["failed"])
        if got != count:
            self.tally.bad_bodies.append(f"{endpoint}: {got} results for count {count}")
        self.tally.sync_samples += len(body["samples"])

    async def submit(self, unfinished, finished) -> None:
        body = dict(level=self.rng.choice((1, 2)), count=self.rng.randint(10, 30), seed=self.rng.randrange(2**31),
                    **WINDOW)
        r = await self.call(SUBMIT, "POST", "/v1/jobs", json=body)
        if r is not None and r.status_code == 202:
            job = r.json()
            self.jobs[job["id"]] = job

    async def _status(self, endpoint: str, params: dict) -> None:
        job_id = self.rng.choice(sorted(self.jobs))
        r = await self.call(endpoint, "GET", f"/v1/jobs/{job_id}", params=params)
        if r is not None and r.status_code == 200:
            self.jobs[job_id] = r.json()

    async def poll(self, unfinished, finished) -> None:
        await self._status(STATUS, {})

    async def long_poll(self, unfinished, finished) -> None:
        await self._status(LONG_POLL, {"wait": LONG_POLL_S})

    async def page(self, unfinished, finished) -> None:
        """A finished job: all its results in one page, checked against its progress; an
        unfinished one: a page of what is stored so far."""
        job_id = self.rng.choice(sorted(finished or self.jobs))
        job = self.jobs[job_id]
        limit = job["progress"]["total"] if job_id in finished else self.rng.choice((5, 10))
        r = await self.call(PAGE, "GET", f"/v1/jobs/{job_id}/samples", params={"offset": 0, "limit": limit})
        if r is None or r.status_code != 200 or job_id not in finished:
            return
        body = r.json()
        want = job["progress"]["completed"], job["progress"]["failed"]
        if (len(body["samples"]), len(body["failed"])) != want:
            self.tally.bad_bodies.append(f"{PAGE}: job {job_id} {job['state']} has {want} (completed, failed) "
                                         f"but the page has {len(body['samples'])}, {len(body['failed'])}")
        self.read.add(job_id)
        self.tally.jobs_read_whole += 1

    async def list_jobs(self, unfinished, finished) -> None:
        await self.call(LIST, "GET", "/v1/jobs", params={"limit": self.rng.choice((10, 50))})

    async def delete(self, unfinished, finished) -> None:
        job_id = self.rng.choice(sorted(set(finished) & self.read))
        r = await self.call(DELETE, "DELETE", f"/v1/jobs/{job_id}")
        if r is not None and r.status_code in (204, 404):
            self.jobs.pop(job_id, None)
            self.read.discard(job_id)


class RssSampler(threading.Thread):
    """RSS of a process and all its children, every `every` seconds, as (monotonic, bytes)."""

    def __init__(self, pid: int, every: float = 1.0):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.every, self.trace = pid, every, []
        self._stop_event = threading.Event()

    def sample(self) -> int:
        rss = tree_rss(self.pid)
        self.trace.append((time.monotonic(), rss))
        return rss

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            try:
                self.sample()
            except psutil.NoSuchProcess:
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def server_samples(http: httpx.Client) -> dict[str, float]:
    """tcgen_samples_generated_total by `via` (sync, job), from /metrics; {} if unreadable."""
    try:
        text = http.get("/metrics").text
    except httpx.HTTPError:
        return {}
    return {m[1]: float(m[2]) for m in re.finditer(r'^tcgen_samples_generated_total\{via="(\w+)"\} (\S+)$',
                                                   text, re.M)}


async def drive(url: str, clients: int, seconds: float, seed: int) -> tuple[Tally, float, float, float]:
    """The load; returns the tally, its start and deadline (monotonic), and when the last
    in-flight request ended."""
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(GRACE_S), limits=limits) as http:
        start = time.monotonic()
        deadline = start + seconds
        tasks = [asyncio.create_task(LoadClient(c, http, seed, deadline, tally).run()) for c in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=seconds + GRACE_S)
        for t in pending:
            t.cancel()
        for t in done:
            t.result()  # a bug in the bench itself surfaces here
        end = time.monotonic()
    if pending:
        tally.transport_errors["cancelled at the grace limit"] += len(pending)
    return tally, start, deadline, end


def summarize(tally: Tally, start: float, end: float) -> dict:
    by_endpoint = defaultdict(list)
    for r in tally.records:
        if r.status:
            by_endpoint[r.endpoint].append(r.seconds * 1000)
    table = {}
    for endpoint in ENDPOINTS:
        ms = sorted(by_endpoint.get(endpoint, []))
        if ms:
            table[endpoint] = {"count": len(ms), "p50_ms": round(percentile(ms, 0.50), 1),
                               "p95_ms": round(percentile(ms, 0.95), 1), "p99_ms": round(percentile(ms, 0.99), 1),
                               "max_ms": round(ms[-1], 1)}
    statuses = Counter(r.status for r in tally.records if r.status)
    by_status = defaultdict(Counter)
    for r in tally.records:
        if r.status:
            by_status[r.endpoint][r.status] += 1
    elapsed = end - start
    answered = sum(statuses.values())
    single = sorted(r.seconds * 1000 for r in tally.records if r.endpoint in (SYNC_GET, SYNC_POST) and r.status == 200)
    return {"elapsed_s": round(elapsed, 2), "requests": answered,
            "sync_single_200": {"count": len(single), "p50_ms": round(percentile(single, 0.50), 1),
                                "p99_ms": round(percentile(single, 0.99), 1)} if single else None,
            "requests_per_s": round(answered / elapsed, 1), "sync_samples": tally.sync_samples,
            "sync_samples_per_s": round(tally.sync_samples / elapsed, 2), "endpoints": table,
            "status_counts": {str(k): v for k, v in sorted(statuses.items())},
            "status_by_endpoint": {e: {str(k): v for k, v in sorted(c.items())} for e, c in by_status.items()},
            "http_5xx": sum(v for k, v in statuses.items() if k >= 500),
            "http_429": statuses.get(429, 0), "http_429_without_retry_after": len(tally.retry_after_missing),
            "transport_errors": dict(tally.transport_errors), "bad_bodies": tally.bad_bodies[:20],
            "bad_body_count": len(tally.bad_bodies), "finished_jobs_read_and_checked": tally.jobs_read_whole}


def rss_summary(trace: list[tuple[float, int]], start: float, deadline: float) -> dict:
    load = [(t, r) for t, r in trace if start <= t <= deadline]
    first = [r for t, r in load if t < start + RSS_WINDOW_S]
    last = [r for t, r in load if t >= deadline - RSS_WINDOW_S]
    if not first or not last:
        return {}
    mb = 2**20
    first_mean, last_mean = statistics.fmean(first), statistics.fmean(last)
    growth = last_mean / first_mean - 1
    return {"start_mb": round(trace[0][1] / mb, 1), "end_mb": round(trace[-1][1] / mb, 1),
            "first_10s_mean_mb": round(first_mean / mb, 1), "last_10s_mean_mb": round(last_mean / mb, 1),
            "growth": round(growth, 4), "growth_ok": growth < ACCEPT_RSS_GROWTH,
            # Medians and minima: one large program in flight lifts a mean, not these.
            "first_10s_median_mb": round(statistics.median(first) / mb, 1),
            "last_10s_median_mb": round(statistics.median(last) / mb, 1),
            "min_during_load_mb": round(min(r for _, r in load) / mb, 1),
            "peak_mb": round(max(r for _, r in trace) / mb, 1), "samples": len(trace),
            "trace_mb": [(round(t - start, 1), round(r / mb, 1)) for t, r in trace[:: max(1, len(trace) // 12)]]}


def server_pid(url: str) -> int | None:
    """The process listening on the URL's port on this machine, if psutil may see it."""
    port = urlsplit(url).port
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except psutil.AccessDenied:
        pass
    return None


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.exit(f"--url {url}: bench.load only drives a server on loopback (127.0.0.1, ::1, localhost)")


def warm_up(http: httpx.Client) -> None:
    """One sync sample and one small job, awaited (and deleted), before the clock starts:
    the workers' first-use set-up (torch's lazy initialisation, ~250 MB each) is not load."""
    http.get("/v1/samples", params=dict(level=0, seed=1, index=0, **WINDOW)).raise_for_status()
    r = http.post("/v1/jobs", json=dict(level=2, count=4, seed=1, **WINDOW))
    r.raise_for_status()
    job_id = r.json()["id"]
    if http.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()["state"] in FINISHED:
        http.delete(f"/v1/jobs/{job_id}")


def run_load(url: str, pid: int | None, args: argparse.Namespace) -> dict:
    with httpx.Client(base_url=url, timeout=GRACE_S) as http:
        ready_rss = tree_rss(pid) if pid else None
        warm_up(http)
        before = server_samples(http)
        sampler = RssSampler(pid) if pid else None
        if sampler:
            sampler.sample()
            sampler.start()
        tally, start, deadline, end = asyncio.run(drive(url, args.clients, args.seconds, args.seed))
        if sampler:
            sampler.sample()
            sampler.stop()
        after = server_samples(http)
    result = summarize(tally, start, end)
    generated = {via: int(after[via] - before.get(via, 0)) for via in after}
    result["server_samples_generated"] = generated
    result["server_samples_per_s"] = round(sum(generated.values()) / (end - start), 2) if generated else None
    result["rss"] = rss_summary(sampler.trace, start, deadline) if sampler else {}
    if ready_rss and result["rss"]:
        result["rss"]["ready_before_warm_up_mb"] = round(ready_rss / 2**20, 1)
    return result


def print_report(r: dict) -> None:
    env = " ".join(f"{k}={v}" for k, v in r["server_env"].items()) or (
        "default settings" if r["workers"] else "the server's own settings")
    print(f"tcgen load bench: {r['clients']} clients for {r['seconds']:g} s against {r['target']}, "
          f"{r['workers'] if r['workers'] else '?'} solver workers, CPU validation, {env}, seed {r['seed']}")
    print(f"{r['requests']} requests answered in {r['elapsed_s']:.1f} s (the last in flight included): "
          f"{r['requests_per_s']:.1f} req/s; sync samples received {r['sync_samples']} "
          f"({r['sync_samples_per_s']:.2f}/s)")
    if r["server_samples_generated"]:
        g = r["server_samples_generated"]
        print(f"server generated (its /metrics): {', '.join(f'{k} {v}' for k, v in sorted(g.items()))} "
              f"= {r['server_samples_per_s']:.2f} samples/s")
    print(f"\n{'endpoint':34s} {'count':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}  statuses")
    for e, p in r["endpoints"].items():
        statuses = " ".join(f"{k}:{v}" for k, v in r["status_by_endpoint"][e].items())
        print(f"{e:34s} {p['count']:6d} {p['p50_ms']:8.1f} {p['p95_ms']:8.1f} {p['p99_ms']:8.1f} "
              f"{p['max_ms']:8.1f}  {statuses}")
    single = r["sync_single_200"]
    if single:
        print(f"\np99 of sync single samples (level 0, window {WINDOW['min_flops']}..{WINDOW['max_flops']}; "
              f"GET and POST /v1/samples answered 200, {single['count']}): {single['p99_ms']:.1f} ms "
              f"(p50 {single['p50_ms']:.1f} ms)")
    print(f"status codes: {', '.join(f'{k}: {v}' for k, v in r['status_counts'].items())}")
    print(f"5xx: {r['http_5xx']}; 429: {r['http_429']}, every 429 with a Retry-After: "
          f"{r['http_429_without_retry_after'] == 0}; transport errors: {r['transport_errors'] or 0}")
    print(f"wrong 2xx bodies: {r['bad_body_count']} (finished jobs read whole and checked: "
          f"{r['finished_jobs_read_and_checked']})")
    for b in r["bad_bodies"]:
        print(f"  {b}")
    m = r["rss"]
    if m:
        print(f"server RSS (server + children): before warm-up {m['ready_before_warm_up_mb']:.0f} MB, after warm-up "
              f"(load start) {m['start_mb']:.0f} MB, end {m['end_mb']:.0f} MB; "
              f"mean first 10 s {m['first_10s_mean_mb']:.1f} MB, last 10 s {m['last_10s_mean_mb']:.1f} MB: "
              f"growth {m['growth']:+.1%} ({'ok' if m['growth_ok'] else 'FAIL'}: < {ACCEPT_RSS_GROWTH:.0%}); "
              f"peak {m['peak_mb']:.0f} MB")
        print(f"  (medians: first 10 s {m['first_10s_median_mb']:.1f} MB, last 10 s {m['last_10s_median_mb']:.1f} MB; "
              f"least during the load {m['min_during_load_mb']:.1f} MB)")
        print(f"RSS trace (s since load start, MB): {m['trace_mb']}")
    else:
        print("server RSS: not measured (no server process found; pass --pid)")
    if r.get("server_stopped_cleanly") is not None:
        print(f"server stopped cleanly on SIGTERM: {r['server_stopped_cleanly']}")
    print(f"verdict: {'ok' if r['ok'] else 'FAIL'}; written to {r['written_to']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients, one request in flight each")
    ap.add_argument("--seconds", type=float, default=60, help="how long requests are started")
    ap.add_argument("--workers", type=int, default=2, help="solver workers of the server this starts")
    ap.add_argument("--seed", type=int, default=0, help="seeds every client's mix")
    ap.add_argument("--env", action="append", default=[], metavar="TCGEN_NAME=VALUE",
                    help="a setting of the server this starts, e.g. TCGEN_MAX_PENDING_SYNC=4 (repeatable)")
    ap.add_argument("--url", help="a running server on loopback instead of starting one")
    ap.add_argument("--pid", type=int, help="with --url: the server's process id, for its RSS "
                                            "(default: the process listening on the port, if visible)")
    ap.add_argument("--out", type=Path, help="JSON result file (default bench/results/load-<date>.json)")
    ap.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        ap.error("--clients and --seconds must be positive")

    server_env = dict(e.split("=", 1) for e in args.env if "=" in e)
    if len(server_env) != len(args.env) or not all(k.startswith("TCGEN_") for k in server_env):
        ap.error("--env takes TCGEN_NAME=VALUE")
    out = args.out or RESULTS / f"load-{datetime.date.today().isoformat()}.json"
    head = {"clients": args.clients, "seconds": args.seconds, "seed": args.seed, "mix": MIX,
            "window": WINDOW, "server_env": server_env,
            "started_at": datetime.datetime.now().isoformat(timespec="seconds")}
    if args.url:
        if server_env:
            ap.error("--env sets up the server this starts; not with --url")
        check_loopback(args.url)
        pid = args.pid or server_pid(args.url)
        result = {**head, "target": args.url, "workers": None, **run_load(args.url, pid, args)}
        clean = None
    else:
        with tempfile.TemporaryDirectory(prefix="tcgen-load-") as tmp:
            server = LocalServer(Path(tmp) / "load.db", workers=args.workers, env=server_env).start()
            try:
                result = {**head, "target": "tcgen serve (a subprocess)", "workers": args.workers,
                          **run_load(server.url, server.proc.pid, args)}
            finally:
                clean = server.stop() == 0 and "Application shutdown complete" in server.log()
        result["server_stopped_cleanly"] = clean
    rss_ok = result["rss"].get("growth_ok", True)
    result["ok"] = (result["http_5xx"] == 0 and result["http_429_without_retry_after"] == 0
                    and not result["transport_errors"] and not result["bad_body_count"] and rss_ok
                    and clean is not False)
    result["written_to"] = str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
