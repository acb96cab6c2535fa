"""``batch``: stack elements under a new leading ``batch`` dimension, with a mask for padding."""

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._errors import ShapeError
from ._dataset import Dataset, IndexIter, Item, Iter, State, describe_origin, stage
from ._element_spec import ElementSpec, format_annotation, is_annotation, make, with_leading
from ._stages import ParentIter, positive

MASK = "mask"
BATCH = "batch"


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
            raise ShapeError(
                f"{stage}: the elements already have a {MASK!r} key, which batch reserves "
                "for marking padded examples. Rename it in a map first."
            )
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


@stage("batch")
class Batch(Dataset):
    def __init__(self, parent: Dataset, size: int, *, drop_remainder: bool):
        self._parents = (parent,)
        self.size = positive("batch: size", size)
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
        if parent._gathers:
            return self.gathered(parent._gather(epoch, np.arange(lo, hi)), lo, hi)
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

        try:
            stacked = jtu.tree_map(stack, *values)
        except ValueError:  # explained only when it fails: the stacking itself is the check
            self._check_one_shape(items)
            raise
        return self.masked(stacked, mask), tuple(o for _, o in items)

    def gathered(self, stacked: Any, lo: int, hi: int) -> Item:
        """A batch from ``_gather``'s stacked leaves: padded with zeros to ``size``, masked.

        Not checked again: a node gathers only rows of arrays whose spec was read off them."""
        k = hi - lo
        mask = np.zeros((self.size,), bool)
        mask[:k] = True
        if k < self.size:

            def pad(x: np.ndarray) -> np.ndarray:
                out = np.zeros((self.size, *x.shape[1:]), x.dtype)
                out[:k] = x
                return out

            import jax.tree_util as jtu

            stacked = jtu.tree_map(pad, stacked)
        return self.masked(stacked, mask), _Rows(self._parents[0], lo, hi)

    def masked(self, stacked: Any, mask: np.ndarray) -> Any:
        """The batch's value: the stacked element tree with the mask where the spec puts it."""
        if self.form == "dict":
            return {**stacked, MASK: mask}
        if self.form == "tuple":
            return (*stacked, mask)
        return (stacked, mask)

    def _check_one_shape(self, items: list[Item]) -> None:
        """Every element of a batch has the first one's shape in every leaf, or a ShapeError
        names the stage, both elements (where each came from) and both shapes."""
        import jax.tree_util as jtu

        first = jtu.tree_flatten_with_path(items[0][0])[0]
        shapes = [np.shape(leaf) for _, leaf in first]
        for j, (value, origin) in enumerate(items[1:], start=1):
            leaves = jtu.tree_leaves(value)
            for (path, _), want, leaf in zip(first, shapes, leaves, strict=False):
                if np.shape(leaf) == want:
                    continue
                part = jtu.keystr(path) or "the element"
                raise ShapeError(
                    f"{self.where()}: element {j} of the batch (from {describe_origin(origin)}) "
                    f"has {part} of shape {np.shape(leaf)}, but element 0 (from "
                    f"{describe_origin(items[0][1])}) has {want}; a batch stacks elements of one "
                    "shape.\n  Make them one shape before batching: pad or resize each element "
                    "in a map (e.g. ds.map(pad_to_64) returning a fixed-size spec, or "
                    "image_folder(size=...)), or declare fixed sizes in the spec so the source "
                    "refuses the odd element."
                )

    def _open(self, epoch: int, state: State | None) -> Iter:
        if self._random_access and self._parents[0]._gathers:
            return IndexIter(self, epoch, int(state["index"]) if state else 0)
        if self._random_access:  # the parent's pool works per element; batches are stacked here
            return _IndexBatchIter(self, epoch, int(state["index"]) if state else 0)
        return _BatchIter(self, epoch, state)


class _Rows:
    """The origin of a gathered batch, described only when an error needs it."""

    def __init__(self, parent: Dataset, lo: int, hi: int):
        self.parent, self.lo, self.hi = parent, lo, hi

    def __str__(self) -> str:
        return f"a batch of elements {self.lo}..{self.hi - 1} of {self.parent.where()}"


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
