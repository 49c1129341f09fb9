"""verl-ready export and reward: real kernelbench samples exported with `tcgen export-verl`,
read back with Hugging Face `datasets` and with verl's own RLHFDataset (verl installed
without its training dependencies; a small tokenizer built here, since there is no hub),
and answers scored by generator_core.verl.compute_score, loaded the way verl's
custom_reward_function config loads it."""
from __future__ import annotations

import json

import pytest

from bench.grade_candidates import zeros as zeros_candidate
from generator_core import GenerationSpec, generate
from generator_core.grade import GradingTask
from generator_core.verl import DATA_SOURCE, compute_score, last_code_block, prompt, score
from helpers import HI, LO
from service.cli import main

WINDOW = {"min_flops": LO, "max_flops": HI, "max_total_bytes": 2**26}
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def samples():
    """Level-1 and level-2 kernelbench samples (two files), one with a weight."""
    level1 = [generate(GenerationSpec(level=1, format="kernelbench", **WINDOW), i) for i in (0, 1)]
    level2 = [generate(GenerationSpec(level=2, format="kernelbench", **WINDOW), i) for i in (0, 1)]
    weighted = generate(GenerationSpec(op_sequence=["Conv2d", "Tanh", "Sum"], format="kernelbench", **WINDOW), 0)
    return level1, level2 + [weighted]


@pytest.fixture(scope="module")
def exported(samples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verl")
    files = []
    for k, group in enumerate(samples):
        files.append(folder / f"l{k}.jsonl")
        files[-1].write_text("".join(s.model_dump_json() + "\n" for s in group))
    out = folder / "train.parquet"
    assert main(["export-verl", "--input", *map(str, files), "--output", str(out)]) == 0
    return out, [s for group in samples for s in group]


def test_export_loads_with_datasets(exported):
    import datasets

    path, samples = exported
    rows = datasets.load_dataset("parquet", data_files=str(path))["train"]
    assert rows.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert len(rows) == len(samples)
    for row, sample in zip(rows, samples):
        assert row["data_source"] == DATA_SOURCE and row["ability"] == "kernel"
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert sample.pytorch.rstrip("\n") in row["prompt"][1]["content"] and "ModelNew" in row["prompt"][1]["content"]
        assert row["reward_model"]["style"] == "rule"
        assert GradingTask.model_validate_json(row["reward_model"]["ground_truth"]) == GradingTask.of(sample)
        assert row["extra_info"] == {"split": "train", "index": sample.index, "id": sample.id, "level": sample.level,
                                     "ops": sample.ops, "flops": sample.flops, "dtype": sample.dtype}


def test_only_kernelbench_samples_export(tmp_path, capsys):
    fused = generate(GenerationSpec(level=0, **WINDOW), 0)
    path = tmp_path / "fused.jsonl"
    path.write_text(fused.model_dump_json() + "\n")
    out = tmp_path / "out.parquet"
    assert main(["export-verl", "--input", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "only kernelbench-format samples can be exported" in err and "--format kernelbench" in err
    assert not out.exists() and not (tmp_path / "out.parquet.partial").exists()


def _tokenizer(texts: list[str]):
    """A byte-level BPE trained on the prompts, as transformers' fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                   chat_template=CHAT_TEMPLATE)


def test_verls_rlhf_dataset_reads_the_export(exported, tmp_path):
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    path, samples = exported
    messages = [prompt(s) for s in samples]
    tokenizer = _tokenizer([m["content"] for ms in messages for m in ms])
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 8192, "filter_overlong_prompts": True,
                               "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")})
    dataset = RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, config=config)
    assert len(dataset) == len(samples)  # none filtered out as too long
    for k, sample in enumerate(samples):
        item = dataset[k]
        assert item["raw_prompt"] == messages[k] and item["data_source"] == DATA_SOURCE
        assert item["index"] == sample.index and item["extra_info"]["id"] == sample.id
        ids = tokenizer.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        assert 0 < len(ids) <= 8192
        assert sample.pytorch.rstrip("\n") in tokenizer.decode(ids)
    batch = next(iter(DataLoader(dataset, batch_size=len(samples), collate_fn=collate_fn)))
    assert list(batch["dummy_tensor"].shape) == [len(samples), 1]
    assert [json.loads(r["ground_truth"])["id"] for r in batch["reward_model"]] == [s.id for s in samples]


def test_last_code_block():
    assert last_code_block("no code") is None
    assert last_code_block("```python\na = 1\n```\ntext\n```py\nb = 2\n```\n") == "b = 2\n"
    assert last_code_block("think ```\nx\n``` then\n```python\ny\n```") == "y\n"
    assert score(None) == 0.0


def test_compute_score_through_verls_loader(exported):
    """Loaded as verl's custom_reward_function.path does (pkg:// form); the correct program
    in the last fenced block scores at least 1, garbage and zeros score 0."""
    from verl.utils.import_utils import load_extern_object

    path, samples = exported
    sample = samples[-1]  # the one with a weight: ModelNew must draw it as Model does
    fn = load_extern_object(module_path="pkg://generator_core.verl", object_name="compute_score")
    assert fn is compute_score
    truth = json.dumps(json.loads(GradingTask.of(sample).model_dump_json()))
    own = sample.pytorch.replace("class Model(", "class ModelNew(")
    answer = f"Here is a draft:\n```python\nbroken(\n```\nAnd the final version:\n```python\n{own}```\n"
    good = fn(data_source=DATA_SOURCE, solution_str=answer, ground_truth=truth, extra_info={"index": 0},
              device="cpu", timeout_s=120)
    assert good["correct"] == 1.0 and 1.0 <= good["score"] <= 2.0 and good["speedup"] > 0
    zeros = f"```python\n{zeros_candidate(sample)}```"
    for answer, has_code, compiled in [("I cannot do that.", 0.0, 0.0), ("```python\ndef (:\n```", 1.0, 0.0),
                                       (zeros, 1.0, 1.0)]:
        bad = fn(DATA_SOURCE, answer, truth, None, device="cpu", timeout_s=120, measure_speed=False)
        assert bad == {"score": 0.0, "has_code": has_code, "compiled": compiled, "correct": 0.0, "speedup": 0.0}
