r"""Parameter sharding on simulated CPU devices: per-device memory and step time.

1. Memory (no training): ``ss.summary(model, mesh=..., sharding=plan, optimizer=adam,
   loss=..., batch=...)`` for ``"replicate"`` and ``"fsdp"`` on a ``data`` mesh of
   ``--devices`` devices, for the talk's CNN (``talk.cnn()`` at ``--cnn-size`` px, 252 M
   parameters at 250) and ResNet-18 (``resnet.resnet18()`` at ``--resnet-size`` px).
   Parameters and optimizer state per device come from the plan (shapes only, nothing
   allocated beyond the model's own parameters, built already sharded with ``ss.build(...,
   mesh=, sharding=)``); the compiled step's temporaries are XLA's ``memory_analysis()`` of
   the training step compiled for that plan. The goal: fsdp <= 0.15 x replicate for
   parameters + optimizer state on 8 devices. The fsdp step's temporaries are measured
   again with ``remat=True`` (and, for ResNet-18, ``remat=r"\d+\.Residual"``): remat on
   vs off.
2. Step time: ``shapesafe``'s FSDP step (``Engine.train``, what ``ss.fit(..., mesh=mesh,
   sharding="fsdp")`` runs per batch) vs a hand-written ``jax.jit`` step (dict of parameters,
   forward written out, optax Adam, donation) whose ``in_shardings``/``out_shardings`` are the
   same ``NamedSharding``s, on the same mesh, for an MLP ``--features -> --hidden -> --hidden
   -> 10`` at a global batch of ``--batch``. Both start from the same weights and see the same
   batches; each timed call makes 10 steps; contenders alternate (``_common.interleaved``).
   The goal: shapesafe <= 1.10 x the hand-written step.

    python benchmarks/sharding.py                          # 8 devices, talk CNN at 250 px
    python benchmarks/sharding.py --cnn-size 64 --rounds 3 # quicker

The device count must be set before JAX starts: this script sets
``XLA_FLAGS=--xla_force_host_platform_device_count=<devices>`` itself (on CPU).
"""

import argparse
import os
import sys
from typing import Any

STEPS = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (8)")
    parser.add_argument("--cnn-size", type=int, default=250, help="talk CNN image size (250)")
    parser.add_argument("--cnn-batch", type=int, default=32, help="talk CNN global batch (32)")
    parser.add_argument("--resnet-size", type=int, default=64, help="ResNet-18 image size (64)")
    parser.add_argument("--resnet-batch", type=int, default=32, help="ResNet global batch (32)")
    parser.add_argument("--features", type=int, default=256, help="MLP input features (256)")
    parser.add_argument("--hidden", type=int, default=1024, help="MLP hidden width (1024)")
    parser.add_argument("--batch", type=int, default=256, help="MLP global batch (256)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (7)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per round (5)")
    parser.add_argument("--skip-memory", action="store_true", help="only the step time")
    parser.add_argument("--skip-step", action="store_true", help="only the memory")
    return parser.parse_args(argv)


ARGS = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={ARGS.devices}")

import _common as common  # noqa: E402  (after XLA_FLAGS)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402
from jaxtyping import Array, Float32  # noqa: E402

import shapesafe as ss  # noqa: E402
from shapesafe import layers as L  # noqa: E402
from shapesafe.models import resnet, talk  # noqa: E402


def memory(name: str, blueprint: Any, spec: Any, x: Any, classes: int, mesh: Mesh) -> dict:
    """Per-device bytes of parameters, Adam state and the step's temporaries, per plan."""
    model = ss.build(blueprint, spec, seed=0, mesh=mesh, sharding="fsdp")
    y = jax.ShapeDtypeStruct((x.shape[0],), np.int32)
    out: dict[str, Any] = {"model": name, "input": list(x.shape), "params": 0}
    for plan in ("replicate", "fsdp"):
        s = ss.summary(
            model,
            mesh=mesh,
            sharding=plan,
            optimizer=optax.adam(1e-3),
            loss=ss.losses.cross_entropy,
            batch=(x, y),
        )
        assert s.memory is not None
        rows = {k: v[0] for k, v in s.memory.rows.items()}
        out["params"] = s.trainable_params
        out[plan] = rows | {"params_and_opt": rows["parameters"] + rows["optimizer state"]}
    out["ratio_params_and_opt"] = out["fsdp"]["params_and_opt"] / out["replicate"]["params_and_opt"]
    temps = out["fsdp"]["temporaries"], out["replicate"]["temporaries"]
    out["ratio_temporaries"] = temps[0] / temps[1] if None not in temps else None
    for remat in (True, r"\d+\.Sequential"):  # remat on vs off, the same fsdp step
        if isinstance(remat, str) and not any(
            type(b).__name__ == "Sequential" for b in blueprint.layers
        ):
            continue
        s = ss.summary(
            model,
            mesh=mesh,
            sharding="fsdp",
            optimizer=optax.adam(1e-3),
            loss=ss.losses.cross_entropy,
            batch=(x, y),
            remat=remat,
        )
        assert s.memory is not None
        temp = s.memory.rows["temporaries"][0]
        off = out["fsdp"]["temporaries"]
        out.setdefault("fsdp_remat", []).append(
            {
                "remat": remat,
                "temporaries": temp,
                "ratio_to_remat_off": temp / off if None not in (temp, off) else None,
            }
        )
    del model
    return out


def mlp_batches(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, ARGS.batch, ARGS.features)).astype(np.float32)
    y = rng.integers(0, 10, size=(n, ARGS.batch)).astype(np.int32)
    return x, y, np.ones((n, ARGS.batch), bool)


