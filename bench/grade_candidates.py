"""The grader that ships with the data (generator_core.grade) on real kernelbench samples:
candidates that must pass (the reference renamed ModelNew, a ModelNew whose forward is
torch.compile'd) and candidates that must fail with their reason (zeros, the mean, an
input, a wrong operator, a raise, os._exit, a segfault, an infinite loop, a 100 GiB
allocation on the device and on the host, a CUDA device-side assert). Prints each verdict
and the speedups over the eager reference; counts grader crashes (an exception out of
grade(), which must be 0).

    python -m bench.grade_candidates --levels 1 2 3 4 --count 4 --device auto [--faults 2] [--out F.json]

The samples are generated here (validated on --device) unless --from-lines names a JSONL
file of them. tests/test_grade.py uses the candidate builders (CANDIDATES).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

from bench.kernelbench_eval import compiled_candidate, identical_candidate

HEAD = ("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n    def __init__(self, *args):\n"
        "        super().__init__()\n\n    def forward(self, *xs):\n")
SUBCLASS = "\n\nclass ModelNew(Model):\n    def forward(self, *xs):\n        out = super().forward(*xs)\n"
# Operator calls a wrong-operator candidate swaps (the first one found in the program).
SWAPS = {"torch.tanh(": "torch.sigmoid(", "torch.sigmoid(": "torch.tanh(", "torch.cos(": "torch.sin(",
         "torch.sin(": "torch.cos(", "torch.relu(": "torch.abs(", "torch.abs(": "torch.relu(",
         "torch.exp2(": "torch.exp(", "torch.sum(": "torch.mean(", "torch.mean(": "torch.sum(",
         "torch.max(": "torch.min(", "torch.min(": "torch.max(", "torch.mul(": "torch.add(", "torch.add(": "torch.mul(",
         "torch.sub(": "torch.add(", "torch.maximum(": "torch.minimum(", "torch.minimum(": "torch.maximum("}


def _body(lines: str) -> Callable:
    return lambda sample: HEAD + lines


def zeros(sample) -> str:
    return HEAD + f"        return torch.zeros({sample.output_shapes[0]}, dtype=torch.{sample.dtype}, device=xs[0].device)\n"


def mean(sample) -> str:
    return sample.pytorch + SUBCLASS + "        return torch.full_like(out, float(out.float().mean()))\n"


def wrong_operator(sample) -> str:
    """One operator swapped for another; a program with none of SWAPS' gets its output scaled by 1.05."""
    for old, new in SWAPS.items():
        if old in sample.pytorch.split("def forward", 1)[1]:
            head, forward = sample.pytorch.split("def forward", 1)
            return identical_candidate(head + "def forward" + forward.replace(old, new, 1))
    return sample.pytorch + SUBCLASS + "        return out * 1.05\n"


# name -> (builder, the start of the reason, or None for a correct candidate, CUDA only)
CANDIDATES: dict[str, tuple[Callable, str | None, bool]] = {
    "own": (lambda s: identical_candidate(s.pytorch), None, False),
    "torch.compile": (lambda s: compiled_candidate(s.pytorch), None, False),
    "zeros": (zeros, "wrong values", False),
    "the mean": (mean, "wrong values", False),
    "an input": (_body("        return xs[0]\n"), "trivial answer", False),
    "a wrong operator": (wrong_operator, "wrong values", False),
    "a raise": (_body("        raise RuntimeError('boom')\n"), "crashed: RuntimeError: boom", False),
    "os._exit": (_body("        import os\n        os._exit(3)\n"), "crashed: exited with code 3", False),
    "a segfault": (_body("        import ctypes\n        ctypes.string_at(0)\n"), "crashed: killed by SIGSEGV", False),
    "an infinite loop": (_body("        while True:\n            pass\n"), "timed out", False),
    "100 GiB": (_body("        return torch.empty(100 * 2**30, dtype=torch.uint8, device=xs[0].device)\n"),
                "memory limit", False),
    "100 GiB on the host": (_body("        return torch.ones(100 * 2**30, dtype=torch.uint8)\n"), "memory limit", True),
    "a device-side assert": (_body("        return xs[0].flatten()[torch.tensor([2**40], device=xs[0].device)]\n"),
                             "crashed", True),
}
LOOP_TIMEOUT_S = 30


