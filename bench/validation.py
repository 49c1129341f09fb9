"""Validation benchmark: how often a generated program passes execution on its first try.

    python -m bench.validation [--count 125] [--levels 1 2 3 4] [--device cpu] [--dtype float32]

For each level it generates `--count` validated samples at a small window (2**16..2**22 by
default) and prints: samples, failures, first-attempt pass rate, the rejection reasons of
the attempts that were redone, and whether every returned sample executed with finite
outputs (re-checked here by running the program again).
"""
from __future__ import annotations

import argparse
import collections
import sys

import torch

from generator_core import GenerationError, GenerationSpec, generate
from generator_core.draws import combination
from generator_core.seeds import derive_seed
from generator_core.validate import validate_program


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=125)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--min_flops", type=int, default=2**16)
    parser.add_argument("--max_flops", type=int, default=2**22)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    total = first = failed = rechecked = validated_first = 0
    reasons: collections.Counter[str] = collections.Counter()
    for level in args.levels:
        spec = GenerationSpec(level=level, min_flops=args.min_flops, max_flops=args.max_flops,
                              dtype=args.dtype, seed=args.seed)
        lvl_first = 0
        for index in range(args.count):
            try:
                sample = generate(spec, index, device=args.device)
            except GenerationError as exc:
                failed += 1
                print(f"failed: {exc}", file=sys.stderr)
                continue
            total += 1
            lvl_first += sample.attempts == 1
            redone_by_validation = [r for r in sample.rejected if not r.endswith("no solution")]
            validated_first += not redone_by_validation
            if sample.attempts > 1:
                ops = ", ".join(op.name for op in combination(spec, index))
                for reason in sample.rejected:
                    reasons[f"level {level} [{ops}] {reason.split(': ', 1)[1]}"] += 1
            again = validate_program(sample.pytorch, sample.output_shapes, fmt=sample.format,
                                     device=args.device, seed=derive_seed(spec.seed, index, sample.attempts - 1))
            rechecked += again.reason is None
        first += lvl_first
        print(f"level {level}: {args.count} indices, first-attempt pass {lvl_first}/{args.count}")
    print(f"bench.validation: window {args.min_flops}..{args.max_flops}, {args.dtype} on {args.device}")
    print(f"samples {total}, failures {failed}, first-attempt pass {first / max(total, 1):.2%} "
          f"(validation passed the first program validated: {validated_first / max(total, 1):.2%}), "
          f"returned samples that execute finite on re-check {rechecked}/{total}")
    for reason, n in reasons.most_common(20):
        print(f"  {n} x {reason}")


if __name__ == "__main__":
    main()
