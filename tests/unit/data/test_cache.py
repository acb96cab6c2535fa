"""cache() in memory and cache(path) on disk: the same elements, read back by later datasets,
invalidated by a changed pipeline, and never read when a pass was interrupted."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from jaxtyping import Float32, Int32, UInt8
from PIL import Image

import shapesafe as ss
from shapesafe.data import from_arrays, from_generator, image_folder


def _source(n: int = 10, offset: float = 0.0):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3) + np.float32(offset)
    return from_arrays({"x": x, "label": (np.arange(n) % 3).astype(np.int32)})


class Counted:
    """A map function that counts its calls (a recomputation shows up as calls)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, x: Float32[np.ndarray, "3"], rng: np.random.Generator
    ) -> Float32[np.ndarray, "3"]:
        self.calls += 1
        return (x * 2 + rng.random(3)).astype(np.float32)


def _values(ds, epoch: int = 0) -> list[tuple[list[float], int]]:
    return [(e["x"].tolist(), int(e["label"])) for e in ds.epoch(epoch)]


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "threads"])
def test_disk_cache_yields_what_the_memory_cache_yields(tmp_path: Path, workers: int):
    memory = _source().map(Counted(), seed=1, workers=workers).cache().shuffle(seed=0)
    disk = _source().map(Counted(), seed=1, workers=workers).cache(tmp_path).shuffle(seed=0)
    for epoch in (0, 1):  # epoch 1 replays epoch 0's elements, reshuffled
        assert _values(disk, epoch) == _values(memory, epoch)
    batches = list(_source().map(Counted(), seed=1).cache(tmp_path).batch(4))
    np.testing.assert_array_equal(
        np.concatenate([b["x"][b["mask"]] for b in batches]),
        np.stack([e["x"] for e in memory.epoch(0)])[
            np.argsort(np.random.default_rng([0, 0]).permutation(10))
        ],
    )


def test_later_datasets_read_the_files_without_recomputing(tmp_path: Path):
    first = Counted()
    ds = _source().map(first, seed=1).cache(tmp_path)
    assert not ds.complete
    expected = _values(ds)
    assert first.calls == 10 and ds.complete
    assert _values(ds, epoch=3) == expected and first.calls == 10  # later epochs: the files

    again = Counted()  # a new process builds the same pipeline: it reads the files
    ds2 = _source().map(again, seed=1).cache(tmp_path)
    assert ds2.complete and len(ds2) == 10
    assert _values(ds2) == expected and again.calls == 0

    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("cache-")]
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["count"] == 10 and meta["spec"] == repr(ds.spec)
    assert meta["origins"][:2] == ["example 0", "example 1"]
    x = np.load(folder / "leaf1.npy")  # leaves in the spec's flattened (sorted-key) order
    assert x.shape == (10, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, np.stack([np.asarray(v) for v, _ in expected]))
    e = next(iter(ds2))
    assert not e["x"].flags.writeable  # read-only views of the files


def test_a_changed_pipeline_is_recomputed_and_replaces_the_old_cache(tmp_path: Path):
    _values(_source().map(Counted(), seed=1).cache(tmp_path))
    old = _folders(tmp_path)

    other_seed = Counted()
    ds = _source().map(other_seed, seed=2).cache(tmp_path)
    assert not ds.complete
    _values(ds)
    assert other_seed.calls == 10

    other_data = Counted()
    _values(_source(offset=1.0).map(other_data, seed=2).cache(tmp_path))
    assert other_data.calls == 10

    def double(x: Float32[np.ndarray, "3"]) -> Float32[np.ndarray, "3"]:
        return x * 2

    def triple(x: Float32[np.ndarray, "3"]) -> Float32[np.ndarray, "3"]:
        return x * 3

    d2 = _source().map(double).cache(tmp_path)
    _values(d2)
    triple.__name__ = "double"  # the same name, other code: still another pipeline
    d3 = _source().map(triple).cache(tmp_path)
    assert not d3.complete
    assert _values(d3)[1][0] == [9.0, 12.0, 15.0]
    assert (
        len([n for n in _folders(tmp_path) if n.startswith("cache-")]) == 2
    )  # map(Counted), map(double)
    assert not set(old) & set(_folders(tmp_path))


def test_an_interrupted_pass_is_never_read(tmp_path: Path):
    fn = Counted()
    ds = _source().map(fn, seed=1).cache(tmp_path)
    it = ds.epoch(0)
    next(it), next(it)
    it.close()
    del it
    again = Counted()
    ds2 = _source().map(again, seed=1).cache(tmp_path)
    assert not ds2.complete
    assert not [n for n in _folders(tmp_path) if n.startswith("cache-")]  # only a temporary folder
    assert len(_values(ds2)) == 10 and again.calls == 10 and ds2.complete


