"""The training benchmarks run end to end on tiny inputs and print the JSON they promise.

No timing is asserted (times on a shared machine are noise); what is asserted is the shape
of the result and the fact the figures rest on: every contender starts from the same weights,
so their first losses agree.
"""

from pathlib import Path
from typing import Any

import pytest
from conftest import run_benchmarks

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
TINY = {
    "train_overhead.py": ["--rounds", "1", "--repeats", "2", "--warmup", "1"],
    "train_cnn.py": [
        "--size",
        "16",
        "--batch",
        "4",
        "--rounds",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--explore",
        "--threads",
        "1",
    ],
    # ResNet-10 (one block per stage) at the smallest size ResNet-18's stem takes
    "train_resnet.py": [
        "--size",
        "32",
        "--batch",
        "4",
        "--blocks",
        "1",
        "--rounds",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
    ],
}
# XLA's backend optimisations off: the ResNet's two training steps compile in ~40 % of the time
ENV = {"train_resnet.py": {"XLA_FLAGS": "--xla_backend_optimization_level=0"}}
# 16x16 -> conv 14x14x32 -> pool 7x7x32 = 1568 -> Linear(512) -> Linear(2)
TINY_CNN_PARAMS = (3 * 3 * 3 * 32 + 32) + (1568 * 512 + 512) + (512 * 2 + 2)
OVERHEAD = {"shapesafe", "pure_jax", "nnx_jit", "shapesafe_scan"}


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """The scripts on tiny inputs, run at the same time (each in its own process)."""
    return run_benchmarks(TINY, ENV)


def test_train_overhead_reports_every_contender(results: dict[str, dict[str, Any]]) -> None:
    result = results["train_overhead.py"]
    assert result["benchmark"] == "train_overhead"
    assert {"date", "device", "versions", "parameters", "goal"} <= result.keys()
    assert result["parameters"]["batch"] == 32 and result["parameters"]["hidden"] == 128
    for key in (
        "us_per_step",
        "cpu_us_per_step",
        "round_medians_us_per_step",
        "ratio_vs_pure_jax",
        "cpu_ratio_vs_pure_jax",
        "ratio_vs_pure_jax_per_round",
        "first_call_s",
    ):
        assert set(result[key]) == OVERHEAD, key
    assert all(v > 0 for v in result["us_per_step"].values())
    assert result["ratio_vs_pure_jax"]["pure_jax"] == 1.0


def test_train_cnn_contenders_start_from_the_same_loss(results: dict[str, dict[str, Any]]) -> None:
    result = results["train_cnn.py"]
    assert result["benchmark"] == "train_cnn"
    assert result["param_count"] == TINY_CNN_PARAMS
    assert result["parameters"]["size"] == 16 and result["parameters"]["explore"] is True
    names = {"shapesafe", "flax", "flax_reshape_pool", "jax_nchw", "torch", "torch_nchw"}
    for key in (
        "first_loss",
        "last_loss",
        "images_per_s",
        "median_step_ms",
        "cpu_ms_per_step",
        "ratio_vs_flax",
        "ratio_vs_torch",
        "round_medians_ms",
    ):
        assert set(result[key]) == names, key
    first = result["first_loss"]
    assert max(first.values()) - min(first.values()) <= 1e-3 * max(1.0, abs(first["flax"]))
    assert result["ratio_vs_flax"]["flax"] == 1.0 and result["ratio_vs_torch"]["torch"] == 1.0
    assert result["torch_threads"] == 1


def resnet_params(classes: int, blocks: int) -> int:
    """Trainable parameters of torchvision's ResNet layout with ``blocks`` basic blocks per
    stage, counted by hand (convolutions without bias; BatchNorm's scale and bias)."""
    total = 7 * 7 * 3 * 64 + 2 * 64  # stem: conv1, bn1
    cin = 64
    for c in (64, 128, 256, 512):
        for b in range(blocks):
            first = cin if b == 0 else c
            total += 3 * 3 * first * c + 3 * 3 * c * c + 2 * 2 * c  # conv1, conv2, bn1, bn2
            if b == 0 and first != c:
                total += first * c + 2 * c  # downsample: 1x1 conv, BatchNorm
        cin = c
    return total + 512 * classes + classes


def test_resnet_contenders_start_from_the_same_loss(results: dict[str, dict[str, Any]]) -> None:
    """shapesafe, the hand-written Flax ResNet and plain PyTorch hold the same weights: the
    first loss (train-mode BatchNorm, before any update) agrees to 1e-4 relative (measured:
    ~5e-7 at this size; the script itself allows 1e-3 on CPU)."""
    result = results["train_resnet.py"]
    assert result["benchmark"] == "train_resnet"
    assert {
        "date",
        "device",
        "versions",
        "parameters",
        "goal",
        "jax_device",
        "torch",
        "xla_flags",
    } <= result.keys()
    assert resnet_params(10, 2) == 11_689_512 - 990 * 513  # ResNet-18 (torchvision: 1000 classes)
    assert result["param_count"] == resnet_params(10, 1)
    p = result["parameters"]
    assert (p["size"], p["batch"], p["blocks"], p["classes"], p["rounds"]) == (32, 4, 1, 10, 1)
    assert result["jax_device"]["platform"] == "cpu" and result["torch"]["device"] == "cpu"
    assert result["torch"]["threads"] == 1
    assert result["xla_flags"] == "--xla_backend_optimization_level=0"
    names = {"shapesafe", "flax", "torch"}
    for key in (
        "first_loss",
        "last_loss",
        "first_step_s",
        "images_per_s",
        "median_step_ms",
        "cpu_ms_per_step",
        "ratio_vs_flax",
        "ratio_vs_torch",
        "round_medians_ms",
        "ratio_vs_flax_per_round",
    ):
        assert set(result[key]) == names, key
    first = result["first_loss"]
    assert result["first_loss_agree"] is True
    assert max(first.values()) - min(first.values()) <= 1e-4 * abs(first["torch"])
    assert 1.0 < first["torch"] < 5.0  # about ln(10) for 10 classes at initialisation
    assert all(v > 0 for v in result["images_per_s"].values())
    assert result["ratio_vs_flax"]["flax"] == 1.0 and result["ratio_vs_torch"]["torch"] == 1.0
