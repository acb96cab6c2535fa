"""``Dataset``: the typed pipeline node, its iterators, and the resumable-state contract.

Every dataset is a node with an ``ElementSpec`` and its parents. Nodes come in two kinds:

- random access (``_random_access``): the node knows its length and can compute element
  ``i`` of epoch ``e`` on its own (``_get(e, i)``). Sources with ``__getitem__``, ``map``,
  ``shuffle`` (a permutation of indices), ``batch``, ``take``/``skip``, ``split`` parts,
  ``cache``, ``zip``/``concatenate`` of random-access parents keep this. Iterating one runs
  ``_get`` for consecutive indices in a thread pool of the chain's ``workers`` (ordered), and
  its position is one integer;
- streams: everything else (generators, ``filter``, ``flat_map``, infinite ``repeat``,
  ``prefetch``), iterated through ``_open(e, state)``; their state nests their parent's.

Random-access nodes over NumPy arrays also map many indices to rows of those arrays at once
(``_rows``) and ``_gather`` them (one fancy index per leaf), which ``batch`` uses (and ``fit``,
gathering from a device copy of the arrays); nodes that run Python per element (``map``,
file readers) do not, and keep the element-wise path.

Internally an item is ``(value, origin)``: origin says where it came from (a file path, an
index) so a run-time mismatch names it. ``_get`` returns ``None`` for an element a source
skipped (a bad file under ``on_error="skip"``).
"""

import collections
import concurrent.futures as cf
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax.tree_util as jtu
import numpy as np

from .._errors import ShapeError
from ._element_spec import ElementSpec, element_mismatch

Item = tuple[Any, Any]
State = dict[str, Any]

# The chaining methods (``map``, ``batch``, ...) build their stage through this table, which
# each stage module fills when the package is imported (``@stage("map") class Map(Dataset)``):
# the stages import this module, and this module imports none of them.
_STAGES: dict[str, Callable[..., Any]] = {}


def stage(name: str) -> Callable[[Any], Any]:
    """Register a stage class (or a function making stages) for the chaining method ``name``."""

    def register(maker: Any) -> Any:
        _STAGES[name] = maker
        return maker

    return register


