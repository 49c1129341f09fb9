"""Sample bytes: a fixed set of samples, written whole, to check that a refactoring changed nothing.

    python -m bench.sample_bytes --out FILE

Generates (validation on, device cpu: the defaults) levels 0-4 x seeds {1, 7} x indices 0..3
in the small window (min_flops 65536, max_flops 4194304), in float32 and bfloat16, in both
formats, plus op_sequence specs that cover every operator family, and writes each sample's
full JSON line (`generate(spec, index).model_dump_json()`) to FILE, one a line (an index that
cannot be generated writes its GenerationError's message). Prints the
number of samples and the file's sha256: run it before and after a change and `cmp` the files.
"""
from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator

from generator_core import GenerationSpec
from generator_core.generate import GenerationError, generate

WINDOW = {"min_flops": 65536, "max_flops": 4194304}
LEVELS = range(5)
SEEDS = (1, 7)
INDICES = range(4)
DTYPES = ("float32", "bfloat16")
FORMATS = ("fused_operator", "kernelbench")
# Every family: conv, activation, reduction, pool, linalg, norm, scan, layout, elementwise.
SEQUENCES = (
    ["Conv2d", "ReLU", "Sum"],
    ["ConvTranspose2d"],
    ["MaxPool2d"],
    ["AvgPool1d", "GELU"],
    ["Matmul"],
    ["Bmm", "Softmax"],
    ["LayerNorm"],
    ["GroupNorm", "Tanh"],
    ["CumSum"],
    ["CumMax", "Mean"],
    ["Transpose"],
    ["Triu"],
    ["Tril", "Sum"],
    ["ArgMax"],
    ["Cat", "Add"],
    ["Stack"],
    ["Lerp", "Norm"],
)


def specs() -> Iterator[tuple[GenerationSpec, int]]:
    """(spec, index) pairs, in a fixed order."""
    for dtype in DTYPES:
        for fmt in FORMATS:
            for level in LEVELS:
                for seed in SEEDS:
                    spec = GenerationSpec(level=level, seed=seed, dtype=dtype, format=fmt, **WINDOW)
                    for index in INDICES:
                        yield spec, index
            for sequence in SEQUENCES:
                spec = GenerationSpec(op_sequence=sequence, seed=1, dtype=dtype, format=fmt, **WINDOW)
                yield spec, 0


def line_of(spec: GenerationSpec, index: int) -> bytes:
    """The sample's JSON line; a spec that cannot be generated writes its error instead."""
    try:
        return generate(spec, index).model_dump_json().encode() + b"\n"
    except GenerationError as exc:
        return f"GenerationError: {exc}\n".encode()


def write(path: str) -> tuple[int, str]:
    """Writes every sample's JSON line to `path`; returns (samples, sha256 of the file)."""
    digest = hashlib.sha256()
    count = 0
    with open(path, "wb") as out:
        for spec, index in specs():
            line = line_of(spec, index)
            out.write(line)
            digest.update(line)
            count += 1
    return count, digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sample_bytes", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    args = parser.parse_args(argv)
    count, sha = write(args.out)
    print(f"{count} samples  sha256 {sha}  {args.out}")


if __name__ == "__main__":
    main()
