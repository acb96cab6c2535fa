"""The element-wise combinators: map, filter, flat_map and shuffle, and what stages share.

Each stage derives its spec from its parent's when built, and refuses wrong compositions.
Random-access parents give random-access results wherever the stage keeps a fixed index
mapping (map, shuffle here; batch in ``_batch``; take, skip, a finite repeat and split parts
in ``_select``; zip and concatenate in ``_combine``; cache in ``_cache``); the others iterate
as streams whose ``state()`` nests their parent's.
"""

import collections
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from .._errors import ShapeError
from .._specs import is_annotation
from ._calls import Call, fn_name
from ._dataset import Dataset, Item, Iter, State, stage
from ._element_spec import ElementSpec, retype, tree_from_annotation
from ._infer import traced_spec, value_spec


def positive(name: str, value: Any, *, zero: bool = False) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < (0 if zero else 1)
    ):
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


def _on_host(tree: Any) -> tuple[Any, bool]:
    """``tree`` with every ``X[jax.Array, dims]`` leaf as ``X[np.ndarray, dims]``, and whether any was."""
    leaves, treedef = jax.tree.flatten(tree, is_leaf=is_annotation)
    moved = [
        retype(a, np.ndarray) if is_annotation(a) and a.array_type is jax.Array else a
        for a in leaves
    ]
    changed = any(a is not b for a, b in zip(leaves, moved, strict=True))
    return jax.tree.unflatten(treedef, moved), changed


@stage("map")
class Map(Dataset):
    def __init__(
        self,
        parent: Dataset,
        fn: Callable[..., Any],
        *,
        workers: int,
        seed: int,
        spec: Any,
        processes: bool = False,
    ):
        self._parents = (parent,)
        self._stage = f"map({fn_name(fn)})"
        self.workers = positive("map: workers", workers, zero=True)
        self.seed = seed
        self.call = Call(fn, parent.spec, f"stage {parent.depth + 1}, {self._stage}")
        self.run: Callable[[Any, tuple[int, ...]], Any] = self.call
        if processes:
            from ._processes import ProcessRunner, check_picklable

            if self.workers < 1:
                raise ValueError(
                    f"{self.where()}: processes=True needs workers=n >= 1 worker processes."
                )
            check_picklable(self.call.invoke, fn, self.where())
            self.run = ProcessRunner(self.call.invoke, self.workers)
        tree = spec.tree if isinstance(spec, ElementSpec) else spec
        self._to_host = False
        if tree is None:
            tree = self.call.out_tree(parent.spec)
            if tree is not None:
                # the pipeline holds host (NumPy) arrays: a return annotated Float32[Array, ...]
                # means "an array of this dtype and shape"; a jax.Array result is brought to the host
                tree, self._to_host = _on_host(tree)
        self._inferred = ""
        if tree is None:  # unannotated: inferred by tracing, else on the first element
            tree, self._inferred = self._infer(parent, seed)
        if tree is None:
            raise ShapeError(
                f"{self.where()}: cannot tell the spec of {fn_name(fn)}'s output: it is not "
                "annotated, it does not trace with jax.eval_shape, and its result on the first "
                "element is not arrays (or there is no first element). Annotate its return "
                f'(e.g. -> Float32[np.ndarray, "h w 3"], a TypedDict or a tuple[...] of them) or pass spec=.'
            )
        self.spec = ElementSpec(tree)
        self._random_access = parent._random_access
        self._workers = max(self.workers, parent._workers)

    def _infer(self, parent: Dataset, seed: int) -> tuple[Any, str]:
        """The output spec tree of an unannotated function, and how it was found."""
        tree = traced_spec(lambda v: self.call(v, (seed, 0, 0)), parent.spec.tree)
        if tree is not None:
            return tree, "by tracing it with jax.eval_shape"
        it = parent.epoch(0)
        try:
            first = next(it, None)
        finally:
            it.close()
        if first is None:
            return None, ""
        try:
            out = self.call(first, (seed, 0, 0))
        except ShapeError:
            raise
        except Exception as e:
            e.add_note(
                f"shapesafe: in {self.where()}, on the first element (to infer the output spec)."
            )
            raise
        return value_spec(out), "from its result on the first element"

    def _length(self) -> int | None:
        return self._parents[0]._length()

    def apply(self, item: Item, epoch: int, index: int) -> Item:
        value, origin = item
        try:
            out = self.run(value, (self.seed, epoch, index))
        except ShapeError:
            raise
        except Exception as e:
            e.add_note(f"shapesafe: in {self.where()}, on the element from {origin}.")
            raise
        if self._to_host:
            out = jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, out)
        try:
            return self.check((out, origin))
        except ShapeError as e:
            if self._inferred:
                e.add_note(
                    f"The spec of {fn_name(self.call.fn)}'s output was inferred {self._inferred}; "
                    "where its outputs differ, annotate its return or pass spec=."
                )
            raise

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
            future = self.pool.submit(
                self.ds.apply, item, self.epoch, self.count + len(self.pending)
            )
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


@stage("filter")
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


@stage("flat_map")
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
            raise ShapeError(
                f"{self.where()}: cannot tell the spec of the elements {fn_name(fn)} yields. "
                "Annotate its return as Iterator[<annotation>] or pass spec=."
            )
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


@stage("shuffle")
class Shuffle(Dataset):
    def __init__(self, parent: Dataset, *, seed: int):
        self._parents = (parent,)
        self._stage = f"shuffle(seed={seed})"
        self.seed, self.spec = seed, parent.spec
        self._random_access, self._workers = True, parent._workers
        self._gathers = parent._gathers
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

    def _rows(self, epoch: int, indices: Any) -> Any:
        return self._parents[0]._rows(epoch, self.permutation(epoch).take(indices))


@stage("buffer_shuffle")
class BufferShuffle(Dataset):
    def __init__(self, parent: Dataset, *, seed: int, buffer_size: int | None):
        self._parents = (parent,)
        self._stage = f"shuffle(seed={seed}, buffer_size={buffer_size})"
        if buffer_size is None:
            raise ValueError(
                f"{self._stage}: {parent.where()} has no random access (it is a stream), so shuffling "
                "needs a buffer: pass buffer_size=<elements to hold>, or shuffle before that stage."
            )
        self.seed, self.size = seed, positive("shuffle: buffer_size", buffer_size)
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
