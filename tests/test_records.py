"""Type-stable records (issue 14): every record (a JSONL line, an API sample, a Parquet
row) has the same columns with the same Arrow types, generator_core.arrow_schema(), so
Hugging Face `datasets` loads any mix of tcgen files without being told the features, and
`tcgen generate --output_format parquet` writes them, resumably. Real files throughout:
the real CLI in a subprocess, real `datasets` and pyarrow."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator_core import OPERATORS, GenerationSpec, Sample, arrow_schema, features
from generator_core.sample import JSON_TEXT_FIELDS
from helpers import HI, LO, TCGEN
from service.cli import output
from service.cli import main

datasets = pytest.importorskip("datasets")  # the `test` extra
from datasets.packaged_modules.json.json import JsonConfig  # noqa: E402
datasets.disable_progress_bars()
WINDOW = ["--min_flops", str(LO), "--max_flops", str(HI), "--max_total_bytes", str(2**24), "--device", "cpu",
          "--num_workers", "1"]
LEVEL2 = ["--level", "2", "--seed", "3", "--target_count", "4"]  # the JSONL file and the Parquet run share it
# (file, flags): several levels, validation off, baselines on.
FILES = {"level0": ["--level", "0", "--target_count", "4"],
         "level2": LEVEL2,
         "level4_no_validate": ["--level", "4", "--seed", "1", "--target_count", "4", "--no_validate"],
         "level1_baselines": ["--level", "1", "--target_count", "3", "--baselines"]}
INTERRUPTED = ["--level", "2", "--seed", "9", "--target_count", "300", "--no_validate"]  # ~100 samples/s
REASON = "attempt 0: numerics: output 0 is 3x 0.5 of the tolerance (0.0001) from float64"


def generate(path, *flags: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([*TCGEN, "generate", "--output_file", str(path), *flags, *WINDOW], capture_output=True,
                          text=True, timeout=300, **popen)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Real tcgen output: a JSONL file per FILES entry, and as Parquet the level-2 spec and
    the uninterrupted run of INTERRUPTED."""
    folder = tmp_path_factory.mktemp("records")
    runs = {f"{name}.jsonl": flags for name, flags in FILES.items()}
    runs |= {"level2.parquet": [*LEVEL2, "--output_format", "parquet"],
             "uninterrupted.parquet": [*INTERRUPTED, "--output_format", "parquet"]}
    for name, flags in runs.items():
        done = generate(folder / name, *flags)
        assert done.returncode == 0, done.stderr
    return {name.removesuffix(".jsonl"): folder / name for name in runs}


@pytest.fixture(scope="module")
def samples(files) -> list[Sample]:
    return [Sample.model_validate_json(line) for name in FILES for line in files[name].read_text().splitlines()]


def load_json(tmp_path, paths, **kwargs):
    return datasets.load_dataset("json", data_files=[str(p) for p in paths], cache_dir=str(tmp_path / "cache"),
                                 split="train", **kwargs)


def lines_of(*paths) -> list[str]:
    return [line for p in paths for line in p.read_text().splitlines()]


def variant(sample: Sample, index: int, rejected: bool = False, validated: bool = True, baseline=None) -> str:
    """A real sample re-serialised as another index, with or without rejections, validation
    and a baseline: a valid record of every kind, cheaply."""
    update = {"index": index, "rejected": [REASON] if rejected else [], "baseline": baseline}
    if not validated:
        update |= {"validation": None, "grading": None}
    return sample.model_copy(update=update).model_dump_json()


def test_every_record_has_the_schema_columns_and_round_trips(files, samples):
    """Each line holds exactly arrow_schema()'s columns, in order, the JSON text fields as
    strings ("null", "[]" when empty); a line parses back to the same bytes, typed (and the
    older structured form of a record parses too)."""
    schema = arrow_schema()
    assert schema.names == list(Sample.model_fields)
    assert features().arrow_schema.equals(schema)
    assert [schema.field(name).type for name in JSON_TEXT_FIELDS] == [pa.string()] * len(JSON_TEXT_FIELDS)
    for line in lines_of(*(files[name] for name in FILES)):
        record = json.loads(line)
        assert list(record) == schema.names and all(isinstance(record[f], str) for f in JSON_TEXT_FIELDS)
        sample = Sample.model_validate_json(line)
        assert sample.model_dump_json() == line
        assert isinstance(sample.graph, dict) and isinstance(sample.rejected, list)
        assert Sample.model_validate(json.loads(json.dumps(sample.model_dump()))) == sample  # structured form
    by_file = {name: Sample.model_validate_json(files[name].read_text().splitlines()[0]) for name in FILES}
    assert by_file["level2"].grading.atol == 1e-4 and by_file["level1_baselines"].baseline.eager_ms > 0
    no_validate = json.loads(files["level4_no_validate"].read_text().splitlines()[0])
    assert (no_validate["validation"], no_validate["grading"], no_validate["baseline"]) == ("null",) * 3


