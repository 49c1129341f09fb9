"""nn.Linear as a functional call: F.linear(x, weight, bias), its parameters initialised as
nn.Linear's (uniform in +-1/sqrt(in_features), the bias too).

Family "linalg": it is a matrix product (x @ weight.T) whose FLOPs FlopCounterMode counts
(aten.addmm, 2*M*N*K, the bias add not counted), and the heavy-operator conventions of
MatrixProduct (value facts, FLOPs bound, tests against the counter) all apply to it.
"""
from __future__ import annotations

from generator_core.ops.base import F, Plan, register, unpinned
from generator_core.ops.linalg import MatrixProduct


@register
class Linear(MatrixProduct):
    description = ("Linear: x @ weight.T + bias over the last axis of a rank 2-4 input (..., K), with an (N, K) "
                   "weight and an (N,) bias initialised as nn.Linear's; N is solved (F.linear)")
    input_ranks = (2, 3, 4)
    arity = 3  # input, weight and bias
    flops_formula = "2 * M * N * K, M the product of the leading axes (the bias add not counted, as FlopCounterMode)"

    def accepts(self, x):  # only K must reach a FLOPs window; the leading axes may be anything
        return x.rank in self.input_ranks and unpinned(x, [-1])

    def plan(self, b, x, want_ranks):
        k, n = x.dims[-1], b.dim()
        weight = b.parameter((n, k), fan_in=(k,))
        bias = b.parameter((n,), fan_in=(k,), min_numel=1)  # nn.Linear's bias takes the weight's bound
        return Plan(inputs=[x, weight, bias], out_dims=x.dims[:-1] + (n,))

    def render(self, r):
        return f"{F}.linear({', '.join(r.args)})"
