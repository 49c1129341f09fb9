"""Which validation workers the engine starts: one per visible GPU, each pinned to its GPU
before torch is imported, or the CPU. (The GPU figures come from bench.multi_gpu.)"""
import pytest

from service.engine.devices import device_slots, visible_gpus


def test_one_slot_per_visible_gpu_each_pinned_to_its_own(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    slots = device_slots("cuda")
    assert [s.label for s in slots] == ["cuda:2", "cuda:5"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["2", "5"]
    for s in slots:  # independent workers: deterministic cuBLAS, and no NVLink multicast
        assert s.env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and s.env["NCCL_NVLS_ENABLE"] == "0"
    assert device_slots("auto") == slots


@pytest.mark.parametrize("listed", ["", "-1"])
def test_no_visible_gpu_means_the_cpu_or_a_clear_error(monkeypatch, listed):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_gpus() == []
    assert [s.label for s in device_slots("auto")] == ["cpu"]
    assert device_slots("auto")[0].env == {"CUDA_VISIBLE_DEVICES": ""}
    with pytest.raises(ValueError, match="cuda was asked for but no CUDA device is visible"):
        device_slots("cuda")


def test_cpu_is_chosen_even_with_gpus_visible(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert [s.label for s in device_slots("cpu")] == ["cpu"]


def test_an_unknown_device_is_named(monkeypatch):
    with pytest.raises(ValueError, match="device: expected cpu, cuda or auto, got 'tpu'"):
        device_slots("tpu")
