"""The grader that ships with the data (generator_core.grade, `tcgen grade`): real samples,
real candidates, each run in the grader's child process on the CPU. Correct candidates
pass; trivial, wrong, crashing, hanging and memory-hungry ones get a verdict with their
reason, and the calling process (this one) survives every one with no child left behind."""
from __future__ import annotations

import json

import psutil
import pytest

from bench.grade_candidates import CANDIDATES, HEAD
from generator_core import GenerationSpec, generate
from generator_core.grade import GradeInputError, GradingTask, grade
from helpers import HI, LO
from service.cli import main

WINDOW = {"min_flops": LO, "max_flops": HI, "max_total_bytes": 2**26}
# A kernelbench sample with a weight (a Model parameter built from get_init_inputs()) and a
# fused_operator sample with two outputs, one of an input's shape.
KB_OPS, FUSED_OPS = ["Conv2d", "Tanh", "Sum"], ["Matmul", "Tanh", "Mul"]


@pytest.fixture(scope="module")
def kb():
    return generate(GenerationSpec(op_sequence=KB_OPS, format="kernelbench", **WINDOW), 0)


@pytest.fixture(scope="module")
def fused():
    return generate(GenerationSpec(op_sequence=FUSED_OPS, **WINDOW), 0)


def _own(sample) -> str:
    """The sample's own program as a candidate."""
    return CANDIDATES["own"][0](sample) if sample.format == "kernelbench" else sample.pytorch


@pytest.fixture(autouse=True)
def no_child_left():
    """Every test: the grader leaves no process of its own behind (processes other tests
    left running, such as a pool's, are not the grader's)."""
    before = set(psutil.Process().children(recursive=True))
    yield
    assert set(psutil.Process().children(recursive=True)) - before == set()


@pytest.mark.parametrize("fmt", ["kernelbench", "fused_operator"])
def test_the_samples_own_program_is_correct(fmt, kb, fused):
    sample = kb if fmt == "kernelbench" else fused
    result = grade(sample, _own(sample), device="cpu", runs=5)
    assert (result.compiled, result.correct, result.graded, result.reason) == (True, True, True, None)
    assert [s.seed for s in result.seeds] == sample.grading.input_seeds and all(s.passed for s in result.seeds)
    assert result.max_error == 0.0  # the same code on the same device
    assert result.device == "cpu" and result.timing == "perf_counter" and result.runs == 5
    assert result.reference_ms > 0 and result.candidate_ms > 0
    assert result.speedup == pytest.approx(result.reference_ms / result.candidate_ms)


def test_a_torch_compile_candidate_is_correct(kb):
    """ModelNew whose forward calls torch.compile's Model.forward (Inductor's C++ on the CPU)."""
    result = grade(kb, CANDIDATES["torch.compile"][0](kb), device="cpu", measure_speed=False)
    assert result.correct, result.reason
    assert 0 < result.max_error <= kb.grading.atol or result.max_error == 0.0
    assert result.speedup is None and result.reference_ms is None  # not measured


def _incorrect(sample, source: str, **options):
    result = grade(sample, source, device="cpu", **options)
    assert not result.correct and result.graded and result.speedup is None, result
    return result


FAILING = [(name, build, reason) for name, (build, reason, cuda_only) in CANDIDATES.items()
           if reason is not None and not cuda_only and name != "an infinite loop"]


@pytest.mark.parametrize("name, build, reason", FAILING + [
    ("a wrong shape", lambda s: HEAD + f"        return torch.randn({s.output_shapes[0] + [2]})\n",
     "shape mismatch: output 0")], ids=[f[0] for f in FAILING] + ["a wrong shape"])
def test_wrong_and_failing_candidates_are_incorrect_with_their_reason(kb, name, build, reason):
    """zeros, the mean, an input, a wrong operator (Tanh -> Sigmoid), a raise, os._exit, a
    segfault, a 100 GiB allocation: each a verdict with its reason."""
    result = _incorrect(kb, build(kb))
    assert result.compiled
    assert result.reason.startswith(reason), (name, result.reason)
    if reason.startswith("wrong values"):
        assert result.max_error > kb.grading.atol and result.seeds[-1].passed is False
    assert result.reason.endswith("input seed #0)") and "\n" not in result.reason


def test_an_infinite_loop_times_out(kb):
    result = _incorrect(kb, CANDIDATES["an infinite loop"][0](kb), timeout_s=10)
    assert result.reason == "timed out after 10 s (running the candidate on input seed #0)"
    assert 10 <= result.wall_s < 20


