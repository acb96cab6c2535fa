"""Time to first step: how long a fresh process waits before its first training step is done,
beyond the cost of a step itself, for the talk's CNN at 96 and 250 px.

Each contender runs in a fresh process (nothing compiled or cached before), builds the talk's
CNN (Rescale, Conv2D(32, 3x3), ReLU, MaxPool(2x2), Flatten, Linear(512), ReLU, Linear(2)),
and trains 3 steps of batch 32 on random uint8 images with SGD, timing each step to its end:

- ``shapesafe``: ``ss.build(talk.cnn(), talk.image_spec(size))`` and ``ss.fit`` (a callback
  with ``wants_step_loss`` makes every step end on the host, so its time is the step's);
- ``shapesafe_cached``: the same, in a second process with ``ss.compilation_cache(dir)``
  after a first process filled ``dir`` (JAX's persistent compilation cache);
- ``pure_jax``: the hand-written Flax NNX CNN (``benchmarks/_common.py``), split once, and a
  ``jax.jit`` step of ``jax.value_and_grad`` + optax;
- ``pytorch``: the same network in ``torch.nn`` (eager; no compilation).

``to_first_step_s`` = build + first step: ``ss.build`` dispatches its one compiled
initialiser and returns, so the parameters' random numbers (tens of millions of them) are
computed while the first step waits, where Flax computes them eagerly inside its constructor;
only the sum compares like with like. ``overhead_s`` = ``to_first_step_s`` minus the median of
steps 2 and 3 (the step itself); ``ratio`` = shapesafe's overhead / pure JAX's. Prints one
JSON object.

    python benchmarks/first_step.py              # 96 and 250 px
    python benchmarks/first_step.py --sizes 96
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS, BATCH = 3, 32


def child(kind: str, size: int, cache: str | None) -> dict[str, Any]:
    """Runs in the fresh process: build, then time ``STEPS`` steps."""
    t_import = time.perf_counter()
    import numpy as np

    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, (STEPS, BATCH, size, size, 3), dtype=np.uint8)
    ys = rng.integers(0, 2, (STEPS, BATCH)).astype(np.int32)
    ends: list[float] = []
    if kind.startswith("shapesafe"):
        import optax

        import shapesafe as ss
        from shapesafe.models import talk

        if cache:
            ss.compilation_cache(cache)
        t0 = time.perf_counter()
        model = ss.build(talk.cnn(), talk.image_spec(size), seed=0)
        built = time.perf_counter()

        class Clock(ss.callbacks.Callback):
            wants_step_loss = True  # the loss is read back: the step has ended on the host

            def on_step_end(self, run: Any, step: int, loss: float | None) -> None:
                ends.append(time.perf_counter())

        start = time.perf_counter()
        ss.fit(
            model,
            [(xs[i], ys[i]) for i in range(STEPS)],
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(1e-3),
            epochs=1,
            callbacks=[Clock()],
            progress=False,
        )
    elif kind == "pure_jax":
        import _common as common
        import jax
        import optax
        from flax import nnx

        t0 = time.perf_counter()
        graphdef, params = nnx.split(common.build_flax(size))
        built = time.perf_counter()
        tx = optax.sgd(1e-3)

        def loss_fn(p: Any, x: Any, y: Any) -> Any:
            logits = nnx.merge(graphdef, p)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        @jax.jit
        def step(p: Any, o: Any, x: Any, y: Any) -> Any:
            value, grads = jax.value_and_grad(loss_fn)(p, x, y)
            updates, o = tx.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

        start = time.perf_counter()
        opt = tx.init(params)
        for i in range(STEPS):
            params, opt, value = step(params, opt, xs[i], ys[i])
            float(value)
            ends.append(time.perf_counter())
    elif kind == "pytorch":
        import torch

        torch.manual_seed(0)
        t0 = time.perf_counter()
        pooled = (size - 2) // 2
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Flatten(),
            torch.nn.Linear(32 * pooled * pooled, 512),
            torch.nn.ReLU(),
            torch.nn.Linear(512, 2),
        )
        built = time.perf_counter()
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        start = time.perf_counter()
        for i in range(STEPS):
            x = torch.from_numpy(xs[i]).permute(0, 3, 1, 2).float() / 255
            loss = torch.nn.functional.cross_entropy(net(x), torch.from_numpy(ys[i]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            float(loss)
            ends.append(time.perf_counter())
    else:
        raise ValueError(kind)
    steps = [ends[0] - start] + [b - a for a, b in itertools.pairwise(ends)]
    step = sorted(steps[1:])[len(steps[1:]) // 2]
    return {
        "import_s": t0 - t_import,
        "build_s": built - t0,
        "first_step_s": steps[0],
        "step_s": step,
        "to_first_step_s": built - t0 + steps[0],
        "overhead_s": built - t0 + steps[0] - step,
    }


def run_child(kind: str, size: int, cache: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--size", str(size)]
    if cache:
        cmd += ["--cache", cache]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, check=False)
    if out.returncode:
        raise RuntimeError(f"{kind} at {size} px failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 250])
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.cache)))
        return {}
    import _common as common

    results: dict[str, Any] = {}
    for size in args.sizes:
        r: dict[str, Any] = {}
        for kind in ("shapesafe", "pure_jax"):
            r[kind] = run_child(kind, size)
        with tempfile.TemporaryDirectory() as cache:
            run_child("shapesafe", size, cache)  # fills the cache
            r["shapesafe_cached"] = run_child("shapesafe", size, cache)
        if not args.no_torch:
            r["pytorch"] = run_child("pytorch", size)
        r["ratio_overhead_vs_pure_jax"] = r["shapesafe"]["overhead_s"] / r["pure_jax"]["overhead_s"]
        r["ratio_cached_overhead_vs_pure_jax"] = (
            r["shapesafe_cached"]["overhead_s"] / r["pure_jax"]["overhead_s"]
        )
        results[f"{size}px"] = r
    return {
        "benchmark": "first_step",
        **common.environment(),
        "parameters": {"sizes": args.sizes, "batch": BATCH, "steps": STEPS},
        "results": results,
        "goal": "shapesafe overhead <= 1.5x pure JAX's",
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    if result:
        import _common as common

        common.emit(result)
