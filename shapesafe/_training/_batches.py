"""Reading a batch: which part is the input, the target and the padding mask.

A batch is a dict (``{"image": ..., "label": ..., "mask": ...}``) or a tuple ``(x, y)`` /
``(x, y, mask)``. The mask marks real examples in a padded short last batch; when absent,
every example is real.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import ShapesafeError

INPUT_KEYS = ("image", "x", "input", "inputs", "features")
TARGET_KEYS = ("label", "y", "target", "targets", "labels")
MASK_KEY = "mask"


def pick_keys(batch: Any, inputs: str | None, targets: str | None) -> tuple[Any, Any]:
    """The input and target keys (or tuple positions) for batches shaped like ``batch``."""
    if isinstance(batch, Mapping):

        def find(given: str | None, candidates: tuple[str, ...], what: str) -> str:
            if given is not None:
                if given not in batch:
                    raise ShapesafeError(
                        f"the batch has no key {given!r} for the {what}; its keys are {sorted(batch)}. "
                        f"Pass {what}=<one of those>."
                    )
                return given
            for k in candidates:
                if k in batch:
                    return k
            raise ShapesafeError(
                f"cannot tell which key of the batch is the {what}: keys {sorted(batch)}, none of "
                f"{list(candidates)}. Pass {what}='<key>' to fit/evaluate."
            )

        return find(inputs, INPUT_KEYS, "inputs"), find(targets, TARGET_KEYS, "targets")
    if isinstance(batch, tuple | list) and len(batch) in (2, 3):
        return 0, 1
    raise ShapesafeError(
        f"a batch must be a dict such as {{'image': x, 'label': y}} or a tuple (x, y[, mask]); got {type(batch).__name__}."
    )


def split_batch(batch: Any, keys: tuple[Any, Any]) -> tuple[Any, Any, np.ndarray]:
    """``(x, y, mask)`` of one batch; the mask is all-true when the batch has none."""
    if type(batch) is tuple and len(batch) == 2 and type(batch[0]) is np.ndarray:
        return batch[0], batch[1], all_real(batch[0].shape[0])  # the common case, at once
    x, y = batch[keys[0]], batch[keys[1]]
    if isinstance(batch, Mapping):
        mask = batch.get(MASK_KEY)
    else:
        mask = batch[2] if len(batch) == 3 else None
    if mask is None:
        return x, y, all_real(int(np.shape(x)[0]))
    return x, y, np.asarray(mask, bool)


_ALL_REAL: dict[tuple[int, bool], Any] = {}


def all_real(n: int, *, on_device: bool = False) -> Any:
    """The all-true mask of ``n`` examples, made once per size (read-only, shared); with
    ``on_device``, one copy of it on the default device, which a step takes without the
    copy a NumPy argument costs at every call."""
    mask = _ALL_REAL.get((n, on_device))
    if mask is None:
        if on_device:
            import jax

            mask = jax.device_put(all_real(n))
        else:
            mask = np.ones((n,), bool)
            mask.flags.writeable = False
        _ALL_REAL[(n, on_device)] = mask
    return mask
