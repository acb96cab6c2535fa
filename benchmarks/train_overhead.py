"""Per-step overhead of training a small model: ss.fit's step vs pure JAX vs tutorial-style nnx.jit.

An MLP 64 -> 128 -> 10 on batches of 32 with Adam is so small that a step's cost is mostly
dispatch (Python, pytree flattening, argument handling), which is what this measures:

1. ``shapesafe``: ``ss.fit`` over the batches (device arrays), one step per jitted call (a
   ``jax.jit`` over the ``nnx.split`` state, with donation), through the public API, so a
   call's time includes ``fit``'s own fixed cost spread over its steps;
2. ``pure_jax``: a hand-written ``jax.jit`` step with donation over a dict of parameters and
   optax, the floor;
3. ``nnx_jit``: the Flax tutorial's ``@nnx.jit`` step with ``nnx.Optimizer(model, tx,
   wrt=nnx.Param)`` and ``optimizer.update(model, grads)``;
4. ``shapesafe_scan``: the same with ``fit(..., steps_per_call=STEPS)``: every step under
   ``lax.scan`` in one call.

Each timed call makes ``STEPS`` (50) steps without waiting (as ``fit`` does: it reads losses back lazily),
then blocks on the last result; figures are microseconds per step (wall clock, and CPU time of
the whole process), medians over rounds in which the four alternate. Prints one JSON object.

    python benchmarks/train_overhead.py
    python benchmarks/train_overhead.py --rounds 5 --repeats 5   # quicker
"""

import argparse
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
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

STEPS = 50  # steps per timed call, for every contender


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32, help="examples per step (default 32)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden width (default 128)")
    parser.add_argument(
        "--rounds", type=int, default=15, help="rounds of alternating contenders (default 15)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=20,
        help=f"timed calls of {STEPS} steps per contender per round (default 20)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed calls per contender after compiling"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def data(batch: int, seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(STEPS, batch, 64)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, (STEPS, batch)).astype(np.int32))
    return x, y, jnp.ones((STEPS, batch), bool)


def shapesafe_steps(
    hidden: int, seed: int, xs: jax.Array, ys: jax.Array, masks: jax.Array
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``ss.fit`` over the ``STEPS`` batches, one step per jitted call and all of them in one
    (``steps_per_call=STEPS``), each on a model of its own, through the public API: a call's
    time includes ``fit``'s own fixed cost (its engine, checks and history), spread over the
    steps; the optimizer is one object, so every call after the first reuses the compiled step."""
    net = L.Linear(hidden) >> L.ReLU() >> L.Linear(10)
    models = [ss.build(net, Float32[Array, "batch 64"], seed=seed) for _ in range(2)]
    tx = optax.adam(1e-3)
    batches = [(xs[i], ys[i]) for i in range(STEPS)]

    def run(model: ss.Model, steps_per_call: int) -> Callable[[], Any]:
        def call() -> Any:
            history = ss.fit(
                model,
                batches,
                loss=ss.losses.cross_entropy,
                optimizer=tx,
                epochs=1,
                steps_per_call=steps_per_call,
                progress=False,
            )
            return history.steps[-1]

        return call

    return run(models[0], 1), run(models[1], STEPS)


def pure_jax_steps(
    hidden: int, seed: int, xs: jax.Array, ys: jax.Array
) -> tuple[Callable[[], Any], Any]:
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "w1": jax.random.normal(k1, (64, hidden)) * 64**-0.5,
        "b1": jnp.zeros((hidden,)),
        "w2": jax.random.normal(k2, (hidden, 10)) * hidden**-0.5,
        "b2": jnp.zeros((10,)),
    }
    tx = optax.adam(1e-3)

    def loss_fn(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        h = jax.nn.relu(x @ p["w1"] + p["b1"][None, :])
        logits = h @ p["w2"] + p["b2"][None, :]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(p: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
        value, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, value

    state = {"params": params, "opt": tx.init(params)}
    batches = [(xs[i], ys[i]) for i in range(STEPS)]

    def steps() -> Any:
        value = None
        for x, y in batches:
            state["params"], state["opt"], value = step(state["params"], state["opt"], x, y)
        return value

    return steps, state


class MLP(nnx.Module):
    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(nnx.relu(self.hidden(x)))


def nnx_jit_steps(hidden: int, seed: int, xs: jax.Array, ys: jax.Array) -> Callable[[], Any]:
    """The Flax NNX tutorial's training step (flax 0.12 API)."""
    model = MLP(hidden, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model: MLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
        def loss_fn(model: MLP) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        value, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return value

    batches = [(xs[i], ys[i]) for i in range(STEPS)]

    def steps() -> Any:
        value = None
        for x, y in batches:
            value = step(model, optimizer, x, y)
        return value

    return steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    xs, ys, masks = data(args.batch, args.seed)
    ss_one, ss_scan = shapesafe_steps(args.hidden, args.seed, xs, ys, masks)
    pure, _ = pure_jax_steps(args.hidden, args.seed, xs, ys)
    fns = {
        "shapesafe": ss_one,
        "pure_jax": pure,
        "nnx_jit": nnx_jit_steps(args.hidden, args.seed, xs, ys),
        "shapesafe_scan": ss_scan,
    }
    first_call_s: dict[str, float] = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        first = np.asarray(jax.block_until_ready(fn()))
        first_call_s[name] = time.perf_counter() - t0
        if not np.all(np.isfinite(first)):
            raise RuntimeError(f"{name}: non-finite loss {first}")
        for _ in range(args.warmup):
            jax.block_until_ready(fn())
    wall, cpu = common.interleaved(fns, rounds=args.rounds, repeats=args.repeats)
    us = {name: statistics.median(v) / STEPS * 1e6 for name, v in wall.items()}
    cpu_us = {name: statistics.median(v) / STEPS * 1e6 for name, v in cpu.items()}
    per_round = {
        name: [a / b for a, b in zip(v, wall["pure_jax"], strict=True)] for name, v in wall.items()
    }
    return {
        "benchmark": "train_overhead",
        "what": f"µs per training step, MLP 64->{args.hidden}->10, batch {args.batch}, Adam; {STEPS} steps per "
        "timed call, blocking once at the end",
        **common.environment(),
        "parameters": {
            "batch": args.batch,
            "hidden": args.hidden,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "steps_per_timed_call": STEPS,
        },
        "us_per_step": us,
        "cpu_us_per_step": cpu_us,
        "round_medians_us_per_step": {
            name: common.quantiles([t / STEPS * 1e6 for t in v]) for name, v in wall.items()
        },
        "ratio_vs_pure_jax": {name: us[name] / us["pure_jax"] for name in us},
        "cpu_ratio_vs_pure_jax": {name: cpu_us[name] / cpu_us["pure_jax"] for name in cpu_us},
        "ratio_vs_pure_jax_per_round": {name: common.quantiles(v) for name, v in per_round.items()},
        "first_call_s": first_call_s,
        "goal": "shapesafe <= 1.10x pure_jax; shapesafe_scan < pure_jax",
    }


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
