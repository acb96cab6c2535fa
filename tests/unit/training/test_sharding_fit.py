"""Parameter sharding on 8 simulated CPU devices: ``build``/``fit`` with ``mesh=`` and ``sharding=``.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX starts, so the runs happen
in a subprocess (``tests/unit/training/_sharding_script.py``) that prints JSON; this file reads
it. The expected bytes per device are computed here by hand from the layer shapes.
"""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_on_devices

SCRIPT = Path(__file__).with_name("_sharding_script.py")
DEVICES = 8
F32 = 4

# The script's MLP on digits: 64 -> Linear(512) -> Linear(512) -> Linear(16)
MLP_KERNELS = 64 * 512 + 512 * 512 + 512 * 16
MLP_BIASES = 512 + 512 + 16
# The script's CNN on 8x8x1 digits: Conv2D(16, 3x3) -> MaxPool 2x2 (3x3x16 = 144) -> 64 -> 10
CONV_KERNEL, CONV_BIAS = 3 * 3 * 1 * 16, 16
CNN_KERNELS, CNN_BIASES = 144 * 64 + 64 * 10, 64 + 10
# The script's ResNet (models/resnet.py resnet_small(4, width=8) on 16x16x3): the stem's 3x3
# convolution to 8 channels, then stages of 8, 16 and 32 channels (two blocks of two 3x3
# convolutions each; the last two stages start with a 1x1 projection), a BatchNorm after every
# convolution, and a Linear(4) head on the 32 pooled features.
RESNET_CONVS = (
    3 * 3 * 3 * 8
    + 4 * (3 * 3 * 8 * 8)
    + (3 * 3 * 8 * 16 + 3 * (3 * 3 * 16 * 16) + 8 * 16)
    + (3 * 3 * 16 * 32 + 3 * (3 * 3 * 32 * 32) + 16 * 32)
)
RESNET_NORMS = 2 * (8 + 4 * 8 + 5 * 16 + 5 * 32)  # scale and bias of each BatchNorm
RESNET_HEAD_KERNEL, RESNET_HEAD_BIAS = 32 * 4, 4


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    out: dict[str, Any] = run_on_devices(SCRIPT, DEVICES, timeout=400)
    assert out["devices"] == DEVICES
    return out


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert len(a["steps"]) == len(b["steps"]) == 6
    np.testing.assert_allclose(a["steps"], b["steps"], rtol=1e-5, atol=1e-6)
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
    assert len(a["stats"]) == len(b["stats"])
    for sa, sb in zip(a["stats"], b["stats"], strict=True):  # BatchNorm's running statistics
        np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-6)
    assert a["steps"][-1] < a["steps"][0]  # it learned something


@pytest.mark.parametrize("run", ["fsdp_mlp", "grid_mlp", "grid_cnn", "grid_resnet"])
def test_sharded_training_matches_one_device(runs: dict[str, Any], run: str) -> None:
    single = runs["single_" + run.split("_")[1]]
    _same_run(runs[run], single)


