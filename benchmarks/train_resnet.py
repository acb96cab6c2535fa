"""Training throughput of ResNet-18: ss.fit's step vs a hand-written Flax NNX step vs PyTorch.

``models.resnet.resnet18(classes, size=size)`` (torchvision's layout, 11.2 M parameters for
10 classes) on batches of random normalised ``float32`` images (channels-last), integer
labels, cross-entropy, SGD with momentum 0.9; BatchNorm in train mode (batch statistics,
running statistics updated) in every contender. Contenders, all holding the same initial
weights (one random torchvision-layout ``state_dict``, loaded into each):

- ``shapesafe``: ``ss.fit`` over one batch per call, through the public API (its step: ``jax.jit`` over
  the ``nnx.split`` state, with donation), weights loaded with ``resnet.load_torchvision``;
- ``flax``: ResNet-18 written by hand in Flax NNX (``nnx.Conv``, ``nnx.BatchNorm``,
  ``nnx.max_pool``, below; constructed with ``nnx.eval_shape``, so no initialiser runs, then
  every variable set from the weights) and a pure ``jax.jit`` step with donation over its
  ``nnx.split`` state (parameters, batch statistics, optimizer state);
- ``torch``: the same network in plain ``torch.nn`` with torchvision's module names, on CUDA
  when PyTorch sees a GPU (``cudnn.benchmark`` on), else on the CPU with
  ``torch.set_num_threads`` = the cores; channels-last either way.

JAX runs on its default device (the GPU when jaxlib has CUDA). Each timed call is one step,
blocked on (``block_until_ready``; for PyTorch ``torch.cuda.synchronize()`` and reading the
loss); rounds alternate the contenders. Reports images/s (batch / median step time) and
ratios, and the device each framework ran on. The first step's loss (before any update)
must agree across contenders, to a relative ``--loss-rtol`` (default 1e-3 on CPU; 1e-2 on a
GPU, where both frameworks may run float32 convolutions in TF32 by default); the JSON says
whether it did, and the script exits with status 3 after printing it if not.

``--blocks 1`` makes every network a ResNet-10 (one block per stage), for smoke tests.
``benchmarks/gpu.sh`` runs it on a GPU (224x224, batch 128).

    python benchmarks/train_resnet.py                                   # 224x224, batch 64
    python benchmarks/train_resnet.py --size 64 --batch 16 --rounds 5 --repeats 3   # CPU-sized
"""

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import _common as common
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import resnet

