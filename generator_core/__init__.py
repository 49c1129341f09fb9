"""tcgen's generator core: (GenerationSpec, index) -> validated Sample. Pure library.

The public names load on first use (PEP 562): `import generator_core.spec` (or the CLI
checking a spec) does not pay for the solver (ortools, which pulls pandas) or the grader.
`from generator_core import generate` works as before."""
from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# Each public name and the submodule that defines it.
_WHERE = {
    "GenerationSpec": "generator_core.spec",
    "GenerationError": "generator_core.generate",
    "generate": "generator_core.generate",
    "GradeResult": "generator_core.grade",
    "grade": "generator_core.grade",
    "OPERATORS": "generator_core.ops",
    "arrow_schema": "generator_core.records",
    "features": "generator_core.records",
    "Sample": "generator_core.sample",
}

__all__ = ["GenerationSpec", "GenerationError", "GradeResult", "OPERATORS", "Sample", "arrow_schema", "features",
           "generate", "grade"]

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from generator_core.generate import GenerationError, generate
    from generator_core.grade import GradeResult, grade
    from generator_core.ops import OPERATORS
    from generator_core.records import arrow_schema, features
    from generator_core.sample import Sample
    from generator_core.spec import GenerationSpec


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'generator_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Importing a submodule binds it to the package's attribute of its name: for
    generator_core.generate and generator_core.grade that is the name of their function,
    which stays the package's `generate` / `grade` (as when this file imported them)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
