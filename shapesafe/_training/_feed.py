"""Feeding the engine: a batch read, checked, padded to one size and put on the device(s).

The host work of a step lives here, so its cost is in one place: keys are picked once, an
input shape and dtype is compared with the model's spec once (the answer depends on nothing
else), the class count is read once. What depends on the values (NaN, label range) is
checked here for every batch read from the host (``check_values``: one pass over a clean
batch, before it trains); batches already on the device (JAX arrays), which the host would
have to copy back to look at, and an array pipeline's rows are checked by the training step
itself (``_data_checks.value_flags``), the first batch of a ``fit`` on the host as well.
"""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from .._errors import ShapesafeError
from ._batches import MASK_KEY, all_real, pick_keys, split_batch
from ._data_checks import (
    check_finite,
    check_input_spec,
    check_not_empty,
    check_values,
    clean,
    label_classes,
)
from ._engine import Batches, Slices


def pad(x: Any, n: int) -> Any:
    """Pad the leading axis to ``n`` by repeating the first row (valid values, masked out)."""
    x = np.asarray(x)
    short = n - x.shape[0]
    if short <= 0:
        return x
    return np.concatenate([x, np.repeat(x[:1], short, axis=0)], axis=0)


class Batcher:
    """Turns a dataset's batches into padded ``(x, y, mask)`` of one fixed size (host arrays);
    ``place`` puts one batch, or several stacked for ``lax.scan``, on the device(s)."""

    def __init__(
        self,
        model: Any,
        inputs: str | None,
        targets: str | None,
        sharding: Any,
        *,
        step_checks_values: bool = False,
    ):
        self.model, self.inputs, self.targets, self.sharding = model, inputs, targets, sharding
        self.step_checks_values = step_checks_values  # the training step checks device batches
        self.keys: tuple[Any, Any] | None = None
        self.size: int | None = None
        self.classes = label_classes(model)
        self.seen: set[tuple[tuple[int, ...], np.dtype[Any]]] = set()  # fitting inputs

    def check(self, x: Any, where: str, *, fixed: bool = True, values: bool = True) -> int:
        """Check one batch's inputs (their values too where ``values``); the first fixes the
        batch size, which later batches must not exceed where ``fixed``. Returns its length."""
        if type(x) is np.ndarray:  # the common case, without the conversions below
            shape, dtype = x.shape, x.dtype
        else:
            shape = tuple(np.shape(x))
            dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
        if (shape, dtype) not in self.seen:
            check_not_empty(x, where)
            check_input_spec(self.model, shape, dtype, x, where)
            self.seen.add((shape, dtype))
        if values:
            check_finite(x, where)
        n = int(shape[0])
        if self.size is None:
            self.size = n
            if self.sharding is not None:
                # each process feeds its own part of the global batch to its own devices
                devices = max(1, self.sharding.mesh.shape["data"] // jax.process_count())
                if n % devices:
                    raise ShapesafeError(
                        f"a batch of {n} cannot be split over {devices} devices; use a batch size that is a multiple "
                        f"of {devices} (e.g. {devices * max(1, round(n / devices))})."
                    )
        if fixed and n > self.size:
            raise ShapesafeError(
                f"{where} has {n} examples, more than the first batch's {self.size}; "
                "batches must not grow."
            )
        return n

    def __call__(self, batch: Any, where: str) -> Batches:
        """One batch, padded to the first batch's size, its values checked here or (``checks``)
        left to the training step: a training batch already on the device, but the first."""
        if self.keys is None:
            self.keys = pick_keys(batch, self.inputs, self.targets)
        x, y, mask = split_batch(batch, self.keys)
        step_checks = self.step_checks_values and self.size is not None and _on_device(x, y)
        n = self.check(x, where, values=False)
        if not step_checks:
            check_values(x, y, mask, self.classes, where)
        size = self.size or n
        if n < size:  # padding copies to the host; ``checks`` still says where x, y came from
            x, y = pad(x, size), pad(y, size)
            mask = np.concatenate([mask, np.zeros(size - n, bool)])
        return Batches(x, y, mask, step_checks)

    def inputs_of(self, batch: Any, where: str) -> tuple[Any, Any, int]:
        """``(x padded to the batch size, mask or None, real length)`` of a batch for
        ``predict``: an array, a dict (the ``inputs`` key) or a tuple whose first item is ``x``."""
        if isinstance(batch, dict):
            key = self.inputs if self.inputs is not None else pick_keys(batch, None, None)[0]
            x, mask = batch[key], batch.get(MASK_KEY)
        elif isinstance(batch, tuple | list):
            x, mask = batch[0], None
        else:
            x, mask = batch, None
        n = self.check(x, where, fixed=False)
        return pad(x, self.size or n), mask, n

    def place(self, group: list[Batches]) -> Batches:
        """One batch as is, or ``len(group) > 1`` batches stacked on a new leading (step) axis;
        with a mesh, sharded along the batch axis over the mesh's ``data`` axis. The step
        checks the values of a group holding a batch that the host left to it."""
        if len(group) == 1:
            x, y, mask, checks = group[0]
        else:
            x, y, mask = (np.stack([np.asarray(g[k]) for g in group]) for k in range(3))
            checks = any(g.checks for g in group)
        if self.sharding is None:
            if mask is all_real(len(mask)):  # the same mask every step: one device copy of it
                mask = all_real(len(mask), on_device=True)
            return Batches(x, y, mask, checks)
        from jax.sharding import NamedSharding, PartitionSpec

        spec = PartitionSpec("data") if len(group) == 1 else PartitionSpec(None, "data")
        sharding = NamedSharding(self.sharding.mesh, spec)

        def put(a: Any) -> Any:  # this process's examples: its part of the global batch
            return jax.make_array_from_process_local_data(sharding, np.asarray(a))

        return Batches(put(x), put(y), put(mask), checks)


def _on_device(x: Any, y: Any) -> bool:
    """Whether a batch's inputs or targets hold JAX arrays (on a device) rather than host data."""
    if type(x) is np.ndarray and type(y) is np.ndarray:  # the common case, at once
        return False
    return any(isinstance(a, jax.Array) for a in jax.tree.leaves((x, y)))


RESIDENT_BYTES = 256 << 20  # arrays up to this size are copied to the device for training
CHUNK = 64  # batches of a list copied to the device at a time, at most
CHUNK_BYTES = 16 << 20  # and about this many bytes at most (at least steps_per_call batches)


@functools.partial(jax.jit, donate_argnums=0)
def _to_device(arrays: Any) -> Any:
    """NumPy arrays copied to the default device through a jitted call's argument transfer,
    which costs a quarter to a half of ``jax.device_put``'s (a 530 KB chunk of the digits
    MLP's batches: 100 against 400 us, ``benchmarks/README.md``). The transferred buffers are
    donated, so the identity returns them without a second copy (without donation a 200 MB
    array peaked at twice its size)."""
    return arrays


def chunk_width(batches: int, batch_bytes: int, steps_per_call: int) -> int:
    """Batches in each chunk of a list of ``batches`` (``Resident``): ``CHUNK`` or fewer, to stay
    within ``CHUNK_BYTES``, a multiple of ``steps_per_call``; for a shorter list the next power
    of two (times ``steps_per_call``) that holds it, so that lists of any length make a few
    shapes of chunk and the step compiles for those alone."""
    most = max(1, min(CHUNK, CHUNK_BYTES // max(1, batch_bytes)) // steps_per_call)
    groups = -(-batches // steps_per_call)
    return steps_per_call * min(most, 1 << (groups - 1).bit_length())


class Resident:
    """Training batches trained from a device copy of their arrays.

    Two kinds of data have one. An array pipeline: ``from_arrays(...)`` (with ``shuffle``,
    ``take``, ``skip`` or ``split`` parts over it) and then ``batch(n)``, whose batches are rows
    of known arrays. And a list (or tuple) of NumPy batches of one element shape: arrays
    already cut into batches. The batches are laid out on the device one after another, each
    padded to the batch size (zero rows, masked, as ``batch`` pads), and their values checked
    once (``_data_checks.clean``): a pipeline's arrays are copied once per ``fit`` call and
    each epoch laid out by one gather, in the epoch's order; a list is copied a chunk of
    batches at a time, as the steps reach it, and kept for the later epochs. A step then gets
    no batch from the host: it slices its batch out itself (``_engine.Slices``), so the host
    neither gathers, checks nor copies a batch (about 20 us a step for the digits MLP on CPU),
    and the batches are the data's own, in its order.

    A list is copied in chunks (``chunk_width``: up to ``CHUNK`` batches within
    ``CHUNK_BYTES``, a multiple of ``steps_per_call``) because the copy of a whole 1000-batch
    list before the first step cost more than chunks copied while the steps before them run
    (``benchmarks/README.md``). The last chunk ends at the list's end and a short list is
    padded with zero batches to a power of two, so every chunk of a list has one shape and
    lists of any length make a few: the step compiles once for each.
    """

    def __init__(
        self,
        arrays: Any,
        keys: tuple[Any, Any],
        classes: int | None,
        masks: list[np.ndarray],
        order: Callable[[int], np.ndarray] | None = None,
        *,
        batches: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
        steps_per_call: int = 1,
    ):
        """``arrays`` (host) hold the batches one after another, or, with ``order``, the rows
        that ``order(epoch)`` lays out so; or, for a list, ``arrays`` is ``None`` and
        ``batches`` the padded batches' inputs and targets, laid out in chunks of a multiple
        of ``steps_per_call``. ``masks[i]`` is batch ``i``'s."""
        self.keys, self.masks, self.order, self.classes = keys, masks, order, classes
        self.size = len(masks[0])
        self.real = all_real(self.size)  # a full batch's mask, and its device copy
        self.real_on_device = all_real(self.size, on_device=True)
        self.span = len(masks)  # batches in ``laid_out``, from batch ``lo``
        self.lo = self.cursor = 0  # and the next batch's number
        self.restart = True
        self.laid_out: Any = None
        self.batches = batches
        if batches is not None:
            self.span = chunk_width(
                len(masks), batches[0][0].nbytes + batches[1][0].nbytes, steps_per_call
            )
            self.chunks: dict[int, tuple[Any, bool]] = {}
            return
        # arrays clean in every row need no value checks in the step (padding rows are zeros)
        self.checks = not clean(arrays[keys[0]], arrays[keys[1]], classes)
        self.arrays = _to_device(arrays)
        self.laid_out = self.arrays if order is None else None  # this epoch's batches

    @staticmethod
    def of(data: Any, batcher: Batcher, steps_per_call: int = 1) -> "Resident | None":
        """The resident form of ``data`` for training, or ``None`` where it has none: not an
        array pipeline ending in ``batch`` nor a list of NumPy batches of one shape, over
        ``RESIDENT_BYTES``, or placed on a mesh."""
        from ..data._batch import Batch

        if batcher.sharding is not None:
            return None
        if isinstance(data, Batch):
            return _pipeline(data, batcher)
        if type(data) in (list, tuple) and data:
            return _listed(data, batcher, steps_per_call)
        return None

    def epoch(self, epoch: int, start: int) -> Iterator[np.ndarray]:
        """The mask of each batch of ``epoch`` from batch ``start``, its epoch laid out."""
        if self.order is not None:
            self.laid_out = _gather(self.arrays, self.order(epoch))
        self.cursor, self.restart = start, True
        yield from self.masks[start:]

    def place(self, group: list[np.ndarray]) -> Slices:
        """The next batch (its mask), or ``len(group) > 1`` of them for one call's steps, in
        the arrays that hold them (a list's chunk laid out here where they are not yet)."""
        first, self.cursor = self.cursor, self.cursor + len(group)
        restart, self.restart = self.restart, False
        if self.batches is not None and not (
            self.laid_out is not None and self.lo <= first and self.cursor <= self.lo + self.span
        ):
            self._chunk(first, len(group))
            restart = True  # other arrays: the log counts from this batch's number in them
        if len(group) == 1:
            mask = group[0]
            if mask is self.real:
                mask = self.real_on_device
        else:
            mask = np.stack(group)
        return Slices(self.laid_out, mask, self.keys, self.checks, first - self.lo, restart)

    def _chunk(self, first: int, n: int) -> None:
        """Lay out the chunk of a list's batches that holds batches ``first`` to ``first + n``:
        the aligned one, or the one that ends the list, both kept for later epochs; or (a group
        across two) one from ``first``. Every chunk has ``span`` batches, zero batches after the
        end of a list shorter than that, which no step reads."""
        assert self.batches is not None
        total, span = len(self.masks), self.span
        lo = first - first % span
        if first + n > lo + span:
            lo = first
        tail = max(0, total - span)
        lo = min(lo, tail)
        found = self.chunks.get(lo)
        if found is None:
            parts = [b[lo : lo + span] for b in self.batches]
            if total < span:  # the list's batches, then zeros
                parts = [p + [np.zeros_like(p[0])] * (span - total) for p in parts]
            x, y = np.concatenate(parts[0]), np.concatenate(parts[1])
            arrays = (x, y) if self.keys == (0, 1) else {self.keys[0]: x, self.keys[1]: y}
            found = (_to_device(arrays), not clean(x, y, self.classes))
            if lo % span == 0 or lo == tail:
                self.chunks[lo] = found
        (self.laid_out, self.checks), self.lo = found, lo


@jax.jit
def _gather(arrays: Any, rows: Any) -> Any:
    """The rows of every leaf, in ``rows``' order: an epoch's batches laid out on the device."""
    return jax.tree.map(lambda a: a[rows], arrays)


def _pipeline(data: Any, batcher: Batcher) -> Resident | None:
    """An array pipeline's arrays, one zero row after the last (the padding), and each epoch's
    rows: ``batch``'s batches of the parent's rows, a short last one padded with that row."""
    parent = data._parents[0]
    if not parent._gathers or data.form == "single":
        return None
    arrays = data._arrays()
    if sum(np.asarray(a).nbytes for a in jax.tree.leaves(arrays)) > RESIDENT_BYTES:
        return None
    keys = pick_keys(data.spec.tree, batcher.inputs, batcher.targets)
    size, batches, n = int(data.size), len(data), parent._length() or 0
    zero_row = int(jax.tree.leaves(arrays)[0].shape[0])
    arrays = jax.tree.map(
        lambda a: np.concatenate([a, np.zeros((1, *a.shape[1:]), a.dtype)]), arrays
    )
    real = all_real(size)
    masks = [real] * batches
    if batches * size > n:  # a short last batch
        masks[-1] = np.arange(size) < n - (batches - 1) * size

    def order(epoch: int) -> np.ndarray:
        rows = np.full((batches * size,), zero_row, np.int32)
        k = min(n, batches * size)
        rows[:k] = np.asarray(parent._rows(epoch, np.arange(k)), np.int32)
        return rows

    return Resident(arrays, keys, batcher.classes, masks, order)


def _listed(data: Any, batcher: Batcher, steps_per_call: int) -> Resident | None:
    """A list of NumPy batches, each padded to the first's size, for ``Resident`` to lay out
    a chunk at a time; ``None`` unless every batch is NumPy inputs and targets of the
    first's element shapes and dtypes, no larger than it (the host path then reads them one by
    one, and names a batch at fault)."""
    try:
        keys = pick_keys(data[0], batcher.inputs, batcher.targets)
        if all(type(b) is tuple and len(b) == 2 for b in data):  # (x, y): no masks to read
            xs, ys, masks = [b[0] for b in data], [b[1] for b in data], None
        else:
            xs, ys, masks = (
                [p[k] for p in parts]
                for parts in [[split_batch(b, keys) for b in data]]
                for k in range(3)
            )
    except (ShapesafeError, KeyError, IndexError, TypeError):
        return None  # batches of another form than the first: the host path explains
    if not (_same(xs) and _same(ys)):
        return None
    size, lengths = len(xs[0]), [len(a) for a in xs]
    if (
        not size
        or len(xs) * (xs[0].nbytes + ys[0].nbytes) > RESIDENT_BYTES
        or max(lengths) > size
        or any(len(b) != n for b, n in zip(ys, lengths, strict=True))
        or (masks is not None and any(m.shape != (n,) for m, n in zip(masks, lengths, strict=True)))
    ):
        return None
    real = all_real(size)
    if masks is None:
        masks = [real] * len(xs)
    for i, n in enumerate(lengths):
        if n < size:  # zero rows after a short batch's real ones, masked out
            xs[i], ys[i] = _zeros_after(xs[i], size - n), _zeros_after(ys[i], size - n)
            masks[i] = _zeros_after(masks[i][:n], size - n)
    masks = [real if m is real or m.all() else m for m in masks]
    return Resident(
        None, keys, batcher.classes, masks, batches=(xs, ys), steps_per_call=steps_per_call
    )


def _same(arrays: list[Any]) -> bool:
    """NumPy arrays of at least one dimension, all of the first's element shape and dtype."""
    first = arrays[0]
    if type(first) is not np.ndarray or not first.ndim:
        return False
    shape, dtype = first.shape[1:], first.dtype
    return all(
        type(a) is np.ndarray and a.shape[1:] == shape and (a.dtype is dtype or a.dtype == dtype)
        for a in arrays
    )


def _zeros_after(a: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([a, np.zeros((n, *a.shape[1:]), a.dtype)])