def test_a_stream_is_written_during_its_first_pass(tmp_path: Path):
    calls = []

    def gen():
        calls.append(1)
        for i in range(5):
            yield np.full((2,), i, np.float32)

    spec = Float32[np.ndarray, "2"]
    ds = from_generator(gen, spec).filter(lambda x: x[0] != 3).cache(tmp_path)
    first = [float(v[0]) for v in ds]
    assert first == [0.0, 1.0, 2.0, 4.0] and ds.complete and len(ds) == 4
    ds2 = from_generator(gen, spec).filter(lambda x: x[0] != 3).cache(tmp_path)
    assert ds2.complete and [float(v[0]) for v in ds2] == first and len(calls) == 1
    it = ds2.epoch(0)
    next(it)
    state = json.loads(json.dumps(it.get_state()))
    assert [float(v[0]) for v in ds2.epoch(state=state)] == first[1:]

    partial = (
        from_generator(gen, Float32[np.ndarray, "2"])
        .map(lambda x: x + 1, spec=spec)
        .cache(tmp_path)
    )
    assert [float(v[0]) for v in partial.take(2)] == [1.0, 2.0]
    assert not partial.complete  # take() stopped the first pass: nothing committed


def test_a_broken_cache_folder_is_rebuilt(tmp_path: Path):
    _values(_source().map(Counted(), seed=1).cache(tmp_path))
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("cache-")]
    (folder / "meta.json").write_text("{not json")
    fn = Counted()
    ds = _source().map(fn, seed=1).cache(tmp_path)
    assert not ds.complete
    assert len(_values(ds)) == 10 and fn.calls == 10 and ds.complete
    assert json.loads((folder / "meta.json").read_text())["count"] == 10


def test_skipped_bad_files_stay_skipped_in_the_cache(tmp_path: Path):
    root = tmp_path / "photos"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 10), (40 * i, 0, 0)).save(root / name / f"{i}.png")
    good = root / "dog" / "t.jpg"
    Image.new("RGB", (64, 64), "blue").save(good, quality=90)
    good.write_bytes(good.read_bytes()[:200])  # truncated: found only when decoded
    folder = image_folder(root, size=(8, 8), on_error="skip", workers=2)
    memory = [(e["image"].tolist(), int(e["label"])) for e in folder.cache()]
    disk = image_folder(root, size=(8, 8), on_error="skip", workers=2).cache(tmp_path / "c")
    assert [(e["image"].tolist(), int(e["label"])) for e in disk] == memory and len(memory) == 6
    again = image_folder(root, size=(8, 8), on_error="skip").cache(tmp_path / "c")
    assert again.complete
    batches = list(again.batch(4))
    assert [int(b["mask"].sum()) for b in batches] == [4, 2]  # the bad file is a masked slot
    os.utime(root / "cat" / "0.png", ns=(1, 1))  # a source file changed: not the same pipeline
    assert not image_folder(root, size=(8, 8), on_error="skip").cache(tmp_path / "c").complete


def test_split_parts_keep_their_own_caches(tmp_path: Path):
    train, test = _source(20).split(0.5, seed=0)
    _values(train.cache(tmp_path)), _values(test.cache(tmp_path))
    assert len([n for n in _folders(tmp_path) if n.startswith("cache-")]) == 2
    train2, test2 = _source(20).split(0.5, seed=0)
    assert train2.cache(tmp_path).complete and test2.cache(tmp_path).complete


def test_disk_cache_needs_fixed_sizes_and_names_the_stage(tmp_path: Path):
    ds = from_generator(
        lambda: iter([]), {"image": UInt8[np.ndarray, "h w 3"], "label": Int32[np.ndarray, ""]}
    )
    with pytest.raises(
        ss.ShapeError, match=r"stage 2, cache\(.*fixed-size arrays.*'image'.*cache\(\)"
    ):
        ds.cache(tmp_path)


def test_an_empty_dataset_caches_to_an_empty_cache(tmp_path: Path):
    ds = from_generator(lambda: iter([]), Float32[np.ndarray, "2"]).cache(tmp_path)
    assert list(ds) == [] and ds.complete
    assert list(from_generator(lambda: iter([]), Float32[np.ndarray, "2"]).cache(tmp_path)) == []
    empty = _source().take(0).cache(tmp_path)
    assert list(empty) == [] and empty.complete and len(_source().take(0).cache(tmp_path)) == 0
