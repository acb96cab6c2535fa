"""Training throughput of the talk's CNN: ss.fit's step vs a hand-written Flax step vs PyTorch.

``talk.cnn()`` on ``talk.image_spec(size)`` (Rescale(1 / 255), Conv2D(32, 3x3), ReLU, MaxPool(2x2),
Flatten, Linear(512), ReLU, Linear(2)), batches of 32 random uint8 images, cross-entropy,
plain SGD. Contenders, all holding the same initial weights:

- ``shapesafe``: ``ss.fit`` over one batch per call, through the public API (its step: ``jax.jit`` over
  the ``nnx.split`` state, with donation);
- ``flax``: the same network written by hand in Flax NNX (``benchmarks/_common.py``, with
  ``nnx.max_pool``) and a pure ``jax.jit`` step with donation over its ``nnx.split`` state;
- ``torch``: the same network in PyTorch, channels-last (the uint8 NHWC batch permuted to
  NCHW is a channels-last view); on CUDA when PyTorch sees a GPU (``cudnn.benchmark`` on,
  ``torch.cuda.synchronize()`` in every timed step), else on the CPU with
  ``torch.set_num_threads`` = the cores.

JAX runs on its default device (the GPU when jaxlib has CUDA); the JSON names both devices.

``--explore`` adds what might close the gap to PyTorch: ``flax_reshape_pool`` (the Flax peer
pooling with a reshape and a max, as shapesafe does, instead of ``reduce_window`` whose
gradient is XLA's ``select_and_scatter``), ``jax_nchw`` (a pure-JAX step with NCHW
activations and OIHW kernels) and ``torch_nchw`` (PyTorch on contiguous NCHW; within noise
of channels-last in our runs). XLA flags are
tried by running the script under ``XLA_FLAGS=...`` (recorded in the JSON).

Each timed call is one step, blocked on; rounds alternate the contenders. Reports images/s
(batch / median step time) and ratios. The first step's loss (before any update) must agree
across contenders: the same weights and batch give the same number (to 1e-3 relative on CPU,
1e-2 on a GPU, where float32 convolutions and matrix products may run in TF32). Prints one
JSON object.

    python benchmarks/train_cnn.py                       # 96x96
    python benchmarks/train_cnn.py --size 250 --rounds 3 --repeats 2
    python benchmarks/train_cnn.py --explore
"""

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import _common as common
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import shapesafe as ss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        type=int,
        default=96,
        help="image height and width (the talk uses 250; default 96)",
    )
    parser.add_argument("--batch", type=int, default=32, help="images per step (default 32)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of alternating contenders (default 5)"
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="timed steps per contender per round (default 4)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per contender after the first"
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=1e-6,
        help="SGD learning rate (default 1e-6; only the speed is measured)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="PyTorch threads (default: the cores)"
    )
    parser.add_argument(
        "--explore", action="store_true", help="add the variants that might close the gap"
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    return parser.parse_args(argv)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- JAX contenders ---------------------------------------------------------------------------


def shapesafe_step(model: ss.Model, lr: float, x: jax.Array, y: jax.Array) -> Callable[[], Any]:
    """``ss.fit`` over one batch per call, as a user calls it: the optimizer is one object, so
    every call after the first reuses the compiled step; each call's loss is returned."""
    tx, batches = optax.sgd(lr), [(x, y)]

    def call() -> Any:
        history = ss.fit(
            model, batches, loss=ss.losses.cross_entropy, optimizer=tx, epochs=1, progress=False
        )
        return history.steps[-1]

    return call


def flax_step(peer: nnx.Module, lr: float, x: jax.Array, y: jax.Array) -> Callable[[], Any]:
    """The hand-written fast path: ``jax.jit`` with donation over the ``nnx.split`` state."""
    graphdef, params, rest = nnx.split(peer, nnx.Param, ...)
    params = jax.tree.map(
        jnp.copy, params
    )  # copy_weights shares arrays with the shapesafe model; donation would delete them
    tx = optax.sgd(lr)

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
        def loss_fn(p: Any) -> jax.Array:
            logits = nnx.merge(graphdef, p, rest)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    state = [params, tx.init(params)]

    def call() -> Any:
        state[0], state[1], value = step(state[0], state[1], x, y)
        return value

    return call


def torch_layout(model: ss.Model, size: int) -> dict[str, np.ndarray]:
    """The shapesafe weights in PyTorch's layouts: OIHW kernels, (out, in) matrices, and the
    hidden layer's rows reordered from NHWC flattening (h, w, c) to NCHW flattening (c, h, w)."""
    conv, hidden, head = (layer for layer in model.layers if hasattr(layer, "kernel"))
    pooled = (size - 2) // 2
    k = np.asarray(hidden.kernel[...])
    filters = k.shape[0] // (pooled * pooled)
    return {
        "conv.weight": np.asarray(conv.kernel[...]).transpose(3, 2, 0, 1),
        "conv.bias": np.asarray(conv.bias[...]),
        "hidden.weight": k.reshape(pooled, pooled, filters, -1)
        .transpose(3, 2, 0, 1)
        .reshape(k.shape[1], -1),
        "hidden.bias": np.asarray(hidden.bias[...]),
        "head.weight": np.asarray(head.kernel[...]).T,
        "head.bias": np.asarray(head.bias[...]),
    }


def jax_nchw_step(
    w: dict[str, np.ndarray], lr: float, x: jax.Array, y: jax.Array
) -> Callable[[], Any]:
    """A pure-JAX step with NCHW activations and OIHW kernels (PyTorch's layout)."""
    params = {k: jnp.asarray(v) for k, v in w.items()}
    tx = optax.sgd(lr)

    def forward(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        x = jnp.transpose(x, (0, 3, 1, 2)).astype(jnp.float32) * jnp.float32(1 / 255)
        x = jax.lax.conv_general_dilated(
            x, p["conv.weight"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        x = jax.nn.relu(x + p["conv.bias"].reshape(1, -1, 1, 1))
        b, c, h, wd = x.shape
        x = (
            x[:, :, : h // 2 * 2, : wd // 2 * 2]
            .reshape(b, c, h // 2, 2, wd // 2, 2)
            .max(axis=(3, 5))
        )
        x = x.reshape(b, -1)
        x = jax.nn.relu(x @ p["hidden.weight"].T + p["hidden.bias"][None, :])
        return x @ p["head.weight"].T + p["head.bias"][None, :]

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(p: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
        def loss_fn(p: Any) -> jax.Array:
            return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

        value, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, value

    state = [params, tx.init(params)]

    def call() -> Any:
        state[0], state[1], value = step(state[0], state[1], x, y)
        return value

    return call


# -- PyTorch ----------------------------------------------------------------------------------


def torch_step(
    w: dict[str, np.ndarray],
    lr: float,
    x: np.ndarray,
    y: np.ndarray,
    *,
    channels_last: bool,
    device: Any = "cpu",
) -> Callable[[], Any]:
    import torch
    from torch import nn

    pooled_features = w["hidden.weight"].shape[1]
    net = nn.ModuleDict(
        {
            "conv": nn.Conv2d(3, w["conv.weight"].shape[0], 3),
            "hidden": nn.Linear(pooled_features, w["hidden.weight"].shape[0]),
            "head": nn.Linear(w["head.weight"].shape[1], w["head.weight"].shape[0]),
        }
    )
    with torch.no_grad():
        for name, value in w.items():
            module, kind = name.split(".")
            getattr(net[module], kind).copy_(torch.from_numpy(np.array(value)))
    net.to(device)
    if channels_last:
        net["conv"].to(memory_format=torch.channels_last)
    model = nn.Sequential(
        net["conv"], nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), net["hidden"], nn.ReLU(), net["head"]
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    images = torch.from_numpy(np.array(x)).to(device)  # uint8 NHWC
    labels = torch.from_numpy(y.astype(np.int64)).to(device)
    cuda = torch.device(device).type == "cuda"

    def call() -> Any:
        batch = images.permute(0, 3, 1, 2).float() * (1 / 255)  # NCHW, strided channels-last
        if not channels_last:
            batch = batch.contiguous()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(batch), labels)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        return float(loss.detach())

    return call


# -- the run ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = args.threads or cores()
    model = common.build_shapesafe(args.size, seed=args.seed)
    x = common.images(args.size, args.batch, seed=args.seed)
    y = jnp.asarray(np.random.default_rng(args.seed).integers(0, 2, (args.batch,)).astype(np.int32))
    w = torch_layout(model, args.size)

    fns: dict[str, Callable[[], Any]] = {}
    pools = ("max_pool", "reshape") if args.explore else ("max_pool",)
    for pool in pools:
        peer = common.build_flax(args.size, seed=args.seed + 1, pool=pool)
        common.copy_weights(model, peer)
        fns["flax" if pool == "max_pool" else "flax_reshape_pool"] = flax_step(peer, args.lr, x, y)
    fns["shapesafe"] = shapesafe_step(
        model, args.lr, x, y
    )  # last: the engine takes over the model's state
    if args.explore:
        fns["jax_nchw"] = jax_nchw_step(w, args.lr, x, y)
    torch_version, torch_device = None, None
    if not args.no_torch:
        import torch

        torch.set_num_threads(threads)
        torch_version = torch.__version__
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch_device = f"cuda: {torch.cuda.get_device_name(device)}"
        else:
            torch_device = "cpu"
        layouts = (True, False) if args.explore else (True,)
        for channels_last in layouts:
            fns["torch" if channels_last else "torch_nchw"] = torch_step(
                w, args.lr, np.asarray(x), np.asarray(y), channels_last=channels_last, device=device
            )

    first_loss, first_step_s = common.first_steps(fns, warmup=args.warmup)
    last_loss: dict[str, float] = {}
    ref = first_loss["flax"]
    spread = max(abs(v - ref) for v in first_loss.values())
    rtol = 1e-3 if jax.devices()[0].platform == "cpu" else 1e-2  # TF32 on GPUs
    if not all(np.isfinite(v) for v in first_loss.values()) or spread > rtol * max(1.0, abs(ref)):
        raise RuntimeError(
            f"the contenders disagree on the first loss (same weights and batch): {first_loss}"
        )

    wall, cpu = common.interleaved(fns, rounds=args.rounds, repeats=args.repeats)
    for name, fn in fns.items():
        last_loss[name] = float(jax.block_until_ready(fn()))
        if not np.isfinite(
            last_loss[name]
        ):  # a skipped (non-finite) step would be cheaper: not comparable
            raise RuntimeError(f"{name}: the loss became {last_loss[name]}; lower --lr")
    ms = {name: statistics.median(v) * 1e3 for name, v in wall.items()}
    cpu_ms = {name: statistics.median(v) * 1e3 for name, v in cpu.items()}
    ips = {name: args.batch / (t / 1e3) for name, t in ms.items()}

    def ratios(base: str) -> dict[str, float]:
        return {name: ips[name] / ips[base] for name in ips}

    per_round = {
        name: [b / a for a, b in zip(v, wall["flax"], strict=True)] for name, v in wall.items()
    }
    return {
        "benchmark": "train_cnn",
        "what": "training steps/s of talk.cnn(), SGD, random uint8 images: shapesafe engine vs hand-written "
        "Flax NNX + jax.jit vs PyTorch (CUDA when available, else CPU)",
        **common.environment(),
        "torch": torch_version,
        "torch_threads": threads if torch_version else None,
        "torch_device": torch_device,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "parameters": {
            "size": args.size,
            "batch": args.batch,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "lr": args.lr,
            "seed": args.seed,
            "explore": args.explore,
            "loss_rtol": rtol,
        },
        "param_count": int(sum(v.size for v in w.values())),
        "first_loss": first_loss,
        "last_loss": last_loss,
        "first_step_s": first_step_s,
        "images_per_s": ips,
        "median_step_ms": ms,
        "cpu_ms_per_step": cpu_ms,
        "round_medians_ms": {
            name: common.quantiles([t * 1e3 for t in v]) for name, v in wall.items()
        },
        "ratio_vs_flax": ratios("flax"),
        "ratio_vs_flax_per_round": {name: common.quantiles(v) for name, v in per_round.items()},
        "ratio_vs_torch": ratios("torch") if torch_version else None,
        "goal": "shapesafe >= flax (ratio_vs_flax >= 1); report ratio_vs_torch",
    }


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
