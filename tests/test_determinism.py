"""A sample is a pure function of (spec, index): across processes, runs and hash seeds."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from generator_core import generate
from helpers import HI, LO, spec

CASES = [(level, topology) for level in range(5) for topology in ("dag", "chain")]
SCRIPT = """
import json, sys
from generator_core import GenerationSpec, generate
out = []
for level, topology in json.loads(sys.argv[1]):
    s = generate(GenerationSpec(level=level, topology=topology, seed=11, min_flops=%d, max_flops=%d), 3 + level)
    out.append([s.pytorch, s.id, s.model_dump_json()])
print(json.dumps(out))
""" % (LO, HI)


def _fresh_process(hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES)], env=env,
                          capture_output=True, check=True, timeout=300)
    return done.stdout


def test_two_fresh_processes_print_identical_samples():
    """Levels 0-4 x dag/chain: two processes (different hash seeds) print byte-identical samples,
    validation statistics included."""
    first, second = _fresh_process("1"), _fresh_process("2")
    assert first == second
    in_process = [[s.pytorch, s.id, s.model_dump_json()] for s in
                  (generate(spec(level=lv, topology=t, seed=11), 3 + lv) for lv, t in CASES)]
    assert json.loads(first) == in_process


def test_generating_twice_gives_equal_samples():
    """In one process, generating the same (spec, index) twice gives the same JSON bytes."""
    for level in (0, 2, 4):
        a, b = (generate(spec(level=level, seed=5), 9) for _ in range(2))
        assert a.validation is not None and a.model_dump_json() == b.model_dump_json()


def test_different_seeds_give_different_level2_programs():
    """At level 2, five seeds at the same index give five different programs."""
    programs = {generate(spec(level=2, seed=seed, validate=False), 0).pytorch for seed in range(5)}
    assert len(programs) == 5
