"""tcgen's generator core: (GenerationSpec, index) -> validated Sample. Pure library."""
from generator_core.generate import GenerationError, generate
from generator_core.grade import GradeResult, grade
from generator_core.ops import OPERATORS
from generator_core.records import arrow_schema, features
from generator_core.sample import Sample
from generator_core.spec import GenerationSpec

__all__ = ["GenerationSpec", "GenerationError", "GradeResult", "OPERATORS", "Sample", "arrow_schema", "features",
           "generate", "grade"]
