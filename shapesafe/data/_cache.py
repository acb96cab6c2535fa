"""``cache``: keep the elements of the first pass and replay them in later epochs.

``cache()`` keeps them in memory. ``cache(path)`` writes them to files under ``path`` that later
epochs, and later processes, read back (memory-mapped): one ``.npy`` per leaf of the spec with
a leading element axis, ``present.npy`` (false where a source skipped an element, e.g. a bad
image under ``on_error="skip"``) and ``meta.json`` (the spec, the count, where each element
came from, and the fingerprint of the pipeline upstream).

Safety: a cache is written into a temporary folder beside its final one and renamed into
place only when every element is in it, so a partial cache (an interrupted first epoch, a
crash) is never read. The folder's name is the fingerprint of the stages upstream (their
kinds and parameters, the specs, the source files' paths, sizes and modification times, the
arrays' bytes, the user functions' code), so a changed pipeline never reads another's cache.
"""

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax.tree_util as jtu
import numpy as np

from .._errors import ShapeError
from .._specs import parse
from ._dataset import Dataset, Item, Iter, State, describe_origin, stage
from ._stages import ParentIter

FORMAT = 1
PREFIX = "cache-"


@stage("cache")
class Cache(Dataset):
    def __init__(self, parent: Dataset):
        self._parents = (parent,)
        self._stage = "cache()"
        self.spec = parent.spec
        self._random_access, self._workers = parent._random_access, parent._workers
        self.memo: dict[int, Item | None] = {}
        self.items: list[Item] | None = None  # a stream's complete first pass

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        return len(self.items) if n is None and self.items is not None else n

    def _get(self, epoch: int, index: int) -> Item | None:
        if index not in self.memo:
            self.memo[index] = self._parents[0]._get(0, index)
        return self.memo[index]

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        if self.items is not None:
            return _ListIter(self.items, int(state["count"]) if state else 0)
        return _CacheIter(self, state)


class _ListIter(Iter):
    def __init__(self, items: list[Item], start: int):
        self.items, self.count = items, start

    def next(self) -> Item:
        if self.count >= len(self.items):
            raise StopIteration
        self.count += 1
        return self.items[self.count - 1]

    def state(self) -> State:
        return {"count": self.count}


class _CacheIter(ParentIter):
    def __init__(self, ds: Cache, state: State | None):
        super().__init__(ds._parents[0]._open(0, None))
        self.ds, self.seen = ds, []
        for _ in range(int(state["count"]) if state else 0):
            self.seen.append(self.parent.next())

    def next(self) -> Item:
        try:
            item = self.parent.next()
        except StopIteration:
            self.ds.items = self.seen
            raise
        self.seen.append(item)
        return item

    def state(self) -> State:
        return {"count": len(self.seen)}


# ------------------------------------------------------------------------------ on disk


@stage("disk_cache")
class DiskCache(Dataset):
    """``cache(path)``: the first pass writes, later passes (and processes) read the files."""

    def __init__(self, parent: Dataset, path: str | os.PathLike[str]):
        self._parents = (parent,)
        self.root = Path(path).expanduser()
        self._stage = f"cache({str(self.root)!r})"
        self.spec = parent.spec
        self._random_access, self._workers = parent._random_access, parent._workers
        self.leaves = _fixed_leaves(parent, self._stage)
        self.treedef = jtu.tree_structure(parent.spec.tree)
        self.fingerprint = fingerprint(parent)
        self.folder = self.root / f"{PREFIX}{self.fingerprint[:24]}"
        self.lock = threading.Lock()
        self.reader: _Reader | None = _Reader.open(self)
        self.writer: _Writer | None = None

    def _length(self) -> int | None:
        if self.reader is not None:
            return self.reader.count
        return self._parents[0]._length()

    def _get(self, epoch: int, index: int) -> Item | None:
        reader = self.reader
        if reader is not None:
            return reader.item(index)
        with self.lock:
            if self.reader is not None:
                return self.reader.item(index)
            if self.writer is None:
                self.writer = _Writer(self, self._parents[0]._length() or 0)
            writer = self.writer
        if writer.has(index):
            return writer.item(index)
        item = self._parents[0]._get(0, index)
        if writer.put(index, item):  # the last one: the cache is complete, swap in the reader
            self.reader = writer.commit()
            self.writer = None
        return item

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self.reader is not None:
            if self._random_access:
                return super()._open(epoch, state)
            return _ReaderIter(self.reader, int(state["count"]) if state else 0)
        if self._random_access:
            if not self._parents[0]._length():  # nothing to compute: the empty cache is complete
                self.reader = _Writer(self, 0).commit()
            return super()._open(epoch, state)
        return _DiskStreamIter(self, state)

    @property
    def complete(self) -> bool:
        """Whether the cache on disk is complete (and is what later passes read)."""
        return self.reader is not None


