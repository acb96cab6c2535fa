"""Data parallelism: ``fit(..., mesh=...)`` on 4 simulated CPU devices matches one device.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX starts, so the runs happen
in a subprocess (``tests/unit/training/_dp_script.py``) that prints JSON; this file reads it.
"""

from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import pytest
from conftest import run_on_devices
from jax.sharding import Mesh
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

SCRIPT = Path(__file__).with_name("_dp_script.py")
DEVICES = 4


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    result: dict[str, Any] = run_on_devices(SCRIPT, DEVICES, timeout=300)
    return result


def test_four_devices_were_used(runs: dict[str, Any]) -> None:
    assert runs["platform"] == "cpu"
    assert runs["devices"] == DEVICES


@pytest.mark.parametrize(
    "run", ["mesh", "mesh_scan"], ids=["one-step-per-call", "three-steps-per-call"]
)
def test_loss_trajectory_matches_one_device(runs: dict[str, Any], run: str) -> None:
    single, sharded = runs["single"], runs[run]
    # 1500 examples in batches of 64: 23 full batches and a short one of 28, for 2 epochs
    assert len(single["steps"]) == len(sharded["steps"]) == 2 * 24
    np.testing.assert_allclose(sharded["steps"], single["steps"], rtol=1e-4)
    np.testing.assert_allclose(sharded["kernel"], single["kernel"], rtol=1e-4, atol=1e-5)
    assert sharded["eval_accuracy"] == pytest.approx(single["eval_accuracy"], abs=1 / 297 + 1e-9)
    assert sharded["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-4)
    assert single["steps"][-1] < single["steps"][0]  # it learned something
    assert single["eval_accuracy"] > 0.8


@pytest.mark.parametrize(
    "run", ["mesh", "mesh_scan"], ids=["one-step-per-call", "three-steps-per-call"]
)
def test_parameters_are_replicated_and_batches_sharded(runs: dict[str, Any], run: str) -> None:
    sharded = runs[run]
    assert sharded["params"], "no parameters were recorded"
    for p in sharded["params"]:
        assert p["replicated"] and p["devices"] == DEVICES, p
        assert p["shard_shapes"] == [p["shape"]], p  # every device holds the whole array
    steps = 1 if run == "mesh" else 3
    for batch in sharded["batches"]:
        x, y, mask = batch["x"], batch["y"], batch["mask"]
        lead = [None] * (steps > 1)  # a scan's stacked batches: the step axis is not split
        assert x["spec"] == [*lead, "data"] and y["spec"] == mask["spec"] == [*lead, "data"], batch
        assert not x["replicated"] and x["devices"] == DEVICES
        assert x["shard_shapes"] == [[steps, 16, 64][-len(x["shape"]) :]], (
            x
        )  # 64 examples / 4 devices
        assert y["shard_shapes"] == mask["shard_shapes"] == [[steps, 16][-len(y["shape"]) :]], y
    (ev,) = sharded["eval_batches"]
    assert ev["spec"] == ["data"] and ev["shard_shapes"] == [[16, 64]], ev


def test_single_device_run_keeps_host_batches(runs: dict[str, Any]) -> None:
    """Without a mesh nothing is placed by hand: the jitted step receives NumPy batches."""
    assert all(b["x"] == {"host": True} for b in runs["single"]["batches"])


def test_batch_size_not_divisible_by_the_devices_is_a_clear_error(runs: dict[str, Any]) -> None:
    error = runs["error"]
    assert error["type"] == "ShapesafeError"
    assert error["message"] == (
        "a batch of 30 cannot be split over 4 devices; use a batch size that is a "
        "multiple of 4 (e.g. 32)."
    )


def test_mesh_without_a_data_axis_is_refused() -> None:
    model = ss.build(L.Linear(10), Float32[Array, "batch 64"], seed=0)
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    data = [(np.zeros((4, 64), np.float32), np.zeros((4,), np.int32))]
    with pytest.raises(
        ValueError, match=r"the mesh needs an axis named 'data'; it has \('batch',\)"
    ):
        ss.fit(
            model,
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
            mesh=mesh,
        )
