"""Property tests (hypothesis).

Spec validation: for arbitrary dicts (valid values, boundaries, coercible and wrong types,
unknown keys, huge ints, odd operator names), GenerationSpec either builds a spec that
satisfies the documented invariants, or raises pydantic.ValidationError naming exactly the
offending fields, never anything else; the Python and JSON (HTTP) paths agree; specs
round-trip through JSON. The oracle is README's field table (ranges, literals, defaults,
the up-front checks), restated here, not read from the model.

Determinism: for any valid spec in the small FLOPs window and any index, generate() gives
the same bytes twice in one process (or the same GenerationError), and the same bytes in a
fresh process with another hash seed (test_determinism.py covers fixed level x topology
cases; these draw dtype, format, ops lists, op sequences, validation on/off, huge seeds and
indices).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from generator_core import OPERATORS, GenerationError, GenerationSpec, generate
from helpers import HI, LO

NAMES = list(OPERATORS)
# README "GenerationSpec" table: integer fields and their documented ranges (None: unbounded).
INT_RANGES: dict[str, tuple[int, int | None]] = {
    "level": (0, 4), "count": (1, None), "seed": (0, 2**63 - 1), "start_index": (0, 2**63 - 1),
    "min_flops": (0, 2**40), "max_flops": (0, 2**40), "max_tensor_numel": (2**10, 2**30),
    "max_total_bytes": (2**20, 2**40), "num_ops": (1, 20),
}
OPTIONAL_INTS = ("level", "num_ops")  # None (absent) is valid for these
LITERALS = {"dtype": ("float32", "float16", "bfloat16"), "topology": ("dag", "chain"),
            "format": ("fused_operator", "kernelbench")}
NAME_LISTS = ("ops", "exclude_ops", "op_sequence")
DEFAULTS = {"level": None, "count": 1, "seed": 0, "start_index": 0, "min_flops": 2**34, "max_flops": 2**35,
            "ops": None, "exclude_ops": [], "op_sequence": None, "num_ops": None, "dtype": "float32", "topology": "dag",
            "max_tensor_numel": 2**30, "max_total_bytes": 16 * 2**30, "validate_samples": True,
            "format": "fused_operator", "baselines": False, "baseline_compile": False}
# Opt-in timings (machine-dependent, so outside the determinism property); the strategies
# leave them at their defaults, and test_baselines.py covers their rules.
TIMING_FLAGS = {"baselines", "baseline_compile"}
LEVEL_OPS = {0: 1, 1: 2, 2: 3, 3: 5, 4: 10}  # README: 0..4 -> 1, 2, 3, 5, 10 operators
ODD_NAMES = ["add", "ADD", "Add ", " Add", "Add\x00", "\u0410dd", "Add;", "Add\nimport os", "",
             "__import__('os').system('id')", "torch.add", "Relu", "ops", "None", "*", "Add,Mul"]
ODD_LITERALS = ["", "Float32", "float32 ", "torch.float32", "float64", "int8", "DAG", "tree",
                "fused-operator", "exec", "__import__('os')", "kernelbench\n", "None"]


def test_oracle_covers_every_field():
    """Every GenerationSpec field is classified here (a new field must be added to the oracle,
    and to tests/security/test_client_text.py's list of client string fields)."""
    assert set(GenerationSpec.model_fields) == (set(INT_RANGES) | set(LITERALS) | set(NAME_LISTS) | {"validate_samples"}
                                                | TIMING_FLAGS)
    assert set(DEFAULTS) == set(GenerationSpec.model_fields)
    assert {f: GenerationSpec.model_fields[f].get_default(call_default_factory=True) for f in DEFAULTS} == DEFAULTS


# -- strategies ---------------------------------------------------------------------------

@dataclass
class Drawn:
    raw: Any  # what the client sends
    ok: bool  # valid for its field on its own (cross-field rules aside)
    value: Any = None  # what the spec holds when ok (after pydantic's documented coercions)


def _in_range(v: int, lo: int, hi: int | None) -> bool:
    return v >= lo and (hi is None or v <= hi)


def _pick(draw, want: str) -> bool:
    """Whether to draw a value valid for its field: want is "ok", "bad" or "any"."""
    return want == "ok" or (want == "any" and draw(st.integers(0, 2)) > 0)


@st.composite
def int_field(draw, name: str, want: str) -> Drawn:
    lo, hi = INT_RANGES[name]
    top = hi if hi is not None else 2**70
    if _pick(draw, want):
        n = draw(st.one_of(st.integers(lo, top), st.sampled_from([lo, top]),
                           st.integers(lo, 300) if name.endswith("flops") else st.nothing(),  # reach the floor check
                           st.integers(max(lo, 2**63 - 50), 2**63 - 1) if top >= 2**63 - 1 else st.nothing()))
        kind = draw(st.sampled_from(["int"] * 6 + ["str", "float", "bool"]))
        if kind == "str" and n < 2**53:
            return Drawn(draw(st.sampled_from([str(n), f" {n} "])), True, n)
        if kind == "float" and n < 2**53:
            return Drawn(float(n), True, n)
        if kind == "bool" and lo <= 1 <= top:
            b = draw(st.booleans()) if lo == 0 else True
            return Drawn(b, True, int(b))
        return Drawn(n, True, n)
    if draw(st.booleans()):  # out of range, as an int or a string
        edges = [lo - 1] + ([top + 1] if hi is not None else [])  # just outside the range, most often
        n = draw(st.one_of(st.sampled_from(edges), st.sampled_from(edges), st.integers(max_value=lo - 1),
                           *([st.integers(min_value=top + 1), st.integers(min_value=2**200)] if hi is not None
                             else [])))
        return Drawn(str(n) if abs(n) < 2**53 and draw(st.booleans()) else n, False)
    wrong = [False] if lo > 0 else []  # False is 0: below a range starting at 1
    wrong += ["two", "", "1.5", "0x10", 2.5, math.nan, math.inf, [1], {"n": 1}]
    return Drawn(draw(st.sampled_from(wrong + ([] if name in OPTIONAL_INTS else [None]))), False)


@st.composite
def literal_field(draw, name: str, want: str) -> Drawn:
    good = LITERALS[name]
    if _pick(draw, want):
        v = draw(st.sampled_from(good))
        return Drawn(v, True, v)
    raw = draw(st.one_of(st.sampled_from(ODD_LITERALS), st.text(max_size=12).filter(lambda t: t not in good),
                         st.sampled_from([None, 1, ["float32"], {"dag": 1}, b"dag"])))
    return Drawn(raw, False)


@st.composite
def validate_field(draw, want: str) -> Drawn:
    if _pick(draw, want):
        raw = draw(st.sampled_from([True, False, True, False, "true", "false", 0, 1]))
        return Drawn(raw, True, {"true": True, "false": False}.get(raw, bool(raw)))
    return Drawn(draw(st.sampled_from(["maybe", 2, -1, None, [], "", " true", 0.5])), False)


# A few names often, so ops and exclude_ops collide (an empty pool), plus any registry name.
FEW = NAMES[:3] + ["Conv3d", "Matmul", "Softmax"]
name_st = st.one_of(st.sampled_from(FEW), st.sampled_from(NAMES))


@st.composite
def names_field(draw, name: str, want: str) -> Drawn:
    if _pick(draw, want):
        if name != "exclude_ops" and draw(st.integers(0, 4)) == 0:
            return Drawn(None, True, None)
        size = (1, 20) if name == "op_sequence" else (1, 40) if name == "ops" else (0, 40)
        names = draw(st.lists(name_st, min_size=size[0], max_size=min(size[1], draw(st.sampled_from([6, 40])))))
        return Drawn(tuple(names) if draw(st.booleans()) else names, True, list(names))
    kind = draw(st.sampled_from(["odd", "text", "nonstr", "scalar", "length"]))
    if kind == "length" and name != "exclude_ops":  # an empty allow-list, or a sequence too short or long
        return Drawn([] if name == "ops" else draw(st.sampled_from([[], NAMES[:21], NAMES])), False)
    if kind == "scalar" or kind == "length":
        return Drawn(draw(st.sampled_from(["Add", 3, {"Add": 1}] + ([None] if name == "exclude_ops" else []))), False)
    good = draw(st.lists(name_st, max_size=5))
    bad = {"odd": st.sampled_from(ODD_NAMES), "nonstr": st.sampled_from([1, None, ["Add"], 2.5]),
           "text": st.text(max_size=10).filter(lambda t: t not in OPERATORS)}[kind]
    return Drawn(good[:2] + [draw(bad)] + good[2:], False)


def field_st(name: str, want: str):
    if name in INT_RANGES:
        return int_field(name, want)
    if name in LITERALS:
        return literal_field(name, want)
    if name in NAME_LISTS:
        return names_field(name, want)
    return validate_field(want)


UNKNOWN_KEYS = st.one_of(st.sampled_from(["colour", "Level", "level ", "validate_sample", "__class__", "model_config",
                                          "seed\x00", "ops[]", "$where", "", "max_flops_"]),
                         st.text(max_size=8)).filter(lambda k: k not in DEFAULTS and k != "validate")


@dataclass
class Case:
    raw: dict[str, Any]
    bad: set[str]  # wire keys that must be named: invalid fields and unknown keys
    values: dict[str, Any] = field(default_factory=dict)  # effective field values when none is bad


@st.composite
def spec_dicts(draw, allow_bad: bool = True) -> Case:
    """A request body: each field present or not; "clean" bodies hold only values valid on
    their own (so the up-front checks decide), "one" has one bad field or unknown key,
    "any" mixes freely."""
    mode = draw(st.sampled_from(["clean", "clean", "one", "one", "any"])) if allow_bad else "clean"
    culprit = draw(st.sampled_from([*sorted(set(DEFAULTS) - TIMING_FLAGS), "unknown key"])) if mode == "one" else None
    raw, bad, values = {}, set(), dict(DEFAULTS)
    for name in DEFAULTS:
        if name in TIMING_FLAGS:
            continue
        present = (draw(st.integers(0, 9)) > 0 if name == "level" else draw(st.integers(0, 4)) == 0 if name == "num_ops"
                   else draw(st.booleans()))
        if name == culprit:
            d = draw(field_st(name, "bad"))
        elif present:
            d = draw(field_st(name, "any" if mode == "any" else "ok"))
        else:
            continue
        key = "validate" if name == "validate_samples" and draw(st.integers(0, 4)) else name
        raw[key] = d.raw
        values[name] = d.value
        if not d.ok:
            bad.add(key)
    if mode == "clean" and values["ops"] and draw(st.integers(0, 5)) == 0:  # deny all allowed: an empty pool
        raw["exclude_ops"] = values["exclude_ops"] = [*values["ops"], *draw(st.lists(name_st, max_size=3))]
    if culprit == "unknown key" or (mode == "any" and draw(st.integers(0, 3)) == 0):
        for k in draw(st.lists(UNKNOWN_KEYS, min_size=1, max_size=2, unique=True)):
            raw[k] = draw(st.sampled_from([1, "x", None, True]))
            bad.add(k)
    return Case(raw, bad, values)


# -- the oracle of the up-front (cross-field) checks -----------------------------------------

def cross_field_failures(v: dict[str, Any]) -> set[str]:
    """Fields README says a spec with these (individually valid) values is rejected for."""
    out = set()
    if v["level"] is None and v["op_sequence"] is None and v["num_ops"] is None:
        out.add("level")
    if v["num_ops"] is not None and v["op_sequence"] is not None:
        out.add("num_ops")
    if v["start_index"] + v["count"] > 2**63:
        out.add("start_index")  # the last index must fit in 63 bits (SQLite, JSON consumers)
    if v["min_flops"] > v["max_flops"]:
        out.add("min_flops")
    allowed = set(NAMES) if v["ops"] is None else set(v["ops"])
    pool = [n for n in NAMES if n in allowed and n not in set(v["exclude_ops"])]
    if v["op_sequence"] is None and not pool:
        out.add("ops")
    if out:  # the floor is only checked for otherwise sane specs
        return out
    if v["op_sequence"]:
        floor = sum(OPERATORS[n].min_flops() for n in v["op_sequence"])
    else:
        floors = [OPERATORS[n].min_flops() for n in pool]
        walks = v["num_ops"] is None and v["level"] in (0, 1)  # fixed walks: every operator must fit
        floor = (v["num_ops"] or LEVEL_OPS[v["level"]]) * (max(floors) if walks else min(floors))
    if floor > v["max_flops"]:
        out.add("max_flops")
    return out


def named_fields(err: ValidationError) -> list[str]:
    """The field each error names: its location, or for a whole-spec check the '<field>:'
    its message starts with (what the service's 422 handler reports)."""
    names = []
    for e in err.errors():
        if e["loc"]:
            names.append(e["loc"][0])
        else:
            names.append(e["msg"].removeprefix("Value error, ").split(":", 1)[0])
    return names


def outcome(build) -> tuple[str, Any]:
    try:
        return "ok", build()
    except ValidationError as err:
        return "error", err
    except Exception as exc:  # noqa: BLE001 -- the property under test: nothing but ValidationError
        pytest.fail(f"{type(exc).__name__} instead of ValidationError: {exc!r}")


def json_body(raw: dict[str, Any]) -> str | None:
    try:
        return json.dumps(raw, allow_nan=False)
    except (TypeError, ValueError):  # bytes, NaN: not expressible in JSON
        return None


def check_invariants(spec: GenerationSpec) -> None:
    """What every accepted spec satisfies (README's table and up-front checks)."""
    for name, (lo, hi) in INT_RANGES.items():
        value = getattr(spec, name)
        assert value is None and name in OPTIONAL_INTS or type(value) is int and _in_range(value, lo, hi), (name, value)
    for name, good in LITERALS.items():
        assert getattr(spec, name) in good
    assert type(spec.validate_samples) is bool
    assert spec.min_flops <= spec.max_flops
    assert spec.start_index + spec.count <= 2**63
    assert spec.level is not None or spec.op_sequence is not None or spec.num_ops is not None
    assert spec.num_ops is None or spec.op_sequence is None
    assert spec.ops is None or (spec.ops and set(spec.ops) <= set(OPERATORS))
    assert set(spec.exclude_ops) <= set(OPERATORS)
    assert spec.op_sequence is None or (1 <= len(spec.op_sequence) <= 20 and set(spec.op_sequence) <= set(OPERATORS))
    pool = spec.pool()
    assert pool == [n for n in NAMES if n in pool], "pool keeps the registry's order"
    assert spec.op_sequence is not None or pool
    assert 0 <= spec.difficulty <= 4
    assert spec.op_count == (len(spec.op_sequence) if spec.op_sequence else spec.num_ops or LEVEL_OPS[spec.level])
    assert not cross_field_failures({n: getattr(spec, n) for n in DEFAULTS})


def check_round_trip(spec: GenerationSpec) -> None:
    assert GenerationSpec.model_validate_json(spec.model_dump_json()) == spec
    wire = spec.model_dump_json(by_alias=True)  # what the service stores and workers receive
    again = GenerationSpec.model_validate_json(wire)
    assert again == spec and again.model_dump_json(by_alias=True) == wire
    assert GenerationSpec.model_validate(spec.model_dump(by_alias=True)) == spec


PROPERTY = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@PROPERTY
@given(case=spec_dicts())
def test_spec_accepts_exactly_the_documented_specs(case: Case):
    """Any dict: a spec that satisfies the invariants and holds the (coerced) values given,
    or ValidationError naming exactly the invalid fields and unknown keys (or, when each
    field is fine alone, one field of a failed up-front check); the JSON path agrees."""
    status, result = outcome(lambda: GenerationSpec.model_validate(case.raw))
    expected_cross = set() if case.bad else cross_field_failures(case.values)
    event("invalid fields" if case.bad else f"up-front check: {sorted(expected_cross)[0]}" if expected_cross
          else "accepted")
    if case.bad:
        assert status == "error", f"accepted although {sorted(case.bad)} are invalid: {result!r}"
        assert set(named_fields(result)) == case.bad, (named_fields(result), case.bad)
    elif expected_cross:
        assert status == "error", f"accepted although {sorted(expected_cross)} fail the up-front checks"
        (named,) = named_fields(result)  # a whole-spec check stops at its first failure
        assert named in expected_cross, (named, expected_cross)
    else:
        assert status == "ok", f"rejected a documented-valid spec: {result}"
        check_invariants(result)
        for name, value in case.values.items():
            assert getattr(result, name) == value, name
        check_round_trip(result)
    if status == "error":
        text = str(result)
        for name in named_fields(result):
            assert repr(name)[1:-1] in text or name in text, (name, text)
    body = json_body(case.raw)
    if body is not None:  # the HTTP path (JSON) accepts and names exactly what the Python path does
        status_json, result_json = outcome(lambda: GenerationSpec.model_validate_json(body))
        assert status_json == status
        if status == "ok":
            assert result_json == result
        else:
            assert set(named_fields(result_json)) == set(named_fields(result))


@settings(PROPERTY, max_examples=200)
@given(case=spec_dicts(allow_bad=False))
def test_valid_field_values_round_trip(case: Case):
    """Specs built from individually valid values (most of them accepted) round-trip
    through model_dump_json -> model_validate_json unchanged, by name and by alias."""
    status, spec = outcome(lambda: GenerationSpec.model_validate(case.raw))
    assume(status == "ok")
    check_invariants(spec)
    check_round_trip(spec)


@settings(max_examples=150, deadline=None, database=None)
@given(ceiling=st.integers(0, 2**40), raw_extra=st.integers(0, 2**40), case=spec_dicts(allow_bad=False))
def test_raising_max_flops_never_breaks_a_spec(ceiling, raw_extra, case):
    """Monotone: an accepted spec stays accepted when only max_flops is raised."""
    status, spec = outcome(lambda: GenerationSpec.model_validate(case.raw))
    assume(status == "ok")
    higher = min(2**40, spec.max_flops + raw_extra)
    assert GenerationSpec(**{**spec.model_dump(), "max_flops": higher}).max_flops == higher


# -- determinism ------------------------------------------------------------------------------

@st.composite
def small_specs(draw) -> GenerationSpec:
    """A valid spec in the small window (and at most 64 MiB of tensors): levels 0-4 or an op
    sequence, any dtype, format, topology, seed, with validation on or off, sometimes an
    allow- or deny-list."""
    lo = draw(st.integers(LO, HI))
    fields: dict[str, Any] = dict(
        min_flops=lo, max_flops=draw(st.integers(lo, HI)), seed=draw(st.integers(0, 2**63 - 1)),
        # Zero-FLOP operators (Tril, Transpose, Cat...) are bounded by these, not by the window:
        # left at their defaults a level-0 Tril made a 227 MB input.
        max_tensor_numel=draw(st.integers(2**10, 2**22)), max_total_bytes=draw(st.integers(2**20, 2**26)),
        dtype=draw(st.sampled_from(LITERALS["dtype"])), topology=draw(st.sampled_from(LITERALS["topology"])),
        format=draw(st.sampled_from(LITERALS["format"])), validate=draw(st.booleans()))
    shape = draw(st.sampled_from(["level"] * 4 + ["ops", "exclude", "sequence", "num_ops"]))
    if shape == "sequence":
        fields["op_sequence"] = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4))
    elif shape == "num_ops":
        fields["num_ops"] = draw(st.integers(1, 6))
    else:
        fields["level"] = draw(st.integers(0, 4))
    if shape == "ops":
        fields["ops"] = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True))
    if shape == "exclude":
        fields["exclude_ops"] = draw(st.lists(st.sampled_from(NAMES), max_size=20, unique=True))
    return GenerationSpec(**fields)


