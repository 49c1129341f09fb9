"""The record schema: the columns and Arrow types of every tcgen record (a JSONL line, an
API sample, a Parquet row), whatever the level, validation, baselines or rejections.

It is derived from `Sample`'s fields, in their order: scalars and lists of them keep
their type, and the free-form or nullable fields (sample.JSON_TEXT_FIELDS) are strings of
JSON text. No column can be null or an empty-only list, so a reader that infers the
types from the first rows (pyarrow.json, Hugging Face `datasets`) infers these. Shapes
are never empty: no operator makes a rank-0 tensor (a reduction keeps one axis), so
`input_shapes` and `output_shapes` are lists of non-empty lists. No string looks like a
date (pyarrow.json would infer a timestamp from "2024-01-01"): ids are hex digits, JSON
text starts with [, { or null.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from generator_core.sample import JSON_TEXT_FIELDS, Sample

if TYPE_CHECKING:
    import datasets
    import pyarrow as pa


def _arrow_type(annotation: Any) -> pa.DataType:
    import pyarrow as pa

    scalars = {str: pa.string(), int: pa.int64(), bool: pa.bool_()}
    if annotation in scalars:
        return scalars[annotation]
    if getattr(annotation, "__origin__", None) is list:
        return pa.list_(_arrow_type(annotation.__args__[0]))
    raise TypeError(f"no Arrow type for {annotation!r}: add it to records.py, or to JSON_TEXT_FIELDS")


def arrow_schema() -> pa.Schema:
    """The pyarrow schema of a record: what a Parquet file of `tcgen generate` holds, and
    what pyarrow.json infers from any tcgen JSONL file."""
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.string() if name in JSON_TEXT_FIELDS else _arrow_type(field.annotation))
                      for name, field in Sample.model_fields.items()])


def features() -> datasets.Features:
    """The Hugging Face `datasets` features of a record (arrow_schema(), as Features):
    load_dataset("json", data_files=[...], features=generator_core.features())."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("generator_core.features() needs Hugging Face `datasets`: "
                          "pip install 'tcgen[datasets]' (or pip install datasets)") from exc
    return datasets.Features.from_arrow_schema(arrow_schema())
