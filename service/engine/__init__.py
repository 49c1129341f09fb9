"""The engine shared by `tcgen generate` and the REST service: a solver process pool and
one validation worker per device. See engine.py."""
from service.engine.devices import CPU_FLOPS_WINDOW, GPU_FLOPS_WINDOW, default_max_total_bytes, device_slots
from service.engine.engine import BACKENDS, Engine, Observer, Outcome, Progress, default_program_bytes, device_defaults
from service.engine.pool import EngineError

__all__ = ["BACKENDS", "CPU_FLOPS_WINDOW", "GPU_FLOPS_WINDOW", "device_defaults", "Engine", "default_program_bytes", "EngineError", "Observer", "Outcome", "Progress", "default_max_total_bytes", "device_slots"]