class Dataset:
    """A typed, deterministic, resumable sequence of elements; see the package docstring."""

    spec: ElementSpec
    _parents: tuple["Dataset", ...] = ()
    _stage: str = "dataset"
    _random_access: bool = False
    _workers: int = 0
    # Metadata a source declares (image_folder sets both); stages downstream find it upstream.
    _class_names: list[str] | None = None
    _report: Any = None

    # -- what a node implements ------------------------------------------------------------
    def _length(self) -> int | None:
        """Elements per epoch, or ``None`` where unknown (or infinite)."""
        return None

    def _get(self, epoch: int, index: int) -> Item | None:
        raise NotImplementedError

    #: ``_rows`` works: elements are rows of the arrays of a ``from_arrays`` upstream (and
    #: ``shuffle``, ``take``, ``skip`` and ``split`` parts over it map indices to rows), so
    #: ``batch`` takes a batch in one fancy index per leaf instead of stacking elements one by
    #: one, and ``fit`` can gather batches from a device copy of the arrays.
    _gathers: bool = False

    def _rows(self, epoch: int, indices: Any) -> Any:
        """The rows of ``_arrays()`` that elements ``indices`` (an int array) of epoch
        ``epoch`` are."""
        raise NotImplementedError

    def _arrays(self) -> Any:
        """The element tree of arrays whose rows this node's elements are (``_rows``)."""
        return self._parents[0]._arrays()

    def _gather(self, epoch: int, indices: Any) -> Any:
        """The elements at ``indices`` of epoch ``epoch``, stacked on a new leading axis: the
        element's tree with every leaf's rows taken (a copy). ``ndarray.take`` costs about a
        third of fancy indexing (1.2 against 3.4 us for 32 rows of 64 floats), and a dict of
        arrays is mapped without ``tree_map`` (its keys sorted, as ``tree_map`` sorts them)."""
        rows = self._rows(epoch, indices)
        arrays = self._arrays()
        if type(arrays) is dict and all(type(a) is np.ndarray for a in arrays.values()):
            return {k: arrays[k].take(rows, axis=0) for k in sorted(arrays)}
        return jtu.tree_map(lambda a: a.take(rows, axis=0), arrays)

    def _open(self, epoch: int, state: State | None) -> "Iter":
        if self._random_access:
            start = int(state["index"]) if state else 0
            return IndexIter(self, epoch, start)
        raise NotImplementedError

    # -- naming ----------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return 1 + max((p.depth for p in self._parents), default=0)

    def where(self) -> str:
        """``stage 3, map(augment)``: how errors name this node."""
        return f"stage {self.depth}, {self._stage}"

    def check(self, item: Item) -> Item:
        """Raise ``ShapeError`` naming this stage and the element's origin unless it fits."""
        if self.spec.fits(item[0]):
            return item
        scalars = jtu.tree_map(lambda x: np.asarray(x) if isinstance(x, np.generic) else x, item[0])
        bad = element_mismatch(scalars, self.spec)
        if bad is None:
            return scalars, item[1]  # a NumPy scalar (np.int32(3)) is the 0-d array it stands for
        if bad is not None:
            at = f" at {bad.path!r}" if bad.path else ""
            raise ShapeError(
                f"{self.where()}: element from {describe_origin(item[1])} does not match the spec{at}.\n"
                f"  expected  {bad.expected}\n  got       {bad.got}\n  {bad.first.reason()}"
            )
        return item

    def __repr__(self) -> str:
        chain = " > ".join(_chain(self))
        return f"Dataset({chain})\n  spec: {self.spec!r}"

    # -- iteration -------------------------------------------------------------------------
    def epoch(
        self, epoch: int = 0, *, start: int = 0, state: State | None = None
    ) -> "DatasetIterator":
        """An iterator over epoch ``epoch`` (shuffles are seeded by ``(seed, epoch)``).

        Args:
            epoch: which epoch; the same epoch always yields the same elements in the same order.
            start: skip this many elements first (cheap on random-access datasets).
            state: a ``get_state()`` of an earlier iterator; iteration resumes exactly there.
        """
        if state is not None:
            return DatasetIterator(self, int(state["epoch"]), state)
        if start and self._random_access:
            return DatasetIterator(
                self, epoch, {"epoch": epoch, "position": start, "pipeline": {"index": start}}
            )
        it = DatasetIterator(self, epoch, None)
        for _ in range(start):
            if next(it, _END) is _END:
                break
        return it

    def __iter__(self) -> Iterator[Any]:
        return self.epoch(0)

    def __len__(self) -> int:
        n = self._length()
        if n is None:
            raise TypeError(
                f"{self._stage}: the number of elements is not known before iterating "
                "(a generator, filter, flat_map or an infinite repeat is upstream)."
            )
        return n

    # -- upstream facts --------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """The class names of the image folder (or other labelled source) upstream."""
        for node in _walk(self):
            names = node._class_names
            if names is not None:
                return list(names)
        raise AttributeError("no source upstream has class names (image_folder has).")

    @property
    def report(self) -> Any:
        """The bad-file report of the image folder upstream (see ``image_folder``)."""
        for node in _walk(self):
            rep = node._report
            if rep is not None:
                return rep
        raise AttributeError("no source upstream keeps a report (image_folder does).")

    def _labels(self) -> Any:
        """Integer labels per index without decoding (for stratified splits), or ``None``."""
        return None

    # -- combinators (registered by _stages, _batch, _select, _combine, _cache, _prefetch) ---
    def map(
        self,
        fn: Callable[..., Any],
        *,
        workers: int = 0,
        seed: int = 0,
        spec: Any = None,
        processes: bool = False,
    ) -> "Dataset":
        """Apply ``fn`` to every element; the new spec comes from ``fn``'s annotations.

        With dict elements, ``fn``'s parameters name the keys it takes (``def f(image: ...)``);
        a one-parameter function's result replaces that key, a several-parameter function
        returns a dict that replaces them. Otherwise ``fn`` gets the whole element (a tuple is
        unpacked). A parameter called ``rng`` receives a ``np.random.Generator`` seeded by
        ``(seed, epoch, index)``, so random transforms are deterministic and resumable.

        Args:
            fn: an annotated function; input annotations are checked against the spec now.
            workers: threads that run ``fn`` (order is kept). Pillow and NumPy release the GIL.
            seed: seeds the ``rng`` argument.
            spec: the output spec, where ``fn``'s return annotation cannot say it.
            processes: run ``fn`` in ``workers`` worker processes instead, for pure-Python
                functions that hold the GIL. Elements and results are pickled; ``fn`` must be
                importable (defined at the top level of a module). Order is kept.

        Raises:
            ShapeError: ``fn`` cannot take the elements (dtype, rank, size) or names a key
                they do not have.
            ValueError: ``processes=True`` and ``fn`` cannot be pickled (a lambda, a local
                function), or ``workers`` is 0.
        """
        return _STAGES["map"](self, fn, workers=workers, seed=seed, spec=spec, processes=processes)

    def filter(self, predicate: Callable[..., Any]) -> "Dataset":
        """Keep the elements for which ``predicate`` (called like ``map``'s ``fn``) is true."""
        return _STAGES["filter"](self, predicate)

    def flat_map(self, fn: Callable[..., Any], *, spec: Any = None) -> "Dataset":
        """Replace every element by the elements of the iterable ``fn`` returns.

        The spec comes from ``fn``'s return annotation (``Iterator[Float32[...]]``) or ``spec``.
        """
        return _STAGES["flat_map"](self, fn, spec=spec)

    def shuffle(self, *, seed: int, buffer_size: int | None = None) -> "Dataset":
        """A new order every epoch, seeded by ``(seed, epoch)``.

        Random-access datasets are permuted exactly; streams need a ``buffer_size``.
        """
        if self._random_access and buffer_size is None:
            return _STAGES["shuffle"](self, seed=seed)
        return _STAGES["buffer_shuffle"](self, seed=seed, buffer_size=buffer_size)

    def batch(self, size: int, *, drop_remainder: bool = False) -> "Dataset":
        """Stack ``size`` elements; every leaf gains a leading ``batch`` dimension.

        A short last batch is padded to ``size`` (so a jitted step never recompiles) and the
        key ``"mask"`` (``Bool[np.ndarray, " batch"]``, a last part for tuple elements) marks
        the real examples. A bad file skipped inside a batch is a masked slot too.
        """
        return _STAGES["batch"](self, size, drop_remainder=drop_remainder)

    def prefetch(self, size: int = 2, *, sharding: Any = None) -> "Dataset":
        """Compute up to ``size`` elements ahead in a background thread.

        With ``sharding`` (a ``jax.sharding.Sharding`` or a device) elements are put there
        with ``jax.device_put`` in that thread, and the spec's array type becomes ``jax.Array``.
        At the end of an epoch the thread goes on with the first ``size`` elements of the next
        one, which ``epoch(e + 1)`` takes over (not for a consumer that reopens one epoch).
        """
        return _STAGES["prefetch"](self, size, sharding=sharding)

    def repeat(self, count: int | None = None) -> "Dataset":
        """``count`` epochs of this dataset back to back (forever when ``None``)."""
        return _STAGES["repeat"](self, count)

    def take(self, count: int) -> "Dataset":
        """The first ``count`` elements."""
        return _STAGES["take"](self, count)

    def skip(self, count: int) -> "Dataset":
        """All but the first ``count`` elements."""
        return _STAGES["skip"](self, count)

    def cache(self, path: "str | os.PathLike[str] | None" = None) -> "Dataset":
        """Keep the elements of the first pass; later epochs replay them (epoch 0's elements).

        Without ``path`` they are kept in memory. With ``path`` (a folder) they are written to
        files there (one ``.npy`` per leaf, read back memory-mapped as read-only arrays) that
        later epochs and later processes read instead of computing the pipeline again. The
        files are renamed into place only once complete, so an interrupted pass is never read,
        and they belong to a fingerprint of the pipeline upstream (stages, parameters, source
        files' sizes and modification times, arrays, user functions' code): a changed pipeline
        writes a new cache and the old one is removed. Not in the fingerprint: what a
        function reads from outside (a global, a closure's variables) and the contents of a
        ``from_source`` source (its type and length are): delete the folder when they change.

        Raises:
            ShapeError: with ``path``, the elements have a leaf of no fixed size or dtype.
        """
        if path is None:
            return _STAGES["cache"](self)
        return _STAGES["disk_cache"](self, path)

    def split(
        self, fractions: float | tuple[float, ...], *, seed: int = 0, stratify: bool = True
    ) -> tuple["Dataset", ...]:
        """Disjoint parts of a random-access dataset, e.g. ``train, test = ds.split(0.8, seed=0)``.

        With ``stratify`` and a ``"label"`` key, every class is split in the same proportions.
        """
        return _STAGES["split"](self, fractions, seed=seed, stratify=stratify)

    def zip(self, *others: "Dataset") -> "Dataset":
        """Tuples ``(a, b, ...)`` of corresponding elements; as long as the shortest."""
        return _STAGES["zip"]((self, *others))

    def concatenate(self, *others: "Dataset") -> "Dataset":
        """This dataset's elements, then the others'; all must have the same spec."""
        return _STAGES["concatenate"]((self, *others))


