"""tcgen samples as a verl RL dataset, and the reward function that grades the answers.

Dataset (`tcgen export-verl`, or export_verl()): a Parquet file in the layout verl's
RLHFDataset reads: `data_source`, `prompt` (chat messages asking for a faster ModelNew),
`ability`, `reward_model` ({"style": "rule", "ground_truth": JSON text of a GradingTask:
the reference program and its grading contract}) and `extra_info`.

Reward (verl 0.9 config): reward.custom_reward_function.path=pkg://generator_core.verl (or
this file's path) and reward.custom_reward_function.name=compute_score. compute_score grades the last
fenced Python block of an answer with generator_core.grade (a child process with a time
and memory limit) and returns {"score": ..., diagnostics}; see SCORE below.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

from generator_core.grade import GradeInputError, GradeResult, GradingTask, grade, read_samples
from generator_core.sample import Sample

DATA_SOURCE = "tcgen"
ABILITY = "kernel"
SPEEDUP_CAP = 4.0  # the speedup that earns the whole bonus
SCORE = ("0 without a fenced code block, for a candidate that does not load, is incorrect on any input seed or "
         "cannot be graded; a correct one scores 1 + min(1, max(0, log2(speedup) / log2(4))): 1 at the "
         "reference's speed or slower, 2 at 4x faster or more")
ROW_GROUP_ROWS = 1024
FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
SYSTEM_PROMPT = ("You are an expert in GPU performance engineering. You rewrite PyTorch programs into faster "
                 "implementations (custom Triton or CUDA kernels, operator fusion, better algorithms) that "
                 "compute the same results.")
USER_PROMPT = """\
Write a faster implementation of the PyTorch program below (KernelBench format: `Model`, `get_inputs()` and \
`get_init_inputs()`).

Requirements:
- Define `class ModelNew(nn.Module)` with the same constructor arguments and the same `forward` signature as \
`Model`. It is built as `ModelNew(*get_init_inputs())` right after the same `torch.manual_seed(...)` as `Model` \
(so parameters created in the same order with the same calls get the same values), and called on the tensors \
of `get_inputs()`{on_device}.
- `forward` must return what `Model.forward` returns: same shape and dtype ({dtype}), within atol = rtol = \
{atol:g} of the reference ({exact}), on several random inputs.
- You may use Triton, CUDA through torch.utils.cpp_extension.load_inline, or PyTorch itself. Do not read the \
reference's results or return an input.
- Answer with the complete code as a single fenced Python code block (```python ... ```): the last such block of \
your answer is what is graded.

Reference program:
```python
{program}
```
"""


def prompt(sample: Sample) -> list[dict[str, str]]:
    """The chat messages of one sample (system, then user)."""
    task = GradingTask.of(sample)
    exact = ("integer outputs are compared exactly" if task.grading.exact_outputs
             else "every output is compared with torch.allclose")
    user = USER_PROMPT.format(on_device=" on the GPU", dtype=task.dtype, atol=task.grading.atol, exact=exact,
                              program=task.pytorch.rstrip("\n"))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def verl_row(sample: Sample, split: str = "train") -> dict[str, Any]:
    """One row of verl's RL dataset layout."""
    if sample.format != "kernelbench":
        raise GradeInputError(f"sample {sample.id} (index {sample.index}) is in {sample.format} format: only "
                              "kernelbench-format samples can be exported for verl (generate with --format "
                              "kernelbench)")
    task = GradingTask.of(sample)
    return {
        "data_source": DATA_SOURCE,
        "prompt": prompt(sample),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": task.model_dump_json()},
        "extra_info": {"split": split, "index": sample.index, "id": sample.id, "level": sample.level,
                       "ops": list(sample.ops), "flops": sample.flops, "dtype": sample.dtype},
    }


def _schema():
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(message)),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64()), ("id", pa.string()),
                                  ("level", pa.int64()), ("ops", pa.list_(pa.string())), ("flops", pa.int64()),
                                  ("dtype", pa.string())])),
    ])


def export_verl(inputs: Iterable[str], output: str, split: str = "train") -> int:
    """Write the samples of tcgen files (JSONL or Parquet) to `output` as verl's RL dataset
    (Parquet, a row group per ROW_GROUP_ROWS rows); returns the number of rows. Nothing is
    left at `output` when a sample cannot be exported."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, rows, count = _schema(), [], 0
    partial = output + ".partial"
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            for path in inputs:
                for sample in read_samples(path):
                    rows.append(verl_row(sample, split))
                    if len(rows) == ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                        count, rows = count + len(rows), []
            if rows or not count:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count += len(rows)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return count


def last_code_block(text: str) -> str | None:
    """The last fenced code block (```python, ```py or a bare ```) of a model's answer."""
    blocks = FENCE.findall(text or "")
    return blocks[-1] if blocks else None


def score(result: GradeResult | None) -> float:
    """SCORE, from a grader's verdict (None: no code to grade)."""
    if result is None or not result.correct:
        return 0.0
    if not result.speedup or result.speedup <= 1:
        return 1.0
    return 1.0 + min(1.0, math.log2(result.speedup) / math.log2(SPEEDUP_CAP))


def compute_score(data_source: str, solution_str: str, ground_truth: str | dict, extra_info: dict | None = None,
                  *, device: str = "auto", timeout_s: float = 180.0, memory_limit_bytes: int | None = None,
                  measure_speed: bool = True, **_: Any) -> dict[str, float]:
    """verl's reward function signature (extra keyword arguments come from the config's
    custom_reward_function.reward_kwargs: device, timeout_s, memory_limit_bytes,
    measure_speed). Returns verl's dict form: "score" plus numeric diagnostics, the same
    keys for every answer (verl gathers them per key)."""
    task = GradingTask.model_validate(json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth)
    code = last_code_block(solution_str)
    result = None
    if code is not None:
        result = grade(task, code, device=device, timeout_s=timeout_s, memory_limit_bytes=memory_limit_bytes,
                       measure_speed=measure_speed)
    return {"score": score(result), "has_code": float(code is not None),
            "compiled": float(bool(result and result.compiled)), "correct": float(bool(result and result.correct)),
            "speedup": float(result.speedup) if result and result.speedup else 0.0}
