"""Grading bench: samples re-checked against the grading contract, independently of the validator.

    python -m bench.grading [--levels 0 1 2 3 4] [--dtypes float32] [--count 100] [--seed 4242]
                            [--min-flops 65536] [--max-flops 4194304] [--device cpu|cuda]
                            [--compile] [--jobs 2] [--rate-count 0] [--before-tree DIR] [--out F]
                            [--save-lines F] [--generate-only] [--from-lines F ...]

For each level and dtype it generates `--count` validated samples on a warm engine, then
re-checks every sample in `--jobs` processes with code of its own (none of
generator_core.grading): the program loaded from its text with PyTorch's default flags (the
program may pin its own), inputs from five fresh seeds (not the validator's), and
- float64: every output within half the tolerance of the program run on float64 inputs (half
  types: within the tolerance of that run rounded to the dtype, the best such an output can be);
- compile: `torch.compile` of the program (Inductor: a correct fused implementation) passes
  KernelBench's check (`torch.allclose(ref, cand, atol=tol, rtol=tol)`, every seed), at the
  sample's tolerance and at 1e-2 (`--compile`; slow: a compilation per sample);
- trivial: zeros, the output's mean and each same-shaped input fail every output at 1e-2;
- constant: no output constant for any seed;
- removable: no node whose line, replaced by one of its same-shaped inputs, leaves every
  output within 1e-2 (text substitution in the program);
- index_ties: ArgMax / ArgMin nodes give the same indices on float64 inputs.
It prints the share of samples meeting each rule, per level and dtype. `--save-lines` and
`--generate-only` keep the samples, `--from-lines` re-checks kept ones (a GPU run in parts). `--rate-count N`
also measures validated samples/s at level 2 on a warm engine (N samples) for this tree and,
with `--before-tree DIR` (an export of an earlier commit: `git archive 58c7b42 | tar -x -C DIR`),
for that tree, in the same way: the cost of the grading checks.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
LOOSE = 1e-2
SEEDS = [1001, 1002, 1003, 1004, 1005]  # KernelBench-style fresh input seeds
INDEX_OPS = ("ArgMax", "ArgMin")
RULES = ("float64", "compile_tol", "compile_loose", "trivial", "constant", "removable", "index_ties")


def _load(code: str) -> dict:
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # a grader's defaults
    namespace: dict = {}
    exec(compile(code, "<sample>", "exec"), namespace)
    return namespace


def _inputs(namespace: dict, device: str, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    with torch.device(device):
        return namespace["get_inputs"]()


def _as_list(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _allclose(ref: torch.Tensor, cand: torch.Tensor, tol: float) -> bool:
    """KernelBench's comparison (reference first); index outputs exactly."""
    if not ref.is_floating_point():
        return torch.equal(ref, cand.to(ref.dtype))
    return ref.shape == cand.shape and torch.allclose(ref, cand.to(ref.dtype), atol=tol, rtol=tol)


def _near_float64(ref: torch.Tensor, truth: torch.Tensor, tol: float) -> bool:
    if not ref.is_floating_point():
        return torch.equal(ref, truth)
    if ref.dtype != torch.float32:
        truth, bound = truth.to(ref.dtype).double(), tol
    else:
        bound = tol / 2
    return bool(((ref.double() - truth).abs() <= bound + bound * truth.abs()).all())


def _with_line(code: str, output: str, expr: str) -> str:
    """The program with node `output`'s line computing `expr` instead."""
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{output} = "):
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = f"{indent}{output} = {expr}"
            return "\n".join(lines) + "\n"
    raise ValueError(f"no line for {output}")


def _traced(code: str) -> str:
    """fused_operator returning every local tensor (for intermediate index nodes)."""
    lines = code.splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("    return ["))
    lines[last] = "    return dict(locals())"
    return "\n".join(lines) + "\n"


