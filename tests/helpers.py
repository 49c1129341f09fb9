"""Shared helpers: the small FLOPs window the suite uses and running a rendered program."""
from __future__ import annotations

from functools import lru_cache

import torch

from generator_core import OPERATORS, GenerationSpec, Sample, generate

LO, HI = 2**16, 2**22  # small window: every test stays fast on two CPU cores


def spec(**fields) -> GenerationSpec:
    """A GenerationSpec in the small window unless the test says otherwise."""
    return GenerationSpec(**{"min_flops": LO, "max_flops": HI, **fields})


@lru_cache(maxsize=None)
def level0(name: str, dtype: str = "float32") -> Sample:
    """The validated level-0 sample of one operator (cached: several tests read it)."""
    return generate(spec(op_sequence=[name], dtype=dtype), 0)


def ops_of(*families: str) -> list[str]:
    """Registry names of the given families (tests select operators by data, not by name)."""
    return [name for name, op in OPERATORS.items() if op.family in families]


def run_program(code: str, fmt: str = "fused_operator", seed: int = 0) -> list[torch.Tensor]:
    """Execute rendered code the way a user would and return its outputs as a list."""
    namespace: dict = {}
    exec(compile(code, "<test-sample>", "exec"), namespace)
    torch.manual_seed(seed)
    with torch.no_grad():
        inputs = namespace["get_inputs"]()
        if fmt == "kernelbench":
            result = namespace["Model"](*namespace["get_init_inputs"]())(*inputs)
        else:
            result = namespace["fused_operator"](*inputs)
    return list(result) if isinstance(result, (list, tuple)) else [result]


def tensor_shapes(graph: dict) -> dict[str, list[int]]:
    """Shape of every named tensor of a sample's graph (inputs and node outputs)."""
    shapes = {t["name"]: t["shape"] for t in graph["inputs"]}
    shapes.update({n["output"]: n["shape"] for n in graph["nodes"]})
    return shapes
