"""The ``shapesafe`` command line."""

import argparse
import sys
import time
from collections.abc import Sequence

from ._cli_artifacts import add_artifact_commands


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import shapesafe as ss
    from models import talk

    spec = talk.image_spec(args.size)
    batch = np.random.default_rng(0).integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    for name, blueprint in [("baseline MLP", talk.mlp(64)), ("CNN", talk.cnn())]:
        t0 = time.perf_counter()
        model = ss.build(blueprint, spec, seed=0)
        built = time.perf_counter() - t0
        print(f"\n== {name}: {blueprint!r}")
        print(ss.summary(model))
        forward = jax.jit(model)
        logits = jax.block_until_ready(forward(jnp.asarray(batch)))
        print(f"built in {built:.2f} s; jitted forward on a batch of {args.batch}: logits {logits.shape} {logits.dtype}")
    print("\nThe training demo (the talk's full progression) comes with the training and data issues.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shapesafe", description="Typed-shape deep learning on JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build, summarise and run the talk's models")
    demo.add_argument("--size", type=int, default=250, help="image height and width (default 250, the talk's)")
    demo.add_argument("--batch", type=int, default=4, help="batch size of the forward pass (default 4)")
    demo.set_defaults(run=_demo)
    add_artifact_commands(sub)  # predict, info
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
