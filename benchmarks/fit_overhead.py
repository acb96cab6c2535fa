"""What a user feels around the step on a small model: ``ss.fit`` through the public API vs
a hand-written pure JAX + optax loop and Keras 3 (JAX backend) in the same run.

scikit-learn's digits (1,797 images of 8x8, scaled to 0..1), an MLP 64 -> 128 -> 10, batches
of 32, Adam(1e-3), cross-entropy. Every contender is called as its user calls it:

(a) ``repeat``: the same ``fit`` call (same model, loss, optimizer, data) made again, one
    epoch of ``from_arrays(...).shuffle(seed=0).batch(32)``: seconds per call after the first,
    beside the pure JAX loop's epoch over the same batches (its step jitted once per process)
    and Keras' ``model.fit(x, y, epochs=1, batch_size=32)`` (compiled once per model);
(b) ``fit10``: 10 epochs of ``fit`` on that pipeline vs the pure JAX loop over the same
    arrays, sliced with a permutation per epoch (a second call, each compiled already, and the
    first, compilation included);
(c) ``pipeline``: iterating the pipeline once, microseconds per batch, vs slicing the arrays
    with a permutation, and as a fraction of the pure JAX step;
(d) ``per_step``: ``fit`` over a list of 200 NumPy ``(x, y)`` batches, microseconds per step,
    with ``steps_per_call`` 1, 10 and 200, vs the pure JAX step over the same NumPy batches and
    Keras with ``steps_per_execution`` 1 and 32; the same 200 batches read one by one (an
    iterable that is not a list, as from files: the host path); and the marginal cost of a
    step (``fit`` over those batches twice, 400 steps, less ``fit`` over 200, per 200 steps,
    beside pure JAX's own), which leaves out ``fit``'s fixed cost per call, (a)'s subject.

Rounds alternate the contenders; figures are medians over rounds, ratios medians of each
round's ratio (the machine's speed drifts between rounds). Prints one JSON object.

    python benchmarks/fit_overhead.py
    python benchmarks/fit_overhead.py --rounds 2   # quicker
"""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import _common as common
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float32
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import from_arrays

BATCH, HIDDEN, CLASSES = 32, 128, 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=200, help="batches for (d) (default 200)")
    parser.add_argument("--no-keras", action="store_true", help="leave Keras out")
    return parser.parse_args(argv)


def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.data / 16).astype(np.float32), d.target.astype(np.int32)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


# -- shapesafe, through the public API -------------------------------------------------------
class Shapesafe:
    def __init__(self, x: np.ndarray, y: np.ndarray):
        net = L.Linear(HIDDEN) >> L.ReLU() >> L.Linear(CLASSES)
        self.model = ss.build(net, Float32[Array, "batch 64"], seed=0)
        self.tx = optax.adam(1e-3)
        self.ds = from_arrays({"x": x, "label": y}).shuffle(seed=0).batch(BATCH)

    def fit(self, data: Any, epochs: int = 1, steps_per_call: int = 1) -> Any:
        return ss.fit(
            self.model,
            data,
            loss=ss.losses.cross_entropy,
            optimizer=self.tx,
            epochs=epochs,
            steps_per_call=steps_per_call,
            progress=False,
        )

    def iterate(self) -> int:
        n = 0
        for _ in self.ds:
            n += 1
        return n


# -- the floor: a hand-written jax.jit + optax step -------------------------------------------
class PureJax:
    def __init__(self, seed: int = 0):
        k1, k2 = jax.random.split(jax.random.key(seed))
        self.params = {
            "w1": jax.random.normal(k1, (64, HIDDEN)) * 64**-0.5,
            "b1": jnp.zeros((HIDDEN,)),
            "w2": jax.random.normal(k2, (HIDDEN, CLASSES)) * HIDDEN**-0.5,
            "b2": jnp.zeros((CLASSES,)),
        }
        self.tx = optax.adam(1e-3)
        self.opt = self.tx.init(self.params)
        tx = self.tx

        def loss_fn(p: Any, x: jax.Array, y: jax.Array) -> jax.Array:
            h = jax.nn.relu(x @ p["w1"] + p["b1"])
            return optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], y).mean()

        @partial(jax.jit, donate_argnums=(0, 1))
        def step(p: Any, o: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
            value, grads = jax.value_and_grad(loss_fn)(p, x, y)
            updates, o = tx.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

        self.step = step

    def run(self, batches: Any) -> Any:
        value = None
        for x, y in batches:
            self.params, self.opt, value = self.step(self.params, self.opt, x, y)
        return value


class Reader:
    """Batches read one by one, as from files: an iterable that is not a list, which ``fit``
    reads, checks and copies batch by batch (the host path)."""

    def __init__(self, batches: list[Any]):
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)


