"""Where a program's device time goes, node by node, against each node's own floor.

bench.gpu reports a sample's time against the floor of the whole program. This module
splits it: each statement of `fused_operator` is run on its own (on the tensors the
statements before it made), timed with CUDA events, and set against its floor
max((bytes read + written) / bandwidth, FLOPs / peak). Each node is timed under several
backend settings, so the table also says what validation's settings cost:

- validation: as the validation worker runs (deterministic algorithms, no cuDNN
  autotuning, float32 matmuls in full float32: PyTorch's default)
- tf32_matmul: float32 matmuls on TF32 tensor cores (as PyTorch already runs convolutions)
- nondeterministic: torch's deterministic algorithms off
- cudnn_benchmark: deterministic off and cuDNN autotuning on

Used by `python -m bench.gpu --nodes N`; works on the CPU too (wall clock, one thread).
"""
from __future__ import annotations

import contextlib
import statistics

import torch

from generator_core import Sample
from generator_core.baseline import _sync
from generator_core.validate import Clock, execution_scope, load_program

SLOW_S = 0.2  # a node slower than this is timed once per setting, not three times


@contextlib.contextmanager
def setting(name: str):
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cuda.matmul.allow_tf32)
    torch.use_deterministic_algorithms(name in ("validation", "tf32_matmul"), warn_only=True)
    torch.backends.cudnn.benchmark = name == "cudnn_benchmark"
    torch.backends.cuda.matmul.allow_tf32 = name == "tf32_matmul"
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = saved[1], saved[2]


SETTINGS = ("validation", "tf32_matmul", "nondeterministic", "cudnn_benchmark")


def statements(code: str) -> list[str]:
    """The `tensor_k = ...` lines of fused_operator, in order."""
    body = code.split("def fused_operator(", 1)[1].splitlines()[1:]
    return [line.strip() for line in body if line.startswith("    tensor_")]


def _nbytes(values) -> int:
    seen, total = set(), 0
    for v in values:
        if isinstance(v, torch.Tensor) and id(v) not in seen:
            seen.add(id(v))
            total += v.numel() * v.element_size()
    return total


def _time(code, namespace: dict, device: str) -> float:
    clock = Clock(device)
    clock.mark("start")
    exec(code, namespace)  # our own rendered statement
    clock.mark("run")
    return clock.spans()["run"]


def node_rows(line: str, device: str, hw: dict) -> list[dict]:
    """One row per node: its op, time under each setting, and floor."""
    s = Sample.model_validate_json(line).model_dump()
    loaded = load_program(s["pytorch"], s["format"])
    rows = []
    with execution_scope(device):
        instance = loaded.instantiate(device, 0)
        named = dict(zip([t["name"] for t in s["graph"]["inputs"] if t["name"] not in instance.weights], instance.inputs))
        namespace = {"torch": torch, **named, **instance.weights}
        for stmt, node, flops in zip(statements(s["pytorch"]), s["graph"]["nodes"], s["flops_by_op"]):
            code = compile(stmt, "<tcgen-node>", "exec")
            times = {}
            for name in SETTINGS:
                with setting(name):
                    first = _time(code, namespace, device)  # warm-up (and cuDNN's autotuning)
                    runs = 1 if first > SLOW_S else 3
                    times[name] = statistics.median(_time(code, namespace, device) for _ in range(runs))
            moved = _nbytes([namespace[a] for a in node["inputs"]] + [namespace[node["output"]]])
            floor = max(moved / hw["bandwidth_bytes_per_s"], flops / hw["peak_flops_per_s"][s["dtype"]])
            rows.append({"op": node["op"], "shape": node["shape"], "params": node["params"], "flops": flops,
                         "bytes": moved, "floor_s": floor, **{f"{k}_s": v for k, v in times.items()}})
        _sync(device)
    return rows


def summary(rows: list[dict]) -> dict:
    """Per operator: nodes, median time/floor under validation's settings and the others, and
    its share of all nodes' time above their floors (where the excess goes)."""
    excess = sum(max(0.0, r["validation_s"] - r["floor_s"]) for r in rows) or 1.0
    by_op: dict[str, list[dict]] = {}
    for r in rows:
        by_op.setdefault(r["op"], []).append(r)
    table = {op: {"nodes": len(rs),
                  **{f"median_{k}_over_floor": statistics.median(r[f"{k}_s"] / r["floor_s"] for r in rs)
                     for k in SETTINGS},
                  "share_of_excess": sum(max(0.0, r["validation_s"] - r["floor_s"]) for r in rs) / excess}
             for op, rs in by_op.items()}
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["share_of_excess"]))