def recheck(line: str, device: str, with_compile: bool) -> dict:
    """Every rule for one sample: True where the sample meets it."""
    s = json.loads(line)
    tol = TOLERANCE[s["dtype"]]
    code, graph = s["pytorch"], s["graph"]
    graph = json.loads(graph) if isinstance(graph, str) else graph  # JSON text in records; older lines: an object
    result = {rule: True for rule in RULES}
    result.update(level=s["level"], dtype=s["dtype"], index=s["index"], ops=s["ops"], notes=[])
    torch.set_num_threads(1)
    with torch.no_grad():
        program = _load(code)["fused_operator"]
        candidate = None
        if with_compile:
            torch._dynamo.reset()
            candidate = torch.compile(_load(code)["fused_operator"])
        shapes = {t["name"]: t["shape"] for t in graph["inputs"]} | {n["output"]: n["shape"] for n in graph["nodes"]}
        for k, seed in enumerate(SEEDS):
            inputs = _inputs(program.__globals__, device, seed)
            ref = _as_list(program(*inputs))
            truth = _as_list(program(*[x.double() for x in inputs]))
            if not all(_near_float64(r, t, tol) for r, t in zip(ref, truth)):
                result["float64"] = False
            for out in ref:
                if out.numel() > 1 and bool(out.max() == out.min()):
                    result["constant"] = False
                if not out.is_floating_point():
                    continue
                trivial = [torch.zeros_like(out), torch.full_like(out, float(out.double().mean()))]
                trivial += [x for x in inputs if x.shape == out.shape]
                if any(_allclose(out, t, LOOSE) for t in trivial):
                    result["trivial"] = False
            if candidate is not None:
                try:
                    got = _as_list(candidate(*inputs))
                    result["compile_tol"] &= all(_allclose(r, g, tol) for r, g in zip(ref, got))
                    result["compile_loose"] &= all(_allclose(r, g, LOOSE) for r, g in zip(ref, got))
                except Exception as exc:  # a compiler failure is not the sample's: noted, not counted
                    result["notes"].append(f"compile failed: {type(exc).__name__}")
                    result["compile_tol"] = result["compile_loose"] = None
                    candidate = None
            if k == 0:
                result["removable"] = not any(_removable_nodes(code, graph, shapes, inputs, ref, device))
                if any(n["op"] in INDEX_OPS for n in graph["nodes"]):
                    traced = _load(_traced(code))["fused_operator"]
                    env, env64 = traced(*inputs), traced(*[x.double() for x in inputs])
                    result["index_ties"] = all(torch.equal(env[n["output"]].long(), env64[n["output"]].long())
                                          for n in graph["nodes"] if n["op"] in INDEX_OPS)
        if not with_compile:
            result["compile_tol"] = result["compile_loose"] = None
    return result


def _removable_nodes(code, graph, shapes, inputs, ref, device):
    """Nodes whose replacement by a same-shaped input leaves every output within 1e-2."""
    for node in graph["nodes"]:
        if node["op"] == "Reshape" or node["op"] in INDEX_OPS:
            continue
        for name in dict.fromkeys(node["inputs"]):
            if shapes[name] != node["shape"]:
                continue
            variant = _load(_with_line(code, node["output"], name))["fused_operator"]
            if all(_allclose(r, c, LOOSE) for r, c in zip(ref, _as_list(variant(*inputs)))):
                yield node["output"], name


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _recheck_star(args):
    """recheck, in a pool process: memory given back after every sample (the caching
    allocator would keep each process's peak), and once more after running out of it."""
    for attempt in range(2):
        try:
            return recheck(*args)
        except torch.OutOfMemoryError as exc:  # another process's peak: free, then once more
            error = exc
        except Exception as exc:  # a re-check that crashes is reported, never hidden
            error = exc
            break
        finally:
            _free_memory()
    s = json.loads(args[0])
    return {"level": s["level"], "dtype": s["dtype"], "index": s["index"], "ops": s["ops"],
            "error": f"{type(error).__name__}: {error}"[:300]}


RATE_SNIPPET = """
import json, sys, time
from generator_core import GenerationSpec
from service.engine import Engine
spec = GenerationSpec(**json.loads(sys.argv[1]))
count, workers, device = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with Engine(solver_workers=workers, device=device) as engine:
    engine.start(validation=True)
    engine.wait_ready(timeout=600)
    for _ in engine.run(spec, range(10**6, 10**6 + 16)):
        pass
    start = time.perf_counter()
    failed = sum(o.json is None for o in engine.run(spec, range(count)))
    print(json.dumps({"samples_per_s": (count - failed) / (time.perf_counter() - start), "failed": failed}))
"""


