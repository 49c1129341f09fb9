"""The README's curl examples, run as printed (one bash script, in order) against a real
`tcgen serve` on 127.0.0.1: what a newcomer pastes after `bash scripts/run.sh`."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from helpers import TCGEN, served

README = Path(__file__).resolve().parents[1] / "README.md"


def curl_examples() -> str:
    section = README.read_text().split("### curl examples", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S)[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from served(tmp_path_factory, "readme")


def test_the_curl_examples_work_as_printed(server, tmp_path):
    script = curl_examples().replace("localhost:8000", f"127.0.0.1:{server.port}")
    script = script.replace(".venv/bin/tcgen", " ".join(map(shlex.quote, TCGEN)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TCGEN_")}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    out = done.stdout
    assert done.returncode == 0, (done.stderr, out)
    assert out.startswith('{"status":"ok"}\n'), out[:200]
    assert '"detail"' not in out, out  # no error answer anywhere
    assert "def fused_operator(" in out
    assert re.search(r"(?i)x-tcgen-min-flops: 65536\r?\n", out) and re.search(r"(?i)x-tcgen-max-flops: 4194304", out)
    assert "100 job.jsonl" in out and "job.jsonl and cli.jsonl are identical" in out
    assert "\n204\n" in out
    assert re.search(r'^tcgen_samples_generated_total\{via="job"\} 100\.0$', out, re.M), out[-500:]
