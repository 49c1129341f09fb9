"""The REST service against the library and the CLI it wraps, on this machine's CPU.

    python -m bench.service [--workers N] [--count 200] [--json]

Starts `tcgen serve` as a subprocess (free loopback port, temporary job store, --device
cpu), waits for /readyz, then measures:

  a) sync latency: 100 sequential GET /v1/samples (level 0, format=json) after 10 warm-ups;
  b) the same indices through generator_core.generate in this process (validation on);
     acceptance: p50(a) - p50(b) <= 15 ms, i.e. HTTP + dispatch overhead;
  c) a job of --count level-2 samples: rate from the job's started_at to finished_at
     (the engine is already warm);
  d) `tcgen generate` with the same workers and spec, timed by its own summary line
     ("in X s", which includes starting its worker processes); acceptance: c/d >= 90%;
  e) what a newcomer sends first: --default-window-n sequential POST /v1/samples
     {"level": 2, "seed": 0, "start_index": i}, no FLOPs window (the server's default for
     its device); acceptance: median <= 2 s on a CPU-only server, and the window the
     samples got;
and checks that the job's NDJSON results equal the generate file byte for byte.

The server is stopped with SIGTERM before (d), so the two runs never share the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from generator_core import GenerationSpec, generate
from service.client import TcgenClient
from service.engine import default_max_total_bytes, device_slots
from tests.local_server import LocalServer

WINDOW = dict(min_flops=65536, max_flops=4194304)
LATENCY_N, WARMUP = 100, 10
ACCEPT_P50_MS, ACCEPT_RATIO = 15.0, 0.90
ACCEPT_DEFAULT_WINDOW_MEDIAN_S = 2.0


def percentiles(seconds: list[float]) -> dict[str, float]:
    q = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
    return {"p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98]}


def sync_latency(base: str) -> dict[str, float]:
    params = dict(level=0, seed=1, format="json", **WINDOW)
    times = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for i in range(-WARMUP, LATENCY_N):
            index = 10**6 + i if i < 0 else i  # warm-ups on indices the timed run does not use
            start = time.perf_counter()
            r = http.get("/v1/samples", params={**params, "index": index})
            if i >= 0:
                times.append(time.perf_counter() - start)
            r.raise_for_status()
    return percentiles(times)


def library_latency() -> dict[str, float]:
    # The server applies the CPU's max_total_bytes default; use the same so the samples match.
    cap = default_max_total_bytes(device_slots("cpu"))
    times = []
    for i in range(-WARMUP, LATENCY_N):
        index = 10**6 + i if i < 0 else i
        spec = GenerationSpec(level=0, seed=1, start_index=index, max_total_bytes=cap, **WINDOW)
        start = time.perf_counter()
        generate(spec, index)
        if i >= 0:
            times.append(time.perf_counter() - start)
    return percentiles(times)


def default_window_latency(base: str, n: int) -> dict:
    """POST /v1/samples {"level": 2} with no window: seconds per request, and the windows the
    samples got (the server's default for its validating device)."""
    times, windows = [], set()
    with httpx.Client(base_url=base, timeout=600) as http:
        for i in range(n):
            start = time.perf_counter()
            r = http.post("/v1/samples", json={"level": 2, "seed": 0, "start_index": i})
            times.append(time.perf_counter() - start)
            r.raise_for_status()
            windows |= {(s["min_flops"], s["max_flops"]) for s in r.json()["samples"]}
    return {"n": n, "median_s": statistics.median(times), "max_s": max(times), "windows": sorted(windows)}


def job_run(base: str, count: int) -> tuple[dict, bytes]:
    with TcgenClient(base, timeout=60) as tc:
        job = tc.submit_job(dict(level=2, count=count, seed=0, **WINDOW))
        job = tc.wait(job["id"], timeout=3600)
        body = "".join(line + "\n" for line in tc.iter_result_lines(job["id"])).encode()
    if job["state"] != "succeeded":
        sys.exit(f"job {job['id']} ended {job['state']}: {job['error']}")
    seconds = job["finished_at"] - job["started_at"]
    done = job["progress"]["completed"]
    return {"samples": done, "failed": job["progress"]["failed"], "seconds": seconds,
            "rate": done / seconds}, body


def generate_run(workers: int, count: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "service.cli", "generate", "--num_workers", str(workers), "--level", "2",
           "--seed", "0", "--target_count", str(count), "--min_flops", str(WINDOW["min_flops"]),
           "--max_flops", str(WINDOW["max_flops"]), "--device", "cpu", "--output_file", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCGEN_")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    summary = re.search(r"wrote (\d+) samples .* in ([\d.]+) s", proc.stderr)
    if proc.returncode != 0 or summary is None:
        sys.exit(f"tcgen generate failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    written, seconds = int(summary[1]), float(summary[2])
    return {"samples": written, "seconds": seconds, "wall_seconds": wall, "rate": written / seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="solver workers, both sides")
    ap.add_argument("--count", type=int, default=200, help="level-2 samples for the job and generate")
    ap.add_argument("--default-window-n", type=int, default=30,
                    help="level-2 requests without a FLOPs window (e); 0 skips them")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tcgen-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = LocalServer(tmp / "bench.db", workers=args.workers).start()
        try:
            default = default_window_latency(server.url, args.default_window_n) if args.default_window_n else None
            http = sync_latency(server.url)
            job, job_bytes = job_run(server.url, args.count)
        finally:
            graceful = server.stop() == 0 and "Application shutdown complete" in server.log()
        lib = library_latency()  # after the server is gone: nothing else on the CPU
        gen = generate_run(args.workers, args.count, tmp / "generate.jsonl")
        identical = job_bytes == (tmp / "generate.jsonl").read_bytes()

    overhead = http["p50_ms"] - lib["p50_ms"]
    ratio = job["rate"] / gen["rate"]
    result = {"workers": args.workers, "count": args.count, "sync_http": http, "library": lib,
              "p50_overhead_ms": overhead, "p50_ok": overhead <= ACCEPT_P50_MS,
              "job": job, "generate": gen, "rate_ratio": ratio, "rate_ok": ratio >= ACCEPT_RATIO,
              "job_equals_generate_file": identical, "server_stopped_gracefully": graceful,
              "default_window": default,
              "default_window_ok": default is None or default["median_s"] <= ACCEPT_DEFAULT_WINDOW_MEDIAN_S}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"tcgen service bench: {args.workers} solver workers, CPU validation\n")
        print(f"{'level-0 sample, ms':28s} {'p50':>8s} {'p95':>8s} {'p99':>8s}")
        for name, p in (("GET /v1/samples (HTTP)", http), ("generate() in-process", lib)):
            print(f"{name:28s} {p['p50_ms']:8.2f} {p['p95_ms']:8.2f} {p['p99_ms']:8.2f}")
        print(f"p50 overhead of the service: {overhead:+.2f} ms "
              f"({'ok' if result['p50_ok'] else 'FAIL'}: <= {ACCEPT_P50_MS:g} ms)\n")
        print(f"{f'level-2, {args.count} samples':28s} {'samples':>8s} {'seconds':>8s} {'per s':>8s}")
        print(f"{'job (started..finished)':28s} {job['samples']:8d} {job['seconds']:8.2f} {job['rate']:8.2f}")
        print(f"{'tcgen generate (its summary)':28s} {gen['samples']:8d} {gen['seconds']:8.2f} {gen['rate']:8.2f}"
              f"   (wall {gen['wall_seconds']:.2f} s)")
        print(f"job rate / generate rate: {ratio:.1%} ({'ok' if result['rate_ok'] else 'FAIL'}: "
              f">= {ACCEPT_RATIO:.0%})")
        print(f"job NDJSON == generate file, byte for byte: {identical}")
        print(f"server stopped gracefully on SIGTERM: {graceful}")
        if default is not None:
            print(f"\nPOST /v1/samples {{\"level\": 2}} without a window, {default['n']} requests: median "
                  f"{default['median_s']:.2f} s, max {default['max_s']:.2f} s, windows {default['windows']} "
                  f"({'ok' if result['default_window_ok'] else 'FAIL'}: median <= {ACCEPT_DEFAULT_WINDOW_MEDIAN_S:g} s)")
    return 0 if result["p50_ok"] and result["rate_ok"] and identical and result["default_window_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
