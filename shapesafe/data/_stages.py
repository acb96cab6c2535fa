"""The combinators: each derives its spec from its parents' when built, and refuses wrong ones.

Random-access parents give random-access results wherever the stage keeps a fixed index
mapping (map, shuffle, batch, take, skip, split, cache, zip, concatenate, a finite repeat);
the others iterate as streams whose ``state()`` nests their parent's.
"""

import collections
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .._errors import ShapeError
from ._calls import Call, fn_name
from ._dataset import Dataset, IndexIter, Item, Iter, State
from ._specs import (
    ElementSpec,
    format_annotation,
    is_annotation,
    make,
    tree_from_annotation,
    with_leading,
)

MASK = "mask"
BATCH = "batch"


def _positive(name: str, value: Any, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < (0 if zero else 1):
        least = "a non-negative" if zero else "a positive"
        raise ValueError(f"{name} must be {least} int, got {value!r}.")
    return int(value)


class ParentIter(Iter):
    """A stream stage over one parent iterator whose state it nests."""

    def __init__(self, parent: Iter):
        self.parent = parent

    def state(self) -> State:
        return {"parent": self.parent.state()}

    def close(self) -> None:
        self.parent.close()


# ---------------------------------------------------------------------------------------- map


class Map(Dataset):
    def __init__(self, parent: Dataset, fn: Callable[..., Any], *, workers: int, seed: int, spec: Any):
        self._parents = (parent,)
        self._stage = f"map({fn_name(fn)})"
        self.workers = _positive("map: workers", workers, zero=True)
        self.seed = seed
        self.call = Call(fn, parent.spec, f"stage {parent.depth + 1}, {self._stage}")
        tree = spec.tree if isinstance(spec, ElementSpec) else spec
        if tree is None:
            tree = self.call.out_tree(parent.spec)
        if tree is None:
            raise ShapeError(
                f"{self.where()}: cannot tell the spec of {fn_name(fn)}'s output. Annotate its return "
                f'(e.g. -> Float32[np.ndarray, "h w 3"], a TypedDict or a tuple[...] of them) or pass spec=.'
            )
        self.spec = ElementSpec(tree)
        self._random_access = parent._random_access
        self._workers = max(self.workers, parent._workers)

    def _length(self) -> int | None:
        return self._parents[0]._length()

    def apply(self, item: Item, epoch: int, index: int) -> Item:
        value, origin = item
        try:
            out = self.call(value, (self.seed, epoch, index))
        except ShapeError:
            raise
        except Exception as e:
            e.add_note(f"shapesafe: in {self.where()}, on the element from {origin}.")
            raise
        return self.check((out, origin))

    def _get(self, epoch: int, index: int) -> Item | None:
        item = self._parents[0]._get(epoch, index)
        return None if item is None else self.apply(item, epoch, index)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        return _MapIter(self, epoch, state)


class _MapIter(ParentIter):
    def __init__(self, ds: Map, epoch: int, state: State | None):
        super().__init__(ds._parents[0]._open(epoch, state["parent"] if state else None))
        self.ds, self.epoch = ds, epoch
        self.count = int(state["count"]) if state else 0
        self.pending: collections.deque[tuple[Any, State, int]] = collections.deque()
        self.last: State = {"parent": self.parent.state(), "count": self.count}
        self.pool = None
        if ds.workers > 0:
            import concurrent.futures as cf
            self.pool = cf.ThreadPoolExecutor(ds.workers, thread_name_prefix="shapesafe-map")

    def next(self) -> Item:
        if self.pool is None:
            item = self.parent.next()
            out = self.ds.apply(item, self.epoch, self.count)
            self.count += 1
            self.last = {"parent": self.parent.state(), "count": self.count}
            return out
        while len(self.pending) < 2 * self.ds.workers:
            try:
                item = self.parent.next()
            except StopIteration:
                break
            future = self.pool.submit(self.ds.apply, item, self.epoch, self.count + len(self.pending))
            self.pending.append((future, self.parent.state(), 0))
        if not self.pending:
            raise StopIteration
        future, pstate, _ = self.pending.popleft()
        out = future.result()
        self.count += 1
        self.last = {"parent": pstate, "count": self.count}
        return out

    def state(self) -> State:
        return self.last

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        super().close()


# ------------------------------------------------------------------------- filter, flat_map


class Filter(Dataset):
    def __init__(self, parent: Dataset, predicate: Callable[..., Any]):
        self._parents = (parent,)
        self._stage = f"filter({fn_name(predicate)})"
        self.spec = parent.spec
        self.call = Call(predicate, parent.spec, f"stage {parent.depth + 1}, {self._stage}")

    def _open(self, epoch: int, state: State | None) -> Iter:
        return _FilterIter(self, epoch, state)


class _FilterIter(ParentIter):
    def __init__(self, ds: Filter, epoch: int, state: State | None):
        super().__init__(ds._parents[0]._open(epoch, state["parent"] if state else None))
        self.ds, self.epoch = ds, epoch

    def next(self) -> Item:
        while True:
            value, origin = self.parent.next()
            if self.ds.call.raw(value, (0, self.epoch)):
                return value, origin


class FlatMap(Dataset):
    def __init__(self, parent: Dataset, fn: Callable[..., Any], *, spec: Any):
        self._parents = (parent,)
        self._stage = f"flat_map({fn_name(fn)})"
        self.call = Call(fn, parent.spec, f"stage {parent.depth + 1}, {self._stage}")
        tree = spec.tree if isinstance(spec, ElementSpec) else spec
        if tree is None:
            import typing
            args = typing.get_args(self.call.returns)
            tree = tree_from_annotation(args[0]) if len(args) == 1 else None
        if tree is None:
            raise ShapeError(f"{self.where()}: cannot tell the spec of the elements {fn_name(fn)} yields. "
                             "Annotate its return as Iterator[<annotation>] or pass spec=.")
        self.spec = ElementSpec(tree)

    def _open(self, epoch: int, state: State | None) -> Iter:
        return _FlatMapIter(self, epoch, state)


class _FlatMapIter(ParentIter):
    """State: the parent's state before the current element, and how many of its outputs were used."""

    def __init__(self, ds: FlatMap, epoch: int, state: State | None):
        super().__init__(ds._parents[0]._open(epoch, state["parent"] if state else None))
        self.ds, self.epoch = ds, epoch
        self.before = self.parent.state()
        self.used = 0
        self.current: Iterator[Any] | None = None
        self.origin: Any = None
        if state and state["inner"] is not None:
            self._start()
            for _ in range(int(state["inner"])):
                next(self.current) if self.current is not None else None
            self.used = int(state["inner"])

    def _start(self) -> None:
        self.before = self.parent.state()
        value, self.origin = self.parent.next()
        self.current = iter(self.ds.call.raw(value, (0, self.epoch)))
        self.used = 0

    def next(self) -> Item:
        while True:
            if self.current is None:
                self._start()
            try:
                out = next(self.current)  # type: ignore[arg-type, call-overload]
            except StopIteration:
                self.current = None
                continue
            self.used += 1
            return self.ds.check((out, self.origin))

    def state(self) -> State:
        if self.current is None:
            return {"parent": self.parent.state(), "inner": None}
        return {"parent": self.before, "inner": self.used}


# ----------------------------------------------------------------------------------- shuffle


class Shuffle(Dataset):
    def __init__(self, parent: Dataset, *, seed: int):
        self._parents = (parent,)
        self._stage = f"shuffle(seed={seed})"
        self.seed, self.spec = seed, parent.spec
        self._random_access, self._workers = True, parent._workers
        self._perms: dict[int, np.ndarray] = {}

    def _length(self) -> int | None:
        return self._parents[0]._length()

    def permutation(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:
            n = self._length() or 0
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            if len(self._perms) > 4:
                self._perms.clear()
            self._perms[epoch] = perm
        return perm

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, int(self.permutation(epoch)[index]))


class BufferShuffle(Dataset):
    def __init__(self, parent: Dataset, *, seed: int, buffer_size: int | None):
        self._parents = (parent,)
        self._stage = f"shuffle(seed={seed}, buffer_size={buffer_size})"
        if buffer_size is None:
            raise ValueError(
                f"{self._stage}: {parent.where()} has no random access (it is a stream), so shuffling "
                "needs a buffer: pass buffer_size=<elements to hold>, or shuffle before that stage."
            )
        self.seed, self.size = seed, _positive("shuffle: buffer_size", buffer_size)
        self.spec = parent.spec

    def _length(self) -> int | None:
        return self._parents[0]._length()

    def _open(self, epoch: int, state: State | None) -> Iter:
        it = _BufferIter(self, epoch)
        for _ in range(int(state["count"]) if state else 0):  # deterministic replay
            it.next()
        return it


class _BufferIter(ParentIter):
    def __init__(self, ds: BufferShuffle, epoch: int):
        super().__init__(ds._parents[0]._open(epoch, None))
        self.ds, self.count = ds, 0
        self.buffer: list[Item] = []
        self.rng = np.random.default_rng([ds.seed, epoch])
        self.done = False

    def next(self) -> Item:
        while not self.done and len(self.buffer) < self.ds.size:
            try:
                self.buffer.append(self.parent.next())
            except StopIteration:
                self.done = True
        if not self.buffer:
            raise StopIteration
        k = int(self.rng.integers(len(self.buffer)))
        self.buffer[k], self.buffer[-1] = self.buffer[-1], self.buffer[k]
        self.count += 1
        return self.buffer.pop()

    def state(self) -> State:
        return {"count": self.count}


# ------------------------------------------------------------------------------------- batch


def _batched_spec(parent: Dataset, stage: str) -> tuple[Any, str]:
    tree = parent.spec.tree
    for _, ann in parent.spec.leaves():
        if ann.dim_str.split()[:1] == [BATCH]:
            raise ShapeError(
                f"{stage}: the elements already have a leading batch dimension "
                f"({format_annotation(ann)}), so batching again would give two. Batch once "
                "(remove one .batch()), or rename the inner dimension in a map first."
            )
    leading = _tree_map(lambda a: with_leading(a, BATCH), tree)
    mask = make(_bool(), np.ndarray, " batch".strip())
    if isinstance(tree, Mapping):
        if MASK in tree:
            raise ShapeError(f"{stage}: the elements already have a {MASK!r} key, which batch reserves "
                             "for marking padded examples. Rename it in a map first.")
        return {**leading, MASK: mask}, "dict"
    if isinstance(tree, tuple):
        return (*leading, mask), "tuple"
    return (leading, mask), "single"


def _bool() -> Any:
    import jaxtyping
    return jaxtyping.Bool


def _tree_map(f: Callable[[Any], Any], tree: Any) -> Any:
    if is_annotation(tree):
        return f(tree)
    if isinstance(tree, Mapping):
        return {k: _tree_map(f, v) for k, v in tree.items()}
    return type(tree)(_tree_map(f, v) for v in tree)


class Batch(Dataset):
    def __init__(self, parent: Dataset, size: int, *, drop_remainder: bool):
        self._parents = (parent,)
        self.size = _positive("batch: size", size)
        self.drop = bool(drop_remainder)
        self._stage = f"batch({size}{', drop_remainder=True' if drop_remainder else ''})"
        tree, self.form = _batched_spec(parent, f"stage {parent.depth + 1}, {self._stage}")
        self.spec = ElementSpec(tree)
        self._random_access, self._workers = parent._random_access, parent._workers

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        if n is None:
            return None
        return n // self.size if self.drop else math.ceil(n / self.size)

    def _get(self, epoch: int, index: int) -> Item | None:
        parent = self._parents[0]
        n = parent._length() or 0
        lo, hi = index * self.size, min((index + 1) * self.size, n)
        items = [parent._get(epoch, j) for j in range(lo, hi)]
        real = [it for it in items if it is not None]
        if not real:
            return None
        return self.stack(real)

    def stack(self, items: list[Item]) -> Item:
        values = [v for v, _ in items]
        k = len(values)
        mask = np.zeros((self.size,), bool)
        mask[:k] = True

        def stack(*leaves: Any) -> np.ndarray:
            out = np.empty((self.size, *np.shape(leaves[0])), np.asarray(leaves[0]).dtype)
            np.stack(leaves, out=out[:k])  # one copy, straight into the batch
            out[k:] = 0
            return out

        import jax.tree_util as jtu
        stacked = jtu.tree_map(stack, *values)
        if self.form == "dict":
            value: Any = {**stacked, MASK: mask}
        elif self.form == "tuple":
            value = (*stacked, mask)
        else:
            value = (stacked, mask)
        return value, tuple(o for _, o in items)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:  # the parent's pool works per element; batches are stacked here
            return _IndexBatchIter(self, epoch, int(state["index"]) if state else 0)
        return _BatchIter(self, epoch, state)


class _IndexBatchIter(Iter):
    def __init__(self, ds: Batch, epoch: int, start: int):
        self.ds, self.index, self.length = ds, start, ds._length() or 0
        self.parent = IndexIter(ds._parents[0], epoch, start * ds.size)

    def next(self) -> Item:
        while self.index < self.length:
            items: list[Item | None] = []
            while len(items) < self.ds.size:
                try:
                    items.append(self.parent.next_slot())
                except StopIteration:
                    break
            self.index += 1
            real = [it for it in items if it is not None]
            if real:
                return self.ds.stack(real)
        raise StopIteration

    def state(self) -> State:
        return {"index": self.index}

    def close(self) -> None:
        self.parent.close()


class _BatchIter(ParentIter):
    def __init__(self, ds: Batch, epoch: int, state: State | None):
        super().__init__(ds._parents[0]._open(epoch, state["parent"] if state else None))
        self.ds = ds

    def next(self) -> Item:
        items: list[Item] = []
        while len(items) < self.ds.size:
            try:
                items.append(self.parent.next())
            except StopIteration:
                break
        if not items or (self.ds.drop and len(items) < self.ds.size):
            raise StopIteration
        return self.ds.stack(items)


# ----------------------------------------------------------------------- repeat, take, skip


class Repeat(Dataset):
    def __init__(self, parent: Dataset, count: int | None):
        self._parents = (parent,)
        self.count = None if count is None else _positive("repeat: count", count)
        self._stage = f"repeat({'' if count is None else count})"
        self.spec = parent.spec
        self._random_access = parent._random_access and count is not None
        self._workers = parent._workers

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        return None if n is None or self.count is None else n * self.count

    def _get(self, epoch: int, index: int) -> Item | None:
        n = self._parents[0]._length() or 1
        assert self.count is not None
        return self._parents[0]._get(epoch * self.count + index // n, index % n)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        return _RepeatIter(self, epoch, state)


class _RepeatIter(Iter):
    def __init__(self, ds: Repeat, epoch: int, state: State | None):
        self.ds, self.epoch = ds, epoch
        self.round = int(state["round"]) if state else 0
        self.inner = ds._parents[0]._open(self._parent_epoch(), state["inner"] if state else None)
        self.yielded = state is not None

    def _parent_epoch(self) -> int:
        return self.round if self.ds.count is None else self.epoch * self.ds.count + self.round

    def next(self) -> Item:
        while self.ds.count is None or self.round < self.ds.count:
            try:
                item = self.inner.next()
            except StopIteration:
                pass
            else:
                self.yielded = True
                return item
            self.inner.close()
            if self.ds.count is None and not self.yielded:
                raise StopIteration  # an empty dataset repeated forever is empty
            self.round += 1
            self.yielded = False
            self.inner = self.ds._parents[0]._open(self._parent_epoch(), None)
        raise StopIteration

    def state(self) -> State:
        return {"round": self.round, "inner": self.inner.state()}

    def close(self) -> None:
        self.inner.close()


class Take(Dataset):
    def __init__(self, parent: Dataset, count: int):
        self._parents = (parent,)
        self.count = _positive("take: count", count, zero=True)
        self._stage = f"take({count})"
        self.spec = parent.spec
        self._random_access, self._workers = parent._random_access, parent._workers

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        return None if n is None else min(n, self.count)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, index)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        return _TakeIter(self, epoch, state)


class _TakeIter(ParentIter):
    def __init__(self, ds: Take, epoch: int, state: State | None):
        super().__init__(ds._parents[0]._open(epoch, state["parent"] if state else None))
        self.left = ds.count - (int(state["taken"]) if state else 0)
        self.ds = ds

    def next(self) -> Item:
        if self.left <= 0:
            raise StopIteration
        item = self.parent.next()
        self.left -= 1
        return item

    def state(self) -> State:
        return {"parent": self.parent.state(), "taken": self.ds.count - self.left}


class Skip(Dataset):
    def __init__(self, parent: Dataset, count: int):
        self._parents = (parent,)
        self.count = _positive("skip: count", count, zero=True)
        self._stage = f"skip({count})"
        self.spec = parent.spec
        self._random_access, self._workers = parent._random_access, parent._workers

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        return None if n is None else max(0, n - self.count)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, index + self.count)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        if state is not None:
            return _Pass(self._parents[0]._open(epoch, state["parent"]))
        it = _Pass(self._parents[0]._open(epoch, None))
        for _ in range(self.count):
            try:
                it.next()
            except StopIteration:
                break
        return it


