"""Parameter sharding on 8 simulated CPU devices: FSDP, a 4 x 2 data x model mesh (an MLP, a
CNN and the zoo's small ResNet), refusals.

Run by ``tests/unit/training/test_sharding_fit.py`` in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (read once, when JAX starts). Every run
trains on the same fixed batches (digits; generated photos for the ResNet) from the same seed;
the JSON holds each run's per-step losses, final weights and BatchNorm statistics, the bytes
each device holds of the parameters and of the optimizer state (summed over
``addressable_shards``), every parameter's ``PartitionSpec``, and, for the refused plans, the
error's type and message and how many XLA compilations happened meanwhile.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jaxtyping import Array, Float32
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import resnet

COMPILES: list[str] = []


def _count(event: str, *args: Any, **kwargs: Any) -> None:
    if "backend_compile" in event:
        COMPILES.append(event)


jax.monitoring.register_event_duration_secs_listener(_count)


def digits(n: int = 384) -> tuple[np.ndarray, np.ndarray]:
    d: Any = load_digits()
    order = np.random.default_rng(0).permutation(len(d.data))[:n]
    return (d.data[order] / 16.0).astype(np.float32), d.target[order].astype(np.int32)


def batches(images: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    x, y = digits()
    if images:
        x = x.reshape(-1, 8, 8, 1)
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]  # 6 full batches


MLP = L.Linear(512) >> L.ReLU() >> L.Linear(512) >> L.ReLU() >> L.Linear(16)
CNN = (
    L.Conv2D(16, (3, 3))
    >> L.ReLU()
    >> L.MaxPool((2, 2))
    >> L.Flatten()
    >> L.Linear(64)
    >> L.ReLU()
    >> L.Linear(10)
)
MLP_SPEC, CNN_SPEC = Float32[Array, "batch 64"], Float32[Array, "batch 8 8 1"]
RESNET = resnet.resnet_small(4, width=8, size=16)  # uint8 16x16x3 photos, 4 classes


def squares(n: int = 96, size: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Noise photos with a bright square in one of 4 quadrants (the class), in 6 batches of 16."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n).astype(np.int32)
    x = rng.integers(0, 64, (n, size, size, 3)).astype(np.uint8)
    h = size // 2
    for i, c in enumerate(y):
        row, col = divmod(int(c), 2)
        x[i, row * h : (row + 1) * h, col * h : (col + 1) * h] += 128
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, n, 16)]


def spec_of(a: jax.Array) -> list[Any]:
    spec = getattr(a.sharding, "spec", ())
    return [None if e is None else e if isinstance(e, str) else list(e) for e in spec]


def per_device(tree: Any) -> list[int]:
    out: dict[int, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            out[shard.device.id] = out.get(shard.device.id, 0) + int(shard.data.nbytes)
    return [out[k] for k in sorted(out)]


class Probe(ss.callbacks.Callback):
    """After the first step: where the parameters and the optimizer state live."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_step_end(self, run: Any, step: int, loss: float | None) -> None:
        if step == 1:
            e = run.engine
            self.seen = {
                "param_bytes": per_device(e.params),
                "opt_bytes": per_device(e.opt_state),
                "specs": {
                    jax.tree_util.keystr(kp): spec_of(v)
                    for kp, v in jax.tree_util.tree_flatten_with_path(e.params)[0]
                },
            }


def train(
    net: Any,
    spec: Any,
    data: list[Any],
    mesh: Mesh | None,
    sharding: Any,
    *,
    at_build: bool,
    optimizer: Any = None,
) -> dict[str, Any]:
    model = ss.build(
        net,
        spec,
        seed=0,
        mesh=mesh if at_build else None,
        sharding=sharding if at_build else None,
    )
    first: Any = model.layers[0]
    built = {
        "param_bytes": per_device(nnx.state(model, nnx.Param)),
        "first_kernel_spec": spec_of(first.kernel[...]) if hasattr(first, "kernel") else None,
    }
    probe = Probe()
    history = ss.fit(
        model,
        data,
        loss=ss.losses.cross_entropy,
        optimizer=optimizer or optax.adam(1e-3),
        epochs=1,
        progress=False,
        mesh=mesh,
        sharding=sharding if mesh is not None else None,
        callbacks=[probe],
    )
    return {
        "steps": history.steps,
        "weights": [
            np.asarray(w).ravel().tolist() for w in jax.tree.leaves(nnx.state(model, nnx.Param))
        ],
        "stats": [  # BatchNorm's running means and variances
            np.asarray(w).ravel().tolist() for w in jax.tree.leaves(nnx.state(model, nnx.BatchStat))
        ],
        "built": built,
        **probe.seen,
    }


