"""Matrix products: 2*M*N*K FLOPs per batch element."""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import Operator, Plan, register, unpinned
from generator_core.symbolic import MAX_DIM, Term


class MatrixProduct(Operator):
    family = "linalg"
    flops_formula = "2 * M * N * K per batch element"
    arity = 2
    flops_per_element_bound = 2 * MAX_DIM  # 2*K per output element
    makes_facts = frozenset({"large"})
    pointless_on = frozenset({"discrete"})  # as for convolutions (conv.py)
    fn: ClassVar[str]  # torch.<fn>(a, b)

    def accepts(self, x):
        return x.rank in self.input_ranks and unpinned(x, [-2, -1])

    def rhs_batch(self, b, x):
        """Batch dims of the right operand: the left operand's (or none: broadcast)."""
        return x.dims[:-2]

    def plan(self, b, x, want_ranks):
        k, n = x.dims[-1], b.dim()
        rhs = b.parameter(self.rhs_batch(b, x) + (k, n), fan_in=(k,))
        return Plan(inputs=[x, rhs], out_dims=x.dims[:-1] + (n,))

    def flops(self, node):
        return [Term(2, node.output.dims + (node.inputs[0].dims[-1],))]

    def render(self, r):
        return f"torch.{self.fn}({r.args[0]}, {r.args[1]})"

    def min_flops(self):
        return 2 * 32


@register
class Matmul(MatrixProduct):
    description = ("Matmul: the matrix product of a rank 2-4 input (..., M, K) with a fresh (K, N) or batched "
                   "(..., K, N) operand; N is solved (torch.matmul)")
    input_ranks = (2, 3, 4)
    fn = "matmul"

    def rhs_batch(self, b, x):
        return x.dims[:-2] if x.rank > 2 and b.rng.random() < 0.5 else ()


@register
class Bmm(MatrixProduct):
    description = ("Bmm: the batched matrix product of a (B, M, K) input with a fresh (B, K, N) operand; N is "
                   "solved (torch.bmm)")
    input_ranks = (3,)
    fn = "bmm"