indices = st.one_of(st.integers(0, 200), st.integers(0, 2**63 - 1))


def sample_bytes(spec: GenerationSpec, index: int) -> str:
    """The sample's JSON, or the GenerationError's message (deterministic too)."""
    try:
        return generate(spec, index, device="cpu").model_dump_json()
    except GenerationError as exc:
        return f"GenerationError: {exc}"


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=small_specs(), index=indices)
def test_generate_is_a_function_of_spec_and_index(spec, index):
    """Any valid spec and index: generating twice gives the same JSON bytes (or the same
    GenerationError); the sample says which spec and index made it."""
    first, second = sample_bytes(spec, index), sample_bytes(spec, index)
    assert first == second
    if not first.startswith("GenerationError"):
        sample = json.loads(first)
        assert (sample["index"], sample["seed"], sample["dtype"], sample["format"]) == (
            index, spec.seed, spec.dtype, spec.format)
        assert (sample["validation"] != "null") == spec.validate_samples  # JSON text, as records hold it
        assert spec.min_flops <= sample["flops"] <= spec.max_flops or sample["flops_window_relaxed"]


CHILD = """
import json, sys
from generator_core import GenerationError, GenerationSpec, generate
for spec_json, index in json.loads(sys.stdin.read()):
    try:
        line = generate(GenerationSpec.model_validate_json(spec_json), index, device="cpu").model_dump_json()
    except GenerationError as exc:
        line = f"GenerationError: {exc}"
    print(json.dumps(line))
"""


@settings(max_examples=2, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(st.tuples(small_specs(), indices), min_size=3, max_size=4),
       hash_seed=st.integers(0, 2**32 - 1))
def test_fresh_process_gives_the_same_bytes(cases, hash_seed):
    """A fresh interpreter (another PYTHONHASHSEED), handed the spec as its wire JSON,
    produces byte-identical samples to this process."""
    payload = json.dumps([[s.model_dump_json(by_alias=True), i] for s, i in cases])
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run([sys.executable, "-c", CHILD], input=payload, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    theirs = [json.loads(line) for line in done.stdout.splitlines()]
    assert theirs == [sample_bytes(s, i) for s, i in cases]