STAGES = ((1, 64), (2, 128), (3, 256), (4, 512))  # (stage, channels)
STEM_POOL_PADDING: Any = ((1, 1), (1, 1))  # nnx.max_pool takes pairs too (its annotation says str)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=224, help="image height and width (default 224; >= 32)"
    )
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--classes", type=int, default=10, help="outputs of the head (default 10)")
    parser.add_argument(
        "--blocks",
        type=int,
        default=2,
        help="basic blocks per stage: 2 is ResNet-18 (default); "
        "1, a ResNet-10 that compiles in half the time, is for smoke tests",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds of alternating contenders (default 5)"
    )
    parser.add_argument(
        "--repeats", type=int, default=4, help="timed steps per contender per round (default 4)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per contender after the first"
    )
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=0, help="PyTorch CPU threads (default: the cores)"
    )
    parser.add_argument(
        "--loss-rtol",
        type=float,
        default=None,
        help="allowed relative spread of the first losses (default 1e-3 on CPU, 1e-2 on GPU)",
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    return parser.parse_args(argv)


# -- the shared weights: one torchvision-layout state_dict ------------------------------------


def state_dict_shapes(classes: int, blocks: int = 2) -> dict[str, tuple[int, ...]]:
    """Every array of torchvision's ``resnet18(num_classes=classes).state_dict()`` but the
    ``num_batches_tracked`` counters, with its shape (PyTorch layouts: OIHW, (out, in));
    ``blocks`` basic blocks per stage (2 in ResNet-18)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)

    bn("bn1", 64)
    cin = 64
    for s, c in STAGES:
        for b in range(blocks):
            p = f"layer{s}.{b}"
            shapes[f"{p}.conv1.weight"] = (c, cin if b == 0 else c, 3, 3)
            bn(f"{p}.bn1", c)
            shapes[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn2", c)
            if b == 0 and s > 1:
                shapes[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                bn(f"{p}.downsample.1", c)
        cin = c
    shapes["fc.weight"] = (classes, 512)
    shapes["fc.bias"] = (classes,)
    return shapes


def initial_weights(classes: int, seed: int, blocks: int = 2) -> dict[str, np.ndarray]:
    """torchvision's initialisation, drawn with NumPy: He-normal convolutions (fan-out, as
    torchvision), BatchNorm scale 1 and bias 0 with running mean 0 and variance 1, and the head
    uniform in +-1/sqrt(512) (``nn.Linear``'s default)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in state_dict_shapes(classes, blocks).items():
        leaf = key.rsplit(".", 1)[-1]
        if key == "fc.weight" or key == "fc.bias":
            value = rng.uniform(-1 / np.sqrt(512), 1 / np.sqrt(512), shape)
        elif len(shape) == 4:  # convolution (out, in, kh, kw)
            value = rng.normal(0.0, np.sqrt(2.0 / (shape[0] * shape[2] * shape[3])), shape)
        elif leaf in ("weight", "running_var"):
            value = np.ones(shape)
        else:  # BatchNorm bias, running mean
            value = np.zeros(shape)
        out[key] = value.astype(np.float32)
    return out


# -- the hand-written Flax NNX ResNet-18 ------------------------------------------------------


class FlaxBlock(nnx.Module):
    """A basic block: conv3x3 (stride), BN, ReLU, conv3x3, BN, plus the (projected) input, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(
            cin,
            cout,
            (3, 3),
            strides=(stride, stride),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            rngs=rngs,
        )
        self.bn1 = nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(
            cout, cout, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs
        )
        self.bn2 = nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.down_conv = nnx.Conv(
                cin, cout, (1, 1), strides=(stride, stride), use_bias=False, rngs=rngs
            )
            self.down_bn = nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = self.down_bn(self.down_conv(x)) if self.project else x
        y = nnx.relu(self.bn1(self.conv1(x)))
        return nnx.relu(self.bn2(self.conv2(y)) + shortcut)


class FlaxResNet18(nnx.Module):
    """ResNet-18 by hand in Flax NNX (NHWC), as torchvision: 7x7/2 stem, BN, ReLU, 3x3/2 max
    pooling (padding 1), four stages of two blocks, global average pooling, linear head."""

    def __init__(self, classes: int, *, blocks: int = 2, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(
            3, 64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False, rngs=rngs
        )
        self.bn1 = nnx.BatchNorm(64, momentum=0.9, epsilon=1e-5, rngs=rngs)
        cin = 64
        for s, c in STAGES:
            stride = 1 if s == 1 else 2
            rest = [FlaxBlock(c, c, 1, rngs=rngs) for _ in range(blocks - 1)]
            setattr(self, f"layer{s}", nnx.Sequential(FlaxBlock(cin, c, stride, rngs=rngs), *rest))
            cin = c
        self.fc = nnx.Linear(512, classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=STEM_POOL_PADDING)  # pads with -inf
        for s, _ in STAGES:
            x = getattr(self, f"layer{s}")(x)
        return self.fc(jnp.mean(x, axis=(1, 2)))


def flax_resnet(weights: Mapping[str, np.ndarray], classes: int, blocks: int = 2) -> FlaxResNet18:
    """The Flax peer holding ``weights``: constructed abstractly (``nnx.eval_shape``: no
    initialiser runs; eager initialisation compiles one program per parameter shape, ~15 s on
    2 cores), then every variable set from the torchvision-layout ``state_dict``."""
    peer = nnx.eval_shape(lambda: FlaxResNet18(classes, blocks=blocks, rngs=nnx.Rngs(0)))
    load_flax(peer, weights)
    unset = [
        path
        for path, v in nnx.to_flat_state(nnx.state(peer))
        if not isinstance(v.get_value(), jax.Array)
    ]
    if unset:
        raise RuntimeError(f"the weights left these variables of the Flax peer unset: {unset}")
    return peer


def load_flax(peer: FlaxResNet18, weights: Mapping[str, np.ndarray]) -> None:
    """Copy a torchvision-layout ``state_dict`` into ``peer`` (OIHW -> HWIO, (out, in) -> (in, out))."""
    bn_names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
    for key, value in weights.items():
        *path, leaf = key.split(".")
        module: Any = peer
        if path[0].startswith("layer"):
            module = getattr(peer, path[0]).layers[int(path[1])]
            path = path[2:]
            if path[0] == "downsample":
                path = ["down_conv" if path[1] == "0" else "down_bn"]
        module = getattr(module, path[0])
        if isinstance(module, nnx.BatchNorm):
            target, array = getattr(module, bn_names[leaf]), value
        elif isinstance(module, nnx.Conv):
            target, array = module.kernel, value.transpose(2, 3, 1, 0)
        else:  # the head
            target, array = (module.kernel, value.T) if leaf == "weight" else (module.bias, value)
        if tuple(target.get_value().shape) != array.shape:
            raise RuntimeError(f"{key}: shapes differ, {target.get_value().shape} vs {array.shape}")
        target.set_value(jnp.asarray(array))


# -- JAX contenders ---------------------------------------------------------------------------


def shapesafe_resnet(classes: int, size: int, blocks: int = 2) -> resnet.Network:
    """``resnet.resnet18(classes, size=size)``; with ``blocks != 2`` its stages are rebuilt
    with ``resnet.stage`` and that many blocks (stem and head as they are)."""
    net, spec = resnet.resnet18(classes, size=size)
    if blocks == 2:
        return resnet.Network(net, spec)
    channels = dict((f"layer{s}", c) for s, c in STAGES)
    layers = tuple(
        resnet.stage(
            channels[layer.name],
            blocks,
            strides=1 if layer.name == "layer1" else 2,
            project=layer.name != "layer1",
        ).named(layer.name)
        if layer.name in channels
        else layer
        for layer in net
    )
    return resnet.Network(L.Sequential(layers), spec)


def optimizer(args: argparse.Namespace) -> optax.GradientTransformation:
    return optax.sgd(args.lr, momentum=args.momentum)


def shapesafe_step(
    model: ss.Model, args: argparse.Namespace, x: jax.Array, y: jax.Array
) -> Callable[[], Any]:
    """``ss.fit`` over one batch per call, as a user calls it: the optimizer is one object, so
    every call after the first reuses the compiled step; each call's loss is returned."""
    tx, batches = optimizer(args), [(x, y)]

    def call() -> Any:
        history = ss.fit(
            model, batches, loss=ss.losses.cross_entropy, optimizer=tx, epochs=1, progress=False
        )
        return history.steps[-1]

    return call


def flax_step(
    peer: FlaxResNet18, args: argparse.Namespace, x: jax.Array, y: jax.Array
) -> Callable[[], Any]:
    """The hand-written fast path: ``jax.jit`` with donation over the ``nnx.split`` state; the
    batch statistics come back out of the loss function as auxiliary output."""
    split: tuple[Any, ...] = nnx.split(peer, nnx.Param, ...)
    graphdef, params, rest = split
    tx = optimizer(args)

    @partial(jax.jit, donate_argnums=(0, 1, 2))
    def step(
        params: Any, rest: Any, opt_state: Any, x: jax.Array, y: jax.Array
    ) -> tuple[Any, Any, Any, jax.Array]:
        def loss_fn(p: Any) -> tuple[jax.Array, Any]:
            model = nnx.merge(graphdef, p, rest, copy=True)  # fresh variables at this trace level
            logits = model(x)
            after: tuple[Any, ...] = nnx.split(model, nnx.Param, ...)
            new_rest = after[2]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_rest

        (value, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_rest, opt_state, value

    state = [params, rest, tx.init(params)]

    def call() -> Any:
        state[0], state[1], state[2], value = step(state[0], state[1], state[2], x, y)
        return value

    return call


# -- PyTorch ----------------------------------------------------------------------------------


def torch_resnet18(classes: int, blocks: int = 2) -> Any:
    """torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2]) in plain torch.nn, same module names
    (torchvision itself need not be installed)."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self, classes: int):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            cin = 64
            for s, c in STAGES:
                stride = 1 if s == 1 else 2
                rest = [BasicBlock(c, c, 1) for _ in range(blocks - 1)]
                setattr(self, f"layer{s}", nn.Sequential(BasicBlock(cin, c, stride), *rest))
                cin = c
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, classes)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for s, _ in STAGES:
                x = getattr(self, f"layer{s}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18(classes)


def torch_step(
    weights: Mapping[str, np.ndarray],
    args: argparse.Namespace,
    x: np.ndarray,
    y: np.ndarray,
    device: Any,
) -> Callable[[], Any]:
    import torch
    from torch import nn

    model = torch_resnet18(args.classes, args.blocks)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False
    )
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(
            f"the PyTorch reference does not take the weights: {missing=} {unexpected=}"
        )
    model.to(device)
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    # NHWC float32 -> NCHW view with channels-last strides, on the device
    images = torch.from_numpy(np.array(x)).to(device).permute(0, 3, 1, 2)
    labels = torch.from_numpy(np.asarray(y).astype(np.int64)).to(device)
    cuda = device.type == "cuda"

    def call() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        return float(loss.detach())

    return call


def torch_info(device: Any, threads: int) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"version": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        info |= {
            "device_name": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    else:
        info["threads"] = threads
    return info


# -- the run ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = args.threads or common.cores()
    jax_device = jax.devices()[0]
    on_gpu = jax_device.platform == "gpu"
    rtol = args.loss_rtol if args.loss_rtol is not None else (1e-2 if on_gpu else 1e-3)

    weights = initial_weights(args.classes, args.seed, args.blocks)
    rng = np.random.default_rng(args.seed + 1)
    x_host = rng.normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    y_host = rng.integers(0, args.classes, (args.batch,)).astype(np.int32)
    x, y = jnp.asarray(x_host), jnp.asarray(y_host)  # on JAX's default device

    model = ss.build(*shapesafe_resnet(args.classes, args.size, args.blocks), seed=args.seed)
    resnet.load_torchvision(model, weights)
    params = common.param_count(model)
    peer = flax_resnet(weights, args.classes, args.blocks)
    if common.param_count(peer) != params:
        raise RuntimeError(
            f"parameter counts differ: shapesafe {params}, flax {common.param_count(peer)}"
        )

    fns: dict[str, Callable[[], Any]] = {
        "flax": flax_step(peer, args, x, y),
        "shapesafe": shapesafe_step(model, args, x, y),
    }
    torch_block = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        fns["torch"] = torch_step(weights, args, x_host, y_host, device)
        torch_block = torch_info(device, threads)

    first_loss, first_step_s = common.first_steps(fns, warmup=args.warmup)
    last_loss: dict[str, float] = {}
    ref = first_loss["flax"]
    spread = max(first_loss.values()) - min(first_loss.values())
    agree = all(np.isfinite(v) for v in first_loss.values()) and spread <= rtol * max(1.0, abs(ref))

    wall, cpu = common.interleaved(fns, rounds=args.rounds, repeats=args.repeats)
    for name, fn in fns.items():
        last_loss[name] = float(jax.block_until_ready(fn()))
    ms = {name: statistics.median(v) * 1e3 for name, v in wall.items()}
    ips = {name: args.batch / (t / 1e3) for name, t in ms.items()}

    def ratios(base: str) -> dict[str, float]:
        return {name: ips[name] / ips[base] for name in ips}

    per_round = {
        name: [b / a for a, b in zip(v, wall["flax"], strict=True)] for name, v in wall.items()
    }
    return {
        "benchmark": "train_resnet",
        "what": "training steps/s of models.resnet.resnet18, SGD momentum, BatchNorm in train mode, random "
        "normalised images: shapesafe engine vs hand-written Flax NNX + jax.jit vs PyTorch",
        **common.environment(),
        "jax_device": {"platform": jax_device.platform, "device_kind": jax_device.device_kind},
        "torch": torch_block,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "parameters": {
            "size": args.size,
            "batch": args.batch,
            "classes": args.classes,
            "blocks": args.blocks,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "lr": args.lr,
            "momentum": args.momentum,
            "seed": args.seed,
            "loss_rtol": rtol,
        },
        "param_count": params,
        "first_loss": first_loss,
        "first_loss_spread": spread,
        "first_loss_agree": bool(agree),
        "last_loss": last_loss,
        "first_step_s": first_step_s,
        "images_per_s": ips,
        "median_step_ms": ms,
        "cpu_ms_per_step": {name: statistics.median(v) * 1e3 for name, v in cpu.items()},
        "round_medians_ms": {
            name: common.quantiles([t * 1e3 for t in v]) for name, v in wall.items()
        },
        "ratio_vs_flax": ratios("flax"),
        "ratio_vs_flax_per_round": {name: common.quantiles(v) for name, v in per_round.items()},
        "ratio_vs_torch": ratios("torch") if torch_block else None,
        "goal": "shapesafe >= flax (ratio_vs_flax >= 1); report ratio_vs_torch",
    }


if __name__ == "__main__":
    result = main(sys.argv[1:])
    common.emit(result)
    if not result["first_loss_agree"]:
        print(
            f"the contenders disagree on the first loss (same weights and batch): {result['first_loss']}",
            file=sys.stderr,
        )
        sys.exit(3)
