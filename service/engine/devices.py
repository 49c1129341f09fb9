"""Which validation workers to start, and how much memory one program may use on them."""
from __future__ import annotations

import os
from dataclasses import dataclass

MAX_PROGRAM_BYTES = 16 * 2**30  # the spec's own default and ceiling of the default
# The FLOPs window a request gets when it names none, by the validating device. On a GPU the
# original's window (the spec's own default). A CPU validates every sample by running it, at
# 2**34..2**35 measured 25-36 s and 4-5 GB per level-2 sample; this window (the GET route's
# since the start) validates in well under a second.
GPU_FLOPS_WINDOW = (2**34, 2**35)
CPU_FLOPS_WINDOW = (2**16, 2**22)


@dataclass(frozen=True)
class DeviceSlot:
    label: str  # "cpu" or "cuda:<physical index>"
    env: dict[str, str]  # set in the worker's environment before anything is imported


def visible_gpus() -> list[str]:
    """Physical ids of the GPUs this process may use (CUDA_VISIBLE_DEVICES, else all)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch  # the parent only counts devices; it never creates a CUDA context

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


# cuBLAS is deterministic only with a fixed workspace (a GPU's validation worker turns on
# torch's deterministic algorithms). The workers of several GPUs are independent processes
# that never talk to each other: no NCCL, and should a library start it anyway, no NVLink
# multicast (NVLS).
GPU_WORKER_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "NCCL_NVLS_ENABLE": "0"}


def device_slots(device: str, gpus: list[str] | None = None, where: str = "no CUDA device is visible"
                 ) -> list[DeviceSlot]:
    """One validation worker per GPU, or the CPU (whose validation the solver workers do).
    `device` is cpu, cuda or auto. `gpus`: this machine's visible GPUs by default, each
    worker pinned to its own with CUDA_VISIBLE_DEVICES; given (a Ray cluster's, which Ray
    assigns to its actors itself), nothing is pinned, and `where` says why none is there."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device: expected cpu, cuda or auto, got {device!r}")
    pinned = gpus is None
    gpus = [] if device == "cpu" else visible_gpus() if pinned else gpus
    if device == "cuda" and not gpus:
        raise ValueError(f"device: cuda was asked for but {where}")
    if not gpus:
        return [DeviceSlot("cpu", {"CUDA_VISIBLE_DEVICES": ""})]
    return [DeviceSlot(f"cuda:{g}", {**({"CUDA_VISIBLE_DEVICES": g} if pinned else {}), **GPU_WORKER_ENV})
            for g in gpus]


def _host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_max_total_bytes(slots: list[DeviceSlot]) -> int:
    """A program budget every validation device can hold. A worker validates one program
    at a time; a quarter of host memory (CPU) or 80% of the smallest GPU leaves room for
    operator temporaries, the allocator's cache and the other processes."""
    if slots[0].label == "cpu":
        return min(MAX_PROGRAM_BYTES, _host_memory_bytes() // 4)
    import torch

    smallest = min(torch.cuda.get_device_properties(int(s.label.split(":")[1])).total_memory for s in slots)
    return min(MAX_PROGRAM_BYTES, int(smallest * 0.8))


def default_flops_window(slots: list[DeviceSlot]) -> tuple[int, int]:
    """(min_flops, max_flops) for a spec that names no window, validated on `slots`."""
    return CPU_FLOPS_WINDOW if slots[0].label == "cpu" else GPU_FLOPS_WINDOW