def test_fsdp_holds_an_eighth_of_parameters_and_optimizer_state(runs: dict[str, Any]) -> None:
    whole = (MLP_KERNELS + MLP_BIASES) * F32
    one = (MLP_KERNELS // DEVICES + MLP_BIASES) * F32  # kernels split, biases (< 4096) kept whole
    fsdp, single = runs["fsdp_mlp"], runs["single_mlp"]
    assert single["param_bytes"] == [whole]
    assert fsdp["param_bytes"] == [one] * DEVICES
    assert fsdp["opt_bytes"] == [2 * one + 4] * DEVICES  # Adam's mu and nu, and its int32 count
    assert one / whole < 0.13
    assert fsdp["specs"]["['layers'][0]['kernel'].value"] == [None, "data"]  # 512 > 64
    assert fsdp["specs"]["['layers'][2]['kernel'].value"] == [
        "data"
    ]  # a tie: the first (JAX drops trailing Nones)
    assert fsdp["specs"]["['layers'][0]['bias'].value"] == []


def test_build_creates_parameters_already_sharded(runs: dict[str, Any]) -> None:
    one = (MLP_KERNELS // DEVICES + MLP_BIASES) * F32
    assert runs["fsdp_mlp"]["built"] == {
        "param_bytes": [one] * DEVICES,
        "first_kernel_spec": [None, "data"],
    }
    # the checkpoint runs build on one device, and fit places the model by the plan
    assert runs["checkpoints"]["saved"]["restored"]["param_bytes"] == [one] * DEVICES
    assert runs["checkpoints"]["saved"]["restored"]["opt_bytes"] == [2 * one + 4] * DEVICES


def test_model_axis_rules_on_a_4x2_mesh(runs: dict[str, Any]) -> None:
    mlp = runs["grid_mlp"]
    half = (MLP_KERNELS + MLP_BIASES) // 2 * F32  # every kernel and bias split over 'model'
    assert mlp["param_bytes"] == [half] * DEVICES
    assert mlp["opt_bytes"] == [2 * half + 4] * DEVICES
    assert set(map(tuple, mlp["specs"].values())) == {(None, "model"), ("model",)}
    cnn = runs["grid_cnn"]
    assert cnn["specs"]["['layers'][0]['kernel'].value"] == [None, None, None, "model"]
    assert cnn["specs"]["['layers'][4]['kernel'].value"] == ["model"]  # row-split
    one = (CONV_KERNEL // 2 + CONV_BIAS + CNN_KERNELS // 2 + CNN_BIASES) * F32
    assert cnn["param_bytes"] == [one] * DEVICES


def test_refusals_name_parameter_shape_axis_and_fix_before_compiling(
    runs: dict[str, Any],
) -> None:
    r = runs["refused"]
    assert {e["type"] for e in r.values()} == {"ShardingError"}
    assert [e["compiles"] for e in r.values()] == [0, 0, 0, 0]
    assert r["indivisible_build"]["message"] == (
        "parameter 2.Linear.kernel of shape (512, 10): the rule '2\\\\.Linear\\\\.kernel' -> "
        "(None, 'data') splits axis 1 (10) over the mesh axis 'data' of size 8, which does not "
        "divide 10. Use a mesh size that divides 10 (2, 5, 10), or keep axis 1 whole (None) in "
        "the rule."
    )
    assert r["indivisible_fit"]["message"] == (
        "parameter 2.Linear.kernel of shape (512, 10): the rule '.*kernel' -> (None, ('data', "
        "'model')) splits axis 1 (10) over the mesh axes 'data' x 'model' of size 8 (4 x 2), "
        "which does not divide 10. Use a mesh size that divides 10 (2, 5, 10), or keep axis 1 "
        "whole (None) in the rule."
    )
    assert r["unknown_axis"]["message"] == (
        "parameter 0.Linear.kernel of shape (64, 512): the rule '.*kernel' -> ('model', None) "
        "names the mesh axis 'model', but the mesh has axes {'data': 8}. Use one of those, or "
        "make the mesh with an axis named 'model'."
    )
    assert r["matches_nothing"]["message"] == (
        "the sharding rule 'Dense.*kernel' -> (None, 'model') matches no parameter (the regex "
        "must match a whole path). The parameters are: 0.Linear.bias, 0.Linear.kernel, "
        "2.Linear.bias, 2.Linear.kernel. Fix the regex (e.g. start it with '.*') or remove the "
        "rule."
    )


@pytest.mark.parametrize("run", ["fsdp", "grid"])
def test_summary_predicts_the_bytes_fit_measured(runs: dict[str, Any], run: str) -> None:
    rows = runs["summary"][run]["rows"]
    trained = runs[f"{run}_mlp"]
    whole = (MLP_KERNELS + MLP_BIASES) * F32
    assert rows["parameters"] == [trained["param_bytes"][0], whole]
    assert rows["gradients"] == rows["parameters"]
    assert rows["optimizer state"] == [trained["opt_bytes"][0], 2 * whole + 4]
    temp, _ = rows["temporaries"]
    assert isinstance(temp, int) and temp > 0  # XLA's own figure for the compiled step


def test_summary_shows_each_parameters_placement(runs: dict[str, Any]) -> None:
    text = runs["summary"]["fsdp"]["text"]
    assert text.splitlines()[0] == "mesh data=8"
    assert "0.Linear.kernel  (64, 512)   (None, 'data')  (64, 64)    fsdp" in text
    assert (
        "0.Linear.bias    (512,)      replicated      (512,)      replicated (under min_size=4096)"
        in text
    )
    grid = runs["summary"]["grid"]["text"]
    assert grid.splitlines()[0] == "mesh data=4 x model=2"
    assert (
        "2.Linear.kernel  (512, 512)  (None, 'model')  (512, 256)  rule '.*Linear\\\\.kernel'"
        in grid
    )


def test_sharded_checkpoints_restore_bitwise_onto_fewer_devices_and_back(
    runs: dict[str, Any],
) -> None:
    c = runs["checkpoints"]
    one = (MLP_KERNELS // DEVICES + MLP_BIASES) * F32
    assert c["saved"]["restored"]["step"] == 0 and len(c["saved"]["steps"]) == 6
    for name, devices in (("four", 4), ("one", 1)):
        r = c[name]["restored"]
        assert r["step"] == 6, name  # resumed after epoch 1
        assert r["weights"] == c["saved"]["weights"], name  # bitwise
        assert len(r["param_bytes"]) == devices, name
        if devices == 4:
            assert r["param_bytes"] == [(MLP_KERNELS // 4 + MLP_BIASES) * F32] * 4
        # epoch 2 on fewer devices continues the 8-device run
        np.testing.assert_allclose(
            c[name]["weights"][1], c["straight"]["weights"][1], rtol=1e-4, atol=1e-6
        )
        # the history came back with the checkpoint: 6 steps of epoch 1, then 6 of epoch 2
        np.testing.assert_allclose(c[name]["steps"], c["straight"]["steps"], rtol=1e-5, atol=1e-6)
    back = c["back"]["restored"]
    assert back["step"] == 12 and back["weights"] == c["four"]["weights"]
    assert back["param_bytes"] == [one] * DEVICES
    assert c["back"]["steps"] == c["four"]["steps"]  # nothing left to train: the history as saved


def test_model_axis_rules_split_the_resnet_on_a_4x2_mesh(runs: dict[str, Any]) -> None:
    r, single = runs["grid_resnet"], runs["single_resnet"]
    specs = r["specs"]
    convs = [p for p in specs if p.endswith("['kernel'].value") and len(specs[p]) == 4]
    assert len(convs) == 1 + 4 + 5 + 5  # the stem, 4 + 4 block convolutions, 2 projections
    assert {tuple(specs[p]) for p in convs} == {(None, None, None, "model")}
    head = "['layers'][8]"
    norms = [p for p in specs if p.endswith(("['scale'].value", "['bias'].value"))]
    norms = [p for p in norms if not p.startswith(head)]
    assert len(norms) == 2 * 15 and {tuple(specs[p]) for p in norms} == {("model",)}
    assert specs[f"{head}['kernel'].value"] == ["model"]  # the head, row-split
    assert specs[f"{head}['bias'].value"] == []  # no rule: replicated
    # 15 BatchNorms' means and variances, moved away from their start (0 and 1) by training
    assert len(r["stats"]) == 2 * 15
    assert any(v not in (0.0, 1.0) for stat in r["stats"] for v in stat)
    whole = (RESNET_CONVS + RESNET_NORMS + RESNET_HEAD_KERNEL + RESNET_HEAD_BIAS) * F32
    half = ((RESNET_CONVS + RESNET_NORMS + RESNET_HEAD_KERNEL) // 2 + RESNET_HEAD_BIAS) * F32
    assert single["param_bytes"] == [whole]
    assert r["param_bytes"] == [half] * DEVICES
    assert r["opt_bytes"] == [half] * DEVICES  # SGD's momentum, placed like the parameters
