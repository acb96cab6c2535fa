"""Feeding the engine: a batch read, checked, padded to one size and put on the device(s).

The host work of a step lives here, so its cost is in one place: keys are picked once, an
input shape and dtype is compared with the model's spec once (the answer depends on nothing
else), the class count is read once. What depends on the values (NaN, label range) is
checked here for evaluation batches and for the first training batch (so that a wrong
dataset fails at once); the training step checks every batch's values itself
(``_data_checks.value_flags``), where they cost the host nothing.
"""

from typing import Any

import jax
import numpy as np

from .._errors import ShapesafeError
from ._batches import MASK_KEY, pick_keys, split_batch
from ._data_checks import (
    check_finite,
    check_finite_targets,
    check_input_spec,
    check_label_range,
    check_not_empty,
    label_classes,
)


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
        self.step_checks_values = step_checks_values  # the training step: host checks the first
        self.keys: tuple[Any, Any] | None = None
        self.size: int | None = None
        self.classes = label_classes(model)
        self.seen: set[tuple[tuple[int, ...], np.dtype[Any]]] = set()  # fitting inputs

    def check(self, x: Any, where: str, *, fixed: bool = True, values: bool = True) -> int:
        """Check one batch's inputs (their values too where ``values``); the first fixes the
        batch size, which later batches must not exceed where ``fixed``. Returns its length."""
        check_not_empty(x, where)
        shape = tuple(np.shape(x))
        dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
        if (shape, dtype) not in self.seen:
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

    def __call__(self, batch: Any, where: str) -> tuple[Any, Any, Any]:
        if self.keys is None:
            self.keys = pick_keys(batch, self.inputs, self.targets)
        x, y, mask = split_batch(batch, self.keys)
        values = not self.step_checks_values or self.size is None
        n = self.check(x, where, values=values)
        if values:
            check_finite_targets(y, mask, where)
            check_label_range(y, mask, self.classes, where)
        size = self.size or n
        if n < size:
            x, y = pad(x, size), pad(y, size)
            mask = np.concatenate([mask, np.zeros(size - n, bool)])
        return x, y, mask

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

    def place(self, group: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
        """One batch as is, or ``len(group) > 1`` batches stacked on a new leading (step) axis;
        with a mesh, sharded along the batch axis over the mesh's ``data`` axis."""
        x, y, mask = (
            group[0]
            if len(group) == 1
            else (np.stack([np.asarray(g[k]) for g in group]) for k in range(3))
        )
        if self.sharding is None:
            return x, y, mask
        from jax.sharding import NamedSharding, PartitionSpec

        spec = PartitionSpec("data") if len(group) == 1 else PartitionSpec(None, "data")
        sharding = NamedSharding(self.sharding.mesh, spec)

        def put(a: Any) -> Any:  # this process's examples: its part of the global batch
            return jax.make_array_from_process_local_data(sharding, np.asarray(a))

        return put(x), put(y), put(mask)
