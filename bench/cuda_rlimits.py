"""CUDA under memory rlimits (what the grader's child may set): for each limit, whether CUDA
initialises and a matmul, pinned memory and torch.compile (Triton) work, and what a 100 GiB
host allocation (RLIMIT_DATA runs only) and a 100 GiB device allocation under
set_per_process_memory_fraction(0.05) do.

    python3 -m bench.cuda_rlimits        (a CUDA machine; results/cuda-rlimits-*.log)
"""
import subprocess, sys, json
GiB = 2**30
CODE = r'''
import resource, sys, json
kind, limit = sys.argv[1], int(sys.argv[2])
if kind != "none":
    r = getattr(resource, kind); resource.setrlimit(r, (limit, limit))
out = {}
try:
    import torch
    x = torch.randn(4096, 4096, device="cuda"); y = x @ x; torch.cuda.synchronize(); out["matmul"] = "ok"
    p = torch.empty(2**28, dtype=torch.uint8, pin_memory=True); out["pinned_256MiB"] = "ok"
    f = torch.compile(lambda a: torch.tanh(a) * 2 + 1); f(x); torch.cuda.synchronize(); out["compile"] = "ok"
    try:
        if kind != "RLIMIT_DATA":
            raise RuntimeError("skipped")
        h = torch.ones(100 * 2**30, dtype=torch.uint8); out["host_100GiB"] = "allocated!"
    except Exception as e:
        out["host_100GiB"] = type(e).__name__ + ": " + str(e).splitlines()[0][:120]
    torch.cuda.set_per_process_memory_fraction(0.05)
    try:
        d = torch.empty(100 * 2**30, dtype=torch.uint8, device="cuda"); out["device_100GiB"] = "allocated!"
    except Exception as e:
        out["device_100GiB"] = type(e).__name__ + ": " + str(e).splitlines()[0][:120]
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e).splitlines()[0][:200]
print(json.dumps(out))
'''
for kind, limit in [("none", 0), ("RLIMIT_AS", 64 * GiB), ("RLIMIT_AS", 256 * GiB), ("RLIMIT_DATA", 8 * GiB), ("RLIMIT_DATA", 16 * GiB)]:
    done = subprocess.run([sys.executable, "-c", CODE, kind, str(limit)], capture_output=True, text=True, timeout=300)
    print(kind, limit // GiB, "GiB rc", done.returncode, done.stdout.strip()[-600:], done.stderr.strip().splitlines()[-1:] if done.returncode else "", flush=True)
