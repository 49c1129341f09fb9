"""The engine's seam to where its workers run: both backends keep the Backend protocol
(service/engine/backend.py) and their workers the EngineWorker protocol, member by member
and with the same parameters, so that the engine can hold either. What crosses the seam is
typed: messages are frozen dataclasses (service/engine/messages.py), never tuples read by
position, and TCGEN_BACKEND has one reader (service/settings.py)."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import pickle
import re
import typing
from pathlib import Path

import pytest
import ray

from service.engine import messages
from service.engine.backend import Backend, EngineWorker
from service.engine.messages import Done, Fault, Ready, Rejected, Solved, SolveRequest, ValidateRequest
from service.engine.pool import LocalBackend, Worker
from service.engine.ray_backend import RayBackend, RayWorker


def _members(protocol: type) -> dict[str, object]:
    """What a protocol asks for: its methods and properties, and its annotated attributes."""
    declared = {name: value for name, value in vars(protocol).items()
                if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    return {**declared, **{name: None for name in typing.get_type_hints(protocol) if not name.startswith("_")}}


def _parameters(function) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("protocol, implementation", [(Backend, LocalBackend), (Backend, RayBackend),
                                                      (EngineWorker, Worker), (EngineWorker, RayWorker)],
                         ids=["LocalBackend", "RayBackend", "Worker", "RayWorker"])
def test_each_implementation_keeps_its_protocol(protocol, implementation):
    members = _members(protocol)
    assert members, protocol
    fields = set(getattr(implementation, "__dataclass_fields__", {}))
    for name, wanted in members.items():
        assert hasattr(implementation, name) or name in fields, f"{implementation.__name__} has no {name}"
        if callable(wanted) and not isinstance(wanted, property):
            assert _parameters(getattr(implementation, name)) == _parameters(wanted), (implementation.__name__, name)


def test_the_protocol_is_what_the_engine_uses():
    """Every backend method the engine calls is in the protocol (so a third backend built to
    it works), and the protocol asks for nothing the engine does not call."""
    import service.engine.engine as engine_module

    source = inspect.getsource(engine_module)
    used = {name for name in _members(Backend) if f"backend.{name}(" in source or f"chosen.{name}(" in source}
    assert used == {name for name, v in _members(Backend).items() if callable(v)}


# -- the messages between the engine and its workers -----------------------------------------
ENGINE = Path(__file__).resolve().parents[1] / "service" / "engine"


def _examples() -> list:
    # A Candidate is the library's own picklable object; any picklable value stands in for it.
    return [Ready(123), SolveRequest('{"level": 1}', 4, 2, ["attempt 0: no solution"]),
            ValidateRequest(4, {"candidate": True}, []),
            Done(4, 2, '{"id": "x"}', True, "cuda:1", timings={"solve": 0.5}), Rejected(4, 2, "no solution"),
            Solved(4, 2, {"candidate": True}), Fault(4, 2, "out of memory", sticky=True, timings={"validate": 1.0})]


def test_every_message_kind_is_a_documented_frozen_dataclass():
    kinds = [c for name, c in vars(messages).items()
             if inspect.isclass(c) and c.__module__ == messages.__name__ and not name.startswith("_")]
    assert {type(m) for m in _examples()} == set(kinds)
    for kind in kinds:
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen, kind
        assert kind.__doc__ and "\n" not in kind.__doc__.strip(), kind  # a one-line docstring
    with pytest.raises(dataclasses.FrozenInstanceError):
        _examples()[3].index = 5


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (ray.cloudpickle.dumps, ray.cloudpickle.loads)],
                         ids=["pipe", "ray"])
def test_every_message_round_trips_as_the_pipes_and_ray_carry_it(dumps, loads):
    for message in _examples():
        copy = loads(dumps(message))
        assert type(copy) is type(message) and copy == message


def test_answers_say_their_kind_as_the_observer_gets_it():
    """Observer.answered(kind, ...) gets these names (bench/gpu.py and metrics read them)."""
    assert [m.kind for m in _examples()[3:]] == ["done", "rejected", "solved", "fault"]


def _positional_reads(tree: ast.AST) -> list[str]:
    """message[3], answer[-1], w.args[0], *request, `a, b = request`: a message or a worker
    read by position."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, (ast.Constant, ast.UnaryOp)):
            target = node.value
            name = target.id if isinstance(target, ast.Name) else target.attr if isinstance(target, ast.Attribute) else ""
            if name in {"message", "messages", "answer", "request", "reply", "args"}:
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
        elif isinstance(node, ast.Starred) and ast.unparse(node.value) in {"request", "self.args", "w.args"}:
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
        elif (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple)
              and ast.unparse(node.value) in {"message", "answer", "request", "reply"}):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")  # kind, index, ... = message
    return found


def test_no_message_or_worker_is_read_by_position():
    found = {path.name: reads for path in sorted(ENGINE.glob("*.py"))
             if (reads := _positional_reads(ast.parse(path.read_text())))}
    assert not found, found
    assert sorted(_positional_reads(ast.parse(
        "kind = message[0]\nw.target(*w.args)\nlabel = self.args[0]\na, b = request"))) == [
        "*w.args (line 2)", "a, b = request (line 4)", "message[0] (line 1)", "self.args[0] (line 3)"]  # the check itself finds them


def test_the_run_uses_no_private_attribute_of_the_engine():
    import service.engine.engine as engine_module

    source = inspect.getsource(engine_module._Run)
    assert not re.findall(r"engine\._\w+", source)


# -- TCGEN_BACKEND: one reader ------------------------------------------------------------------
def _environment_reads(path: Path) -> list[str]:
    """The environment variables `path` reads by name (os.environ.get / os.getenv /
    os.environ[...]), as their source text."""
    reads = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in {"os.environ.get", "os.getenv", "environ.get"}:
            reads.append(ast.unparse(node.args[0]) if node.args else "")
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in {"os.environ", "environ"}:
            reads.append(ast.unparse(node.slice))
    return reads


def test_only_settings_reads_tcgen_backend(monkeypatch):
    root = ENGINE.parents[1]
    readers = sorted(str(path.relative_to(root)) for package in ("service", "generator_core")
                     for path in (root / package).rglob("*.py")
                     if any("TCGEN_BACKEND" in read or "BACKEND" in read for read in _environment_reads(path)))
    assert readers == ["service/settings.py"], readers
    from service.cli import build_parser
    from service.settings import Settings, backend_from_env

    argv = ["generate", "--output_file", "never.jsonl", "--level", "1"]
    for value in ("ray", "auto", "local", "bogus"):  # a bad value is the engine's to reject, as before
        monkeypatch.setenv("TCGEN_BACKEND", value)
        assert backend_from_env() == value == build_parser().parse_args(argv).backend
        if value != "bogus":
            assert Settings().backend == value
    monkeypatch.delenv("TCGEN_BACKEND")
    assert backend_from_env() == "local" == Settings().backend == build_parser().parse_args(argv).backend
