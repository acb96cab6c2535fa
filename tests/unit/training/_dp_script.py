"""Train one MLP on scikit-learn's digits with and without a data-parallel mesh; print JSON.

Run by ``tests/unit/training/test_data_parallel.py`` in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must be set before JAX
starts, hence the subprocess). Both runs start from the same seed and see the same batches
(the last one short, so it is padded and masked); the JSON holds each run's per-step losses,
final eval accuracy and first-layer weights, the number of devices, and the shardings seen
inside the mesh run: of the parameters after a step and of the batches handed to the step.
A fourth run with ``--bad-batch-size`` (not a multiple of the device count) reports the error.
"""

import argparse
import json
import sys
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh
from jaxtyping import Array, Float32
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.callbacks import Callback


class Batches:
    """Re-iterable ``{"image", "label"}`` batches in a fixed order (the last one may be short)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int):
        self.x, self.y, self.size = x, y, size

    def __iter__(self) -> Any:
        for i in range(0, len(self.x), self.size):
            yield {"image": self.x[i : i + self.size], "label": self.y[i : i + self.size]}

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)


def describe(a: jax.Array) -> dict[str, Any]:
    """Where an array lives: its sharding's spec, devices, replication and shard shapes."""
    s = a.sharding
    spec = getattr(s, "spec", None)
    return {
        "spec": None if spec is None else [None if p is None else str(p) for p in spec],
        "devices": len(s.device_set),
        "replicated": bool(s.is_fully_replicated),
        "shard_shapes": sorted({tuple(sh.data.shape) for sh in a.addressable_shards}),
        "shape": list(a.shape),
    }


class Spy(Callback):
    """Records the shardings of the parameters and of the batches the engine is given."""

    def __init__(self) -> None:
        self.params: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.eval_batches: list[dict[str, Any]] = []

    def on_train_begin(self, run: Any) -> None:
        engine = run.engine
        train = engine.train

        def spy(mstates: Any, log: Any, batch: Any) -> Any:
            x, y, mask = batch[:3]
            if len(self.batches) < 2:
                self.batches.append(
                    {
                        k: describe(v) if isinstance(v, jax.Array) else {"host": True}
                        for k, v in (("x", x), ("y", y), ("mask", mask))
                    }
                )
            return train(mstates, log, batch)

        engine.train = spy
        evaluate = engine.evaluate

        def spy_eval(mstates: Any, x: Any, y: Any, mask: Any) -> Any:
            if not self.eval_batches:
                self.eval_batches.append(
                    describe(x) if isinstance(x, jax.Array) else {"host": True}
                )
            return evaluate(mstates, x, y, mask)

        engine.evaluate = spy_eval

    def on_step_end(self, run: Any, step: int, loss: float | None) -> None:
        if step == 1 or (step > 1 and not self.params and run.consistent):
            self.params = [describe(p) for p in jax.tree.leaves(run.engine.params)]


def digits() -> tuple[np.ndarray, ...]:
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1500], y[:1500], x[1500:], y[1500:]


def train(mesh: Mesh | None, batch_size: int, steps_per_call: int, epochs: int) -> dict[str, Any]:
    xtr, ytr, xte, yte = digits()
    net = L.Linear(64) >> L.ReLU() >> L.Linear(10)
    model = ss.build(net, Float32[Array, "batch 64"], seed=0)
    spy = Spy()
    history = ss.fit(
        model,
        Batches(xtr, ytr, batch_size),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1, momentum=0.9),
        epochs=epochs,
        eval_data=Batches(xte, yte, batch_size),
        metrics=[ss.metrics.accuracy],
        progress=False,
        steps_per_call=steps_per_call,
        mesh=mesh,
        callbacks=[spy],
    )
    kernel = np.asarray(model.layers[0].kernel[...])
    return {
        "steps": history.steps,
        "eval_accuracy": history["eval_accuracy"][-1],
        "eval_loss": history["eval_loss"][-1],
        "kernel": kernel.ravel().tolist(),
        "params": spy.params,
        "batches": spy.batches,
        "eval_batches": spy.eval_batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=64, help="a multiple of the device count")
    parser.add_argument("--bad-batch-size", type=int, default=30, help="not a multiple of it")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    jax.config.update(
        "jax_numpy_rank_promotion", "raise"
    )  # the test suite's settings (tests/conftest.py)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    mesh = Mesh(np.array(jax.devices()), ("data",))
    out: dict[str, Any] = {
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "examples": {"train": 1500, "eval": 297},
        "batch_size": args.batch_size,
    }
    out["single"] = train(None, args.batch_size, 1, args.epochs)
    out["mesh"] = train(mesh, args.batch_size, 1, args.epochs)
    out["mesh_scan"] = train(mesh, args.batch_size, 3, args.epochs)  # several steps per call
    try:
        train(mesh, args.bad_batch_size, 1, 1)
    except ss.ShapesafeError as e:
        out["error"] = {"type": type(e).__name__, "message": str(e)}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
