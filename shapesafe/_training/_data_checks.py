"""Checks of data against a model before (and while) training: specs and batches on the host."""

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ShapeError, ShapesafeError
from .._specs import (
    Mismatch,
    compare,
    compare_specs,
    format_annotation,
    format_value,
    input_advice,
    is_annotation,
    parse,
)


def check_batch(model: Any, x: Any, where: str) -> None:
    """A batch's input against the model's ``input_spec``; no examples; NaN or inf in float inputs."""
    check_not_empty(x, where)
    check_input_spec(model, tuple(np.shape(x)), _dtype(x), x, where)
    check_finite(x, where)


def _dtype(x: Any) -> np.dtype[Any]:
    return np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)


_FITTING: set[tuple[Any, ...]] = set()  # inputs that fit a spec


def check_input_spec(
    model: Any, shape: tuple[int, ...], dtype: np.dtype[Any], x: Any, where: str
) -> None:
    """An input of ``shape`` and ``dtype`` (the array ``x``, shown in the error) against the
    model's input spec. The answer depends on the shape and dtype only."""
    spec = model_input(model)
    if spec is None:
        return
    key: tuple[Any, ...] | None = (spec, shape, dtype)
    try:
        if key in _FITTING:  # compared before (about 0.1 ms a comparison)
            return
    except TypeError:  # a spec that is not hashable: compared every time
        key = None
    m = compare(spec, _Abstract(shape, dtype))
    if not m:
        if key is not None:
            if len(_FITTING) >= 256:
                _FITTING.clear()
            _FITTING.add(key)
    else:
        advice = input_advice(spec, shape, dtype, built_for=getattr(model, "converts", ""))
        raise ShapeError(
            f"{where} does not fit the model: {_clause(m)}.\n"
            f"  model input  {format_annotation(spec, array='Array')}\n  batch input  {format_value(np.asarray(x))}"
            + "".join(f"\n{line}" for line in advice)
        )


def check_finite(x: Any, where: str) -> None:
    """NaN or inf in a float input."""
    if np.issubdtype(_dtype(x), np.floating) and not np.all(np.isfinite(np.asarray(x))):
        raise ShapesafeError(_non_finite(where, "inputs"))


def _non_finite(where: str, what: str) -> str:
    return (
        f"{where} has NaN or infinite values in its {what}; clean the data (nothing was "
        "trained on this batch)."
    )


def check_not_empty(x: Any, where: str) -> None:
    """A batch with no examples (a leading axis of 0) is refused: there is nothing to train on."""
    shape = tuple(np.shape(x))
    if shape and shape[0] == 0:
        raise ShapesafeError(
            f"{where} holds no examples (its inputs are {format_value(np.asarray(x))}); an empty "
            "batch has nothing to train on. Drop empty batches from the data (a dataset's "
            "batch(n) never makes one)."
        )


