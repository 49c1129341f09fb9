"""Where validation's time goes: each grading check timed on its own, per phase and per operator.

    python -m bench.grading_cost [--level 2] [--count 60] [--dtype float32] [--device cuda]
                                 [--min-flops 2**34] [--max-flops 2**35] [--seed 0] [--out F]

It solves the first attempt of `--count` indices (in a process pool), then validates each on
the device as generator_core.validate does, with the device synchronised around every phase:
inputs, the program (its steps, in the dtype), trivial answers, removals, the float64 replay
and the comparisons with it. It prints each phase's share of the device time, the seconds
per operator in the dtype and in float64, and the verdicts.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path

import torch

from generator_core import GenerationSpec, grading
from generator_core.generate import solve_attempt, validate_candidate
from generator_core.validate import (_any_algorithms, _judge, _reproducible_cpu_kernels, execution_scope,
                                     load_program, resolve_device)

PHASES = ("inputs", "program", "trivial", "removable", "float64", "compare")


def _solve(args) -> object:
    spec, index = args
    return solve_attempt(GenerationSpec(**spec), index, 0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_replay(replay: grading.Replay, env: dict, device: str, by_op: collections.Counter) -> dict:
    """replay.run, node by node, each node's seconds added to by_op[op]."""
    namespace = {"torch": torch}
    for node, code in zip(replay.nodes, replay.code):
        start = time.perf_counter()
        env[node["output"]] = eval(code, namespace, env)
        _sync(device)
        by_op[node["op"]] += time.perf_counter() - start
    return env


def profile(candidate, device: str, phases: collections.Counter, ops32: collections.Counter,
            ops64: collections.Counter) -> str | None:
    """The candidate's verdict (None: passed), its phases' seconds added to `phases`."""
    f = candidate.fields
    replay = grading.Replay.of(f["graph"], candidate.steps)
    with grading.grader_flags(), execution_scope(device), _reproducible_cpu_kernels(device, f["dtype"]):
        loaded = load_program(f["pytorch"], f["format"])
        for seed in grading.input_seeds(candidate.validation_seed, f["dtype"]):
            clock = time.perf_counter()

            def lap(phase: str) -> None:
                nonlocal clock
                _sync(device)
                now = time.perf_counter()
                phases[phase] += now - clock
                clock = now

            instance = loaded.instantiate(device, seed)
            lap("inputs")
            env = _timed_replay(replay, replay.named(instance.inputs, instance.weights), device, ops32)
            outputs = [env[o] for o in replay.outputs]
            lap("program")
            reason, _, extremes = _judge(outputs, f["output_shapes"])
            reason = reason or grading.trivial_answers(outputs, instance.tensors, extremes)
            lap("trivial")
            reason = reason or grading.removable(replay, env)
            lap("removable")
            with _any_algorithms():  # as validate runs the float64 truth
                wide = instance.widened()
                env64 = _timed_replay(replay, replay.named(wide.inputs, wide.weights), device, ops64)
            lap("float64")
            truth = [env64[o] for o in replay.outputs]
            reason = reason or grading.numerics(outputs, truth, f["dtype"]) or grading.ties(
                replay.nodes, env, env64, f["dtype"], replay.input_names)
            lap("compare")
            del env, env64, outputs, instance, wide, truth
            if reason:
                return reason
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--level", type=int, default=2)
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="auto")
    p.add_argument("--min-flops", type=int, default=2**34)
    p.add_argument("--max-flops", type=int, default=2**35)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", choices=["on", "off", "no-fill"], default="on",
                   help="on: a GPU validation worker's settings (deterministic algorithms, which also "
                        "fill new tensors); no-fill: without the fill")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    device = resolve_device(args.device)
    if args.deterministic != "off" and device != "cpu":
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = args.deterministic == "on"
    spec = dict(level=args.level, dtype=args.dtype, min_flops=args.min_flops, max_flops=args.max_flops,
                seed=args.seed)
    with multiprocessing.get_context("spawn").Pool(max(1, (os.cpu_count() or 2) - 1)) as pool:
        candidates = [c for c in pool.map(_solve, [(spec, i) for i in range(args.count)]) if not isinstance(c, str)]
    torch.set_num_threads(1)
    phases: collections.Counter = collections.Counter()
    ops32: collections.Counter = collections.Counter()
    ops64: collections.Counter = collections.Counter()
    verdicts, per_sample = collections.Counter(), []
    profile(candidates[0], device, collections.Counter(), collections.Counter(), collections.Counter())  # warm-up
    for c in candidates:
        before = sum(phases.values())
        reason = profile(c, device, phases, ops32, ops64)
        verdicts[(reason or "passed").split(":")[0]] += 1
        per_sample.append({"index": c.index, "ops": c.fields["ops"], "seconds": sum(phases.values()) - before,
                           "reason": reason})
    start = time.perf_counter()
    for c in candidates:  # the validator itself, end to end, without the phases' synchronisations
        validate_candidate(c, device=device)
    whole = time.perf_counter() - start
    total = sum(phases.values())
    report = {"spec": spec, "device": device, "candidates": len(candidates), "seconds": total,
              "phases": dict(phases), "ops_dtype": dict(ops32), "ops_float64": dict(ops64),
              "verdicts": dict(verdicts), "validate_candidate_s": whole, "median_s": statistics.median(s["seconds"] for s in per_sample),
              "samples": per_sample}
    print(f"bench.grading_cost: level {args.level} {args.dtype} on {device}, {len(candidates)} candidates, "
          f"{total:.2f} s ({total / len(candidates) * 1000:.1f} ms each, median {report['median_s'] * 1000:.1f} ms)")
    print(f"  validate_candidate: {whole:.2f} s ({whole / len(candidates) * 1000:.1f} ms each), "
          f"deterministic {args.deterministic}")
    for phase in PHASES:
        print(f"  {phase:<10} {phases[phase]:8.3f} s  {phases[phase] / total:6.1%}")
    print("  operator          dtype s  float64 s")
    for op, secs in ops64.most_common(15):
        print(f"  {op:<16} {ops32[op]:8.3f} {secs:9.3f}")
    print(f"  verdicts: {dict(verdicts)}")
    for s in sorted(per_sample, key=lambda s: -s["seconds"])[:8]:
        print(f"  slowest: index {s['index']} {s['ops']} {s['seconds'] * 1000:.0f} ms {s['reason'] or ''}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
