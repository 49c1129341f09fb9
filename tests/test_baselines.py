"""Per-sample baselines (spec `baselines`): timings of the validated program on its device,
the only machine-dependent part of a sample, and "null" unless asked for."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from helpers import spec
from generator_core import Sample, generate
from service.engine import Engine


def without_baseline(sample_json: str) -> dict:
    record = json.loads(sample_json)
    record.pop("baseline")
    return record


def test_baseline_is_timed_on_the_validating_device_and_changes_nothing_else():
    plain = generate(spec(level=2, seed=4), 1)
    timed = generate(spec(level=2, seed=4, baselines=True), 1)
    assert json.loads(plain.model_dump_json())["baseline"] == "null"  # always present: one record type
    b = timed.baseline
    assert b.runs == 10 and 0 < b.eager_min_ms <= b.eager_ms and b.device and b.torch
    assert b.compiled is None  # not asked
    assert without_baseline(timed.model_dump_json()) == without_baseline(plain.model_dump_json())


def test_baselines_through_the_engine_validation_worker():
    """The per-device validation worker (the GPU path) measures them too."""
    with Engine(solver_workers=1, device="cpu", cpu_validation="worker") as engine:
        outcomes = list(engine.run(spec(level=1, baselines=True), range(4)))
    assert all(Sample.model_validate_json(o.json).baseline.eager_ms > 0 for o in outcomes)


def test_compiled_baseline():
    b = generate(spec(op_sequence=["Add", "ReLU"], baselines=True, baseline_compile=True), 0).baseline
    assert b.compiled is True and b.compile_s > 0 and b.compiled_ms > 0 and b.compile_error is None


@pytest.mark.parametrize("fields, named", [({"baselines": True, "validate": False}, "baselines"),
                                           ({"baseline_compile": True}, "baseline_compile")])
def test_baselines_need_validation(fields, named):
    with pytest.raises(ValidationError) as err:
        spec(level=1, **fields)
    assert named in str(err.value)
