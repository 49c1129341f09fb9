"""Matrix products: 2*M*N*K FLOPs per batch element; and the products built on them (a
matrix-vector product, a diagonal scaling, attention)."""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import F, Operator, Plan, register, unpinned
from generator_core.symbolic import MAX_DIM, MIN_NUMEL, Term


class MatrixProduct(Operator):
    """x (..., M, K) times a fresh weight (K, N); either operand may be stored transposed
    ((..., K, M) and (N, K)) and is read through .transpose(-2, -1), as KernelBench's
    transposed-matmul problems (16, 17, 18) write it."""

    family = "linalg"
    flops_formula = "2 * M * N * K per batch element"
    arity = 2
    flops_per_element_bound = 2 * MAX_DIM  # 2*K per output element
    makes_facts = frozenset({"large"})
    pointless_on = frozenset({"discrete"})  # as for convolutions (conv.py)
    fn: ClassVar[str] = "matmul"  # torch.<fn>(a, b)
    transpose_a: ClassVar[bool] = False  # x stored (..., K, M)
    # b stored (N, K), as nn.Linear's weight: its fan-in (K) is then its last axis
    transpose_b: ClassVar[bool] = False

    def accepts(self, x):
        return x.rank in self.input_ranks and unpinned(x, [-2, -1])

    def rhs_batch(self, b, x):
        """Batch dims of the right operand: the left operand's (or none: broadcast)."""
        return x.dims[:-2]

    def n_dim(self, b):
        return b.dim()

    def plan(self, b, x, want_ranks):
        m, k = (x.dims[-1], x.dims[-2]) if self.transpose_a else (x.dims[-2], x.dims[-1])
        n = self.n_dim(b)
        rhs_dims = (n, k) if self.transpose_b else (k, n)
        rhs = b.parameter(self.rhs_batch(b, x) + rhs_dims, fan_in=(k,))
        return Plan(inputs=[x, rhs], out_dims=x.dims[:-2] + (m, n))

    def flops(self, node):
        x = node.inputs[0]
        return [Term(2, node.output.dims + (x.dims[-2] if self.transpose_a else x.dims[-1],))]

    def render(self, r):
        a, b = (f"{arg}.transpose(-2, -1)" if t else arg
                for arg, t in zip(r.args, (self.transpose_a, self.transpose_b)))
        return f"torch.{self.fn}({a}, {b})"

    def min_flops(self):
        return 2 * 32


@register
class Matmul(MatrixProduct):
    description = ("Matmul: the matrix product of a rank 2-4 input (..., M, K) with a fresh (K, N) or batched "
                   "(..., K, N) operand; N is solved (torch.matmul)")
    input_ranks = (2, 3, 4)

    def rhs_batch(self, b, x):
        return x.dims[:-2] if x.rank > 2 and b.rng.random() < 0.5 else ()


@register
class Bmm(MatrixProduct):
    description = ("Bmm: the batched matrix product of a (B, M, K) input with a fresh (B, K, N) operand; N is "
                   "solved (torch.bmm)")
    input_ranks = (3,)
    fn = "bmm"


class BroadcastProduct(MatrixProduct):
    """A rank 2-4 input times one fresh 2D operand broadcast over its batch axes (the
    transposed variants and the matrix-vector product)."""

    input_ranks = (2, 3, 4)

    def rhs_batch(self, b, x):
        return ()


@register
class MatmulTransposedA(BroadcastProduct):
    description = ("MatmulTransposedA: x.transpose(-2, -1) @ w for an input x stored (..., K, M) and a fresh "
                   "(K, N) operand w; output (..., M, N), N solved (torch.matmul)")
    transpose_a = True


@register
class MatmulTransposedB(BroadcastProduct):
    description = ("MatmulTransposedB: x @ w.transpose(-2, -1) for an input x (..., M, K) and a fresh operand w "
                   "stored (N, K), as nn.Linear's weight; output (..., M, N), N solved (torch.matmul)")
    transpose_b = True


@register
class MatmulTransposedAB(BroadcastProduct):
    description = ("MatmulTransposedAB: x.transpose(-2, -1) @ w.transpose(-2, -1) for an input x stored "
                   "(..., K, M) and a fresh operand w stored (N, K); output (..., M, N), N solved (torch.matmul)")
    transpose_a = transpose_b = True