class Restored(ss.callbacks.Callback):
    """Right after the checkpoint callback (listed before it) resumed: the state and its placement."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def on_train_begin(self, run: Any) -> None:
        params = run.engine.params
        self.seen = {
            "step": run.step,
            "weights": [np.asarray(w).ravel().tolist() for w in jax.tree.leaves(params)],
            "param_bytes": per_device(params),
            "opt_bytes": per_device(run.engine.opt_state),
        }


def resume(directory: str, mesh: Mesh | None, epochs: int) -> dict[str, Any]:
    """FSDP training on ``mesh`` (one device when ``None``) that resumes from ``directory``."""
    model = ss.build(MLP, MLP_SPEC, seed=0)
    restored = Restored()
    history = ss.fit(
        model,
        batches(),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-3),
        epochs=epochs,
        progress=False,
        mesh=mesh,
        sharding="fsdp" if mesh is not None else None,
        callbacks=[ss.callbacks.Checkpoint(directory), restored],
    )
    weights = [np.asarray(w).ravel().tolist() for w in jax.tree.leaves(nnx.state(model, nnx.Param))]
    return {"restored": restored.seen, "steps": history.steps, "weights": weights}


def checkpoints(line: Mesh) -> dict[str, Any]:
    """Save under FSDP on 8 devices; resume on 4 and on 1; and back from 4 onto 8."""
    four = Mesh(np.array(jax.devices()[:4]), ("data",))
    root = Path(tempfile.mkdtemp())
    try:
        out = {"straight": resume(str(root / "straight"), line, 2)}
        out["saved"] = resume(str(root / "eight"), line, 1)
        for name in ("four", "one"):
            shutil.copytree(root / "eight", root / name)
        out["four"] = resume(str(root / "four"), four, 2)
        out["one"] = resume(str(root / "one"), None, 2)
        out["back"] = resume(str(root / "four"), line, 2)  # the epoch-2 checkpoint of 4 devices
        return out
    finally:
        shutil.rmtree(root)


def refused(fn: Any) -> dict[str, Any]:
    before = len(COMPILES)
    try:
        fn()
    except ss.ShapesafeError as e:
        return {"type": type(e).__name__, "message": str(e), "compiles": len(COMPILES) - before}
    return {"type": None}


def main() -> None:
    jax.config.update("jax_numpy_rank_promotion", "raise")  # the suite's settings
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    devices = np.array(jax.devices())
    line = Mesh(devices, ("data",))
    grid = jax.make_mesh((4, 2), ("data", "model"))  # Explicit axes by default in JAX 0.10
    mlp_rules = {r".*Linear\.kernel": (None, "model"), r".*Linear\.bias": ("model",)}
    cnn_rules = {r".*Conv2D\.kernel": (None, None, None, "model"), r".*\.kernel": ("model", None)}
    mlp, cnn = batches(), batches(images=True)
    out: dict[str, Any] = {"devices": jax.device_count()}
    out["single_mlp"] = train(MLP, MLP_SPEC, mlp, None, None, at_build=False)
    out["fsdp_mlp"] = train(MLP, MLP_SPEC, mlp, line, "fsdp", at_build=True)
    out["grid_mlp"] = train(MLP, MLP_SPEC, mlp, grid, mlp_rules, at_build=True)
    out["single_cnn"] = train(CNN, CNN_SPEC, cnn, None, None, at_build=False)
    out["grid_cnn"] = train(CNN, CNN_SPEC, cnn, grid, cnn_rules, at_build=True)
    # The ResNet: every convolution split along its output channels and every BatchNorm's scale
    # and bias with them, the head's kernel along its input rows; SGD with momentum (Adam's
    # normalised update would turn float noise in near-zero gradients into full-size steps).
    resnet_rules = {
        r".*Conv2D\.kernel": (None, None, None, "model"),
        r".*BatchNorm\.(scale|bias)": ("model",),
        r".*Linear\.kernel": ("model", None),
    }
    sgd = optax.sgd(0.05, momentum=0.9)
    photos = squares()
    out["single_resnet"] = train(*RESNET, photos, None, None, at_build=False, optimizer=sgd)
    out["grid_resnet"] = train(*RESNET, photos, grid, resnet_rules, at_build=True, optimizer=sgd)

    out["checkpoints"] = checkpoints(line)
    planned = ss.build(MLP, MLP_SPEC, seed=0)
    example = (jax.ShapeDtypeStruct((64, 64), np.float32), jax.ShapeDtypeStruct((64,), np.int32))
    out["summary"] = {}
    for name, mesh, plan in [("fsdp", line, "fsdp"), ("grid", grid, mlp_rules)]:
        memory = ss.summary(
            planned,
            mesh=mesh,
            sharding=plan,
            optimizer=optax.adam(1e-3),
            loss=ss.losses.cross_entropy,
            batch=example,
        ).memory
        assert memory is not None
        out["summary"][name] = {"rows": memory.rows, "text": str(memory)}

    small = L.Linear(512) >> L.ReLU() >> L.Linear(10)
    unsharded = ss.build(small, MLP_SPEC)
    out["refused"] = {
        "indivisible_build": refused(
            lambda: ss.build(
                small, MLP_SPEC, mesh=line, sharding={r"2\.Linear\.kernel": (None, "data")}
            )
        ),
        "indivisible_fit": refused(
            lambda: ss.fit(
                unsharded,
                mlp,
                loss=ss.losses.cross_entropy,
                optimizer=optax.sgd(0.1),
                epochs=1,
                progress=False,
                mesh=grid,
                sharding={r".*kernel": (None, ("data", "model"))},
            )
        ),
        "unknown_axis": refused(
            lambda: ss.build(small, MLP_SPEC, mesh=line, sharding={r".*kernel": ("model", None)})
        ),
        "matches_nothing": refused(
            lambda: ss.build(
                small, MLP_SPEC, mesh=grid, sharding={r"Dense.*kernel": (None, "model")}
            )
        ),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
