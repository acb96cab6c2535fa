"""Sources: NumPy arrays, a generator with a declared spec, anything with ``__len__``/``__getitem__``."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax.tree_util as jtu
import numpy as np

from .._specs import annotation_for
from ._dataset import Dataset, Item, Iter, State
from ._element_spec import ElementSpec, leaves_with_paths


class ArraySource(Dataset):
    def __init__(self, arrays: Any):
        leaves = jtu.tree_leaves(arrays)
        if not leaves or not all(isinstance(x, np.ndarray) for x in leaves):
            raise TypeError(
                "from_arrays takes a NumPy array or a dict/tuple of them "
                f"(np.asarray first), got {type(arrays).__name__}."
            )
        sizes = {
            path: (np.shape(x)[0] if np.ndim(x) else None) for path, x in leaves_with_paths(arrays)
        }
        if None in sizes.values() or len(set(sizes.values())) != 1:
            raise ValueError(
                f"from_arrays: every array needs the same leading (example) dimension; got {sizes}."
            )
        empty = next((path for path, n in sizes.items() if n == 0), None)
        if empty is not None:
            shown = f"the array {empty!r}" if empty else "the array"
            shape = next(np.shape(x) for path, x in leaves_with_paths(arrays) if path == empty)
            raise ValueError(
                f"from_arrays: {shown} has no examples (shape {shape}; the first dimension counts "
                "the examples). A dataset needs at least one: check the array was filled (a "
                "filter or a split that kept nothing?)."
            )
        self.arrays = arrays
        self.n = int(next(iter(sizes.values())))  # type: ignore[arg-type]
        self.spec = ElementSpec(_ordered_map(_row_annotation, arrays))
        self._stage = "from_arrays"
        self._random_access = self._gathers = True

    def _length(self) -> int | None:
        return self.n

    def _get(self, epoch: int, index: int) -> Item | None:
        return jtu.tree_map(lambda x: np.array(x[index]), self.arrays), f"example {index}"

    def _rows(self, epoch: int, indices: Any) -> Any:
        return indices

    def _arrays(self) -> Any:
        return self.arrays

    def _labels(self) -> Any:
        if isinstance(self.arrays, Mapping) and "label" in self.arrays:
            return np.asarray(self.arrays["label"])
        return None


def _row_annotation(x: np.ndarray) -> Any:
    """The annotation of one row of ``x`` (also of an array with no rows)."""
    return annotation_for(x.dtype, np.ndarray, " ".join(str(int(d)) for d in x.shape[1:]))


def _ordered_map(f: Callable[[Any], Any], tree: Any) -> Any:
    """``jtu.tree_map`` that keeps a dict's key order (for a spec that prints as written)."""
    if isinstance(tree, Mapping):
        return {k: _ordered_map(f, v) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(_ordered_map(f, v) for v in tree)
    return f(tree)


def from_arrays(arrays: Any) -> Dataset:
    """A dataset of the rows of NumPy arrays: ``from_arrays({"image": x, "label": y})``.

    Args:
        arrays: one array or a PyTree (dict, tuple) of arrays with the same first dimension.

    Returns:
        A random-access ``Dataset`` of ``len(first array)`` elements.

    Raises:
        TypeError: ``arrays`` holds something that is not a NumPy array.
        ValueError: the arrays disagree on their number of rows, one is 0-d, or they have no
            rows (the message names the empty array).

    Element ``i`` is the same PyTree with every array indexed at ``i``; the spec is read off
    the arrays (``{"image": UInt8[np.ndarray, "28 28"], "label": Int32[np.ndarray, ""]}``).

    Example:
        >>> import numpy as np
        >>> ds = from_arrays({"x": np.zeros((5, 3), np.float32), "label": np.arange(5, dtype=np.int32)})
        >>> ds.spec
        {"x": Float32[np.ndarray, "3"], "label": Int32[np.ndarray, ""]}
        >>> len(ds.batch(2)), ds.batch(2).spec["x"].dim_str
        (3, 'batch 3')
    """
    return ArraySource(arrays)


class GeneratorSource(Dataset):
    def __init__(self, fn: Callable[[], Any], spec: Any):
        self.fn, self.spec = fn, ElementSpec(spec)
        self._stage = f"from_generator({getattr(fn, '__name__', type(fn).__name__)})"

    def _open(self, epoch: int, state: State | None) -> Iter:
        it = _GenIter(self)
        for _ in range(int(state["count"]) if state else 0):  # replay: a generator cannot seek
            it.next()
        return it


class _GenIter(Iter):
    def __init__(self, ds: GeneratorSource):
        self.ds, self.it, self.count = ds, iter(ds.fn()), 0

    def next(self) -> Item:
        value = next(self.it)
        self.count += 1
        return self.ds.check((value, f"element {self.count - 1} of {self.ds._stage}"))

    def state(self) -> State:
        return {"count": self.count}


def from_generator(fn: Callable[[], Iterator[Any]], spec: Any) -> Dataset:
    """A dataset whose every epoch is ``fn()``'s elements, which must match ``spec``.

    Args:
        fn: called with no arguments, returns an iterator of elements.
        spec: the element spec (a jaxtyping annotation or a PyTree of them).

    Returns:
        A stream ``Dataset`` (its length is unknown).

    ``fn`` is called once per epoch (and again to resume, replaying to the saved position).

    Example:
        >>> import numpy as np
        >>> from jaxtyping import Float32
        >>> def gen():
        ...     for i in range(3):
        ...         yield np.full((2,), i, np.float32)
        >>> ds = from_generator(gen, Float32[np.ndarray, "2"])
        >>> [float(x[0]) for x in ds]
        [0.0, 1.0, 2.0]
    """
    return GeneratorSource(fn, spec)


class RandomAccessSource(Dataset):
    def __init__(self, source: Any, spec: Any, workers: int):
        if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
            raise TypeError(
                f"from_source needs __len__ and __getitem__; {type(source).__name__} lacks them."
            )
        self.source, self.spec = source, ElementSpec(spec)
        self._stage = f"from_source({type(source).__name__})"
        self._random_access, self._workers = True, int(workers)

    def _length(self) -> int | None:
        return len(self.source)

    def _get(self, epoch: int, index: int) -> Item | None:
        return self.check((self.source[index], f"{self._stage}[{index}]"))


def from_source(source: Any, spec: Any, *, workers: int = 0) -> Dataset:
    """A dataset over anything with ``__len__`` and ``__getitem__`` (read by ``workers`` threads).

    Args:
        source: a sequence-like object; element ``i`` is ``source[i]``.
        spec: the element spec (a jaxtyping annotation or a PyTree of them).
        workers: threads that read consecutive elements in parallel (order is kept).

    Returns:
        A random-access ``Dataset`` of ``len(source)`` elements.

    Example:
        >>> import numpy as np
        >>> from jaxtyping import Int64
        >>> ds = from_source([np.array(i) for i in range(4)], Int64[np.ndarray, ""])
        >>> [int(x) for x in ds.shuffle(seed=0)] != [0, 1, 2, 3], len(ds)
        (True, 4)
    """
    return RandomAccessSource(source, spec, workers)
