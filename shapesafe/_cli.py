"""The ``shapesafe`` command line: ``demo`` (the talk end to end, ``shapesafe.models.demo``),
``predict`` and ``info`` (artifacts). The only part of the library that imports the zoo."""

import argparse
import sys
from collections.abc import Sequence

from ._cli_artifacts import add_artifact_commands


def main(argv: Sequence[str] | None = None) -> int:
    from .models import demo as recipe

    parser = argparse.ArgumentParser(
        prog="shapesafe", description="Typed-shape deep learning on JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help=recipe.HELP)
    recipe.add_arguments(demo)
    demo.set_defaults(run=recipe.run)
    add_artifact_commands(sub)  # predict, info
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
