"""What building the talk's CNN costs: ``ss.build`` vs constructing the hand-written Flax
NNX model directly, and the first trace + compile + call of each.

``ss.build`` infers every size with ``jax.eval_shape`` on symbolic shapes; the peer is told
its sizes by hand (``nnx.Linear(124 * 124 * 32, 512)``). Both initialise the same parameters
with the same initialisers, so ``build_s`` minus the peer's is the price of inference. To
show that building computes nothing at real size, every XLA compilation during the build is
logged: the layers' forward functions are traced (``eval_shape``), never compiled or run.

Each measurement runs in a fresh Python process (so the peak RSS and the first compile are
that model's alone); the processes alternate between the two models. Prints one JSON object.

    python benchmarks/build_cost.py              # 250x250x3, the talk's size
"""

import argparse
import collections
import json
import logging
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as common
import jax
import jax.numpy as jnp
from flax import nnx

SIDES = ("shapesafe", "flax")
FIGURES = (
    "build_s",
    "build_cpu_s",
    "build_peak_rss_increase_mib",
    "trace_s",
    "trace_cpu_s",
    "compile_s",
    "compile_cpu_s",
    "first_call_s",
    "first_use_s",
    "first_use_cpu_s",
    "later_call_s",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=250, help="image height and width (default 250, the talk's)"
    )
    parser.add_argument(
        "--batch", type=int, default=32, help="batch of the first compile and call (default 32)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per model (default 3)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights and the images (default 0)"
    )
    parser.add_argument(
        "--child", choices=SIDES, help=argparse.SUPPRESS
    )  # one measurement, in this process
    return parser.parse_args(argv)


class CompileLog(logging.Handler):
    """Names of the computations JAX traces and compiles (with ``jax.log_compiles``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.compiled: collections.Counter[str] = collections.Counter()
        self.signatures: set[str] = set()  # name and argument shapes of each compilation
        self.traced: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if m := re.match(
            r"Compiling jit\((\w+)\) with global shapes and types (\(.*?\))\.", message
        ):
            self.compiled[m.group(1)] += 1
            self.signatures.add(m.group(1) + m.group(2))
        elif m := re.match(r"Finished tracing (?:\+ transforming )?(\w+) for jit", message):
            self.traced[m.group(1)] += 1


class Clock:
    """Wall and CPU seconds (all threads of this process) of a ``with`` block. On a shared
    machine the CPU seconds move less with other people's load than the wall seconds."""

    def __enter__(self) -> "Clock":
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def measure(side: str, size: int, batch: int, seed: int) -> dict[str, Any]:
    """Build one model in this (fresh) process, then trace, compile and call its forward."""
    jax.block_until_ready(jnp.zeros(()))  # start the backend before measuring
    rss0 = common.max_rss_mib()
    log = CompileLog()
    logger = logging.getLogger("jax")
    logger.addHandler(log)
    logger.propagate = False  # keep jax.log_compiles' warnings off stderr
    with jax.log_compiles(True), Clock() as build:
        model = (
            common.build_shapesafe(size, seed)
            if side == "shapesafe"
            else common.build_flax(size, seed)
        )
        jax.block_until_ready(nnx.state(model))
    logger.removeHandler(log)
    rss_build = common.max_rss_mib()

    fwd, state = common.pure_forward(model)
    spec = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
    with Clock() as trace:
        lowered = fwd.lower(state, spec)
    with Clock() as compile_:
        compiled = lowered.compile()
    x = common.images(size, batch, seed)
    with Clock() as first:
        jax.block_until_ready(compiled(state, x))
    with Clock() as later:
        jax.block_until_ready(compiled(state, x))
    return {
        "side": side,
        "param_count": common.param_count(model),
        "build_s": build.wall,
        "build_cpu_s": build.cpu,
        "build_peak_rss_increase_mib": rss_build - rss0,
        "trace_s": trace.wall,
        "trace_cpu_s": trace.cpu,
        "compile_s": compile_.wall,
        "compile_cpu_s": compile_.cpu,
        "first_call_s": first.wall,
        "first_use_s": trace.wall + compile_.wall + first.wall,
        "first_use_cpu_s": trace.cpu + compile_.cpu + first.cpu,
        "later_call_s": later.wall,
        "compiled_during_build": dict(sorted(log.compiled.items())),
        "traced_during_build": dict(sorted(log.traced.items())),
        "compile_signatures": sorted(log.signatures),
    }


def run_child(side: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        side,
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} measurement failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def summarise(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    counts = {side: runs[side][0]["param_count"] for side in SIDES}
    if counts["shapesafe"] != counts["flax"]:
        raise RuntimeError(f"parameter counts differ: {counts}")
    figures: dict[str, Any] = {}
    for name in FIGURES:
        samples = {side: [r[name] for r in runs[side]] for side in SIDES}
        medians = {side: statistics.median(v) for side, v in samples.items()}
        figures[name] = {
            **medians,
            "ratio": medians["shapesafe"] / medians["flax"] if medians["flax"] else None,
            "samples": samples,
        }
    no_flops = _build_program_ops(args.size)
    no_flops["inference_overhead_s"] = figures["build_s"]["shapesafe"] - figures["build_s"]["flax"]
    no_flops["inference_overhead_cpu_s"] = (
        figures["build_cpu_s"]["shapesafe"] - figures["build_cpu_s"]["flax"]
    )
    return {
        "benchmark": "build_cost",
        "what": "ss.build(talk.cnn(), talk.image_spec(size)) vs constructing the hand-written Flax NNX CNN; "
        "then jax.jit(forward).lower(state, x) (trace), .compile(), first and second call",
        **common.environment(),
        "parameters": {
            "size": args.size,
            "batch": args.batch,
            "repeats": args.repeats,
            "seed": args.seed,
        },
        "param_count": counts["shapesafe"],
        "param_mib": counts["shapesafe"] * 4 / 2**20,
        **figures,
        "no_flops_at_build": no_flops,
    }


def _build_program_ops(size: int) -> dict[str, Any]:
    """``ss.build`` compiles one program that initialises the parameters; the layers' forwards
    are only traced (``jax.eval_shape``) to infer sizes. Have JAX dump what ``ss.build``
    lowers (its public ``jax_dump_ir_to`` option) and list the StableHLO ops: a forward on data
    would show ``convolution``, ``dot_general`` or ``reduce_window``; initialisers show only RNG
    and elementwise ops."""
    import tempfile

    import shapesafe as ss
    from shapesafe.models import talk

    with tempfile.TemporaryDirectory() as folder:
        jax.config.update("jax_dump_ir_to", folder)
        try:
            model = ss.build(talk.cnn(), talk.image_spec(size), seed=0)
            jax.block_until_ready(jax.tree.leaves(nnx.state(model)))
        finally:
            jax.config.update("jax_dump_ir_to", "")
        del model
        text = "\n".join(p.read_text() for p in sorted(Path(folder).glob("*.mlir")))
    ops = sorted(set(re.findall(r"stablehlo\.([a-z_]+)", text)))
    forward = sorted(set(ops) & {"convolution", "dot_general", "reduce_window", "dot"})
    return {
        "how": "StableHLO ops of every program ss.build lowers (jax_dump_ir_to)",
        "build_program_ops": ops,
        "forward_ops_in_build": forward,
        "build_ran_no_forward": not forward,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        return measure(args.child, args.size, args.batch, args.seed)
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for r in range(args.repeats):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            runs[side].append(run_child(side, args))
    return summarise(runs, args)


if __name__ == "__main__":
    common.emit(main(sys.argv[1:]))
