"""Train a small MLP on scikit-learn's digits with checkpoints; used by the kill-and-resume test.

Run as ``python tests/unit/persist/_train_script.py --checkpoint-dir D --epochs E --out final.npz``. Each
epoch visits the training set in a deterministic order of its own (a permutation seeded by
the epoch), with SGD + momentum, Dropout (``--dropout``) and BatchNorm (``--batch-norm``), saving a checkpoint every
``--checkpoint-every`` steps. At the end it writes the final parameters to ``--out`` and,
beside it (``<out>.json``), which steps this process ran and the history, so a test can
tell a resumed run from one that started over. ``--slow S`` sleeps S seconds after each
step (never touching the numbers) so a test has time to kill the process mid-epoch.
``--fsdp`` trains under ``sharding="fsdp"`` on a ``data`` mesh of every device (run it with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``); the report then also holds the bytes
each device holds of every parameter and of the optimizer state (summed over
``addressable_shards``) when training began (after any resume) and at the end.
"""

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.callbacks import Callback


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (1797 images of 8x8), read from the file the package ships, which
    skips importing scikit-learn (a second or more per process); ``load_digits`` otherwise."""
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1]
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return np.asarray(x), np.asarray(y)


class DigitsBatches:
    """Batches ``{"image", "label"}`` of the digits; ``epoch(e)`` visits them in epoch ``e``'s order."""

    def __init__(self, batch_size: int, seed: int):
        x, y = _digits()
        self.x, self.y = (x / 16.0).astype(np.float32), y.astype(np.int32)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def epoch(self, e: int) -> Any:
        order = np.random.default_rng([self.seed, e]).permutation(len(self.x))
        for i in range(0, len(order), self.batch_size):
            take = order[i : i + self.batch_size]
            yield {"image": self.x[take], "label": self.y[take]}

    def __iter__(self) -> Any:
        return self.epoch(1)


def _bytes_per_device(leaf: Any) -> list[int]:
    out: dict[int, int] = {}
    for shard in leaf.addressable_shards:
        out[shard.device.id] = out.get(shard.device.id, 0) + int(shard.data.nbytes)
    return [out[k] for k in sorted(out)]


def _placement(params: Any, opt_state: Any) -> dict[str, Any]:
    """``{"params": {path: [bytes on each device]}, "opt_state": [bytes on each device]}``."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    opt = [_bytes_per_device(leaf) for leaf in jax.tree.leaves(opt_state)]
    return {
        "params": {jax.tree_util.keystr(kp): _bytes_per_device(leaf) for kp, leaf in flat},
        "opt_state": [sum(col) for col in zip(*opt, strict=True)],
    }


class Trace(Callback):
    """Counts the steps this process ran (the first one tells whether it resumed), slows them
    down, and notes where the state lives when the first epoch of this process begins (after
    ``fit``'s checkpoint callback resumed, which happens in ``on_train_begin``)."""

    def __init__(self, slow: float):
        self.slow, self.steps = slow, 0
        self.first_step: int | None = None
        self.began: dict[str, Any] | None = None

    def on_epoch_begin(self, run: Any, epoch: int) -> None:
        if self.began is None:
            self.began = {"step": run.step, **_placement(run.engine.params, run.engine.opt_state)}

    def on_step_end(self, run: Any, step: int, loss: float | None) -> None:
        self.steps += 1
        if self.first_step is None:
            self.first_step = step
        if self.slow:
            time.sleep(self.slow)


def _is_key(leaf: Any) -> bool:
    return bool(jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout rate (0: none)")
    parser.add_argument(
        "--batch-norm", action="store_true", help="add a BatchNorm after the first layer"
    )
    parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    parser.add_argument("--fsdp", action="store_true", help='sharding="fsdp" on every device')
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # the settings the test suite runs under (tests/conftest.py)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")

    norm = L.BatchNorm() if args.batch_norm else L.Sequential()
    drop = L.Dropout(args.dropout) if args.dropout else L.Sequential()
    net = L.Linear(args.hidden) >> norm >> L.ReLU() >> drop >> L.Linear(10)
    model = ss.build(net, Float32[Array, "batch 64"], seed=args.seed)
    trace = Trace(args.slow)
    data = DigitsBatches(args.batch_size, args.seed)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",)) if args.fsdp else None
    history = ss.fit(
        model,
        data,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.05, momentum=0.9),
        epochs=args.epochs,
        callbacks=[trace],
        progress=False,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        mesh=mesh,
        sharding="fsdp" if args.fsdp else None,
    )

    flat = jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]
    arrays = {
        jax.tree_util.keystr(path): np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        for path, leaf in flat
    }  # parameters, batch statistics, RNG state
    out = Path(args.out)
    np.savez(out, **arrays)  # type: ignore[arg-type]
    report = {
        "steps_run": trace.steps,
        "first_step": trace.first_step,
        "steps_per_epoch": len(data),
        "history_steps": history.steps,
        "epochs": [{k: v for k, v in e.items() if k != "time"} for e in history.epochs],
        "devices": jax.device_count(),
        "began": trace.began,
        "ended": _placement(nnx.state(model, nnx.Param), ()),
    }
    out.with_suffix(".json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
