"""``zip`` and ``concatenate``: datasets side by side, or one after another."""

from .._errors import ShapeError
from ._dataset import Dataset, Item, Iter, State, stage
from ._element_spec import ElementSpec


@stage("zip")
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


@stage("concatenate")
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
                self.inner = (
                    self.ds._parents[self.part]._open(self.epoch, None)
                    if self.part < len(self.ds._parents)
                    else None
                )
        raise StopIteration

    def state(self) -> State:
        return {"part": self.part, "inner": None if self.inner is None else self.inner.state()}

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