_END = object()


def _walk(ds: Dataset) -> Iterator[Dataset]:
    yield ds
    for p in ds._parents:
        yield from _walk(p)


def _chain(ds: Dataset) -> list[str]:
    if len(ds._parents) == 1:
        return [*_chain(ds._parents[0]), ds._stage]
    return [ds._stage]


def describe_origin(origin: Any) -> str:
    if isinstance(origin, tuple):
        shown = ", ".join(describe_origin(o) for o in origin[:3])
        more = f", ... ({len(origin)} in all)" if len(origin) > 3 else ""
        return f"a batch of ({shown}{more})"
    return str(origin)


class Iter:
    """An internal iterator: ``next() -> Item`` (raises ``StopIteration``), ``state()``, ``close()``."""

    def next(self) -> Item:
        raise NotImplementedError

    def state(self) -> State:
        raise NotImplementedError

    def close(self) -> None:
        pass


class IndexIter(Iter):
    """Consecutive indices of a random-access node, computed by a pool, yielded in order."""

    def __init__(self, ds: Dataset, epoch: int, start: int):
        self.ds, self.epoch, self.index = ds, epoch, start
        self.length = ds._length() or 0
        self.pool: cf.ThreadPoolExecutor | None = None
        self.pending: collections.deque[cf.Future[Item | None]] = collections.deque()
        self.submitted = start
        # elements in flight: deep enough that workers never wait for the consumer (measured:
        # 16, 64 and 256 give the same images/s on benchmarks/data_pipeline.py)
        self.window = max(4 * ds._workers, 16)
        if ds._workers > 0:
            self.pool = cf.ThreadPoolExecutor(ds._workers, thread_name_prefix="shapesafe-data")

    def next(self) -> Item:
        while True:
            item = self.next_slot()
            if item is not None:
                return item

    def next_slot(self) -> Item | None:
        """The next index's item, ``None`` where the source skipped it (a bad file)."""
        if self.index >= self.length:
            raise StopIteration
        item = self._compute()
        self.index += 1
        return item

    def _compute(self) -> Item | None:
        if self.pool is None:
            return self.ds._get(self.epoch, self.index)
        while self.submitted < self.length and len(self.pending) < self.window:
            self.pending.append(self.pool.submit(self.ds._get, self.epoch, self.submitted))
            self.submitted += 1
        return self.pending.popleft().result()

    def state(self) -> State:
        return {"index": self.index}

    def close(self) -> None:
        if self.pool is not None:
            for f in self.pending:
                f.cancel()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