def run(samples, device: str, faults: int, runs: int, out: str | None = None) -> list[dict]:
    """Every candidate on each sample (the failing ones on the first `faults` samples);
    the rows so far are written to `out` after each (a run cut short keeps them)."""
    from generator_core.grade import grade

    rows = []
    for k, sample in enumerate(samples):
        for name, (build, reason, cuda_only) in CANDIDATES.items():
            if (reason is not None and k >= faults) or (cuda_only and device == "cpu"):
                continue
            started = time.monotonic()
            row = {"level": sample.level, "index": sample.index, "id": sample.id, "ops": sample.ops,
                   "candidate": name, "expected": reason or "correct"}
            try:
                result = grade(sample, build(sample), device=device, runs=runs, compile=name == "own",
                               timeout_s=LOOP_TIMEOUT_S if name == "an infinite loop" else 300)
                row |= result.model_dump(exclude={"seeds"})
                row["as_expected"] = (result.correct if reason is None
                                      else not result.correct and result.graded and result.reason.startswith(reason))
            except Exception as exc:  # a grader crash: what must never happen
                row |= {"grader_crash": f"{type(exc).__name__}: {exc}", "as_expected": False}
            row["seconds"] = round(time.monotonic() - started, 2)
            rows.append(row)
            print(f"L{sample.level} #{sample.index} {name:22s} {'ok ' if row['as_expected'] else 'BAD'} "
                  f"{row.get('reason') or 'correct'}"
                  + (f"  speedup {row['speedup']:.3g}" if row.get("speedup") else "")
                  + (f" (vs compiled {row['speedup_vs_compiled']:.3g})" if row.get("speedup_vs_compiled") else "")
                  + f"  [{row['seconds']} s]", flush=True)
            if out:
                save(out, device, rows)
    return rows


def save(path: str, device: str, rows: list[dict]) -> dict:
    result = {"device": device, "summary": summary(rows), "rows": rows}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return result


def summary(rows: list[dict]) -> dict:
    def speedups(name: str) -> list[float]:
        return [r["speedup"] for r in rows if r["candidate"] == name and r.get("speedup")]

    out = {"grades": len(rows), "as_expected": sum(r["as_expected"] for r in rows),
           "grader_crashes": sum("grader_crash" in r for r in rows),
           "median_grade_s": statistics.median(r["seconds"] for r in rows) if rows else None}
    for name in ("own", "torch.compile"):
        values = speedups(name)
        out[f"{name} correct"] = f"{sum(r['correct'] for r in rows if r['candidate'] == name)} of " \
                                 f"{sum(r['candidate'] == name for r in rows)}"
        out[f"{name} median speedup"] = statistics.median(values) if values else None
    compiled = [r["compiled_reference_ms"] and r["reference_ms"] / r["compiled_reference_ms"]
                for r in rows if r["candidate"] == "own" and r.get("compiled_reference_ms")]
    out["torch.compile reference over eager, median"] = statistics.median(compiled) if compiled else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grade_candidates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--count", type=int, default=4, help="samples per level")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--min-flops", type=int, default=2**34)
    parser.add_argument("--max-flops", type=int, default=2**35)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--faults", type=int, default=2, help="samples that also get the failing candidates")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--from-lines", help="a JSONL file of kernelbench samples instead of generating")
    parser.add_argument("--out", help="write the rows and the summary as JSON here")
    args = parser.parse_args(argv)

    from generator_core import GenerationSpec, Sample, generate
    from generator_core.grade import _device

    device = _device(args.device)
    if args.from_lines:
        with open(args.from_lines, encoding="utf-8") as f:
            samples = [Sample.model_validate_json(line) for line in f if line.strip()]
    else:
        samples = [generate(GenerationSpec(level=level, seed=args.seed, min_flops=args.min_flops,
                                           max_flops=args.max_flops, format="kernelbench"), index, device=device)
                   for level in args.levels for index in range(args.count)]
    if device.startswith("cuda"):  # what validation cached here is the graders' to use
        import torch

        torch.cuda.empty_cache()
    rows = run(samples, device, args.faults, args.runs, args.out)
    totals = summary(rows)
    print(json.dumps(totals, indent=2))
    return 0 if totals["as_expected"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