@register
class Matvec(BroadcastProduct):
    description = ("Matvec: the matrix-vector product of a rank 2-4 input (..., M, K) with a fresh (K, 1) "
                   "operand; output (..., M, 1) (torch.matmul)")
    # 2*M*K FLOPs for M*K elements of x, the largest tensor it touches: it reads each once,
    # so alone it cannot reach a window much above twice the element cap.
    flops_per_element_bound = 2

    def n_dim(self, b):
        return b.fixed(1)


@register
class DiagMatmul(Operator):
    description = ("DiagMatmul: diag(d) @ x for an input x (..., N, M) and a fresh standard-normal vector d of "
                   "N values: each row of x scaled by its d (torch.diag(d) @ x, computed as torch.mul of "
                   "d.unsqueeze(-1) and x, without the N x N matrix)")
    family = "linalg"
    arity = 2
    input_ranks = (2, 3, 4)
    flops_per_element = 1
    # What is computed: one multiply per output element. The dense torch.diag(d) @ x that it
    # stands for would be 2*N*N*M, all but N*M of it multiplying zeros.
    flops_formula = "flops_per_element * output numel (one multiply each: the diagonal matrix is never built)"

    def accepts(self, x):
        # d holds N values, and every tensor at least MIN_NUMEL: N cannot be pinned below it.
        return x.rank in self.input_ranks and x.dims[-2].hi >= MIN_NUMEL

    def plan(self, b, x, want_ranks):
        return Plan(inputs=[x, b.fresh_input((x.dims[-2],))], out_dims=x.dims)

    def render(self, r):
        return f"{r.args[1]}.unsqueeze(-1) * {r.args[0]}"


# Elements of the attention matrix (..., L, S), which CPU kernels and the GPU's math path
# materialise though it is no tensor of the graph (so the element caps do not see it):
# 2**24 is 64 MiB in float32, 128 MiB for validation's float64 truth.
MAX_SCORES = 2**24


@register
class ScaledDotProductAttention(Operator):
    description = ("ScaledDotProductAttention: softmax(q k^T / sqrt(E)) v for q the input (..., L, E) of rank 3 "
                   "or 4 and fresh standard-normal k (..., S, E) and v (..., S, Ev); S and Ev solved "
                   "(F.scaled_dot_product_attention)")
    family = "linalg"
    arity = 3  # q, k and v; k and v are inputs, as KernelBench passes them, not weights
    input_ranks = (3, 4)
    flops_formula = "2 * L * S * E + 2 * L * S * Ev per batch element"
    # FLOPs per element of the largest tensor: 2*L*S*(E + Ev) over at least S*E and S*Ev.
    flops_per_element_bound = 4 * MAX_DIM
    # Integer indices make scores of hundreds: a one-hot softmax, v's rows picked by an
    # argmax whose near-ties flip under rounding; saturating inputs (the max of large
    # values) scale every score up alike.
    pointless_on = frozenset({"discrete", "saturating"})

    def accepts(self, x):
        return x.rank in self.input_ranks and unpinned(x, [-2, -1])

    def plan(self, b, x, want_ranks):
        batch, e = x.dims[:-2], x.dims[-1]
        s, ev = b.dim(lo=2), b.dim()  # a softmax over one key is constant (the output is v)
        k, v = b.fresh_input(batch + (s, e)), b.fresh_input(batch + (s, ev))
        return Plan(inputs=[x, k, v], out_dims=x.dims[:-1] + (ev,))

    def constrain(self, node, m):
        q, k = node.inputs[0], node.inputs[1]
        m.add(m.product(list(q.dims[:-1]) + [k.dims[-2]]) <= MAX_SCORES)

    def flops(self, node):
        q, k, v = node.inputs
        scores = q.dims[:-1] + (k.dims[-2],)
        return [Term(2, scores + (q.dims[-1],)), Term(2, scores + (v.dims[-1],))]

    def render(self, r):
        return f"{F}.scaled_dot_product_attention({', '.join(r.args)})"

    def min_flops(self):
        return 4 * 32