class _ReaderIter(Iter):
    def __init__(self, reader: "_Reader", start: int):
        self.reader, self.count = reader, start

    def next(self) -> Item:
        while self.count < self.reader.count:
            self.count += 1
            item = self.reader.item(self.count - 1)
            if item is not None:
                return item
        raise StopIteration

    def state(self) -> State:
        return {"count": self.count}


class _DiskStreamIter(ParentIter):
    """A stream's first pass: every element is appended to the files as it goes by; the end
    of the pass commits them. Resuming replays the parent (a stream cannot seek)."""

    def __init__(self, ds: DiskCache, state: State | None):
        super().__init__(ds._parents[0]._open(0, None))
        self.ds = ds
        self.writer = _Writer(ds, None)
        for _ in range(int(state["count"]) if state else 0):
            self.writer.append(self.parent.next())

    def next(self) -> Item:
        try:
            item = self.parent.next()
        except StopIteration:
            if self.ds.reader is None:
                self.ds.reader = self.writer.commit()
            raise
        self.writer.append(item)
        return item

    def state(self) -> State:
        return {"count": self.writer.count}

    def close(self) -> None:
        self.writer.discard()
        super().close()


def _fixed_leaves(parent: Dataset, stage: str) -> list[tuple[str, np.dtype[Any], tuple[int, ...]]]:
    """Per leaf of the spec its path, dtype and shape; a disk cache needs them all fixed."""
    out = []
    for path, ann in parent.spec.leaves():
        dims = parse(ann).dims
        dtypes = ann.dtypes if isinstance(ann.dtypes, tuple | list) else ()
        if len(dtypes) != 1 or any(d.kind != "fixed" for d in dims):
            at = f" at {path!r}" if path else ""
            raise ShapeError(
                f"stage {parent.depth + 1}, {stage}: a cache on disk stores fixed-size arrays of one dtype, "
                f"but {parent.where()} gives {ann.dtype.__name__}[..., {ann.dim_str!r}]{at}. Map the elements "
                "to a fixed size and dtype first, or cache them in memory with cache()."
            )
        out.append((path, np.dtype(dtypes[0]), tuple(int(d.size or 0) for d in dims)))
    return out


