"""Is training the talk's CNN input-bound? The share of step time spent waiting for data.

``ss.fit`` trains ``talk.cnn()`` (batch 32, SGD) on batches read from 640x480 JPEGs (cut from
scikit-learn's sample photos, resized to the model's size while decoding), through three
pipelines, each for ``--epochs`` epochs:

- ``decode_every_epoch``: ``image_folder(...).shuffle(seed).batch(32).prefetch(2)`` decodes
  every photo in every epoch (the pipeline measured before ``cache()`` was recommended);
- ``cached`` (recommended for multi-epoch training, as ``shapesafe demo`` does):
  ``image_folder(...).cache().shuffle(seed).batch(32).prefetch(2)``; the first epoch decodes
  and keeps the decoded images, later epochs reshuffle them from memory;
- ``in_memory``, the floor: the same batches from ``from_arrays``.

A thin proxy times how long ``fit`` blocks in ``next()`` for each batch. Figures: per epoch
the wait over the epoch's wall time; ``wait_share`` is the mean over the epochs after the
first (the first includes compilation, and for ``cached`` the one pass of decoding), and
``epoch_ratio`` is the median epoch time over the in-memory floor's. With ``--passes 2`` the
three pipelines run in order and then in reverse order, so a load that changes during the
run falls on all of them alike (the epoch ratio is only meaningful then; the wait share is
a ratio within each epoch). Prints one JSON object.

    python benchmarks/data_wait.py             # 96x96, 256 photos, 3 epochs
    python benchmarks/data_wait.py --size 250  # the talk's size
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import numpy as np
import optax
from data_pipeline import make_photos

import shapesafe as ss
from shapesafe.data import from_arrays, image_folder
from shapesafe.models import talk


class Timed:
    """A dataset proxy that adds up the time its consumer waits in ``next()``."""

    def __init__(self, ds: Any):
        self.ds, self.spec, self.waited = ds, ds.spec, 0.0

    def __len__(self) -> int:
        return len(self.ds)

    def epoch(self, e: int, *, start: int = 0) -> Any:
        it = self.ds.epoch(e, start=start)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - t0
            yield batch


def run(data: Any, size: int, epochs: int) -> list[dict[str, float]]:
    """``fit`` for ``epochs`` epochs; per epoch its wall time, the time spent waiting, their ratio."""
    model = ss.build(talk.cnn(), talk.image_spec(size), seed=0)
    timed = Timed(data)
    out: list[dict[str, float]] = []

    class Clock(ss.callbacks.Callback):
        def on_epoch_begin(self, run: Any, epoch: int) -> None:
            timed.waited, self.t0 = 0.0, time.perf_counter()

        def on_epoch_end(self, run: Any, epoch: int, logs: dict[str, Any]) -> None:
            epoch_s = time.perf_counter() - self.t0
            out.append(
                {
                    "epoch_s": round(epoch_s, 3),
                    "waited_s": round(timed.waited, 3),
                    "wait_share": round(timed.waited / epoch_s, 4),
                }
            )

    ss.fit(
        model,
        timed,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(1e-6),
        epochs=epochs,
        callbacks=[Clock()],
        progress=False,
    )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=96, help="image height and width (default 96)")
    parser.add_argument(
        "--photos", type=int, default=256, help="JPEGs to read per epoch (default 256)"
    )
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per pipeline, at least 2 (default 3)"
    )
    parser.add_argument(
        "--passes", type=int, default=2, help="1: each pipeline once; 2: then in reverse order"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first compiles)")
    size = (args.size, args.size)
    epochs: dict[str, list[dict[str, float]]] = {}
    later: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_photos(Path(tmp), args.photos)
        folder = image_folder(tmp, size=size, workers=args.workers)
        images = np.stack([e["image"] for e in folder])
        labels = np.stack([e["label"] for e in folder])
        pipelines = {
            "decode_every_epoch": lambda: folder.shuffle(seed=0).batch(32).prefetch(2),
            "cached": lambda: (
                image_folder(tmp, size=size, workers=args.workers)
                .cache()
                .shuffle(seed=0)
                .batch(32)
                .prefetch(2)
            ),
            "in_memory": lambda: (
                from_arrays({"image": images, "label": labels}).shuffle(seed=0).batch(32)
            ),
        }
        names = list(pipelines)
        for k in range(args.passes):
            for name in names if k % 2 == 0 else names[::-1]:
                got = run(pipelines[name](), args.size, args.epochs)
                epochs.setdefault(name, []).extend(got)
                later.setdefault(name, []).extend(got[1:])
    floor = statistics.median(e["epoch_s"] for e in later["in_memory"])
    result = {
        "benchmark": "data_wait",
        **common.environment(),
        "parameters": vars(args),
        "wait_share": {
            k: round(statistics.mean(e["wait_share"] for e in v), 4) for k, v in later.items()
        },
        "epoch_s": {
            k: round(statistics.median(e["epoch_s"] for e in v), 3) for k, v in later.items()
        },
        "epoch_ratio": {
            k: round(statistics.median(e["epoch_s"] for e in v) / floor, 3)
            for k, v in later.items()
        },
        "first_epoch_wait_share": {
            k: v[0]["wait_share"] for k, v in epochs.items()
        },  # of the first pass
        "epochs": epochs,
        "goal": "never input-bound: wait share near the in-memory floor after the first epoch",
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
