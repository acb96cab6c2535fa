"""The training benchmarks run end to end on tiny inputs and print the JSON they promise.

No timing is asserted (times on a shared machine are noise); what is asserted is the shape
of the result and the fact the figures rest on: every contender starts from the same weights,
so their first losses agree.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {
    "train_overhead.py": ["--rounds", "1", "--repeats", "2", "--warmup", "1"],
    "train_cnn.py": ["--size", "16", "--batch", "4", "--rounds", "1", "--repeats", "1", "--warmup", "0",
                     "--explore", "--threads", "1"],
}
# 16x16 -> conv 14x14x32 -> pool 7x7x32 = 1568 -> Linear(512) -> Linear(2)
TINY_CNN_PARAMS = (3 * 3 * 3 * 32 + 32) + (1568 * 512 + 512) + (512 * 2 + 2)
OVERHEAD = {"shapesafe", "pure_jax", "nnx_jit", "shapesafe_scan"}


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """Both scripts on tiny inputs, run at the same time (each in its own process)."""
    running = {script: subprocess.Popen([sys.executable, str(BENCHMARKS / script), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for script, args in TINY.items()}
    out = {}
    for script, process in running.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, f"{script} failed:\n{stderr[-3000:]}"
        out[script] = json.loads(stdout)
    return out


def test_train_overhead_reports_every_contender(results: dict[str, dict[str, Any]]) -> None:
    result = results["train_overhead.py"]
    assert result["benchmark"] == "train_overhead"
    assert {"date", "device", "versions", "parameters", "goal"} <= result.keys()
    assert result["parameters"]["batch"] == 32 and result["parameters"]["hidden"] == 128
    for key in ("us_per_step", "cpu_us_per_step", "round_medians_us_per_step", "ratio_vs_pure_jax",
                "cpu_ratio_vs_pure_jax", "ratio_vs_pure_jax_per_round", "first_call_s"):
        assert set(result[key]) == OVERHEAD, key
    assert all(v > 0 for v in result["us_per_step"].values())
    assert result["ratio_vs_pure_jax"]["pure_jax"] == 1.0


def test_train_cnn_contenders_start_from_the_same_loss(results: dict[str, dict[str, Any]]) -> None:
    result = results["train_cnn.py"]
    assert result["benchmark"] == "train_cnn"
    assert result["param_count"] == TINY_CNN_PARAMS
    assert result["parameters"]["size"] == 16 and result["parameters"]["explore"] is True
    names = {"shapesafe", "flax", "flax_reshape_pool", "jax_nchw", "torch", "torch_nchw"}
    for key in ("first_loss", "last_loss", "images_per_s", "median_step_ms", "cpu_ms_per_step",
                "ratio_vs_flax", "ratio_vs_torch", "round_medians_ms"):
        assert set(result[key]) == names, key
    first = result["first_loss"]
    assert max(first.values()) - min(first.values()) <= 1e-3 * max(1.0, abs(first["flax"]))
    assert result["ratio_vs_flax"]["flax"] == 1.0 and result["ratio_vs_torch"]["torch"] == 1.0
    assert result["torch_threads"] == 1
