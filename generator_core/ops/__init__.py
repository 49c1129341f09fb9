"""The operator registry: `OPERATORS` maps each stable name to its operator, sorted."""
from generator_core.ops import activation, affine, conv, elementwise, linalg, norm, pool, reduction, scan  # noqa: F401
from generator_core.ops import layout, loss  # noqa: F401
from generator_core.ops.base import OPERATORS, Operator, register

_sorted = dict(sorted(OPERATORS.items()))
OPERATORS.clear()
OPERATORS.update(_sorted)

__all__ = ["OPERATORS", "Operator", "register"]
