"""``repeat``, ``take``, ``skip`` and ``split``: which elements, and how many times."""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._dataset import Dataset, Item, Iter, State, stage
from ._stages import ParentIter, positive


@stage("repeat")
class Repeat(Dataset):
    def __init__(self, parent: Dataset, count: int | None):
        self._parents = (parent,)
        self.count = None if count is None else positive("repeat: count", count)
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


@stage("take")
class Take(Dataset):
    def __init__(self, parent: Dataset, count: int):
        self._parents = (parent,)
        self.count = positive("take: count", count, zero=True)
        self._stage = f"take({count})"
        self.spec = parent.spec
        self._random_access, self._workers = parent._random_access, parent._workers
        self._gathers = parent._gathers

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        return None if n is None else min(n, self.count)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, index)

    def _rows(self, epoch: int, indices: Any) -> Any:
        return self._parents[0]._rows(epoch, indices)

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


@stage("skip")
class Skip(Dataset):
    def __init__(self, parent: Dataset, count: int):
        self._parents = (parent,)
        self.count = positive("skip: count", count, zero=True)
        self._stage = f"skip({count})"
        self.spec = parent.spec
        self._random_access, self._workers = parent._random_access, parent._workers
        self._gathers = parent._gathers

    def _length(self) -> int | None:
        n = self._parents[0]._length()
        return None if n is None else max(0, n - self.count)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, index + self.count)

    def _rows(self, epoch: int, indices: Any) -> Any:
        return self._parents[0]._rows(epoch, indices + self.count)

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


class Subset(Dataset):
    def __init__(self, parent: Dataset, indices: np.ndarray, stage: str):
        self._parents = (parent,)
        self._stage = stage
        self.indices = indices
        self.spec = parent.spec
        self._random_access, self._workers = True, parent._workers
        self._gathers = parent._gathers

    def _length(self) -> int | None:
        return len(self.indices)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self._parents[0]._get(epoch, int(self.indices[index]))

    def _rows(self, epoch: int, indices: Any) -> Any:
        return self._parents[0]._rows(epoch, self.indices.take(indices))

    def _labels(self) -> Any:
        labels = self._parents[0]._labels()
        return None if labels is None else np.asarray(labels)[self.indices]


@stage("split")
def split(
    ds: Dataset, fractions: float | tuple[float, ...], *, seed: int, stratify: bool
) -> tuple[Dataset, ...]:
    fracs = (
        (float(fractions), 1.0 - float(fractions))
        if isinstance(fractions, int | float)
        else tuple(float(f) for f in fractions)
    )
    if (
        not fracs
        or any(f < 0 for f in fracs)
        or (not math.isclose(sum(fracs), 1.0) and sum(fracs) > 1)
    ):
        raise ValueError(
            f"split: fractions must be non-negative and sum to at most 1, got {fractions!r}."
        )
    if sum(fracs) < 1 - 1e-9:
        fracs = (*fracs, 1.0 - sum(fracs))
    if not ds._random_access:
        raise ValueError(
            f"split: {ds.where()} has no random access (a stream); split before that "
            "stage, or cache() a finite stream and split the source instead."
        )
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
    return tuple(
        Subset(ds, np.sort(np.concatenate(p)) if p else np.arange(0), name)
        for p, name in zip(parts, names, strict=True)
    )


def _label_of(ds: Dataset, i: int) -> int:
    item = ds._get(0, i)
    return -1 if item is None else int(item[0]["label"])
