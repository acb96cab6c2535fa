"""What ``fit``, ``evaluate`` and ``predict`` are given, checked and normalised before any work.

Keras users write ``fit(model, (x, y), batch_size=32, validation_split=0.2)``; shapesafe's
loop takes re-iterable batches. This module is the one place that turns the first into the
second, and that refuses, in one sentence naming the argument and what to type, what cannot
work: an optimizer given by name or uncalled, a loss given by name, labels of another
length than the inputs, a model that is a blueprint. The loop itself (``_fit``) never sees
anything else.

- arrays: ``(x, y)`` (NumPy or JAX arrays), ``{"image": x, "label": y}`` (any keys whose
  values are arrays), and for ``predict`` one array ``x``: a ``shapesafe.data`` dataset of
  their rows, shuffled each epoch for ``fit`` (``shuffle=True``, seeded by 0), batched by
  ``batch_size`` (32 by default), padded and masked in the short last batch;
- ``validation_split=f`` keeps the last ``f`` of the arrays apart (before shuffling, as
  Keras does) for evaluation; ``validation_data=(x_val, y_val)`` is batched the same way;
- a dataset or any other iterable of batches is passed on as it is.
"""

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from ..data import Dataset, from_arrays

DEFAULT_BATCH = 32
_LOSS_NAMES = ("cross_entropy", "binary_cross_entropy", "mean_squared_error", "soft_cross_entropy")


# -- one argument at a time --------------------------------------------------------------------


def check_model(model: Any, what: str) -> None:
    """Refuse a blueprint or anything else that is not a built module."""
    if isinstance(model, nnx.Module):
        return
    from ..layers import Blueprint

    if isinstance(model, Blueprint):
        raise TypeError(
            f"{what}: {model!r} is a blueprint, not a built model. Build it first: "
            'model = ss.build(blueprint, Float32[Array, "batch ..."]), then '
            f"ss.{what}(model, ...)."
        )
    raise TypeError(
        f"{what}: expected a model built with ss.build (a flax.nnx.Module), got "
        f"{type(model).__name__}. Build it first: model = ss.build(blueprint, spec)."
    )


def check_optimizer(optimizer: Any) -> None:
    """An optax ``GradientTransformation``: not a name, not the uncalled constructor."""
    if isinstance(optimizer, optax.GradientTransformation):
        return
    if isinstance(optimizer, str):
        name = optimizer.lower()
        raise TypeError(
            f"fit: optimizer={optimizer!r} is a name; shapesafe takes optax objects. Pass "
            f"optimizer=optax.{name}(1e-3) (with the learning rate you want)."
        )
    module = getattr(optimizer, "__module__", "") or ""
    if callable(optimizer) and module.startswith("optax"):
        name = getattr(optimizer, "__name__", "adam")
        raise TypeError(
            f"fit: optimizer=optax.{name} is the function that makes the optimizer, not the "
            f"optimizer. Call it: optimizer=optax.{name}(1e-3) (with the learning rate you want)."
        )
    raise TypeError(
        "fit: optimizer must be an optax GradientTransformation such as optax.adam(1e-3), "
        f"got {type(optimizer).__name__}."
    )


def check_loss(loss: Any, what: str) -> Any:
    """The loss to call as ``loss(outputs, targets, *, mask)``: a shapesafe loss as it is, a
    function without ``mask`` (an optax loss) wrapped into a masked mean."""
    if loss is None:
        return None
    if isinstance(loss, str):
        known = loss if loss in _LOSS_NAMES else None
        fix = (
            f"loss=ss.losses.{known}"
            if known
            else "one of " + ", ".join(f"ss.losses.{n}" for n in _LOSS_NAMES)
        )
        raise TypeError(
            f"{what}: loss={loss!r} is a name; shapesafe takes the function itself. Pass {fix}."
        )
    if not callable(loss):
        raise TypeError(
            f"{what}: loss must be a function loss(outputs, targets, *, mask), such as "
            f"ss.losses.cross_entropy; got {type(loss).__name__}."
        )
    # once per function (``inspect.signature`` costs about 80 us a call), and one wrapper
    # per function: a repeated fit reuses its step
    found = _CHECKED.get(id(loss))
    if found is None or found[0] is not loss:
        if len(_CHECKED) >= 16:
            _CHECKED.pop(next(iter(_CHECKED)))
        found = _CHECKED[id(loss)] = (loss, loss if _takes_mask(loss) else MaskedMean(loss))
    return found[1]


_CHECKED: dict[int, tuple[Any, Any]] = {}


