"""The benchmark scripts run end to end on tiny inputs and print the JSON they promise.

No timing is asserted: times on a shared machine are noise. What is asserted is the shape of
the result and the facts the figures rest on (same outputs, same parameter count, a build
that compiled no forward pass).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_benchmarks

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ENVIRONMENT_KEYS = {"benchmark", "date", "device", "versions", "parameters", "param_count"}
TINY = {
    "core_forward.py": [
        "--size",
        "16",
        "--batch",
        "2",
        "--rounds",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ],
    "build_cost.py": ["--size", "16", "--batch", "2", "--repeats", "1"],
}
# 16x16 -> conv 14x14x32 -> pool 7x7x32 = 1568 -> Linear(512) -> Linear(2)
TINY_PARAMS = (3 * 3 * 3 * 32 + 32) + (1568 * 512 + 512) + (512 * 2 + 2)


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    """Both scripts on tiny inputs, run at the same time (each in its own process)."""
    return run_benchmarks(TINY)


def check_environment(result: dict[str, Any]) -> None:
    assert ENVIRONMENT_KEYS <= result.keys()
    assert {"platform", "device_kind", "cpu_cores"} <= result["device"].keys()
    assert {"jax", "flax"} <= result["versions"].keys()


def test_core_forward_runs_and_outputs_agree(results: dict[str, dict[str, Any]]) -> None:
    result = results["core_forward.py"]
    check_environment(result)
    assert result["benchmark"] == "core_forward"
    assert result["parameters"] == {
        "size": 16,
        "batch": 2,
        "rounds": 2,
        "repeats": 2,
        "warmup": 1,
        "seed": 0,
        "peer_pool": "max_pool",
    }
    assert result["param_count"] == TINY_PARAMS
    assert result["outputs_agree"] is True
    assert result["max_abs_diff"] <= 1e-4
    assert result["flops_per_call"]["shapesafe"] == result["flops_per_call"]["flax"]
    for key in ("median_ms", "round_medians_ms", "cpu_median_ms", "compile_s"):
        assert set(result[key]) == {"shapesafe", "flax"}
    assert {"min", "p25", "median", "p75", "max"} == set(result["ratio_per_round"])
    assert result["ratio"] > 0 and result["cpu_ratio"] > 0


def test_build_cost_runs_and_build_computes_nothing(results: dict[str, dict[str, Any]]) -> None:
    result = results["build_cost.py"]
    check_environment(result)
    assert result["benchmark"] == "build_cost"
    assert result["param_count"] == TINY_PARAMS
    for key in (
        "build_s",
        "build_cpu_s",
        "build_peak_rss_increase_mib",
        "trace_s",
        "compile_s",
        "first_call_s",
        "first_use_s",
        "first_use_cpu_s",
    ):
        assert {"shapesafe", "flax", "ratio", "samples"} <= result[key].keys(), key
    no_flops = result["no_flops_at_build"]
    assert no_flops["build_ran_no_forward"] is True
    assert no_flops["forward_ops_in_build"] == []
    assert (
        "while" in no_flops["build_program_ops"] or "xor" in no_flops["build_program_ops"]
    )  # RNG is there


@pytest.mark.parametrize("script", list(TINY))
def test_help(
    script: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{script[:-3]}", BENCHMARKS / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--size" in text and "--repeats" in text


def test_data_wait_runs_and_reports_the_wait_share() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "data_wait.py"),
            "--size",
            "16",
            "--photos",
            "32",
            "--epochs",
            "2",
            "--passes",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    pipelines = {"decode_every_epoch", "cached", "in_memory"}
    shares = result["wait_share"]
    assert (
        set(shares)
        == set(result["epoch_ratio"])
        == set(result["first_epoch_wait_share"])
        == pipelines
    )
    assert all(0.0 <= v <= 1.0 for v in shares.values())
    assert all(len(epochs) == 2 for epochs in result["epochs"].values())


def test_data_pipeline_runs_and_reports_ratios_to_the_best_peer() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "data_pipeline.py"),
            "--images",
            "8",
            "--batch",
            "4",
            "--rounds",
            "2",
            "--only",
            "pillow_threads",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (
        set(result["images_per_s"])
        == set(result["cpu_ms_per_image"])
        == {"shapesafe", "pillow_threads"}
    )
    ratio = result["ratio_to_best_peer"]
    assert {
        "min",
        "p25",
        "median",
        "p75",
        "max",
        "per_round",
        "best_peer_per_round",
    } <= ratio.keys()
    assert len(ratio["per_round"]) == 2 and all(r > 0 for r in ratio["per_round"])
    assert result["scan_ms_per_image"] >= 0


def test_artifact_memory_runs_and_reads_back_the_same_weights() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "artifact_memory.py"), "--size", "16", "--inline"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    check_environment(result)
    assert result["param_count"] == TINY_PARAMS
    assert set(result["peak_rss_increase_mib"]) == {
        "shapesafe_save",
        "safetensors_save_file",
        "shapesafe_load",
        "safetensors_load_file",
        "safetensors_load_file_to_jax",
    }
    assert (
        result["loaded_equals_peer_file"] is True
        and result["artifact_file_equals_peer_file"] is True
    )
    assert result["weights_file_mib"] == pytest.approx(result["peer_file_mib"], abs=0.1)
