"""Shared pieces of the benchmarks: the hand-written Flax NNX peer of the talk's CNN, weight
copying, interleaved timing, and the environment block every JSON result carries.

The benchmarks are scripts (``python benchmarks/core_forward.py --help``); this module is
imported from the same folder.
"""

import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import shapesafe as ss
from shapesafe.models import talk

POOLS = ("max_pool", "reshape")


class FlaxCNN(nnx.Module):
    """The talk's CNN written by hand in Flax NNX, with no shape checks.

    ``Rescale(1 / 255) >> Conv2D(32, (3, 3)) >> ReLU >> MaxPool((2, 2)) >> Flatten >> Linear(512)
    >> ReLU >> Linear(2)`` on ``size x size x 3`` uint8 images; the flattened size is
    computed by hand, as a Flax user would. ``pool="reshape"`` pools as shapesafe's MaxPool
    does when windows tile the input (a reshape and a max) instead of ``nnx.max_pool``
    (``lax.reduce_window``): a diagnostic, to tell the cost of checks from that of pooling.
    """

    def __init__(
        self,
        size: int,
        *,
        filters: int = 32,
        hidden: int = 512,
        classes: int = 2,
        pool: str = "max_pool",
        rngs: nnx.Rngs,
    ):
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        pooled = (size - 2) // 2  # valid 3x3 convolution, then 2x2 pooling
        self.pool = pool
        self.conv = nnx.Conv(3, filters, (3, 3), padding="VALID", rngs=rngs)
        self.hidden = nnx.Linear(pooled * pooled * filters, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(jnp.float32) * jnp.float32(1 / 255)
        x = nnx.relu(self.conv(x))
        if self.pool == "reshape":
            b, h, w, c = x.shape
            x = (
                x[:, : h // 2 * 2, : w // 2 * 2]
                .reshape(b, h // 2, 2, w // 2, 2, c)
                .max(axis=(2, 4))
            )
        else:
            x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.hidden(x))
        return self.head(x)


def build_shapesafe(size: int, seed: int = 0) -> ss.Model:
    """The talk's CNN through the library: ``ss.build(talk.cnn(), talk.image_spec(size))``."""
    return ss.build(talk.cnn(), talk.image_spec(size), seed=seed)


def build_flax(size: int, seed: int = 0, *, pool: str = "max_pool") -> FlaxCNN:
    return FlaxCNN(size, pool=pool, rngs=nnx.Rngs(params=seed))


def copy_weights(model: ss.Model, peer: FlaxCNN) -> None:
    """Give ``peer`` the parameters of the shapesafe ``model`` (same layouts: HWIO, (in, out))."""
    ours = [layer for layer in model.layers if hasattr(layer, "kernel")]
    theirs = [peer.conv, peer.hidden, peer.head]
    if len(ours) != len(theirs):
        raise RuntimeError(f"expected {len(theirs)} layers with parameters, found {len(ours)}")
    for a, b in zip(ours, theirs, strict=True):
        for name in ("kernel", "bias"):
            src, dst = getattr(a, name), getattr(b, name)
            if src[...].shape != dst[...].shape:
                raise RuntimeError(f"{name}: shapes differ, {src[...].shape} vs {dst[...].shape}")
            dst[...] = src[...]


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def param_count(module: nnx.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def pure_forward(module: nnx.Module) -> tuple[Any, Any]:
    """``(jax.jit(f), state)`` with ``f(state, x) = merge(graphdef, state)(x)``: the fast path."""
    graphdef, state = nnx.split(module)

    def forward(state: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x)

    return jax.jit(forward), state


def images(size: int, batch: int, seed: int = 0) -> jax.Array:
    """A batch of random uint8 photos, ``[batch, size, size, 3]``, on the default device."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))


def first_steps(
    fns: dict[str, Callable[[], Any]], *, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each function's first call (its loss, before any update, and its seconds: trace and
    compile included), then ``warmup`` untimed calls."""
    first_loss, first_step_s = {}, {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        first_loss[name] = float(jax.block_until_ready(fn()))
        first_step_s[name] = time.perf_counter() - t0
        for _ in range(warmup):
            jax.block_until_ready(fn())
    return first_loss, first_step_s


def interleaved(
    fns: dict[str, Callable[[], Any]], *, rounds: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-round median wall and CPU seconds of each function.

    A round makes ``repeats`` passes; each pass calls every function once, in an order that
    alternates from pass to pass, so load on a shared machine falls on every function alike.
    CPU seconds count every thread of this process (XLA's included).
    """
    names = list(fns)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        w: dict[str, list[float]] = {name: [] for name in names}
        c: dict[str, list[float]] = {name: [] for name in names}
        for i in range(repeats):
            for name in names if (r + i) % 2 == 0 else names[::-1]:
                t0, c0 = time.perf_counter(), time.process_time()
                jax.block_until_ready(fns[name]())
                w[name].append(time.perf_counter() - t0)
                c[name].append(time.process_time() - c0)
        for name in names:
            wall[name].append(statistics.median(w[name]))
            cpu[name].append(statistics.median(c[name]))
    return wall, cpu


def quantiles(values: list[float]) -> dict[str, float]:
    """min, p25, median, p75, max of ``values``."""
    q = np.quantile(np.asarray(values), [0.0, 0.25, 0.5, 0.75, 1.0])
    return dict(zip(("min", "p25", "median", "p75", "max"), (float(v) for v in q), strict=True))


def max_rss_mib() -> float:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment() -> dict[str, Any]:
    device = jax.devices()[0]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "count": jax.device_count(),
            "cpu_cores": cores,
            "machine": platform.machine(),
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "flax": flax.__version__,
            "shapesafe": ss.__version__,
        },
    }


def emit(result: dict[str, Any]) -> None:
    """Print the result as one JSON object on stdout."""
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()
