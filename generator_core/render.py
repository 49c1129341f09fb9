"""Solved graph -> PyTorch source, in the original layout or KernelBench's.

Tensor names are assigned here, inputs first in creation order, then one per node in
execution order, so the text depends only on the graph and the solution.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from generator_core.graph import Graph, Node
from generator_core.ops.base import RenderContext
from generator_core.symbolic import Var


# cuDNN runs float32 convolutions in TF32 by default (about 3 significant digits), far
# from the 1e-4 a float32 task is graded at; a program with a convolution pins full float32
# for the process that loads it, reference and candidate alike (the grading contract says so).
PIN_FULL_FLOAT32 = "torch.backends.cudnn.allow_tf32 = False  # full float32 convolutions (graded at 1e-4)"


@dataclass
class Program:
    code: str
    graph_json: dict[str, Any]
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    # One expression per node of graph_json["nodes"], exactly as in the code: validation
    # replays them to read intermediates and to replace a node by the identity.
    steps: list[str]


def weight_bound(t, values: dict[Var, int]) -> float:
    """torch.nn's default initialisation bound, 1/sqrt(fan_in) (kaiming_uniform with a=sqrt(5)
    for a weight; a bias takes its weight's), over the Vars the weight's operator names (a conv
    weight's Cin/groups x kernel, as torch counts it, also for transposed convolutions; a
    matmul operand's K)."""
    fan_in = math.prod(values[v] for v in t.fan_in)
    return float(f"{1 / math.sqrt(max(fan_in, 1)):.6g}")


def draw(t, values: dict[Var, int], torch_dtype: str, device: str = "", size: str | None = None) -> str:
    """The expression that makes graph input `t`: a weight with a fan-in as torch.nn
    initialises one, any other input (a standard-normal parameter included) standard normal.
    `size` replaces the literal shape (a constructor argument)."""
    size = size or str([values[d] for d in t.dims])
    if t.fan_in is not None:
        bound = weight_bound(t, values)
        return f"torch.empty({size}, dtype={torch_dtype}{device}).uniform_(-{bound}, {bound})"
    return f"torch.randn({size}, dtype={torch_dtype}{device})"


def input_line(t, name: str, values: dict[Var, int], torch_dtype: str, device: str = "") -> str:
    return f"{name} = {draw(t, values, torch_dtype, device)}"


# KernelBench's evaluator calls get_inputs() on the CPU, where drawing gigabytes of random
# numbers takes seconds (6.8-12.3 s per call at the default window, seven calls a sample):
# a KernelBench program draws its tensors on the current GPU when there is one, else on the
# default device (the one a validator's `with torch.device(...)` picks).
DEVICE_HELPER = (
    "def device():\n"
    "    return torch.cuda.current_device() if torch.cuda.is_available() else None\n"
)


def concrete(value: Any, values: dict[Var, int]) -> Any:
    """The one generic step from solver Vars back to plain parameters."""
    return values[value] if isinstance(value, Var) else value


def render_program(graph: Graph, values: dict[Var, int], dtype: str, fmt: str) -> Program:
    torch_dtype = f"torch.{dtype}"
    names = {id(t): f"tensor_{i}" for i, t in enumerate(graph.tensors())}

    def shape(t) -> list[int]:
        return [values[d] for d in t.dims]

    # In KernelBench's format weights are the Model's parameters: its code reads them as
    # `self.<name>`; the steps (what validation replays) keep plain names.
    as_params = {id(t): f"self.{names[id(t)]}" for t in graph.inputs if fmt == "kernelbench" and t.is_weight}
    body, steps, nodes_json = [], [], []
    for node in graph.nodes:
        ctx = _context(node, names, values, torch_dtype, shape)
        steps.append(node.op.render(ctx))
        in_body = node.op.render(_context(node, names | as_params, values, torch_dtype, shape)) if as_params else steps[-1]
        body.append(f"{names[id(node.output)]} = {in_body}")
        nodes_json.append({"op": node.op.name, "inputs": ctx.args, "output": names[id(node.output)],
                           "shape": ctx.out_shape, "params": ctx.params})
    outputs = [names[id(t)] for t in graph.outputs]
    graph_json = {
        "inputs": [{"name": names[id(t)], "shape": shape(t), "weight": t.is_weight} for t in graph.inputs],
        "nodes": nodes_json,
        "outputs": outputs,
    }
    if fmt == "kernelbench":
        code = _kernelbench(graph, names, shape, values, torch_dtype, body, outputs)
    else:
        input_lines = [input_line(t, names[id(t)], values, torch_dtype) for t in graph.inputs]
        code = _fused_operator(input_lines, body, [names[id(t)] for t in graph.inputs], outputs)
    if dtype == "float32" and any(node.op.family == "conv" for node in graph.nodes):
        head, rest = code.split("\n\n\n", 1)
        code = f"{head}\n\n{PIN_FULL_FLOAT32}\n\n\n{rest}"
    return Program(code, graph_json, [shape(t) for t in graph.inputs], [shape(t) for t in graph.outputs], steps)


def _context(node: Node, names, values, torch_dtype, shape) -> RenderContext:
    # Keys starting with "_" are wiring internals (the reshape's factorisation), not parameters.
    params = {k: concrete(v, values) for k, v in node.params.items() if not k.startswith("_")}
    return RenderContext(
        args=[names[id(t)] for t in node.inputs], params=params,
        in_shapes=[shape(t) for t in node.inputs], out_shape=shape(node.output),
        dtype=torch_dtype, consumed=bool(node.output.consumers),
    )


def _indent(lines: list[str], depth: int) -> str:
    return "\n".join(" " * depth + line for line in lines)


def _fused_operator(input_lines, body, inputs, outputs) -> str:
    return (
        "import torch\n\n\n"
        "def get_inputs():\n"
        f"{_indent(input_lines, 4)}\n"
        f"    return [{', '.join(inputs)}]\n\n\n"
        f"def fused_operator({', '.join(inputs)}):\n"
        f"{_indent(body, 4)}\n"
        f"    return [{', '.join(outputs)}]\n"
    )


def _kernelbench(graph: Graph, names, shape, values: dict[Var, int], torch_dtype: str, body: list[str],
                 outputs: list[str]) -> str:
    """KernelBench's layout, which its evaluator runs unmodified: `Model(*get_init_inputs())`
    holds the weights as parameters (created from their shapes, after the evaluator's seed:
    uniform in torch.nn's bound, or torch.randn for a standard-normal parameter),
    `forward(*get_inputs())` returns the one output (wiring gives this format one sink)."""
    if len(outputs) != 1:
        raise ValueError(f"kernelbench format: a program needs exactly one output, this graph has {len(outputs)}")
    weights = [t for t in graph.inputs if t.is_weight]
    activations = [t for t in graph.inputs if not t.is_weight]
    arguments = [f"{names[id(t)]}_shape" for t in weights]
    on_device = ", device=device()"
    params = [f"self.{names[id(t)]} = nn.Parameter({draw(t, values, torch_dtype, on_device, size=arg)}, "
              "requires_grad=False)" for t, arg in zip(weights, arguments)]
    return (
        "import torch\nimport torch.nn as nn\n\n\n"
        f"{DEVICE_HELPER}\n\n"
        "class Model(nn.Module):\n"
        f"    def __init__(self{''.join(', ' + a for a in arguments)}):\n"
        "        super().__init__()\n"
        + (f"{_indent(params, 8)}\n" if params else "")
        + "\n"
        f"    def forward(self, {', '.join(names[id(t)] for t in activations)}):\n"
        f"{_indent(body, 8)}\n"
        f"        return {outputs[0]}\n\n\n"
        "def get_inputs():\n"
        f"{_indent([input_line(t, names[id(t)], values, torch_dtype, on_device) for t in activations], 4)}\n"
        f"    return [{', '.join(names[id(t)] for t in activations)}]\n\n\n"
        "def get_init_inputs():\n"
        f"    return [{', '.join(str(shape(t)) for t in weights)}]\n"
    )


def graph_id(graph_json: dict[str, Any], dtype: str) -> str:
    """Hash of the canonical graph: equal graphs (and dtype) give equal ids."""
    canonical = json.dumps({"graph": graph_json, "dtype": dtype}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
