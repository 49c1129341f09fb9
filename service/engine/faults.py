"""Faults the tests inject into the engine's workers on purpose, through the environment (a
local worker is started with it, a Ray worker inherits it). Unset in normal runs, these do nothing."""
from __future__ import annotations

import os
import signal

# Faults the tests inject on purpose: TCGEN_TEST_CRASH="<stage>:<index>[:<once-file>]" makes
# the worker kill itself (SIGKILL, as a segfault or the OOM killer would) when it reaches
# <stage> (solve or validate) for <index>; with <once-file>, only the first time (the file
# records it). Unset in normal runs.
CRASH_ENV = "TCGEN_TEST_CRASH"
# TCGEN_TEST_FAULT="<oom|sticky>:<index>:<count-file>:<times>" makes the first <times>
# validations of <index> fail inside the program as a full device (torch.OutOfMemoryError)
# or a poisoned CUDA context (torch.AcceleratorError) would: for real on a GPU, and on the
# CPU by raising the same exception types, so it exercises the exact path a GPU takes.
FAULT_ENV = "TCGEN_TEST_FAULT"


def maybe_crash(stage: str, index: int) -> None:
    planned = os.environ.get(CRASH_ENV, "")
    if not planned:
        return
    want_stage, want_index, *once = planned.split(":", 2)
    if (want_stage, want_index) != (stage, str(index)):
        return
    if once:
        try:
            os.close(os.open(once[0], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return  # crashed once already
    os.kill(os.getpid(), signal.SIGKILL)


def planned_fault(index: int, device: str):
    """A context that makes the program's first torch call fail as the device would, or
    None. On a GPU the failure is real: an allocation far beyond the device's memory, or an
    out-of-bounds index that trips a device-side assert and poisons the CUDA context. On the
    CPU the same exception types are raised. The count file holds how often it has fired."""
    planned = os.environ.get(FAULT_ENV, "")
    if not planned:
        return None
    kind, want_index, count_file, times = planned.split(":")
    if want_index != str(index):
        return None
    fired = int(open(count_file).read() or 0) if os.path.exists(count_file) else 0
    if fired >= int(times):
        return None
    with open(count_file, "w") as f:
        f.write(str(fired + 1))

    import torch
    from torch.overrides import TorchFunctionMode

    def fail():
        if device == "cuda" and kind == "oom":
            torch.empty(2**50, dtype=torch.uint8, device="cuda")  # 1 PiB
        if device == "cuda":
            torch.zeros(4, device="cuda")[torch.tensor([1 << 20], device="cuda")]  # device-side assert
            torch.cuda.synchronize()
        if kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered (injected)")

    class Fault(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            fail()

    return Fault()