class _Writer:
    """Elements going into a temporary folder beside the final one; ``commit`` renames it."""

    def __init__(self, ds: DiskCache, n: int | None):
        ds.root.mkdir(parents=True, exist_ok=True)
        self.ds, self.n, self.count = ds, n, 0
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{ds.folder.name}.tmp-{os.getpid()}-", dir=ds.root)
        )
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.tmp), ignore_errors=True)
        self.lock = threading.Lock()
        self.origins: list[str | None] = [None] * (n or 0)
        if n is not None:  # random access: rows written in any order, from several threads
            self.arrays = [
                _open_npy(self.tmp / f"leaf{k}.npy", dt, (n, *shape))
                for k, (_, dt, shape) in enumerate(ds.leaves)
            ]
            self.present = np.zeros(n, bool)
            self.done = np.zeros(n, bool)
        else:  # a stream: rows appended, converted to .npy at the end
            self.files = [open(self.tmp / f"leaf{k}.raw", "wb") for k in range(len(ds.leaves))]
            self.flags: list[bool] = []

    # random access
    def has(self, index: int) -> bool:
        return bool(self.done[index])

    def item(self, index: int) -> Item | None:
        if not self.present[index]:
            return None
        leaves = [
            np.array(a[index]) for a in self.arrays
        ]  # a copy: the rows are still being written
        return jtu.tree_unflatten(self.ds.treedef, leaves), self.origins[index]

    def put(self, index: int, item: Item | None) -> bool:
        """Store element ``index``; ``True`` when that made the cache complete."""
        if item is not None:
            for a, leaf in zip(self.arrays, jtu.tree_leaves(item[0]), strict=True):
                a[index] = leaf
        with self.lock:
            if self.done[index]:
                return False
            if item is not None:
                self.present[index] = True
                self.origins[index] = describe_origin(item[1])
            self.done[index] = True
            self.count += 1
            return self.count == self.n

    # stream
    def append(self, item: Item) -> None:
        for f, leaf in zip(self.files, jtu.tree_leaves(item[0]), strict=True):
            f.write(np.ascontiguousarray(leaf).tobytes())
        self.origins.append(describe_origin(item[1]))
        self.flags.append(True)
        self.count += 1

    def commit(self) -> "_Reader":
        """Flush, write ``meta.json`` last, rename the folder into place; the reader of it."""
        if self.n is None:
            for k, (f, (_, dt, shape)) in enumerate(zip(self.files, self.ds.leaves, strict=True)):
                f.close()
                raw = self.tmp / f"leaf{k}.raw"
                out = _open_npy(self.tmp / f"leaf{k}.npy", dt, (self.count, *shape))
                if isinstance(out, np.memmap):
                    out[...] = np.fromfile(raw, dt).reshape(out.shape)
                    out.flush()
                raw.unlink()
            present = np.asarray(self.flags, bool)
        else:
            for a in self.arrays:
                if isinstance(a, np.memmap):
                    a.flush()
            present = self.present
        np.save(self.tmp / "present.npy", present)
        pipeline = _describe_chain(self.ds._parents[0])
        meta = {
            "format": FORMAT,
            "fingerprint": self.ds.fingerprint,
            "count": self.count,
            "spec": repr(self.ds.spec),
            "leaves": [[p, dt.str, list(s)] for p, dt, s in self.ds.leaves],
            "pipeline": pipeline,
            "origins": self.origins,
        }
        with open(self.tmp / "meta.json", "w") as out_file:
            json.dump(meta, out_file)
            out_file.flush()
            os.fsync(out_file.fileno())
        final = self.ds.folder
        try:
            os.rename(self.tmp, final)  # atomic; fails if another process committed first
        except OSError:
            if _Reader.open(self.ds) is None:  # a broken one: replace it
                trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
                try:
                    os.rename(final, trash)
                    os.rename(self.tmp, final)
                finally:
                    shutil.rmtree(trash, ignore_errors=True)
        self._cleanup()  # our temporary folder, if it is still there
        _remove_others(self.ds.root, final.name, pipeline)
        reader = _Reader.open(self.ds)
        if reader is None:
            raise OSError(
                f"{self.ds._stage}: the cache in {final} cannot be read back after writing it."
            )
        return reader

    def discard(self) -> None:
        if self.n is None:
            for f in self.files:
                f.close()
        self._cleanup()