def test_no_tensor_is_rank_0(samples):
    """A rank-0 shape ([]) would make `input_shapes` / `output_shapes` an empty-only list in
    some first chunk (inferred as list<null>): no operator reads or makes one."""
    for op in OPERATORS.values():
        assert all(rank >= 1 and min(op.output_ranks(rank)) >= 1 for rank in op.input_ranks), op.name
    assert all(all(s.input_shapes) and all(s.output_shapes) for s in samples)


CASES = {"several levels": ["level0", "level2", "level4_no_validate"],
         "no_validate before validated": ["level4_no_validate", "level0"],
         "without then with baselines": ["level0", "level1_baselines"],
         "with then without baselines": ["level1_baselines", "level2"]}


@pytest.mark.parametrize("case", CASES)
def test_tcgen_files_load_with_datasets_without_features(files, tmp_path, case):
    """Any mix of tcgen JSONL files loads, the features inferred equal features()."""
    paths = [files[name] for name in CASES[case]]
    loaded = load_json(tmp_path, paths)
    assert loaded.num_rows == len(lines_of(*paths))
    assert loaded.features == features()
    assert [json.dumps(row, separators=(",", ":")) for row in loaded] == lines_of(*paths)


def test_structured_records_did_not_load(files, tmp_path):
    """The problem the text fields solve: the same records with their fields as objects (the
    old form) fail on a validation-off file listed first."""
    paths = []
    for name in CASES["no_validate before validated"]:
        paths.append(tmp_path / f"{name}.structured.jsonl")
        paths[-1].write_text("".join(json.dumps(Sample.model_validate_json(line).model_dump()) + "\n"
                                     for line in lines_of(files[name])))
    with pytest.raises(datasets.exceptions.DatasetGenerationError) as failed:
        load_json(tmp_path, paths)
    assert "Couldn't cast" in str(failed.value.__cause__)


def test_first_rejection_after_the_first_chunk(samples, tmp_path):
    """8,040 lines whose first rejection comes after datasets' first chunk (10 MB)."""
    path = tmp_path / "long.jsonl"
    lines = [variant(samples[i % len(samples)], i, rejected=i >= 8000 and i % 2 == 0) for i in range(8040)]
    path.write_text("".join(line + "\n" for line in lines))
    first = sum(len(line) + 1 for line in lines[:8000])
    assert first > JsonConfig.chunksize
    loaded = load_json(tmp_path, [path])
    assert loaded.num_rows == 8040 and loaded.features == features()
    assert json.loads(loaded[7999]["rejected"]) == [] and json.loads(loaded[8000]["rejected"]) == [REASON]


