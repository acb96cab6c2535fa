"""Jitted forward pass of the talk's CNN: shapesafe (checks on) vs hand-written Flax NNX.

Both models hold the same weights and are called the same way: ``jax.jit`` of a pure
function over the ``nnx.split`` state. shapesafe's checks run while JAX traces, so the
compiled calls should cost the same; the figure is ``median(shapesafe) / median(flax)``
over rounds in which the two alternate. Prints one JSON object.

    python benchmarks/core_forward.py            # 96x96 images, batch 32
    python benchmarks/core_forward.py --size 250 # the talk's size
"""

import argparse
import statistics
import sys
import time
from typing import Any

import _common as common
import jax
import numpy as np


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
    parser.add_argument("--batch", type=int, default=32, help="images per call (default 32)")
    parser.add_argument(
        "--rounds", type=int, default=20, help="rounds of alternating A/B blocks (default 20)"
    )
    parser.add_argument(
        "--repeats", type=int, default=10, help="timed calls per model per round (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed calls per model after compiling (default 3)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights and the images (default 0)"
    )
    parser.add_argument(
        "--peer-pool",
        choices=common.POOLS,
        default="max_pool",
        help="how the Flax peer pools: nnx.max_pool (default, what a Flax user writes) or "
        "'reshape', as shapesafe's MaxPool does (a diagnostic)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    model = common.build_shapesafe(args.size, seed=args.seed)
    peer = common.build_flax(args.size, seed=args.seed + 1, pool=args.peer_pool)
    common.copy_weights(model, peer)
    params = common.param_count(model)
    if common.param_count(peer) != params:
        raise RuntimeError(f"parameter counts differ: {params} vs {common.param_count(peer)}")

    x = common.images(args.size, args.batch, seed=args.seed)
    ss_fwd, ss_state = common.pure_forward(model)
    fx_fwd, fx_state = common.pure_forward(peer)

    compile_s, flops = {}, {}
    for name, fwd, state in (("shapesafe", ss_fwd, ss_state), ("flax", fx_fwd, fx_state)):
        t0 = time.perf_counter()
        compiled = fwd.lower(state, x).compile()
        compile_s[name] = time.perf_counter() - t0
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        flops[name] = float(cost.get("flops", float("nan"))) if cost else float("nan")

    y_ss = np.asarray(ss_fwd(ss_state, x))
    y_fx = np.asarray(fx_fwd(fx_state, x))
    max_abs_diff = float(np.max(np.abs(y_ss - y_fx)))
    scale = float(np.max(np.abs(y_fx)))
    assert y_ss.shape == y_fx.shape == (args.batch, 2), (y_ss.shape, y_fx.shape)
    assert max_abs_diff <= 1e-4, f"outputs differ by {max_abs_diff} (logits up to {scale})"

    fns = {"shapesafe": lambda: ss_fwd(ss_state, x), "flax": lambda: fx_fwd(fx_state, x)}
    for fn in fns.values():
        for _ in range(args.warmup):
            jax.block_until_ready(fn())
    wall, cpu = common.interleaved(fns, rounds=args.rounds, repeats=args.repeats)
    ss_med, fx_med = statistics.median(wall["shapesafe"]), statistics.median(wall["flax"])
    ss_cpu, fx_cpu = statistics.median(cpu["shapesafe"]), statistics.median(cpu["flax"])
    per_round = [a / b for a, b in zip(wall["shapesafe"], wall["flax"], strict=True)]

    return {
        "benchmark": "core_forward",
        "what": "jitted forward of talk.cnn(): ss.build (checks on) vs hand-written Flax NNX, same weights",
        **common.environment(),
        "parameters": {
            "size": args.size,
            "batch": args.batch,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
            "peer_pool": args.peer_pool,
        },
        "param_count": params,
        "outputs_agree": True,
        "max_abs_diff": max_abs_diff,
        "max_abs_logit": scale,
        "flops_per_call": flops,
        "compile_s": compile_s,
        "median_ms": {"shapesafe": ss_med * 1e3, "flax": fx_med * 1e3},
        "round_medians_ms": {
            name: common.quantiles([v * 1e3 for v in vals]) for name, vals in wall.items()
        },
        "ratio": ss_med / fx_med,
        "ratio_per_round": common.quantiles(per_round),
        "cpu_median_ms": {"shapesafe": ss_cpu * 1e3, "flax": fx_cpu * 1e3},
        "cpu_ratio": ss_cpu / fx_cpu,
        "goal": "ratio <= 1.02",
    }


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