def permuted(x: np.ndarray, y: np.ndarray, epoch: int) -> Any:
    """Full batches of a seeded permutation (the pure JAX user's pipeline)."""
    perm = np.random.default_rng([0, epoch]).permutation(len(x))
    for i in range(len(x) // BATCH):
        idx = perm[i * BATCH : (i + 1) * BATCH]
        yield x[idx], y[idx]


# -- Keras 3 on the JAX backend ---------------------------------------------------------------
def keras_model(steps_per_execution: int) -> Any:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(HIDDEN, activation="relu"),
            keras.layers.Dense(CLASSES),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
        jit_compile=True,
    )
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    use_keras = not args.no_keras
    if use_keras:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        try:
            import keras

            use_keras = keras.backend.backend() == "jax"
        except ImportError:
            use_keras = False
    x, y = digits()
    rng = np.random.default_rng(1)
    lists = [
        (
            rng.normal(size=(BATCH, 64)).astype(np.float32),
            rng.integers(0, CLASSES, BATCH).astype(np.int32),
        )
        for _ in range(args.steps)
    ]
    xs, ys = np.concatenate([a for a, _ in lists]), np.concatenate([b for _, b in lists])
    twice, reader = lists + lists, Reader(lists)

    first: dict[str, float] = {}
    s, p = Shapesafe(x, y), PureJax()
    first["shapesafe_fit_1_epoch"] = timed(lambda: s.fit(s.ds))
    first["pure_jax_1_epoch"] = timed(lambda: p.run(permuted(x, y, 0)))
    s10, p10 = Shapesafe(x, y), PureJax()
    first["shapesafe_fit_10_epochs"] = timed(lambda: s10.fit(s10.ds, epochs=10))
    first["pure_jax_10_epochs"] = timed(lambda: [p10.run(permuted(x, y, e)) for e in range(10)])
    spc = {k: Shapesafe(x, y) for k in (1, 10, 200)}
    for k, m in spc.items():
        first[f"shapesafe_list_spc{k}"] = timed(lambda m=m, k=k: m.fit(lists, steps_per_call=k))
    host = Shapesafe(x, y)
    first["shapesafe_reader_spc1"] = timed(lambda: host.fit(reader))
    pl = PureJax()
    first["pure_jax_list"] = timed(lambda: pl.run(lists))
    first["pure_jax_twice"] = timed(lambda: pl.run(twice))
    timed(lambda: spc[1].fit(twice))
    km: dict[int, Any] = {}
    kr: Any = None
    if use_keras:
        for k in (1, 32):
            km[k] = keras_model(k)
            first[f"keras_list_spe{k}"] = timed(
                lambda k=k: km[k].fit(xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            )
        kr = keras_model(1)
        first["keras_1_epoch"] = timed(
            lambda: kr.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
        )

    fns: dict[str, Callable[[], Any]] = {
        "repeat_shapesafe": lambda: s.fit(s.ds),
        "repeat_pure_jax": lambda: p.run(permuted(x, y, 0)),
        "fit10_shapesafe": lambda: s10.fit(s10.ds, epochs=10),
        "fit10_pure_jax": lambda: [p10.run(permuted(x, y, e)) for e in range(10)],
        "pipeline_shapesafe": s.iterate,
        "pipeline_permutation": lambda: sum(1 for _ in permuted(x, y, 0)),
        "list_pure_jax": lambda: pl.run(lists),
        "twice_pure_jax": lambda: pl.run(twice),
        "twice_shapesafe_spc1": lambda: spc[1].fit(twice),
        "reader_shapesafe_spc1": lambda: host.fit(reader),
        **{
            f"list_shapesafe_spc{k}": (lambda m=m, k=k: m.fit(lists, steps_per_call=k))
            for k, m in spc.items()
        },
    }
    if use_keras:
        fns["repeat_keras"] = lambda: kr.fit(
            x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0
        )
        for k in km:
            fns[f"list_keras_spe{k}"] = lambda k=k: km[k].fit(
                xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose=0
            )
    times: dict[str, list[float]] = {n: [] for n in fns}
    names = list(fns)
    for r in range(args.rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            times[n].append(timed(fns[n]))
    med = {n: statistics.median(v) for n, v in times.items()}

    def ratio(a: str, b: str) -> float:  # the median of the rounds' ratios
        return statistics.median(u / v for u, v in zip(times[a], times[b], strict=True))

    marginal = [
        (t2 - t1) / (p2 - p1)
        for t1, t2, p1, p2 in zip(
            times["list_shapesafe_spc1"],
            times["twice_shapesafe_spc1"],
            times["list_pure_jax"],
            times["twice_pure_jax"],
            strict=True,
        )
    ]
    batches_per_epoch = len(s.ds)
    full_batches = len(x) // BATCH
    step_us = med["list_pure_jax"] / args.steps * 1e6
    per_step = {
        n.removeprefix("list_"): med[n] / args.steps * 1e6 for n in med if n.startswith("list_")
    }
    per_step["reader_shapesafe_spc1"] = med["reader_shapesafe_spc1"] / args.steps * 1e6
    result = {
        "benchmark": "fit_overhead",
        **common.environment(),
        "parameters": {
            "rounds": args.rounds,
            "batch": BATCH,
            "model": "MLP 64-128-10",
            "data": "sklearn digits",
            "steps": args.steps,
            "keras": use_keras,
        },
        "first_call_s": first,
        "a_repeat_fit_s": {
            "shapesafe": med["repeat_shapesafe"],
            "pure_jax": med["repeat_pure_jax"],
            **({"keras": med["repeat_keras"]} if use_keras else {}),
            "shapesafe_fixed_cost_s": med["repeat_shapesafe"]
            - med["repeat_pure_jax"] * batches_per_epoch / full_batches,
            "ratio_vs_pure_jax": med["repeat_shapesafe"] / med["repeat_pure_jax"],
        },
        "b_fit_10_epochs_s": {
            "shapesafe": med["fit10_shapesafe"],
            "pure_jax": med["fit10_pure_jax"],
            "ratio": med["fit10_shapesafe"] / med["fit10_pure_jax"],
            "ratio_first_calls": first["shapesafe_fit_10_epochs"] / first["pure_jax_10_epochs"],
        },
        "c_pipeline_us_per_batch": {
            "shapesafe": med["pipeline_shapesafe"] / batches_per_epoch * 1e6,
            "permutation_slicing": med["pipeline_permutation"] / full_batches * 1e6,
            "fraction_of_pure_jax_step": med["pipeline_shapesafe"]
            / batches_per_epoch
            * 1e6
            / step_us,
        },
        "d_per_step_us": per_step,
        "d_ratio_vs_pure_jax": {
            n: ratio(n if n.startswith("reader") else f"list_{n}", "list_pure_jax")
            for n in per_step
        },
        "d_marginal_step": {
            "shapesafe_us": (med["twice_shapesafe_spc1"] - med["list_shapesafe_spc1"])
            / args.steps
            * 1e6,
            "pure_jax_us": (med["twice_pure_jax"] - med["list_pure_jax"]) / args.steps * 1e6,
            "ratio": statistics.median(marginal),
            "shapesafe_fixed_cost_s": statistics.median(
                2 * a - b
                for a, b in zip(
                    times["list_shapesafe_spc1"], times["twice_shapesafe_spc1"], strict=True
                )
            ),
        },
        "rounds_s": times,
    }
    return result


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
