"""Feeding the engine: a batch read, checked, padded to one size and put on the device(s).

The host work of a step lives here, so its cost is in one place: keys are picked once, an
input shape and dtype is compared with the model's spec once (the answer depends on nothing
else), the class count is read once. What depends on the values (NaN, label range) is
checked here for every batch read from the host (``check_values``: one pass over a clean
batch, before it trains); batches already on the device (JAX arrays), which the host would
have to copy back to look at, and an array pipeline's rows are checked by the training step
itself (``_data_checks.value_flags``), the first batch of a ``fit`` on the host as well.
"""

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
from ._engine import Batches, Rows


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


class Resident:
    """An array pipeline's training batches, gathered on the device.

    ``from_arrays(...)`` (with ``shuffle``, ``take``, ``skip`` or ``split`` parts over it) and
    then ``batch(n)`` is a function from a batch's number to rows of known arrays; ``fit``
    copies those arrays to the device once (with one row of zeros after the last, which pads a
    short last batch as ``batch`` pads it) and gives each step the batch's row numbers instead
    of its values. The batches are the pipeline's, in its order; the host slices a permutation
    instead of gathering, checking and copying every batch (about 20 us a step for the
    digits MLP on CPU).
    """

    def __init__(self, data: Any, keys: tuple[Any, Any], classes: int | None):
        self.data, self.keys, self.size = data, keys, int(data.size)
        self.real = all_real(self.size)  # a full batch's mask, and its device copy
        self.real_on_device = all_real(self.size, on_device=True)
        arrays = data._arrays()
        # arrays clean in every row need no value checks in the step (the padding row is clean)
        self.checks = not clean(arrays[keys[0]], arrays[keys[1]], classes)
        self.zero_row = int(jax.tree.leaves(arrays)[0].shape[0])
        self.arrays = jax.tree.map(
            lambda a: jax.device_put(np.concatenate([a, np.zeros((1, *a.shape[1:]), a.dtype)])),
            arrays,
        )

    @staticmethod
    def of(data: Any, batcher: Batcher) -> "Resident | None":
        """The resident form of ``data`` for training, or ``None`` where it has none: not an
        array pipeline ending in ``batch``, over ``RESIDENT_BYTES``, or placed on a mesh."""
        from ..data._batch import Batch

        if batcher.sharding is not None or not isinstance(data, Batch):
            return None
        if not data._parents[0]._gathers or data.form == "single":
            return None
        arrays = data._arrays()
        if sum(np.asarray(a).nbytes for a in jax.tree.leaves(arrays)) > RESIDENT_BYTES:
            return None
        keys = pick_keys(data.spec.tree, batcher.inputs, batcher.targets)
        return Resident(data, keys, batcher.classes)

    def epoch(self, epoch: int, start: int) -> Any:
        """``(rows, mask)`` of each batch of ``epoch`` from batch ``start``: ``int32[size]``
        row numbers (the zero row after the real ones of a short batch) and its mask."""
        parent, size, real = self.data._parents[0], self.size, self.real
        n = parent._length() or 0
        rows = np.asarray(parent._rows(epoch, np.arange(start * size, n)), np.int32)
        for lo in range(0, len(self.data) * size - start * size, size):
            batch = rows[lo : lo + size]
            if len(batch) == size:
                yield batch, real
            else:
                k = len(batch)
                padded = np.full((size,), self.zero_row, np.int32)
                padded[:k] = batch
                yield padded, np.arange(size) < k

    def place(self, group: list[tuple[Any, Any]]) -> Rows:
        """One batch's rows, or ``len(group) > 1`` stacked on a leading step axis."""
        if len(group) == 1:
            rows, mask = group[0]
            if mask is self.real:
                mask = self.real_on_device
        else:
            rows, mask = (np.stack([g[k] for g in group]) for k in range(2))
        return Rows(self.arrays, rows, mask, self.keys, self.checks)