class _Pass(ParentIter):
    def next(self) -> Item:
        return self.parent.next()


# -------------------------------------------------------------------------------------- cache


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


# -------------------------------------------------------------------------------------- split


class Subset(Dataset):
    def __init__(self, parent: Dataset, indices: np.ndarray, stage: str):
        self._parents = (parent,)
        self._stage = stage
        self.indices = indices
        self.spec = parent.spec
        self._random_access, self._workers = True, parent._workers

    def _length(self) -> int | None:
        return len(self.indices)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, int(self.indices[index]))

    def _labels(self) -> Any:
        labels = self._parents[0]._labels()
        return None if labels is None else np.asarray(labels)[self.indices]


def split(ds: Dataset, fractions: float | tuple[float, ...], *, seed: int,
          stratify: bool) -> tuple[Dataset, ...]:
    fracs = (float(fractions), 1.0 - float(fractions)) if isinstance(fractions, int | float) else tuple(
        float(f) for f in fractions)
    if not fracs or any(f < 0 for f in fracs) or (not math.isclose(sum(fracs), 1.0) and sum(fracs) > 1):
        raise ValueError(f"split: fractions must be non-negative and sum to at most 1, got {fractions!r}.")
    if sum(fracs) < 1 - 1e-9:
        fracs = (*fracs, 1.0 - sum(fracs))
    if not ds._random_access:
        raise ValueError(f"split: {ds.where()} has no random access (a stream); split before that "
                         "stage, or cache() a finite stream and split the source instead.")
    n = len(ds)
    groups: list[np.ndarray] = [np.arange(n)]
    if stratify and isinstance(ds.spec.tree, Mapping) and "label" in ds.spec.tree:
        labels = ds._labels()
        if labels is None:  # no cheap labels: read them
            labels = np.array([_label_of(ds, i) for i in range(n)])
        labels = np.asarray(labels)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts: list[list[np.ndarray]] = [[] for _ in fracs]
    rng = np.random.default_rng(seed)
    for g in groups:
        g = rng.permutation(g)
        cuts = np.round(np.cumsum(fracs) * len(g)).astype(int)
        lo = 0
        for k, hi in enumerate(cuts):
            parts[k].append(g[lo:hi])
            lo = hi
    names = [f"split[{k}]({f:g})" for k, f in enumerate(fracs)]
    return tuple(Subset(ds, np.sort(np.concatenate(p)) if p else np.arange(0), name)
                 for p, name in zip(parts, names, strict=True))


