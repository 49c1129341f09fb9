"""Several GPUs against one, on the same machine, warm, in one call:

    python -m bench.multi_gpu                # every visible GPU; level 2, default window
    python -m bench.multi_gpu --device cpu --count 40 --min-flops 65536 --max-flops 4194304   # the code path, on a CPU

Three runs of the same spec (after each engine's warm-up): solving only (validation off:
what the solver workers can supply), validation on GPU 0 alone, and validation on every
visible GPU (one validation worker each). Prints samples/s, the solver workers' busy
fraction, each GPU's device-busy fraction and share of samples, and whether the
all-GPU output equals the one-GPU output byte for byte. Whichever of solvers or GPUs is
near 100% busy is the bound. Results go to bench/results/multi-gpu-<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path
from unittest import mock

from bench.gpu import RESULTS, run
from generator_core import GenerationSpec
from service.engine.devices import visible_gpus


def one(label: str, spec: GenerationSpec, count: int, workers: int, device: str, gpus: list[str] | None) -> tuple:
    # CUDA_VISIBLE_DEVICES is read by the engine's device_slots
    with mock.patch.dict(os.environ, {} if gpus is None else {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}):
        lines, figures, _ = run(spec, count, workers, device)
    n = max(1, len(gpus or [""]))
    figures["gpus"] = n
    figures["device_busy_per_gpu"] = figures["busy_fraction"] / n  # mean over the GPUs
    figures["validation_worker_busy_per_gpu"] = figures["validation_step_seconds"] / (figures["wall_s"] * n)
    print(f"{label:>12}: {figures['samples_per_s']:6.1f} samples/s, solvers busy {figures['solver_busy_fraction']:.2f}, "
          f"device busy per GPU {figures['device_busy_per_gpu']:.2f}, validation workers busy "
          f"{figures['validation_worker_busy_per_gpu']:.2f}, by device {figures['by_device']}", flush=True)
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--level", type=int, default=2)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--min-flops", type=int, default=2**34)
    p.add_argument("--max-flops", type=int, default=2**35)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    gpus = visible_gpus() if args.device == "cuda" else []
    spec = GenerationSpec(level=args.level, seed=args.seed, min_flops=args.min_flops, max_flops=args.max_flops)
    report = {"date": datetime.date.today().isoformat(), "args": {k: str(v) for k, v in vars(args).items()},
              "gpus": gpus}
    _, report["solve_only"] = one("solve only", spec.model_copy(update={"validate_samples": False}),
                                  args.count, args.workers, args.device, None)
    one_lines, report["one_gpu"] = one("one GPU", spec, args.count, args.workers, args.device, gpus[:1] or None)
    all_lines, report["all_gpus"] = one(f"{len(gpus)} GPUs", spec, args.count, args.workers, args.device, gpus or None)
    report["identical_output"] = one_lines == all_lines
    report["speedup"] = report["all_gpus"]["samples_per_s"] / report["one_gpu"]["samples_per_s"]
    print(f"identical output: {report['identical_output']}; speedup {report['speedup']:.2f}x "
          f"on {len(gpus)} GPUs", flush=True)
    if args.device == "cuda":
        import torch

        report["device"] = f"{len(gpus)}x {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
        report["torch"] = torch.__version__
    out = args.out or RESULTS / f"multi-gpu-{len(gpus)}x-{report.get('device', 'cpu').split(',')[0].split('x ', 1)[-1].replace(' ', '_')}-{report['date']}.json"
    out.write_text(json.dumps(report, indent=1))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
