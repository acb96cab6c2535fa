"""Image decoding throughput: shapesafe.data vs Pillow loop, Pillow thread pool, PyTorch
DataLoader (2 workers) and grain (when installed), all in one run. Prints one JSON object.

Every contender decodes the same 640x480 JPEGs (made from scikit-learn's sample photos),
converts to RGB, resizes to 250x250 (bilinear) and stacks batches of 32. A round runs every
contender once, in an order that alternates from round to round, so load from other jobs on
a shared machine falls on all of them alike. Figures:

- ``ratio_to_best_peer``: per round, shapesafe's images/s over the best peer's in that round;
  its median and spread over the rounds (the goal is a median of at least 1);
- ``images_per_s``: median per contender; ``cpu_ms_per_image``: median CPU time per image
  (all threads of this process plus finished worker processes, so the DataLoader's count);
- shapesafe's dataset is built once per round before its timed pass (the header scan of
  every file, reported as ``scan_ms_per_image``); ``ratio_with_scan_to_best_peer`` counts it;
- ``page_faults_per_image``: fresh memory touched (costly on some virtual machines);
  ``spec_check_us_per_element``: the run-time check every element passes.

    python benchmarks/data_pipeline.py                 # 256 images, 7 rounds
    PYTHONPATH=/path/to/grain python benchmarks/data_pipeline.py
"""

import argparse
import concurrent.futures as cf
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as common
import numpy as np
from PIL import Image

from shapesafe.data import image_folder

SIZE = (250, 250)
Contender = Callable[[list[str], int, int], int]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=256, help="JPEG files to decode (default 256)"
    )
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="threads/processes (default 2)")
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds, each timing every contender once (default 7)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated contenders to run (default: all)"
    )
    return parser.parse_args(argv)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished (waited-for) worker processes."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def make_photos(root: Path, n: int) -> list[str]:
    """``n`` 640x480 JPEGs cut from scikit-learn's two sample photos, in two class folders."""
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    paths = []
    for i in range(n):
        base = photos[i % 2].resize((640 + 8 * (i % 5), 480 + 6 * (i % 7)))
        img = base.crop((i % 8, i % 6, i % 8 + 640, i % 6 + 480))
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return sorted(paths)


def decode(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((SIZE[1], SIZE[0]), Image.Resampling.BILINEAR))


def batches_of(arrays: Any, batch: int) -> int:
    count, group = 0, []
    for a in arrays:
        group.append(a)
        if len(group) == batch:
            np.stack(group)
            count += len(group)
            group = []
    if group:
        np.stack(group)
        count += len(group)
    return count


def pillow_loop(paths: list[str], batch: int, workers: int) -> int:
    return batches_of((decode(p) for p in paths), batch)


def pillow_threads(paths: list[str], batch: int, workers: int) -> int:
    with cf.ThreadPoolExecutor(workers) as pool:
        return batches_of(pool.map(decode, paths), batch)