def test_a_candidate_that_does_not_load(kb, fused):
    result = _incorrect(kb, "def broken(:\n")
    assert not result.compiled and result.reason.startswith("does not load: SyntaxError")
    result = _incorrect(kb, _own(fused))  # a fused_operator candidate for a kernelbench sample
    assert not result.compiled and "defines no ModelNew" in result.reason


def test_fused_operator_candidates(fused):
    """Two outputs: returning an input for the one of its shape is the trivial answer;
    one output too few is named."""
    result = _incorrect(fused, fused.pytorch.replace("return [tensor_4, tensor_5]", "return [tensor_4, tensor_2]"))
    assert result.reason == "trivial answer: output 1 is input 2 (or shares its memory) (input seed #0)"
    result = _incorrect(fused, fused.pytorch.replace("return [tensor_4, tensor_5]", "return [tensor_4]"))
    assert result.reason == "returned 1 outputs, expected 2 (input seed #0)"


def test_bad_requests_raise_before_any_process(kb):
    unvalidated = generate(GenerationSpec(op_sequence=KB_OPS, format="kernelbench", validate=False, **WINDOW), 0)
    for call, message in [(lambda: grade(unvalidated, ""), "has no grading contract"),
                          (lambda: grade(kb, "", device="tpu"), "device: expected cpu"),
                          (lambda: grade(kb, "", device="cuda"), "no CUDA device is visible"),
                          (lambda: grade(kb, "", timeout_s=0), "timeout_s"),
                          (lambda: grade(kb, "", memory_limit_bytes=2**20), "memory_limit_bytes")]:
        with pytest.raises(GradeInputError, match=message):
            call()


def test_tcgen_grade(kb, fused, tmp_path, capsys):
    """`tcgen grade`: exit 0 correct, 1 incorrect, 2 bad input, with the verdict printed."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text(kb.model_dump_json() + "\n" + fused.model_dump_json() + "\n")
    own, zeros = tmp_path / "own.py", tmp_path / "zeros.py"
    own.write_text(_own(kb))
    zeros.write_text(HEAD + f"        return torch.zeros({kb.output_shapes[0]})\n")
    base = ["grade", "--samples", str(samples), "--device", "cpu", "--runs", "3"]

    assert main([*base, "--id", kb.id, "--candidate", str(own), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["correct"] and result["speedup"] > 0 and len(result["seeds"]) == 3
    assert main([*base, "--index", str(kb.index), "--candidate", str(zeros), "--no_speed"]) == 1
    assert capsys.readouterr().out.startswith("incorrect: wrong values: output 0: max error")

    for argv, message in [([*base, "--candidate", str(own)], "holds several samples; pick one with --index"),
                          ([*base, "--id", "nope", "--candidate", str(own)], "no sample with id nope"),
                          ([*base, "--id", kb.id, "--candidate", str(tmp_path / "missing.py")],
                           "candidate: cannot read"),
                          (["grade", "--samples", str(own), "--candidate", str(own)], "line 1 is not a tcgen sample")]:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_grading_task_round_trips(kb):
    """The ground truth verl rows carry: a GradingTask as JSON text, enough to grade."""
    task = GradingTask.of(kb)
    again = GradingTask.model_validate_json(task.model_dump_json())
    assert again == task and again.grading.input_seeds == kb.grading.input_seeds



def test_comparisons_work_chunk_by_chunk(monkeypatch):
    """Outputs are compared in float64 a chunk at a time (a GiB output is not copied whole):
    the count, the largest error and the loose guard come out the same across chunks."""
    import torch

    import generator_core.grade_worker as worker

    monkeypatch.setattr(worker, "CHUNK", 7)
    task = {"grading": {"atol": 1e-4, "rtol": 1e-4, "exact_outputs": [], "loose_tolerance": 1e-2}}
    ref = torch.randn(5, 9) + 3
    out = ref.clone()
    out[4, 8] += 1
    out[0, 0] += 0.5
    reason, error = worker.compare([ref], [out], task, [], [set()])
    assert "in 2 of 45 elements" in reason and error == pytest.approx(1, rel=1e-5)
    assert worker.compare([ref], [ref.t().contiguous().t()], task, [], [set()]) == (None, 0.0)
    assert worker.loose_guard([ref], [torch.randn(5, 9)], task) is None
    assert worker.loose_guard([ref * 1e-3], [], task).startswith("ungradeable here: zeros pass reference output 0")
    assert "input 0 passes" in worker.loose_guard([ref], [ref * 1.001], task)