def _takes_mask(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True  # cannot tell: call it as documented
    return any(p.name == "mask" or p.kind is p.VAR_KEYWORD for p in params)


class MaskedMean:
    """A loss without ``mask`` (``optax.softmax_cross_entropy_with_integer_labels``) as a
    masked mean: its per-example values (averaged over any further axes) weighted by the
    mask, so the padded examples of a short last batch count for nothing. A loss that
    already returns a scalar is used as it is (it cannot leave padding out)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, outputs: Any, targets: Any, *, mask: Any) -> Any:
        import jax.numpy as jnp

        values = self.fn(outputs, targets)
        if jnp.ndim(values) == 0:
            return values
        per_example = jnp.mean(values.reshape(values.shape[0], -1), axis=1)
        weights = mask.astype(per_example.dtype)
        return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1)


def check_steps_per_call(steps_per_call: Any) -> None:
    if isinstance(steps_per_call, bool) or not isinstance(steps_per_call, int | np.integer):
        raise TypeError(
            f"fit: steps_per_call must be an int (steps per jitted call), got "
            f"{type(steps_per_call).__name__} {steps_per_call!r}."
        )


def _check_batch_size(batch_size: Any, what: str) -> int:
    if batch_size is None:
        return DEFAULT_BATCH
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise TypeError(f"{what}: batch_size must be a positive int, got {batch_size!r}.")
    return int(batch_size)


# -- arrays into datasets ----------------------------------------------------------------------


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray | jax.Array)


def array_kind(data: Any) -> str:
    """``"pair"`` for ``(x, y)``, ``"dict"`` for a dict of arrays, ``"array"``, or ``""``."""
    if isinstance(data, tuple) and len(data) == 2 and all(_is_array(a) for a in data):
        return "pair"
    if isinstance(data, Mapping) and data and all(_is_array(v) for v in data.values()):
        return "dict"
    if _is_array(data):
        return "array"
    return ""


def _host(data: Any) -> Any:
    """Every array on the host, as NumPy (what ``from_arrays`` takes)."""
    if isinstance(data, Mapping):
        return {k: np.asarray(v) for k, v in data.items()}
    if isinstance(data, tuple):
        return tuple(np.asarray(v) for v in data)
    return np.asarray(data)


def _check_lengths(data: Any, what: str) -> int:
    """The common number of examples, or a message naming both lengths."""
    if isinstance(data, Mapping):
        named = [(repr(k), v) for k, v in data.items()]
    elif isinstance(data, tuple):
        named = [("inputs x", data[0]), ("labels y", data[1])]
    else:
        named = [("inputs x", data)]
    sizes = []
    for name, a in named:
        if np.ndim(a) == 0:
            raise ValueError(f"{what}: the {name} is 0-d; arrays need a leading example dimension.")
        sizes.append((name, int(np.shape(a)[0])))
    first_name, first = sizes[0]
    for name, n in sizes[1:]:
        if n != first:
            raise ValueError(
                f"{what}: the {name} have {n} examples but the {first_name} have {first}; "
                "every array needs one row per example (same first dimension)."
            )
    return first


def _check_inputs(model: Any, arrays: Any, what: str) -> None:
    """The input array against the model, whole, before it becomes a dataset: the fix then
    names the array (``x.astype(np.float32)``), not a dataset stage."""
    from ._batches import INPUT_KEYS
    from ._data_checks import check_batch

    if isinstance(arrays, Mapping):
        key = next((k for k in INPUT_KEYS if k in arrays), None)
        if key is None:
            return  # fit's inputs= names it; the dataset's check covers it
        x, name = arrays[key], f"{what}: the inputs {key!r}"
    else:
        x, name = (arrays[0] if isinstance(arrays, tuple) else arrays), f"{what}: the inputs x"
    check_batch(model, x, name)


def _dataset(arrays: Any, *, batch_size: int, shuffle: bool) -> Dataset:
    ds = from_arrays(arrays)
    if shuffle:
        ds = ds.shuffle(seed=0)
    return ds.batch(batch_size)


def _take(arrays: Any, rows: slice) -> Any:
    if isinstance(arrays, Mapping):
        return {k: v[rows] for k, v in arrays.items()}
    if isinstance(arrays, tuple):
        return tuple(v[rows] for v in arrays)
    return arrays[rows]


def _refuse_batch_size(batch_size: Any, what: str) -> None:
    if batch_size is not None:
        raise TypeError(
            f"{what}: batch_size is for arrays ((x, y) or a dict of them); this data is already "
            "batches. Batch a dataset yourself (ds.batch(32)), or drop batch_size."
        )


# -- the three entry points ----------------------------------------------------------------------


def prepare_fit(
    model: Any,
    data: Any,
    *,
    loss: Any,
    optimizer: Any,
    steps_per_call: Any,
    eval_data: Any,
    batch_size: int | None,
    shuffle: bool,
    validation_data: Any,
    validation_split: float | None,
) -> tuple[Iterable[Any], Iterable[Any] | None, Any]:
    """``fit``'s arguments checked, and its data as batches: ``(data, eval_data, loss)``.

    Raises:
        TypeError: the model, optimizer, loss, ``steps_per_call`` or ``batch_size`` is of the
            wrong kind (each message says what to pass instead).
        ValueError: arrays of different lengths (both named), an unusable ``validation_split``.
    """
    check_model(model, "fit")
    check_optimizer(optimizer)
    loss = check_loss(loss, "fit")
    if loss is None:
        raise TypeError("fit: loss is required, e.g. loss=ss.losses.cross_entropy.")
    check_steps_per_call(steps_per_call)
    if not isinstance(shuffle, bool):
        raise TypeError(f"fit: shuffle must be True or False, got {shuffle!r}.")
    if validation_data is not None and eval_data is not None:
        raise TypeError("fit: pass eval_data or validation_data (the same thing), not both.")
    if validation_data is not None and validation_split is not None:
        raise TypeError("fit: pass validation_data or validation_split, not both.")
    kind = array_kind(data)
    if kind == "array":
        raise TypeError(
            "fit: got one array; training needs targets too: ss.fit(model, (x, y), ...) or "
            'ss.fit(model, {"image": x, "label": y}, ...).'
        )
    if kind:
        arrays = _host(data)
        n = _check_lengths(arrays, "fit")
        _check_inputs(model, arrays, "fit")
        size = _check_batch_size(batch_size, "fit")
        if validation_split is not None:
            if (
                isinstance(validation_split, bool)
                or not isinstance(validation_split, float | int)
                or not 0 < validation_split < 1
            ):
                raise ValueError(
                    f"fit: validation_split must be a fraction between 0 and 1, got {validation_split!r}."
                )
            keep = int(n * (1 - validation_split))
            if keep < 1 or keep >= n:
                raise ValueError(
                    f"fit: validation_split={validation_split} of {n} examples leaves "
                    f"{keep} to train on and {n - keep} to validate; both need at least one."
                )
            eval_data = _dataset(_take(arrays, slice(keep, None)), batch_size=size, shuffle=False)
            arrays = _take(arrays, slice(0, keep))
        data = _dataset(arrays, batch_size=size, shuffle=shuffle)
    else:
        _refuse_batch_size(batch_size, "fit")
        if validation_split is not None:
            raise TypeError(
                "fit: validation_split is for arrays; split a dataset yourself: "
                "train, val = ds.split(0.8, seed=0), then eval_data=val.batch(32)."
            )
    if validation_data is not None:
        eval_data = _as_batches(
            validation_data, batch_size, "fit: validation_data", needs_targets=True, model=model
        )
    return data, eval_data, loss


def prepare_evaluate(
    model: Any, data: Any, *, loss: Any, batch_size: int | None
) -> tuple[Iterable[Any], Any]:
    """``evaluate``'s arguments checked, and its data as batches: ``(data, loss)``."""
    check_model(model, "evaluate")
    loss = check_loss(loss, "evaluate")
    return _as_batches(data, batch_size, "evaluate", needs_targets=True, model=model), loss


def prepare_predict(
    model: Any, data: Any, *, batch_size: int | None, inputs: str | None = None
) -> Iterable[Any]:
    """``predict``'s arguments checked; an array (or ``(x, y)``, or a dict holding the
    inputs) as consecutive batches of its rows (``predict`` pads the last one itself)."""
    check_model(model, "predict")
    kind = array_kind(data)
    if kind == "pair":  # (x, y): predict the inputs
        data = data[0]
    elif kind == "dict":
        from ._batches import INPUT_KEYS

        key = inputs if inputs is not None else next((k for k in INPUT_KEYS if k in data), None)
        if key is None and len(data) == 1:
            key = next(iter(data))
        if key not in data:
            raise ValueError(
                f"predict: cannot tell which array is the input: keys {sorted(data)}. "
                "Pass inputs='<key>'."
            )
        data = data[key]
    if kind:
        x = np.asarray(data)
        _check_lengths(x, "predict")
        return _Rows(x, _check_batch_size(batch_size, "predict"))
    _refuse_batch_size(batch_size, "predict")
    return data


class _Rows:
    """The rows of an array in consecutive batches of ``size`` (the last may be shorter)."""

    def __init__(self, x: np.ndarray, size: int):
        self.x, self.size = x, size

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)

    def __iter__(self) -> Any:
        return (self.x[i : i + self.size] for i in range(0, len(self.x), self.size))


def _as_batches(
    data: Any, batch_size: int | None, what: str, *, needs_targets: bool, model: Any
) -> Any:
    kind = array_kind(data)
    if kind == "array" and needs_targets:
        raise TypeError(f"{what}: got one array; pass the targets too: (x, y).")
    if kind:
        arrays = _host(data)
        _check_lengths(arrays, what)
        _check_inputs(model, arrays, what)
        return _dataset(arrays, batch_size=_check_batch_size(batch_size, what), shuffle=False)
    _refuse_batch_size(batch_size, what)
    return data
