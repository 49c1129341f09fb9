"""The engine shared by `tcgen generate` and the REST service: a solver process pool and
one validation worker per device. See engine.py."""
from service.engine.devices import default_max_total_bytes, device_slots
from service.engine.engine import Engine, Observer, Outcome, Progress
from service.engine.pool import EngineError

__all__ = ["Engine", "EngineError", "Observer", "Outcome", "Progress", "default_max_total_bytes", "device_slots"]