class DatasetIterator:
    """The public iterator of one epoch: ``next(it)``, ``it.get_state()``, ``it.set_state(s)``.

    ``get_state()`` is a JSON-serialisable dict ``{"epoch", "position", "pipeline"}``:
    ``position`` counts the elements yielded so far; ``pipeline`` is every stage's own state.
    ``ds.epoch(state=s)`` (or ``it.set_state(s)``) continues exactly after the last element
    that was yielded before ``get_state()``.
    """

    def __init__(self, ds: Dataset, epoch: int, state: State | None):
        self.dataset, self.epoch = ds, epoch
        self.position = int(state["position"]) if state else 0
        self._it = ds._open(epoch, state["pipeline"] if state else None)

    def __iter__(self) -> "DatasetIterator":
        return self

    def __next__(self) -> Any:
        value, _ = self._it.next()
        self.position += 1
        return value

    def get_state(self) -> State:
        """Where the iteration is: ``{"epoch", "position", "pipeline"}``, JSON-serialisable."""
        return {"epoch": self.epoch, "position": self.position, "pipeline": self._it.state()}

    def set_state(self, state: State) -> None:
        """Continue right after the element last yielded when ``state`` was taken."""
        self._it.close()
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._it = self.dataset._open(self.epoch, state["pipeline"])

    def close(self) -> None:
        """Stop the pipeline's worker threads or processes (also on garbage collection)."""
        self._it.close()

    def __enter__(self) -> "DatasetIterator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._it.close()
        except Exception:
            pass


def islice_items(it: Iter, n: int) -> list[Item]:
    """Up to ``n`` items from ``it``."""
    out: list[Item] = []
    for _ in itertools.repeat(None, n):
        try:
            out.append(it.next())
        except StopIteration:
            break
    return out