def check_finite_targets(y: Any, mask: Any, where: str) -> None:
    """NaN or inf in float targets (the real ones, by ``mask``): the message of NaN inputs."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.floating):
        return
    real = y[np.asarray(mask, bool)] if mask is not None and y.ndim >= 1 else y
    if not np.all(np.isfinite(real)):
        raise ShapesafeError(_non_finite(where, "targets"))


def model_input(model: Any) -> Any:
    """What a model takes at its boundary: ``accepted_spec`` (a kind such as ``Float[...]``
    where it was built from one), else its ``input_spec``; ``None`` for a plain module."""
    return getattr(model, "accepted_spec", None) or getattr(model, "input_spec", None)


class _Abstract:
    """A shape and a dtype, compared like an array."""

    def __init__(self, shape: tuple[Any, ...], dtype: Any):
        self.shape, self.dtype = shape, dtype


def _clause(m: Mismatch) -> str:
    """Shape problems first: a wrong rank says more than the dtype it comes with."""
    shape = [p for p in m.problems if p.kind != "dtype"]
    return (shape or list(m.problems))[0].clause()


def label_classes(model: Any) -> int | None:
    """The number of classes of a ``(batch, classes)`` output with a fixed class count."""
    out = getattr(model, "output_spec", None)
    if out is None:
        return None
    dims = parse(out).dims
    classes = dims[-1].size if len(dims) == 2 else None
    return classes if isinstance(classes, int) else None


def check_label_range(y: Any, mask: Any, classes: int | None, where: str) -> None:
    """Integer labels ``y`` (the real ones, by ``mask``) each in ``0..classes-1``.

    Checked on the host where a batch is read from the host (``check_values``; every
    evaluation batch), and inside the training step for a batch already on the device
    (``value_flags``), since an out-of-range label under jit cannot raise (it silently gives
    NaN or wraps around)."""
    y = np.asarray(y)
    if classes is None or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        return
    real = y[np.asarray(mask, bool)] if mask is not None else y
    if real.size and (int(real.min()) < 0 or int(real.max()) >= classes):
        bad = real[(real < 0) | (real >= classes)]
        raise ShapesafeError(_out_of_range(where, int(bad[0]), bad.size, real.size, classes))


def _out_of_range(where: str, first: int, bad: int, real: int, classes: int) -> str:
    return (
        f"{where}: label {first} is out of range for the model's {classes} classes "
        f"(labels must be 0..{classes - 1}; {bad} of {real} are outside). "
        "Fix the labels, or build the model with more output classes."
    )


# What ``value_flags`` finds, in the order the host checks look (the first one found wins).
_INPUTS, _TARGETS, _LABELS = 1, 2, 3


def value_flags(x: Any, y: Any, mask: Any, classes: int | None, *, values: bool = True) -> Any:
    """The host's value checks of one batch (``check_finite``, ``check_finite_targets``,
    ``check_label_range``) as a traced computation, for the training step: an int32
    ``[what, first bad label, labels outside, real examples]``, ``what`` 0 when the batch is
    clean (the real examples, by ``mask``, are what the epoch's mean loss weighs it by).

    Fused into the step, they cost the host nothing and read nothing back per step; the
    step applies no update when ``what`` is not 0, and ``raise_for_flags`` raises when the
    flags are read back (with the losses). ``values=False`` checks nothing (the data were
    checked whole, ``clean``) and only counts the real examples.
    """
    what = jnp.zeros((), jnp.int32)
    first = count = jnp.zeros((), jnp.int32)
    real = jnp.asarray(mask, bool)
    if not values:
        return jnp.stack([what, first, count, jnp.sum(real, dtype=jnp.int32)])
    if isinstance(y, jax.Array) and y.ndim == 1 and classes is not None:
        if jnp.issubdtype(y.dtype, jnp.integer):
            outside = ((y < 0) | (y >= classes)) & real
            count = jnp.sum(outside, dtype=jnp.int32)
            first = y[jnp.argmax(outside)].astype(jnp.int32)
            what = jnp.where(count > 0, _LABELS, what)
    if isinstance(y, jax.Array) and jnp.issubdtype(y.dtype, jnp.floating):
        per_example = jnp.isfinite(y).reshape(y.shape[0], -1).all(axis=1) if y.ndim else None
        clean = jnp.all(per_example | ~real) if per_example is not None else jnp.isfinite(y)
        what = jnp.where(clean, what, _TARGETS)
    leaves = [a for a in jax.tree.leaves(x) if jnp.issubdtype(a.dtype, jnp.floating)]
    if leaves:
        clean = jnp.all(jnp.stack([jnp.isfinite(a).all() for a in leaves]))
        what = jnp.where(clean, what, _INPUTS)
    return jnp.stack([what, first, count, jnp.sum(real, dtype=jnp.int32)])


def clean(x: Any, y: Any, classes: int | None) -> bool:
    """Whether every row of the host arrays ``x`` (an array or a tree) and ``y`` passes
    ``value_flags``'s checks: finite floating inputs and targets, integer labels in
    ``0..classes-1``. About 4 us for a batch of the digits MLP on CPU (a training batch read
    from the host is checked so, then trains without the step's own checks); once per ``fit``
    for an array pipeline's whole arrays. Masked rows count too: where this is false,
    ``check_values`` looks again at the real rows only."""
    for a in [x] if type(x) is np.ndarray else jax.tree.leaves(x):
        a = np.asarray(a)
        if _floating(a.dtype) and not _finite(a):
            return False
    y = np.asarray(y)
    if _floating(y.dtype):
        return _finite(y)
    if classes is not None and y.ndim == 1 and y.dtype.kind in "iu" and y.size:
        if y.dtype.kind == "i":  # negative labels wrap to large unsigned ones: one reduction
            y = y.view(_UNSIGNED[y.dtype.itemsize])
        return bool(y.max() < classes)
    return True


_UNSIGNED = {n: np.dtype(f"u{n}") for n in (1, 2, 4, 8)}


def _finite(a: np.ndarray) -> bool:
    """Whether every value of a floating array is finite. A NaN or an infinity makes the sum
    NaN or infinite, so a finite sum answers in one reduction with no temporary array (half
    the time of ``np.isfinite(a).all()``); a sum that is not finite, which an overflow can
    make too, looks again value by value."""
    if a.dtype.kind == "f" and math.isfinite(a.sum()):
        return True
    return bool(np.isfinite(a).all())


def _floating(dtype: np.dtype[Any]) -> bool:
    """NumPy's floating kinds, and ``ml_dtypes``' (bfloat16 and friends), as ``jnp`` counts them."""
    return dtype.kind == "f" or (dtype.kind == "V" and bool(jnp.issubdtype(dtype, jnp.floating)))


def check_values(x: Any, y: Any, mask: Any, classes: int | None, where: str) -> None:
    """The host's value checks of one batch: NaN or inf in its inputs or (real) targets, its
    real labels outside ``0..classes-1``. A clean batch costs one pass (``clean``); otherwise
    the checks below name what is wrong (and pass where only masked-out rows are bad)."""
    if clean(x, y, classes):
        return
    check_finite(x, where)
    check_finite_targets(y, mask, where)
    check_label_range(y, mask, classes, where)


def raise_for_flags(flags: Any, where: str, classes: int | None) -> None:
    """Raise the host check's error for a batch whose ``value_flags`` (read back) found one."""
    what, first, count, real = (int(v) for v in flags)
    if what == _INPUTS:
        raise ShapesafeError(_non_finite(where, "inputs"))
    if what == _TARGETS:
        raise ShapesafeError(_non_finite(where, "targets"))
    if what == _LABELS and classes is not None:
        raise ShapesafeError(_out_of_range(where, first, count, real, classes))


def _leaf(spec: Any, key: Any) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(key)
    if isinstance(spec, tuple | list) and isinstance(key, int) and key < len(spec):
        return spec[key]
    return None


def check_data_spec(
    model: Any, data: Any, inputs: str | None, targets: str | None, loss: Any, *, what: str
) -> None:
    """Refuse, before any batch is read, a dataset whose declared spec cannot feed the model or loss."""
    spec = getattr(data, "spec", None)
    spec = getattr(spec, "tree", spec)  # a shapesafe.data ElementSpec wraps the PyTree
    model_spec = model_input(model)
    if spec is None or model_spec is None:
        return
    from ._batches import INPUT_KEYS, TARGET_KEYS

    in_key: Any
    tg_key: Any
    if isinstance(spec, Mapping):
        in_key = inputs or next((k for k in INPUT_KEYS if k in spec), None)
        tg_key = targets or next((k for k in TARGET_KEYS if k in spec), None)
    else:
        in_key, tg_key = 0, 1
    ann = _leaf(spec, in_key)
    if not is_annotation(ann):
        return
    m = compare_specs(ann, model_spec)
    if m:
        a = parse(ann)
        shape = tuple(d.size if d.kind == "fixed" else d.token for d in a.dims)
        single = a.dtypes is not None and len(a.dtypes) == 1
        advice = (
            input_advice(
                model_spec,
                shape,
                next(iter(a.dtypes)) if single and a.dtypes else "float32",
                built_for=getattr(model, "converts", ""),
                dataset=True,
                key=in_key,
            )
            if a.variadic is None
            else []
        )
        raise ShapeError(
            f"{what}[{in_key!r}] cannot feed the model: {_clause(m)}.\n"
            f"  model input  {format_annotation(model_spec, array='Array')}\n"
            f"  {what + ' spec':<12} {format_annotation(ann, array='Array')}\n"
            + (
                "\n".join(advice)
                or "  Batch the dataset (ds.batch(n)) if it is unbatched, resize images to the model's "
                "size, or build the model for this spec."
            )
        )
    target_ann = _leaf(spec, tg_key)
    output_spec = getattr(model, "output_spec", None)
    if loss is not None and target_ann is not None and output_spec is not None:
        from ._losses import check_targets

        check_targets(loss, output_spec, target_ann, where=f"{what}[{tg_key!r}]")
