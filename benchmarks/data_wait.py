"""Is training the talk's CNN input-bound? The share of step time spent waiting for data.

``ss.fit`` trains ``talk.cnn()`` on ``image_folder(...).shuffle(seed).batch(32).prefetch(2)``
read from 640x480 JPEGs (cut from scikit-learn's sample photos, resized to the model's size
while decoding). A thin proxy around the dataset times how long ``fit`` blocks in ``next()``
for each batch; the figure is that wait over the epoch's wall time, for the second epoch
(the first includes compilation). The peer is the same training on the same batches held in
memory (``from_arrays``), whose epoch time is the floor. Prints one JSON object.

    python benchmarks/data_wait.py             # 96x96, 256 photos
    python benchmarks/data_wait.py --size 250  # the talk's size
"""

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import numpy as np
import optax
from data_pipeline import make_photos

import shapesafe as ss
from models import talk
from shapesafe.data import from_arrays, image_folder


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


def run(data: Any, size: int) -> tuple[float, float]:
    model = ss.build(talk.cnn(), talk.image_spec(size), seed=0)
    timed = Timed(data)
    times: list[float] = []

    class Clock(ss.callbacks.Callback):
        def on_epoch_begin(self, run: Any, epoch: int) -> None:
            timed.waited, self.t0 = 0.0, time.perf_counter()

        def on_epoch_end(self, run: Any, epoch: int, logs: dict[str, Any]) -> None:
            times.append(time.perf_counter() - self.t0)

    ss.fit(model, timed, loss=ss.losses.cross_entropy, optimizer=optax.sgd(1e-6), epochs=2,
           callbacks=[Clock()], progress=False)
    return times[-1], timed.waited


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="image height and width (default 96)")
    parser.add_argument("--photos", type=int, default=256, help="JPEGs to read per epoch (default 256)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads (default 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        make_photos(Path(tmp), args.photos)
        folder = image_folder(tmp, size=(args.size, args.size), workers=args.workers)
        pipeline = folder.shuffle(seed=0).batch(32).prefetch(2)
        epoch_s, waited_s = run(pipeline, args.size)
        images = np.stack([e["image"] for e in folder])
        labels = np.stack([e["label"] for e in folder])
    memory = from_arrays({"image": images, "label": labels}).shuffle(seed=0).batch(32)
    floor_s, floor_wait_s = run(memory, args.size)
    result = {
        "benchmark": "data_wait",
        **common.environment(),
        "parameters": vars(args),
        "epoch_s": {"image_folder": epoch_s, "in_memory": floor_s, "ratio": epoch_s / floor_s},
        "waited_s": {"image_folder": waited_s, "in_memory": floor_wait_s},
        "wait_share": {"image_folder": waited_s / epoch_s, "in_memory": floor_wait_s / floor_s},
        "goal": "never input-bound: wait share near the in-memory floor",
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
