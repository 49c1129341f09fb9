"""Solved graph -> PyTorch source, in the original layout or KernelBench's.

Tensor names are assigned here, inputs first in creation order, then one per node in
execution order, so the text depends only on the graph and the solution.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from generator_core.graph import Graph, Node
from generator_core.ops.base import RenderContext
from generator_core.symbolic import Var


@dataclass
class Program:
    code: str
    graph_json: dict[str, Any]
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]


def concrete(value: Any, values: dict[Var, int]) -> Any:
    """The one generic step from solver Vars back to plain parameters."""
    return values[value] if isinstance(value, Var) else value


def render_program(graph: Graph, values: dict[Var, int], dtype: str, fmt: str) -> Program:
    torch_dtype = f"torch.{dtype}"
    names = {id(t): f"tensor_{i}" for i, t in enumerate(graph.tensors())}

    def shape(t) -> list[int]:
        return [values[d] for d in t.dims]

    input_lines = [f"{names[id(t)]} = torch.randn({shape(t)}, dtype={torch_dtype})" for t in graph.inputs]
    body, nodes_json = [], []
    for node in graph.nodes:
        ctx = _context(node, names, values, torch_dtype, shape)
        body.append(f"{names[id(node.output)]} = {node.op.render(ctx)}")
        nodes_json.append({"op": node.op.name, "inputs": ctx.args, "output": names[id(node.output)],
                           "shape": ctx.out_shape, "params": ctx.params})
    inputs = [names[id(t)] for t in graph.inputs]
    outputs = [names[id(t)] for t in graph.outputs]
    graph_json = {
        "inputs": [{"name": names[id(t)], "shape": shape(t), "weight": t.is_weight} for t in graph.inputs],
        "nodes": nodes_json,
        "outputs": outputs,
    }
    code = (_kernelbench if fmt == "kernelbench" else _fused_operator)(input_lines, body, inputs, outputs)
    return Program(code, graph_json, [shape(t) for t in graph.inputs], [shape(t) for t in graph.outputs])


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


def _kernelbench(input_lines, body, inputs, outputs) -> str:
    result = outputs[0] if len(outputs) == 1 else f"({', '.join(outputs)},)"
    return (
        "import torch\nimport torch.nn as nn\n\n\n"
        "class Model(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n\n"
        f"    def forward(self, {', '.join(inputs)}):\n"
        f"{_indent(body, 8)}\n"
        f"        return {result}\n\n\n"
        "def get_inputs():\n"
        f"{_indent(input_lines, 4)}\n"
        f"    return [{', '.join(inputs)}]\n\n\n"
        "def get_init_inputs():\n"
        "    return []\n"
    )


def graph_id(graph_json: dict[str, Any], dtype: str) -> str:
    """Hash of the canonical graph: equal graphs (and dtype) give equal ids."""
    canonical = json.dumps({"graph": graph_json, "dtype": dtype}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
