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
    ("op_sequence", dict(op_sequence=["ReLU"] * 21)),
    ("num_ops", dict(num_ops=0)),
    ("num_ops", dict(num_ops=21)),
    ("num_ops", dict(num_ops=3, op_sequence=["ReLU", "Sum"])),
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


@pytest.mark.parametrize("num_ops,fmt", [(1, "fused_operator"), (20, "fused_operator"), (20, "kernelbench")])
def test_num_ops_draws_that_many_operators_into_validated_samples(num_ops, fmt):
    """num_ops alone (no level) gives programs of exactly that many drawn operators, validated
    on the CPU at the small window; the difficulty is the smallest level that many fit. Twenty
    operators in one chain often make no gradeable program within the attempts (KernelBench's
    format, seeds 1-3: one of indices 0-3 each), and a given-up index says why each attempt
    failed, so of four indices at least one must validate."""
    from generator_core import GenerationError, generate
    from generator_core.draws import combination

    spec = GenerationSpec(num_ops=num_ops, seed=1, min_flops=2**16, max_flops=2**22, format=fmt)
    samples = []
    for index in range(4):
        try:
            samples.append(generate(spec, index))
        except GenerationError as exc:
            assert str(exc).startswith(f"index {index} (") and "attempt 23:" in str(exc)
    assert samples
    assert all(len(s.ops) == num_ops and s.validation.passed and s.grading is not None for s in samples)
    assert {s.level for s in samples} == {0 if num_ops == 1 else 4}
    drawn = [[op.name for op in combination(spec, index)] for index in range(4)]
    assert all(len(ops) == num_ops for ops in drawn) and len(set(map(tuple, drawn))) > 1  # per index, not a walk


def test_num_ops_with_a_level_keeps_the_level_as_the_difficulty():
    from generator_core import generate

    sample = generate(GenerationSpec(level=1, num_ops=4, seed=2, min_flops=2**16, max_flops=2**22), 0)
    assert len(sample.ops) == 4 and sample.level == 1


def test_level1_kernelbench_with_no_joinable_pair_is_given_up_with_its_reason():
    """KernelBench's level 1 walks the pairs one output can join; a pool with none (Abs of Abs
    is degenerate) gives a GenerationError saying why, not a crash (Hypothesis found a
    ZeroDivisionError here)."""
    from generator_core import GenerationError, generate

    spec = GenerationSpec(level=1, ops=["Abs"], format="kernelbench", min_flops=2**16, max_flops=2**22, validate=False)
    with pytest.raises(GenerationError, match=r"index 3 \(Abs, Abs\): attempt 0: no single-output wiring"):
        generate(spec, 3)