def _label_of(ds: Dataset, i: int) -> int:
    item = ds._get(0, i)
    return -1 if item is None else int(item[0]["label"])


# ------------------------------------------------------------------------ zip, concatenate


class Zip(Dataset):
    def __init__(self, parents: tuple[Dataset, ...]):
        self._parents = parents
        self._stage = f"zip({len(parents)})"
        self.spec = ElementSpec(tuple(p.spec.tree for p in parents))
        self._random_access = all(p._random_access for p in parents)
        self._workers = max(p._workers for p in parents)

    def _length(self) -> int | None:
        ns = [p._length() for p in self._parents]
        known = [n for n in ns if n is not None]
        return min(known) if known and (self._random_access or len(known) == len(ns)) else None

    def _get(self, epoch: int, index: int) -> Item | None:
        items = [p._get(epoch, index) for p in self._parents]
        if any(it is None for it in items):
            return None
        return tuple(it[0] for it in items if it), tuple(it[1] for it in items if it)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        return _ZipIter(self, epoch, state)


class _ZipIter(Iter):
    def __init__(self, ds: Zip, epoch: int, state: State | None):
        states = state["parts"] if state else [None] * len(ds._parents)
        self.its = [p._open(epoch, s) for p, s in zip(ds._parents, states, strict=True)]

    def next(self) -> Item:
        items = [it.next() for it in self.its]
        return tuple(v for v, _ in items), tuple(o for _, o in items)

    def state(self) -> State:
        return {"parts": [it.state() for it in self.its]}

    def close(self) -> None:
        for it in self.its:
            it.close()


