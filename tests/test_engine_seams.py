"""The engine's seam to where its workers run: both backends keep the Backend protocol
(service/engine/backend.py) and their workers the EngineWorker protocol, member by member
and with the same parameters, so that the engine can hold either."""
from __future__ import annotations

import inspect
import typing

import pytest

from service.engine.backend import Backend, EngineWorker
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