def engine_rate(tree: Path, spec: dict, count: int, workers: int, device: str) -> dict:
    """Validated samples/s of `tree`'s engine (a subprocess importing that tree first)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", RATE_SNIPPET, json.dumps(spec), str(count), str(workers), device],
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generate_lines(specs: list[dict], count: int, workers: int, device: str) -> list[tuple[list[str], float, dict]]:
    """Each spec's validated lines, the seconds they took and its given-up indices' attempts
    counted by reason (metrics' labels), on one warm engine."""
    from generator_core import GenerationSpec
    from service.engine import Engine
    from service.metrics import rejection_reason  # the labels metrics count rejections by

    runs = []
    with Engine(solver_workers=workers, device=device) as engine:
        engine.start(validation=True)
        engine.wait_ready(timeout=600)
        for fields in specs:
            start = time.perf_counter()
            outcomes = list(engine.run(GenerationSpec(**fields), range(count)))
            reasons = collections.Counter(rejection_reason(part) for o in outcomes if o.error
                                          for part in o.error.split("): ", 1)[-1].split("; ") if part.startswith("attempt"))
            runs.append(([o.json for o in outcomes if o.json is not None], time.perf_counter() - start, dict(reasons)))
            print(f"generated {fields}: {len(runs[-1][0])}/{count} in {runs[-1][1]:.1f}s", flush=True)
    return runs


def table(results: list[dict]) -> list[dict]:
    rows = []
    groups = collections.defaultdict(list)
    for r in results:
        groups[(r["level"], r["dtype"])].append(r)
    for (level, dtype), rs in sorted(groups.items()):
        checked = [r for r in rs if "error" not in r]
        row = {"level": level, "dtype": dtype, "samples": len(rs), "errors": len(rs) - len(checked)}
        for rule in RULES:
            known = [r[rule] for r in checked if r[rule] is not None]
            row[rule] = sum(known) / len(known) if known else None
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--dtypes", nargs="+", default=["float32"])
    p.add_argument("--count", type=int, default=100, help="samples per level and dtype")
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--min-flops", type=int, default=2**16)
    p.add_argument("--max-flops", type=int, default=2**22)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="engine solver workers")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="re-check processes")
    p.add_argument("--compile", action="store_true", help="also grade torch.compile candidates")
    p.add_argument("--rate-count", type=int, default=0)
    p.add_argument("--before-tree", type=Path)
    p.add_argument("--save-lines", type=Path, help="also write the generated samples (JSONL) here")
    p.add_argument("--generate-only", action="store_true", help="generate (and --save-lines), re-check nothing")
    p.add_argument("--from-lines", type=Path, nargs="+", help="re-check these JSONL files instead of generating")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "generated": [], "results": []}
    specs = [{"level": level, "seed": args.seed, "dtype": dtype, "min_flops": args.min_flops,
              "max_flops": args.max_flops} for dtype in args.dtypes for level in args.levels]
    lines = []
    if args.from_lines:
        lines = [line for f in args.from_lines for line in f.read_text().splitlines() if line.strip()]
    else:
        for spec, (got, wall, reasons) in zip(specs, generate_lines(specs, args.count, args.workers, args.device)):
            report["generated"].append({**spec, "samples": len(got), "given_up": args.count - len(got),
                                        "samples_per_s": len(got) / wall, "given_up_attempts_by_reason": reasons})
            lines += got
            if args.save_lines:  # each spec's lines as soon as they exist: a run cut short keeps them
                args.save_lines.write_text("".join(line + "\n" for line in lines))
    if args.generate_only:
        if args.out:
            args.out.write_text(json.dumps(report, indent=1))
        print(json.dumps(report["generated"], indent=1))
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.jobs, maxtasksperchild=20) as pool:
        work = [(line, args.device, args.compile) for line in lines]
        for result in pool.imap_unordered(_recheck_star, work):
            report["results"].append(result)
            if args.out and len(report["results"]) % 10 == 0:  # a run cut short keeps what it checked
                args.out.write_text(json.dumps(report, indent=1))
    report["table"] = table(report["results"])
    print(f"bench.grading: window {args.min_flops}..{args.max_flops} on {args.device}, seed {args.seed}, "
          f"re-checked with input seeds {SEEDS}")
    print("level dtype    n  " + "  ".join(f"{r:>13}" for r in RULES))
    for row in report["table"]:
        cells = "  ".join(f"{'-' if row[r] is None else f'{row[r]:.1%}':>13}" for r in RULES)
        print(f"{row['level']:>5} {row['dtype']:<8} {row['samples']:>3}  {cells}" + (f"  ({row['errors']} errors)" if row["errors"] else ""))
    for r in report["results"]:
        failed = [rule for rule in RULES if r.get(rule) is False] + (["error"] if "error" in r else [])
        if failed:
            print(f"  level {r['level']} {r['dtype']} index {r['index']} {r['ops']}: fails {failed} {r.get('error', '')}")
    if args.rate_count:
        spec = {"level": 2, "seed": args.seed + 1, "min_flops": args.min_flops, "max_flops": args.max_flops}
        here = Path(__file__).resolve().parent.parent
        report["rate"] = {"spec": spec, "after": engine_rate(here, spec, args.rate_count, args.workers, args.device)}
        if args.before_tree:
            report["rate"]["before"] = engine_rate(args.before_tree.resolve(), spec, args.rate_count, args.workers,
                                                   args.device)
        print(f"validated samples/s at level 2: {json.dumps(report['rate'])}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
