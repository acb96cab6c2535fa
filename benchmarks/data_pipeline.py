"""Image decoding throughput: shapesafe.data vs Pillow loop, Pillow thread pool, PyTorch
DataLoader (2 workers) and grain (when installed), all in one run. Prints one JSON object.

Every contender decodes the same 640x480 JPEGs (made from scikit-learn's sample photos),
converts to RGB, resizes to 250x250 (bilinear) and stacks batches of 32. Each is run
``--rounds`` times in alternating order; the figures are the best images/s and the least
CPU time per image (this process's threads plus worker processes): on a shared machine the
second is the steadier figure, and ``cores / cpu_per_image`` bounds the first.

    python benchmarks/data_pipeline.py                 # 256 images, 3 rounds
    PYTHONPATH=/path/to/grain python benchmarks/data_pipeline.py
"""

import argparse
import concurrent.futures as cf
import os
import resource
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="JPEG files to decode (default 256)")
    parser.add_argument("--batch", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="threads/processes (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per contender (default 3)")
    return parser.parse_args(argv)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished worker processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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


def shapesafe_data(root: Path) -> Callable[[list[str], int, int], int]:
    def run(paths: list[str], batch: int, workers: int) -> int:
        ds = image_folder(root, size=SIZE, workers=workers).batch(batch)
        return sum(int(b["mask"].sum()) for b in ds)
    return run


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

    ds = (grain.MapDataset.source(paths).map(decode).batch(batch)
          .to_iter_dataset(grain.ReadOptions(num_threads=workers, prefetch_buffer_size=2 * batch)))
    return sum(len(b) for b in ds)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    contenders: dict[str, Callable[[list[str], int, int], int]] = {
        "pillow_loop": pillow_loop, "pillow_threads": pillow_threads}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_photos(root, args.images)
        contenders["shapesafe"] = shapesafe_data(root)
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
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
            for name in order:
                c0, t0 = cpu_seconds(), time.perf_counter()
                count = contenders[name](paths, args.batch, args.workers)
                rate = count / (time.perf_counter() - t0)
                per_image = (cpu_seconds() - c0) / count * 1000
                if count != len(paths):
                    raise RuntimeError(f"{name} produced {count} images, expected {len(paths)}")
                best[name] = max(best.get(name, 0.0), rate)
                cpu[name] = min(cpu.get(name, float("inf")), per_image)
    common.emit({
        "benchmark": "data_pipeline",
        **common.environment(),
        "parameters": {"images": args.images, "batch": args.batch, "workers": args.workers,
                       "rounds": args.rounds, "source": "640x480 JPEG q90", "target": "250x250 RGB"},
        "images_per_s": {k: round(v, 1) for k, v in best.items()},
        "cpu_ms_per_image": {k: round(v, 2) for k, v in cpu.items()},
        "load_average_1min": round(os.getloadavg()[0], 1),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    })


if __name__ == "__main__":
    main()