def test_20000_line_mixed_file(samples, tmp_path):
    """20,000 lines of every kind: the first 4,000 without validation, rejections or
    baselines (nothing a reader could type), then validated or not, with rejections and
    baselines, mixed. Loads without features, and with them."""
    baseline = next(s.baseline for s in samples if s.baseline)
    validated = [s for s in samples if s.validation]
    lines = [variant(samples[i % len(samples)], i, validated=False) for i in range(4000)]
    lines += [variant(validated[i % len(validated)], i, rejected=i % 3 == 0, validated=i % 5 != 0,
                      baseline=baseline if i % 7 == 0 and i % 5 else None) for i in range(4000, 20000)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    loaded = load_json(tmp_path, [path])
    assert loaded.num_rows == 20000 and loaded.features == features()
    typed = load_json(tmp_path, [path], features=features())
    assert typed.num_rows == 20000 and typed.features == features()
    for i in (0, 4000, 4007, 19999):
        assert Sample.model_validate(loaded[i]).model_dump_json() == lines[i]


def test_parquet_output_has_the_record_schema(files, tmp_path):
    """`tcgen generate --output_format parquet`: the rows of the JSONL file of the same spec,
    with arrow_schema(), read by pyarrow and by datasets (alone and next to JSONL files)."""
    path = files["level2.parquet"]
    assert not os.path.exists(f"{path}.journal.jsonl") and not os.path.exists(f"{path}.partial")
    table = pq.read_table(path)
    assert table.schema.equals(arrow_schema())
    records = [json.loads(line) for line in lines_of(files["level2"])]
    assert table.to_pylist() == records
    loaded = datasets.load_dataset("parquet", data_files=[str(path)], cache_dir=str(tmp_path / "cache"),
                                   split="train")
    assert loaded.features == features() and loaded.to_list() == records
    assert [Sample.model_validate(row).index for row in loaded] == [0, 1, 2, 3]


def test_parquet_resume_after_a_crash_mid_write(files, tmp_path):
    """What kill -9 leaves: a journal ending in half a line and a Parquet without footer.
    --resume gives the bytes of the uninterrupted run and removes both."""
    path = tmp_path / "crashed.parquet"
    lines = files["level2"].read_text().splitlines(keepends=True)
    (tmp_path / "crashed.parquet.journal.jsonl").write_text(lines[0] + lines[1] + lines[2][:len(lines[2]) // 2])
    (tmp_path / "crashed.parquet.partial").write_bytes(files["level2.parquet"].read_bytes()[:3000])
    done = generate(path, *LEVEL2, "--output_format", "parquet", "--resume")
    assert done.returncode == 0, done.stderr
    assert "wrote 2 samples" in done.stderr
    assert path.read_bytes() == files["level2.parquet"].read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["crashed.parquet"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)],
                         ids=["SIGINT", "SIGKILL"])
def test_parquet_run_interrupted_resumes_to_the_same_file(files, tmp_path, sig, code):
    """Ctrl-C (to the process group) or kill -9 of the whole group mid-run: the journal keeps
    what was written, no Parquet is left as if finished, and --resume ends with the bytes of
    the uninterrupted run."""
    path, journal = tmp_path / "run.parquet", tmp_path / "run.parquet.journal.jsonl"
    proc = subprocess.Popen([*TCGEN, "generate", "--output_file", str(path), *INTERRUPTED, "--output_format",
                             "parquet", *WINDOW], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 10):
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be interrupted"
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert not path.exists() and journal.read_bytes().count(b"\n") < 300
    resumed = generate(path, *INTERRUPTED, "--output_format", "parquet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert path.read_bytes() == files["uninterrupted.parquet"].read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["run.parquet"]


def test_row_groups_are_bounded_and_land_where_an_uninterrupted_run_puts_them(samples, tmp_path, monkeypatch):
    """Rows go to the file a row group at a time as they arrive (at most ROW_GROUP_ROWS held);
    a run stopped midway and resumed makes the same row groups, and the same bytes."""
    monkeypatch.setattr(output, "ROW_GROUP_ROWS", 4)
    level2 = [s for s in samples if s.level == 2 and s.validation]
    lines = [variant(level2[i % len(level2)], i) for i in range(10)]
    spec = GenerationSpec(level=2, seed=3, count=10, min_flops=LO, max_flops=HI)

    whole = output.ParquetOutput(str(tmp_path / "whole.parquet"))
    with whole:
        for line in lines:
            whole.write(line)
            assert len(whole._rows) < 4
        whole.finish()
    assert pq.ParquetFile(whole.path).metadata.num_row_groups == 3

    first = output.ParquetOutput(str(tmp_path / "parts.parquet"))
    with first:
        for line in lines[:6]:
            first.write(line)  # stopped here: never finished
    assert not os.path.exists(first.path) and not os.path.exists(first.partial)
    again = output.ParquetOutput(first.path)
    assert again.resume(spec) == 6
    with again:
        for line in lines[6:]:
            again.write(line)
        again.finish()
    assert open(again.path, "rb").read() == open(whole.path, "rb").read()
    assert pq.read_table(again.path).to_pylist() == [json.loads(line) for line in lines]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["generate", *argv, "--level", "2", "--seed", "3", *WINDOW])
    return rc, capsys.readouterr().err


def test_bad_parquet_input_is_refused_and_nothing_is_lost(files, tmp_path, capsys):
    """A JSONL or foreign Parquet file to resume, a finished file of another spec, or a
    journal without --resume: exit 2 with the reason, and every file as it was."""
    jsonl = files["level2"]
    before = jsonl.read_bytes()
    rc, err = run_cli(capsys, "--output_file", str(jsonl), "--output_format", "parquet", "--resume")
    assert rc == 2 and "is not a Parquet file" in err and jsonl.read_bytes() == before

    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1]}), foreign)
    rc, err = run_cli(capsys, "--output_file", str(foreign), "--output_format", "parquet", "--resume")
    assert rc == 2 and "not a tcgen Parquet file" in err

    finished = tmp_path / "finished.parquet"
    finished.write_bytes(files["level2.parquet"].read_bytes())
    rc, err = run_cli(capsys, "--output_file", str(finished), "--output_format", "parquet", "--resume",
                      "--dtype", "bfloat16")
    assert rc == 2 and f"{finished} was written for level 2, seed 3, dtype float32" in err
    assert finished.read_bytes() == files["level2.parquet"].read_bytes()

    journal = tmp_path / "j.parquet.journal.jsonl"
    journal.write_text(jsonl.read_text())
    rc, err = run_cli(capsys, "--output_file", str(tmp_path / "j.parquet"), "--output_format", "parquet")
    assert rc == 2 and f"{journal} exists; pass --resume" in err
    assert sorted(os.listdir(tmp_path)) == ["finished.parquet", "foreign.parquet", "j.parquet.journal.jsonl"]


def test_features_names_the_extra_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"tcgen\[datasets\]"):
        features()