def step_time(mesh: Mesh) -> dict[str, Any]:
    net = L.Linear(ARGS.hidden) >> L.ReLU() >> L.Linear(ARGS.hidden) >> L.ReLU() >> L.Linear(10)
    spec = Float32[Array, f"batch {ARGS.features}"]
    model = ss.build(net, spec, seed=0, mesh=mesh, sharding="fsdp")
    tx = optax.adam(1e-3)
    data = NamedSharding(mesh, PartitionSpec("data"))
    xs, ys, _ = mlp_batches(STEPS)
    host = [(xs[k], ys[k]) for k in range(STEPS)]  # NumPy batches, as a user has them

    # shapesafe: ss.fit over the batches with the plan, through the public API (the call's
    # fixed cost spread over STEPS steps); the optimizer is one object, so the step is reused
    placements = {
        jax.tree_util.keystr(kp): v.sharding
        for kp, v in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    }

    def shapesafe_steps() -> Any:
        history = ss.fit(
            model,
            host,
            loss=ss.losses.cross_entropy,
            optimizer=tx,
            epochs=1,
            mesh=mesh,
            sharding="fsdp",
            progress=False,
        )
        return history.steps[-1]

    # hand-written: the same weights in a dict, the same NamedShardings, jax.jit with donation
    layers = [model.layers[i] for i in (0, 2, 4)]
    params = {
        f"{n}{i}": jnp.copy(getattr(layer, n)[...])
        for i, layer in enumerate(layers)
        for n in ("kernel", "bias")
    }
    p_sh = {
        f"{n}{i}": placements[f"['layers'][{j}]['{n}'].value"]
        for i, j in enumerate((0, 2, 4))
        for n in ("kernel", "bias")
    }
    params = jax.device_put(params, p_sh)
    opt = tx.init(params)
    by_shape = {params[k].shape: p_sh[k] for k in params}  # Adam's moments: as their params
    replicated = NamedSharding(mesh, PartitionSpec())
    o_sh = jax.tree.map(lambda a: by_shape.get(a.shape, replicated), opt)
    opt = jax.device_put(opt, o_sh)

    def loss_fn(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
        h = jax.nn.relu(x @ p["kernel0"] + p["bias0"][None])
        h = jax.nn.relu(h @ p["kernel1"] + p["bias1"][None])
        logits = h @ p["kernel2"] + p["bias2"][None]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(p: Any, o: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, jax.Array]:
        value, grads = jax.value_and_grad(loss_fn)(p, x, y)
        with jax.numpy_dtype_promotion("standard"):
            updates, o = tx.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

    jstep = jax.jit(
        step,
        in_shardings=(p_sh, o_sh, data, data),
        out_shardings=(p_sh, o_sh, replicated),
        donate_argnums=(0, 1),
    )
    state = {"p": params, "o": opt}

    def peer_steps() -> Any:
        value = None
        for k in range(STEPS):
            x, y = (jax.device_put(a, data) for a in host[k])  # each batch split over `data`
            state["p"], state["o"], value = jstep(state["p"], state["o"], x, y)
        return value

    first = float(shapesafe_steps()), float(peer_steps())  # compile both; the same first steps
    wall, cpu = common.interleaved(
        {"shapesafe": shapesafe_steps, "jax_jit": peer_steps},
        rounds=ARGS.rounds,
        repeats=ARGS.repeats,
    )
    per_round = [a / b for a, b in zip(wall["shapesafe"], wall["jax_jit"], strict=True)]
    per_round_cpu = [a / b for a, b in zip(cpu["shapesafe"], cpu["jax_jit"], strict=True)]
    return {
        "model": f"MLP {ARGS.features}-{ARGS.hidden}-{ARGS.hidden}-10",
        "batch": ARGS.batch,
        "params": common.param_count(model),
        "last_loss_of_first_call": {"shapesafe": first[0], "jax_jit": first[1]},
        "ms_per_step": {
            name: common.quantiles([t / STEPS * 1e3 for t in v]) for name, v in wall.items()
        },
        "cpu_ms_per_step": {
            name: common.quantiles([t / STEPS * 1e3 for t in v]) for name, v in cpu.items()
        },
        "ratio": float(np.median(wall["shapesafe"]) / np.median(wall["jax_jit"])),
        "ratio_per_round": common.quantiles(per_round),
        "cpu_ratio": float(np.median(per_round_cpu)),
    }


def main() -> dict[str, Any]:
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    mesh = Mesh(np.array(jax.devices()), ("data",))
    result: dict[str, Any] = {
        "benchmark": "sharding",
        **common.environment(),
        "parameters": vars(ARGS),
        "memory": [],
    }
    if not ARGS.skip_memory:
        cnn_x = jax.ShapeDtypeStruct((ARGS.cnn_batch, ARGS.cnn_size, ARGS.cnn_size, 3), np.uint8)
        result["memory"].append(
            memory("talk.cnn()", talk.cnn(), talk.image_spec(ARGS.cnn_size), cnn_x, 2, mesh)
        )
        net = resnet.resnet18(size=ARGS.resnet_size)
        rx = jax.ShapeDtypeStruct(
            (ARGS.resnet_batch, ARGS.resnet_size, ARGS.resnet_size, 3), np.float32
        )
        result["memory"].append(memory("resnet18()", net[0], net[1], rx, 1000, mesh))
    if not ARGS.skip_step:
        result["step_time"] = step_time(mesh)
        result["param_count"] = result["step_time"]["params"]
    return result


if __name__ == "__main__":
    common.emit(main())