class _Reader:
    """A complete cache folder, memory-mapped read-only."""

    def __init__(
        self, treedef: Any, arrays: list[np.ndarray], present: np.ndarray, origins: list[Any]
    ):
        self.treedef, self.arrays, self.present, self.origins = treedef, arrays, present, origins
        self.count = len(present)

    @staticmethod
    def open(ds: DiskCache) -> "_Reader | None":
        """The cache in ``ds.folder`` if it is complete and was written for this pipeline, else ``None``."""
        leaves = ds.leaves
        try:
            with open(ds.folder / "meta.json") as f:
                meta = json.load(f)
            if meta.get("format") != FORMAT or meta.get("fingerprint") != ds.fingerprint:
                return None
            if meta["leaves"] != [[p, dt.str, list(s)] for p, dt, s in leaves]:
                return None
            count = int(meta["count"])
            present = np.load(ds.folder / "present.npy")
            arrays = [
                np.load(ds.folder / f"leaf{k}.npy", mmap_mode="r" if count else None)
                for k in range(len(leaves))
            ]
            origins = list(meta["origins"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if (
            len(present) != count
            or len(origins) != count
            or any(
                a.shape != (count, *s) or a.dtype != dt
                for a, (_, dt, s) in zip(arrays, leaves, strict=True)
            )
        ):
            return None
        return _Reader(ds.treedef, arrays, present, origins)

    def item(self, index: int) -> Item | None:
        if not self.present[index]:
            return None
        leaves = [np.asarray(a[index]) for a in self.arrays]  # read-only views of the files
        return jtu.tree_unflatten(self.treedef, leaves), self.origins[index]


def _open_npy(path: Path, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    if not all(shape):  # nothing to map
        np.save(path, np.zeros(shape, dtype))
        return np.zeros(shape, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _remove_others(root: Path, keep: str, pipeline: list[str]) -> None:
    """Under ``root``: caches of the same chain of stages with other contents (a changed file
    or function: they will not be read again), and temporary folders of processes that are
    gone. Caches of other pipelines (a train and a test split) stay."""
    for p in root.iterdir():
        if not p.is_dir():
            continue
        if p.name.startswith(PREFIX) and p.name != keep:
            try:
                with open(p / "meta.json") as f:
                    same = json.load(f).get("pipeline") == pipeline
            except (OSError, ValueError):
                same = False
            if same:
                shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(f".{PREFIX}") and ".tmp-" in p.name:
            pid = p.name.split(".tmp-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# --------------------------------------------------------------------------- fingerprint


def fingerprint(ds: Dataset) -> str:
    """A hash of the pipeline up to ``ds``: stages, parameters, specs, sources, functions."""
    h = hashlib.sha256()
    _feed(h, ds)
    return h.hexdigest()


def _feed(h: Any, ds: Dataset) -> None:
    h.update(
        json.dumps(
            [type(ds).__name__, ds._stage, repr(ds.spec), ds._length()], default=str
        ).encode()
    )
    for part in identity(ds):
        h.update(part if isinstance(part, bytes) else json.dumps(part, default=str).encode())
    h.update(f"parents {len(ds._parents)}".encode())
    for p in ds._parents:
        _feed(h, p)


def identity(ds: Dataset) -> list[Any]:
    """What a stage's name and spec do not say about its output: source files and arrays,
    index lists, user functions and seeds."""
    d = ds.__dict__
    out: list[Any] = []
    if "files" in d:  # image_folder: every file with its size and modification time
        for path, label in d["files"]:
            try:
                st = os.stat(path)
                out.append([path, label, st.st_size, st.st_mtime_ns])
            except OSError:
                out.append([path, label, None, None])
        out.append([d.get(k) for k in ("size", "mode", "resize", "on_error", "background")])
    if "arrays" in d:  # from_arrays
        for leaf in jtu.tree_leaves(d["arrays"]):
            a = np.ascontiguousarray(leaf)
            out.append([a.dtype.str, list(a.shape)])
            out.append(hashlib.sha256(a.tobytes()).digest())
    if "indices" in d:  # split parts
        out.append(hashlib.sha256(np.ascontiguousarray(d["indices"], np.int64).tobytes()).digest())
    if "source" in d:  # from_source: its type and length only
        out.append([type(d["source"]).__qualname__, len(d["source"])])
    for name in ("seed", "count", "size", "drop"):
        if name in d:
            out.append([name, d[name]])
    call = d.get("call")
    fn = call.fn if call is not None else d.get("fn")
    if fn is not None:
        out.append(_function(fn))
    return out


def _function(fn: Callable[..., Any]) -> list[Any]:
    """A function's module, name, code, constants, defaults and bound arguments."""
    import functools

    parts: list[Any] = []
    while isinstance(fn, functools.partial):
        parts.append([repr(a) for a in fn.args])
        parts.append({k: repr(v) for k, v in sorted(fn.keywords.items())})
        fn = fn.func
    parts.append(
        [getattr(fn, "__module__", None), getattr(fn, "__qualname__", type(fn).__qualname__)]
    )
    call = vars(type(fn)).get("__call__")  # a callable object: its class's method
    code = getattr(fn, "__code__", None) or getattr(call, "__code__", None)
    if code is not None:
        parts.append(_code(code))
    defaults = getattr(fn, "__defaults__", None)
    if defaults:
        parts.append([repr(v) for v in defaults])
    try:
        parts.append(str(inspect.signature(fn)))
    except (TypeError, ValueError):
        pass
    return parts


def _code(code: Any) -> list[Any]:
    consts = [_code(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, list(code.co_names)]


def _describe_chain(ds: Dataset) -> list[str]:
    out: list[str] = []
    node: Dataset | None = ds
    while node is not None:
        out.append(node._stage)
        node = node._parents[0] if len(node._parents) == 1 else None
    return out[::-1]