class Concatenate(Dataset):
    def __init__(self, parents: tuple[Dataset, ...]):
        self._parents = parents
        self._stage = f"concatenate({len(parents)})"
        for k, p in enumerate(parents[1:], 1):
            if p.spec != parents[0].spec:
                raise ShapeError(
                    f"stage {max(q.depth for q in parents) + 1}, {self._stage}: part {k} has another spec.\n"
                    f"  part 0  {parents[0].spec!r}\n  part {k}  {p.spec!r}\n"
                    "  Concatenated datasets must have the same spec; map one of them first."
                )
        self.spec = parents[0].spec
        self._random_access = all(p._random_access for p in parents)
        self._workers = max(p._workers for p in parents)

    def _length(self) -> int | None:
        ns = [p._length() for p in self._parents]
        return None if any(n is None for n in ns) else sum(n for n in ns if n is not None)

    def _get(self, epoch: int, index: int) -> Item | None:
        for p in self._parents:
            n = p._length() or 0
            if index < n:
                return p._get(epoch, index)
            index -= n
        raise IndexError(index)

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access:
            return super()._open(epoch, state)
        return _ConcatIter(self, epoch, state)


class _ConcatIter(Iter):
    def __init__(self, ds: Concatenate, epoch: int, state: State | None):
        self.ds, self.epoch = ds, epoch
        self.part = int(state["part"]) if state else 0
        self.inner: Iter | None = None
        if self.part < len(ds._parents):
            self.inner = ds._parents[self.part]._open(epoch, state["inner"] if state else None)

    def next(self) -> Item:
        while self.inner is not None:
            try:
                return self.inner.next()
            except StopIteration:
                self.inner.close()
                self.part += 1
                self.inner = (self.ds._parents[self.part]._open(self.epoch, None)
                              if self.part < len(self.ds._parents) else None)
        raise StopIteration

    def state(self) -> State:
        return {"part": self.part, "inner": None if self.inner is None else self.inner.state()}

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
