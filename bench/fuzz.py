"""Schemathesis' command line against a real `tcgen serve`, every check, many examples.

    python -m bench.fuzz [--examples 300] [--workers 1] [--out results.json]

Starts the service as tests/test_api_fuzz.py does (a subprocess on 127.0.0.1, CPU
validation, an API key, caps that keep accepted requests cheap), then runs

    schemathesis run openapi.yaml --url URL --checks all --max-examples N -H 'X-API-Key: ...'

through every phase (examples, coverage, fuzzing, stateful), and prints the test cases per
operation and the failures per check from schemathesis' NDJSON events. The test suite runs
the same checks with 100 examples; this is the longer run. Exit 0 when no check failed
(positive_data_acceptance on the spec-taking operations aside: counted, see SPEC_OPERATIONS),
the server logged no traceback and every generated operation got >= N cases.
"""
from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.local_server import LocalServer
from service.api.openapi import SCHEMA_PATH

KEY = "fuzz-key"
# The key as the schema's security scheme (not a fixed header), so that ignored_auth can leave
# it out or spoil it and expect a 401; GET /v1/jobs/{job_id}'s ?wait= long-polls up to 60 s.
CONFIG = f"""
[auth.openapi.APIKeyHeader]
api_key = "{KEY}"

[[operations]]
include-name = "GET /v1/jobs/{{job_id}}"
request-timeout = 70
checks.max_response_time = 70
"""
# A schema-valid spec can still get a documented 422 that JSON Schema cannot state: integers
# spelt 2.0 (JSON Schema counts them as integers; the strict body does not), operator names,
# the server's caps, min_flops <= max_flops. positive_data_acceptance runs (`--checks all`) and
# its failures on these operations are counted, not failed on (tests/test_api_fuzz.py turns it
# off there).
SPEC_OPERATIONS = {"POST /v1/samples", "GET /v1/samples", "POST /v1/jobs"}
# The operations whose input schemathesis generates (the rest take nothing but a job id it
# gets from POST /v1/jobs, or nothing at all).
GENERATED = SPEC_OPERATIONS | {"GET /v1/jobs", "GET /v1/jobs/{job_id}/samples"}
ENV = {"TCGEN_API_KEY": KEY, "TCGEN_MAX_SYNC_COUNT": "2", "TCGEN_MAX_JOB_COUNT": "3", "TCGEN_MAX_FLOPS": str(2**22)}


def run_schemathesis(url: str, examples: int, workers: int, report: Path) -> tuple[int, str]:
    config = report.with_name("schemathesis.toml")
    config.write_text(CONFIG)
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "--no-color", "run",
           str(SCHEMA_PATH), "--url", url, "--checks", "all", "--continue-on-failure", "--max-examples", str(examples),
           "--workers", str(workers), "--report", "ndjson", "--report-ndjson-path", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=report.parent)  # its cache stays there too
    return proc.returncode, proc.stdout + proc.stderr


def summarize(report: Path) -> dict:
    """Cases per operation, responses per status and failures per check, from schemathesis'
    NDJSON event stream (each finished scenario records its cases, checks and responses)."""
    cases: collections.Counter = collections.Counter()
    statuses: collections.Counter = collections.Counter()
    failures: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished is None:
            continue
        recorder = finished.get("recorder") or {}
        for case_id, case in (recorder.get("cases") or {}).items():
            request = case["value"]
            operation = f"{request['method']} {request['path']}"
            cases[operation] += 1
            response = ((recorder.get("interactions") or {}).get(case_id) or {}).get("response") or {}
            statuses[str(response.get("status_code", "none"))] += 1
            for check in (recorder.get("checks") or {}).get(case_id, []):
                if check["status"] not in ("success", "skip"):
                    counted = ("positive_data_acceptance (documented 422)" if check["name"] == "positive_data_acceptance"
                               and operation in SPEC_OPERATIONS else check["name"])
                    failures[counted] += 1
                    examples.setdefault(counted, f"{operation}: {json.dumps(request.get('body'))[:300]}")
    return {"cases": sum(cases.values()), "cases_per_operation": dict(sorted(cases.items())),
            "responses_by_status": dict(sorted(statuses.items())), "failures_per_check": dict(failures),
            "failure_examples": examples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=300, help="--max-examples per operation")
    ap.add_argument("--workers", type=int, default=1, help="schemathesis' concurrent workers")
    ap.add_argument("--out", type=Path, help="also write the figures here as JSON")
    ap.add_argument("--events", type=Path, help="keep schemathesis' NDJSON event stream here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tcgen-fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        server = LocalServer(tmp / "fuzz.db", workers=1, env=ENV).start()
        started = time.monotonic()
        try:
            code, output = run_schemathesis(server.url, args.examples, args.workers, tmp / "events.ndjson")
        finally:
            stopped = server.stop()
            log = server.log_path.read_text(errors="replace")
        seconds = time.monotonic() - started
        if args.events:
            args.events.write_bytes((tmp / "events.ndjson").read_bytes())
        result = {"examples": args.examples, "seconds": round(seconds, 1), "schemathesis_exit": code,
                  "server_exit": stopped, "server_tracebacks": log.count("Traceback"),
                  **summarize(tmp / "events.ndjson")}
    print(output[-4000:])
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    failed = {name: n for name, n in result["failures_per_check"].items() if "documented" not in name}
    short = {op: n for op, n in result["cases_per_operation"].items() if op in GENERATED and n < args.examples}
    print(f"failures other than documented 422s: {failed or 0}; operations under {args.examples} cases: "
          f"{short or 'none'}; server tracebacks: {result['server_tracebacks']}")
    return 0 if not failed and not short and stopped == 0 and not result["server_tracebacks"] else 1


if __name__ == "__main__":
    sys.exit(main())