def torch_loader(paths: list[str], batch: int, workers: int) -> int:
    import torch.utils.data as tud

    class Files(tud.Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> np.ndarray:
            return decode(paths[i])

    loader = tud.DataLoader(Files(), batch_size=batch, num_workers=workers, collate_fn=np.stack)
    return sum(len(b) for b in loader)


def grain_threads(paths: list[str], batch: int, workers: int) -> int:
    import grain

    ds = (
        grain.MapDataset.source(paths)
        .map(decode)
        .batch(batch)
        .to_iter_dataset(grain.ReadOptions(num_threads=workers, prefetch_buffer_size=2 * batch))
    )
    return sum(len(b) for b in ds)


class Shapesafe:
    """``image_folder(root, size, workers=n).batch(32)``: built (and its build timed) by ``build``,
    then one epoch per call; every element is checked against the spec."""

    def __init__(self, root: Path):
        self.root, self.ds, self.epoch = root, None, 0
        self.scan_s: list[float] = []

    def build(self, count: int, workers: int, batch: int) -> None:
        t0 = time.perf_counter()
        self.ds = image_folder(self.root, size=SIZE, workers=workers).batch(batch)
        self.scan_s.append((time.perf_counter() - t0) / count)

    def __call__(self, paths: list[str], batch: int, workers: int) -> int:
        assert self.ds is not None
        self.epoch += 1
        return sum(int(b["mask"].sum()) for b in self.ds.epoch(self.epoch))


def page_faults() -> int:
    """Minor page faults so far (this process and finished workers): fresh memory touched."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_minflt + kids.ru_minflt


def rounds(
    contenders: dict[str, Contender], paths: list[str], args: argparse.Namespace, ours: Shapesafe
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Images/s, CPU ms per image and page faults per image of every contender, one entry per round."""
    names = list(contenders)
    rate: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order if r % 2 == 0 else order[::-1]:
            if name == "shapesafe":
                ours.build(len(paths), args.workers, args.batch)
            f0, c0, t0 = page_faults(), cpu_seconds(), time.perf_counter()
            count = contenders[name](paths, args.batch, args.workers)
            wall = time.perf_counter() - t0
            faults[name].append((page_faults() - f0) / count)
            if count != len(paths):
                raise RuntimeError(f"{name} produced {count} images, expected {len(paths)}")
            rate[name].append(count / wall)
            cpu[name].append((cpu_seconds() - c0) / count * 1000)
    return rate, cpu, faults


def check_cost_us(ours: Shapesafe) -> dict[str, float]:
    """µs per element of the run-time spec check, and of the full explanation it falls back to."""
    from shapesafe.data._element_spec import element_mismatch

    assert ours.ds is not None
    folder = ours.ds._parents[0]
    item = folder._get(0, 0)
    assert item is not None
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        folder.check(item)
    t1 = time.perf_counter()
    for _ in range(n):
        element_mismatch(item[0], folder.spec)
    t2 = time.perf_counter()
    return {
        "check": round((t1 - t0) / n * 1e6, 2),
        "full_comparison": round((t2 - t1) / n * 1e6, 2),
    }


def ratios(rate: dict[str, list[float]], scan_s: list[float] | None = None) -> dict[str, Any]:
    """Per round, shapesafe's images/s over the best peer's; with ``scan_s`` the build counts too."""
    peers = [k for k in rate if k != "shapesafe"]
    per_round = []
    for r, ours in enumerate(rate["shapesafe"]):
        if scan_s is not None:
            ours = 1.0 / (1.0 / ours + scan_s[r])
        per_round.append(ours / max(rate[k][r] for k in peers))
    return {
        **{k: round(v, 3) for k, v in common.quantiles(per_round).items()},
        "per_round": [round(v, 3) for v in per_round],
        "best_peer_per_round": [
            max(peers, key=lambda k, r=r: rate[k][r]) for r in range(len(per_round))
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    contenders: dict[str, Contender] = {
        "pillow_loop": pillow_loop,
        "pillow_threads": pillow_threads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_photos(root, args.images)
        ours = Shapesafe(root)
        contenders["shapesafe"] = ours
        try:
            import torch  # noqa: F401

            contenders["torch_dataloader"] = torch_loader
        except ImportError:
            pass
        try:
            import grain  # noqa: F401

            contenders["grain"] = grain_threads
        except ImportError:
            pass
        if args.only:
            keep = {"shapesafe", *args.only.split(",")}
            contenders = {k: v for k, v in contenders.items() if k in keep}
        rate, cpu, faults = rounds(contenders, paths, args, ours)
        check_us = check_cost_us(ours)
    result = {
        "benchmark": "data_pipeline",
        **common.environment(),
        "parameters": {
            "images": args.images,
            "batch": args.batch,
            "workers": args.workers,
            "rounds": args.rounds,
            "source": "640x480 JPEG q90",
            "target": "250x250 RGB",
        },
        "ratio_to_best_peer": ratios(rate),
        "ratio_with_scan_to_best_peer": ratios(rate, ours.scan_s),
        "images_per_s": {k: round(statistics.median(v), 1) for k, v in rate.items()},
        "cpu_ms_per_image": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
        "cpu_ms_per_image_spread": {
            k: [round(min(v), 3), round(max(v), 3)] for k, v in cpu.items()
        },
        "page_faults_per_image": {k: round(statistics.median(v)) for k, v in faults.items()},
        "scan_ms_per_image": round(statistics.median(ours.scan_s) * 1000, 3),
        "spec_check_us_per_element": check_us,
        "load_average_1min": round(os.getloadavg()[0], 1),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    common.emit(result)
    return result


if __name__ == "__main__":
    main()
