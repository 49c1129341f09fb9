"""tcgen's KernelBench-format samples run by KernelBench's own evaluator, unmodified.

On a GPU, `eval_kernel_against_ref` (ScalingIntelligence/KernelBench, src/kernelbench/eval.py)
grades two candidates per sample: the reference itself renamed `ModelNew` (must pass) and a
`ModelNew` whose forward is `torch.compile`d. Without CUDA (the evaluator asserts it), the
same steps run through the evaluator's own functions as far as they go on a CPU: load the
problem (`load_original_model_and_inputs`), seed and build both models (`set_seed`,
`load_custom_model`), make inputs (`_process_input_tensor`), compare `.shape` and
`torch.allclose` at `get_tolerance_for_precision` over several trial seeds.

    python -m bench.kernelbench_eval --kernelbench KB --levels 1 2 3 4 --count 30 --seed 14 [--compile]

KB is a KernelBench checkout (a directory with src/kernelbench, and a COMMIT file naming the
commit where it is an export rather than a git work tree) or its git directory (read with
`git archive`; no work tree needed). KernelBench's package imports LLM client libraries
(openai, litellm: 81 MB of wheels) that evaluation never calls; where they are not installed
an empty module stands in for each, so that the evaluator's module imports as published.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from io import BytesIO
from pathlib import Path

import torch

PRECISION = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Names KernelBench's utils.py imports from LLM client libraries at import time.
LLM_CLIENT_NAMES = {"openai": ["OpenAI"], "litellm": ["completion"], "dotenv": ["load_dotenv"]}

COMPILED_FORWARD = '''

class ModelNew(Model):
    """The reference, its forward compiled by torch.compile."""

    def __init__(self, *args):
        super().__init__(*args)
        self.compiled = torch.compile(super().forward)

    def forward(self, *inputs):
        return self.compiled(*inputs)
'''


def identical_candidate(reference: str) -> str:
    """The reference program as KernelBench's `ModelNew`."""
    return reference.replace("class Model(nn.Module):", "class ModelNew(nn.Module):", 1)


def compiled_candidate(reference: str) -> str:
    return reference + COMPILED_FORWARD


def source_tree(kernelbench: str) -> tuple[Path, str]:
    """(the directory holding the `kernelbench` package, the evaluator's commit)."""
    path = Path(kernelbench)
    if (path / "src" / "kernelbench" / "eval.py").exists():  # a checkout, or an export with a COMMIT file
        if (path / "COMMIT").exists():
            return path / "src", (path / "COMMIT").read_text().strip()
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
        return path / "src", commit.stdout.strip() or "unknown (not a git checkout)"
    git = ["git", f"--git-dir={path}"]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run([*git, "archive", "HEAD", "src/kernelbench"], capture_output=True, check=True).stdout
    target = Path(tempfile.mkdtemp(prefix="kernelbench-"))
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "src", commit


def load_evaluator(kernelbench: str) -> tuple[types.ModuleType, str]:
    """KernelBench's eval module, imported from its source, and its commit."""
    src, commit = source_tree(kernelbench)
    for module, names in LLM_CLIENT_NAMES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            stand_in = types.ModuleType(module)
            for name in names:
                setattr(stand_in, name, lambda *a, **k: None)
            sys.modules[module] = stand_in
    sys.path.insert(0, str(src))
    return importlib.import_module("kernelbench.eval"), commit


def cpu_check(kb, reference: str, candidate: str, precision: torch.dtype, trials: int = 3,
              seed: int = 42) -> dict:
    """KernelBench's correctness steps with its own functions, on the CPU."""
    Model, get_init_inputs, get_inputs = kb.load_original_model_and_inputs(reference, {})
    kb.set_seed(seed)
    init_inputs = [kb._process_input_tensor(x, "cpu", "cuda", precision) for x in get_init_inputs()]
    ModelNew = kb.load_custom_model(candidate, {})
    with torch.no_grad():
        kb.set_seed(seed)
        model = Model(*init_inputs).to(device="cpu", dtype=precision)
        kb.set_seed(seed)
        model_new = ModelNew(*init_inputs).to(device="cpu", dtype=precision)
        tolerance = kb.get_tolerance_for_precision(precision)
        passed = 0
        for trial in range(trials):
            kb.set_seed(seed + trial)
            inputs = [kb._process_input_tensor(x, "cpu", "cuda", precision) for x in get_inputs()]
            output, output_new = model(*inputs), model_new(*inputs)
            if output.shape != output_new.shape:
                return {"correctness": False, "reason": f"shape {output_new.shape} != {output.shape}"}
            passed += bool(torch.allclose(output, output_new, atol=tolerance, rtol=tolerance))
    return {"correctness": passed == trials, "trials": f"{passed}/{trials}"}


