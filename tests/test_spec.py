"""GenerationSpec rejects malformed requests up front, naming the offending field."""
from __future__ import annotations

import pydantic
import pytest

from generator_core import GenerationSpec

BAD_SPECS = [
    ("min_flops", dict(level=2, min_flops=2**20, max_flops=2**19)),
    ("ops", dict(level=2, ops=["Add", "Foo"])),
    ("exclude_ops", dict(level=2, exclude_ops=["Bar"])),
    ("op_sequence", dict(op_sequence=["ReLU", "Baz"])),
    ("level", dict(level=7)),
    ("seed", dict(level=2, seed=-1)),
    ("level", dict()),
    ("ops", dict(level=2, ops=[])),
    ("dtype", dict(level=2, dtype="float64")),
    ("topology", dict(level=2, topology="tree")),
    ("colour", dict(level=2, colour="red")),
    ("max_flops", dict(level=2, max_flops=2**40 + 1)),
    ("op_sequence", dict(op_sequence=["ReLU"] * 17)),
    ("count", dict(level=2, count=0)),
    ("format", dict(level=2, format="onnx")),
    ("max_tensor_numel", dict(level=2, max_tensor_numel=10)),
]


@pytest.mark.parametrize("field,fields", BAD_SPECS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_SPECS)])
def test_malformed_spec_names_its_field(field, fields):
    """Each malformed spec raises ValidationError whose message names the field."""
    with pytest.raises(pydantic.ValidationError) as err:
        GenerationSpec(**fields)
    assert field in str(err.value)


def test_unknown_operator_is_named():
    """The message for an unknown operator names the operator, not just the field."""
    with pytest.raises(pydantic.ValidationError, match="ops: unknown operator\\(s\\) Foo"):
        GenerationSpec(level=0, ops=["Foo"])


@pytest.mark.parametrize("fields", [
    dict(op_sequence=["Conv3d"], min_flops=0, max_flops=10),
    dict(level=4, ops=["Matmul", "Conv2d"], min_flops=0, max_flops=100),
    dict(level=0, min_flops=0, max_flops=40),
])
def test_unreachable_window_is_rejected_up_front(fields):
    """A FLOPs ceiling below what the requested operators need at minimum size is rejected."""
    with pytest.raises(pydantic.ValidationError, match="max_flops"):
        GenerationSpec(**fields)


def test_excluding_everything_is_rejected():
    """Excluding every allowed operator leaves an empty pool, rejected naming `ops`."""
    with pytest.raises(pydantic.ValidationError, match="ops: no operator left"):
        GenerationSpec(level=2, ops=["Add"], exclude_ops=["Add"])


def test_spec_is_frozen_and_validate_is_an_alias():
    """Specs are immutable, and `validate` on the wire sets validate_samples."""
    s = GenerationSpec(level=1, validate=False)
    assert s.validate_samples is False and s.model_dump(by_alias=True)["validate"] is False
    with pytest.raises(pydantic.ValidationError):
        s.level = 2