def gpu_check(kb, reference: str, candidate: str, precision: torch.dtype, trials: int) -> dict:
    result = kb.eval_kernel_against_ref(reference, candidate, seed_num=42, num_correct_trials=trials,
                                        measure_performance=False, device=0, backend="cuda", precision=precision)
    metadata = {k: v for k, v in result.metadata.items() if "traceback" not in k}
    return {"compiled": result.compiled, "correctness": result.correctness,
            "metadata": json.loads(json.dumps(metadata, default=str))}


def main(argv: list[str] | None = None) -> int:
    from generator_core import GenerationError, GenerationSpec, generate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernelbench", required=True, help="KernelBench checkout or git directory")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--dtype", default="float32", choices=list(PRECISION))
    p.add_argument("--trials", type=int, default=5, help="the evaluator's num_correct_trials")
    p.add_argument("--compile", action="store_true", help="also grade a torch.compile candidate")
    p.add_argument("--min_flops", type=int, default=2**34)
    p.add_argument("--max_flops", type=int, default=2**35)
    p.add_argument("--start_index", type=int, default=0)
    p.add_argument("--out", help="append one JSON line per sample here, as each finishes")
    p.add_argument("--summarize", nargs="+", metavar="ROWS", help="only summarise these --out files")
    args = p.parse_args(argv)
    if args.summarize:
        rows = [row for f in args.summarize for row in read_rows(Path(f))]
        print(json.dumps(summarise(rows), indent=1))
        return 0

    kb, commit = load_evaluator(args.kernelbench)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    precision = PRECISION[args.dtype]
    rows = []
    for level in args.levels:
        spec = GenerationSpec(level=level, seed=args.seed, count=args.count, dtype=args.dtype, format="kernelbench",
                              min_flops=args.min_flops, max_flops=args.max_flops,
                              max_total_bytes=(16 if cuda else 1) * 2**30)
        for index in range(args.start_index, args.start_index + args.count):
            try:
                sample = generate(spec, index, device=device)
            except GenerationError as err:
                row = {"level": level, "index": index, "dtype": args.dtype, "given_up": str(err)[:200]}
                rows.append(row)
                if args.out:
                    with open(args.out, "a") as out:
                        out.write(json.dumps(row) + "\n")
                continue
            row = {"level": level, "index": index, "ops": sample.ops, "bytes": sample.bytes}
            candidates = {"identical": identical_candidate(sample.pytorch)}
            if args.compile:
                candidates["compiled"] = compiled_candidate(sample.pytorch)
            for name, candidate in candidates.items():
                started = time.perf_counter()
                try:
                    row[name] = (gpu_check(kb, sample.pytorch, candidate, precision, args.trials) if cuda else
                                 cpu_check(kb, sample.pytorch, candidate, precision, args.trials))
                except Exception as exc:  # the evaluator's own failure: recorded, not hidden
                    row[name] = {"correctness": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
                row[name]["seconds"] = round(time.perf_counter() - started, 2)
                torch._dynamo.reset()
            row |= {"commit": commit, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                    "torch": torch.__version__, "dtype": args.dtype, "seed": args.seed,
                    "window": [args.min_flops, args.max_flops]}
            rows.append(row)
            print(json.dumps(row)[:300], flush=True)
            if args.out:
                with open(args.out, "a") as out:
                    out.write(json.dumps(row) + "\n")
    print(json.dumps(summarise(rows), indent=1))
    return 0


def read_rows(path: Path) -> list[dict]:
    """An --out file (a JSON line per sample), or a saved result ({"rows": [...]})."""
    text = path.read_text()
    if text.startswith("{\n") or text.startswith('{"command"'):
        return json.loads(text)["rows"]
    return [json.loads(line) for line in text.splitlines()]


def summarise(rows: list[dict]) -> dict:
    """Pass counts per (dtype, level), and what produced them."""
    summary = {"evaluator": "ScalingIntelligence/KernelBench src/kernelbench/eval.py",
               "commits": sorted({r["commit"] for r in rows if "commit" in r}),
               "devices": sorted({r["device"] for r in rows if "device" in r}), "by_level": {}}
    for key in sorted({(r.get("dtype", "?"), r["level"]) for r in rows}):
        mine = [r for r in rows if (r.get("dtype", "?"), r["level"]) == key]
        done = [r for r in mine if "given_up" not in r]
        summary["by_level"][f"{key[0]} level {key[1]}"] = {"samples": len(done), "given_up": len(mine) - len(done)} | {
            f"{name}_pass": sum(r[name]["correctness"] for r in done if name in r)
            for name in ("identical", "compiled") if any(name in r for r in done)}
    return summary


if __name__ == "__main__":
    sys.exit(main())
