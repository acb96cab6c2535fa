"""Losses: pure functions from a batch of model outputs and targets to one scalar.

Every loss is annotated with the shared dimension vocabulary (``batch``, ``classes``) and
checked with one set of dimension bindings across its arguments, so a ``(batch,)`` target
against a ``(batch, 1)`` output is a ``ShapeError`` that names both shapes and the fix,
never a silent broadcast to ``(batch, batch)``. The check runs while JAX traces: under
``jax.jit`` it costs nothing after compilation.

Each loss returns the mean over the examples of the batch. ``mask`` (one bool per example)
marks the real examples of a padded short last batch: the mean is then over the unmasked
examples only, and a padded example contributes exactly zero (to the value and the gradient).

Target specs: a loss's annotations say what its targets must look like given the model's
output. ``target_spec(loss, output_spec)`` binds the dimension names of the loss's first
argument to the output spec and returns the annotation its second argument must match
(``Int[Array, "batch"]`` for ``cross_entropy`` on ``Float32[batch, 10]`` outputs);
``check_targets`` compares a dataset's target spec with it before any batch is read. Any
user loss annotated the same way (``f(outputs: Float[Array, "..."], targets: ...)``) takes
part; an unannotated one is simply not checked.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, Integer, Real

from .._errors import ShapeError
from .._specs import (
    bind,
    checked_function,
    dtype_words,
    format_shape,
    show,
    substitute,
    token_fits,
    tokens,
)

Mask = Bool[Array, " batch"] | None


# -- the fixes a mistake gets ---------------------------------------------------------------


def _shape(x: Any) -> tuple[int, ...] | None:
    s = getattr(x, "shape", None)
    return tuple(s) if s is not None else None


def _extra_one_fix(
    name: str, shape: tuple[Any, ...], other: str, other_shape: tuple[Any, ...]
) -> str:
    """``name`` has one trailing size-1 dimension more than ``other``: both ways to fix it."""
    cut = f"{name}[:, 0]" if len(shape) == 2 else f"{name}[..., 0]"
    add = f"{other}[:, None]" if len(other_shape) == 1 else f"{other}[..., None]"
    return (
        f"{name} {format_shape(shape)} has a trailing dimension of size 1 that {other} "
        f"{format_shape(other_shape)} lacks; mixing (batch,) with (batch, 1) would broadcast "
        f"to (batch, batch). Use {cut} to make {name} {format_shape(shape[:-1])}, "
        f"or {add} to make {other} {format_shape(shape)}."
    )


def _mask_fix(bound: dict[str, Any], first: str) -> list[str]:
    mask, x = _shape(bound.get("mask")), _shape(bound.get(first))
    if mask is not None and x and mask != x[:1]:
        return [
            f"mask must hold one bool per example, shape {format_shape(x[:1])}; "
            f"got {format_shape(mask)}."
        ]
    return []


def _same_shape_hint(first: str, second: str) -> Callable[[dict[str, Any]], list[str]]:
    """The fix when ``first`` and ``second`` must have the same shape but do not."""

    def hint(bound: dict[str, Any]) -> list[str]:
        a, b = _shape(bound.get(first)), _shape(bound.get(second))
        if a is None or b is None or a == b:
            return _mask_fix(bound, first)
        if a == (*b, 1):
            return [_extra_one_fix(first, a, second, b)]
        if b == (*a, 1):
            return [_extra_one_fix(second, b, first, a)]
        return [
            f"{first} {format_shape(a)} and {second} {format_shape(b)} must have the same shape."
        ]

    return hint


def _labels_hint(bound: dict[str, Any]) -> list[str]:
    logits, labels = bound.get("logits"), bound.get("labels")
    ls, ys = _shape(logits), _shape(labels)
    if ls is None or ys is None:
        return []
    if len(ls) != 2:
        return [
            f"logits must be (batch, classes), got {format_shape(ls)}; "
            "flatten the extra dimensions or give one row of class scores per example."
        ]
    floating = jnp.issubdtype(getattr(labels, "dtype", np.int32), jnp.floating)
    if ys == ls and floating:
        return [
            "these look like one-hot or soft targets: use ss.losses.soft_cross_entropy, "
            "or give integer class ids (targets.argmax(-1))."
        ]
    if len(ys) == 2 and ys[-1] == 1:
        return [
            f"cross_entropy takes one class id per example, shape (batch,); labels "
            f"{format_shape(ys)} has a trailing dimension of size 1: use labels[:, 0]."
        ]
    if floating:
        return ["labels must be integer class ids: use labels.astype(jnp.int32)."]
    return _mask_fix(bound, "logits") or [
        f"labels must hold one class id per example, shape {format_shape(ls[:1])}."
    ]


# -- the losses -------------------------------------------------------------------------------


def _masked_mean(per_example: Float[Array, " batch"], mask: Mask) -> Float[Array, ""]:
    """The mean of ``per_example`` over the examples where ``mask`` is true (0 if none is)."""
    if mask is None:
        return jnp.mean(per_example)
    total = jnp.sum(jnp.where(mask, per_example, jnp.zeros_like(per_example)))
    count = jnp.maximum(jnp.sum(mask, dtype=jnp.int32), 1).astype(per_example.dtype)
    return total / count


def _real_targets(targets: Any, mask: Mask) -> Any:
    """``targets`` with the examples ``mask`` leaves out set to 0. A NaN target there must not
    reach the gradient: ``_masked_mean``'s ``where`` differentiates its other branch too, and
    0 times a NaN derivative is NaN."""
    if mask is None:
        return targets
    real = jnp.reshape(jnp.asarray(mask, bool), (-1,) + (1,) * (targets.ndim - 1))
    return jnp.where(real, targets, jnp.zeros_like(targets))


def _per_example(x: Float[Array, "batch *rest"]) -> Float[Array, " batch"]:
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def _concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when it holds values (eager call), None while JAX traces."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _unmasked(values: np.ndarray, mask: Any) -> np.ndarray:
    m = _concrete(mask) if mask is not None else None
    return values if m is None else values[m.astype(bool)]


def _check_labels(labels: Any, num_classes: int, mask: Any) -> None:
    values = _concrete(labels)
    if values is None:
        return  # traced (under jit): checked on the host by the training loop instead
    real = _unmasked(values, mask)
    bad = real[(real < 0) | (real >= num_classes)]
    if bad.size:
        raise ValueError(
            f"ss.losses.cross_entropy: label {int(bad[0])} is out of range for {num_classes} classes "
            f"(labels must be 0..{num_classes - 1}; {bad.size} of {real.size} labels are outside)."
        )


@checked_function(name="ss.losses.cross_entropy", hint=_labels_hint)
def cross_entropy(
    logits: Float[Array, "batch classes"],
    labels: Integer[Array, " batch"],
    *,
    mask: Mask = None,
    label_smoothing: float = 0.0,
) -> Float[Array, ""]:
    """Softmax cross-entropy of integer class labels, averaged over the batch.

    Dimensions: ``batch`` examples, ``classes`` scores per example.

    Args:
        logits: unnormalised class scores (no softmax applied).
        labels: one class id per example, ``0 <= label < classes``.
        mask: which examples are real (a padded short last batch); the mean is over those.
        label_smoothing: ``eps`` in ``[0, 1)``; the target becomes ``(1 - eps) * one_hot +
            eps / classes`` (as in ``torch.nn.functional.cross_entropy``).

    Returns:
        The mean loss over the (unmasked) examples, a scalar.

    Raises:
        ShapeError: the shapes or dtypes do not fit, e.g. labels ``(batch, 1)`` (use
            ``labels[:, 0]``) or one-hot labels (use ``soft_cross_entropy``).
        ValueError: called with concrete values, a label is outside ``0..classes-1``. Under
            ``jax.jit`` nothing can raise: there a real (unmasked) label outside
            ``0..classes-1`` makes the loss NaN (never a finite, wrong value; a negative
            label does not wrap around), and ``ss.fit`` checks every batch's labels on the
            host and stops naming the label.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> logits = jnp.array([[0.0, 0.0], [0.0, 0.0]])
        >>> round(float(ss.losses.cross_entropy(logits, jnp.array([0, 1]))), 4)  # log(2)
        0.6931
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f"ss.losses.cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing!r}."
        )
    classes = logits.shape[-1]
    _check_labels(labels, classes, mask)
    valid = (labels >= 0) & (labels < classes)
    safe = jnp.where(valid, labels, jnp.zeros_like(labels))
    if label_smoothing == 0.0:
        per = optax.softmax_cross_entropy_with_integer_labels(logits, safe)
    else:
        targets = optax.smooth_labels(
            jax.nn.one_hot(safe, classes, dtype=logits.dtype), label_smoothing
        )
        per = optax.softmax_cross_entropy(logits, targets)
    per = jnp.where(valid, per, jnp.full_like(per, jnp.nan))  # under jit: NaN, not a wrong value
    return _masked_mean(per, mask)


@checked_function(name="ss.losses.soft_cross_entropy", hint=_same_shape_hint("logits", "targets"))
def soft_cross_entropy(
    logits: Float[Array, "batch classes"],
    targets: Float[Array, "batch classes"],
    *,
    mask: Mask = None,
) -> Float[Array, ""]:
    """Softmax cross-entropy of one-hot or soft targets (each row a distribution), batch mean.

    Dimensions: ``batch`` examples, ``classes`` scores per example.

    Args:
        logits: unnormalised class scores.
        targets: class probabilities per example (rows sum to 1), same shape as ``logits``.
        mask: which examples are real; the mean is over those.

    Returns:
        The mean loss over the (unmasked) examples, a scalar.

    Raises:
        ShapeError: ``targets`` is not ``(batch, classes)`` like ``logits``.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> logits = jnp.zeros((1, 4))
        >>> round(float(ss.losses.soft_cross_entropy(logits, jnp.array([[0.5, 0.5, 0.0, 0.0]]))), 4)
        1.3863
    """
    per = optax.softmax_cross_entropy(logits, _real_targets(targets.astype(logits.dtype), mask))
    return _masked_mean(per, mask)


@checked_function(name="ss.losses.binary_cross_entropy", hint=_same_shape_hint("logits", "labels"))
def binary_cross_entropy(
    logits: Float[Array, "batch *rest"], labels: Real[Array, "batch *rest"], *, mask: Mask = None
) -> Float[Array, ""]:
    """Sigmoid binary cross-entropy on logits (numerically stable), batch mean.

    Dimensions: ``batch`` examples; ``rest`` any further dimensions (several independent
    binary outputs per example), the same for ``logits`` and ``labels``.

    Args:
        logits: unnormalised scores (no sigmoid applied).
        labels: targets in ``[0, 1]`` (0/1 ints or probabilities), the SAME shape as
            ``logits``: ``(batch,)`` with ``(batch,)``, ``(batch, 1)`` with ``(batch, 1)``.
        mask: which examples are real; the mean is over those.

    Returns:
        The mean over examples of each example's mean over ``rest``, a scalar (without a
        mask, the mean over all elements).

    Raises:
        ShapeError: ``labels`` and ``logits`` differ in shape (a ``(batch,)`` vs
            ``(batch, 1)`` mix-up names the fix: ``y[:, 0]`` or ``y[:, None]``).
        ValueError: called with concrete values, a label is outside ``[0, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> round(float(ss.losses.binary_cross_entropy(jnp.zeros((2, 1)), jnp.array([[0], [1]]))), 4)
        0.6931
    """
    values = _concrete(labels)
    if values is not None:
        real = _unmasked(values, mask)
        bad = real[(real < 0) | (real > 1)]
        if bad.size:
            raise ValueError(
                f"ss.losses.binary_cross_entropy: label {bad.flat[0]} is outside [0, 1]."
            )
    per = optax.sigmoid_binary_cross_entropy(
        logits, _real_targets(labels.astype(logits.dtype), mask)
    )
    return _masked_mean(_per_example(per), mask)


@checked_function(
    name="ss.losses.mean_squared_error", hint=_same_shape_hint("predictions", "targets")
)
def mean_squared_error(
    predictions: Float[Array, "batch *rest"],
    targets: Float[Array, "batch *rest"],
    *,
    mask: Mask = None,
) -> Float[Array, ""]:
    """Mean squared error between predictions and targets of the same shape.

    Dimensions: ``batch`` examples; ``rest`` any further dimensions, the same for both.

    Args:
        predictions: the model's outputs.
        targets: the wanted outputs, the SAME shape (cast to ``predictions``' dtype).
        mask: which examples are real; the mean is over those.

    Returns:
        The mean over examples of each example's mean squared error, a scalar (without a
        mask, the mean over all elements).

    Raises:
        ShapeError: the shapes differ (a ``(batch,)`` vs ``(batch, 1)`` mix-up names the fix:
            ``y[:, 0]`` or ``y[:, None]``).

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> float(ss.losses.mean_squared_error(jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [1.0]])))
        2.5
    """
    per = optax.squared_error(predictions, _real_targets(targets.astype(predictions.dtype), mask))
    return _masked_mean(_per_example(per), mask)


# -- target specs ---------------------------------------------------------------------------


def _loss_name(loss: Any) -> str:
    fn = getattr(loss, "func", loss)  # functools.partial
    module = getattr(fn, "__module__", "") or ""
    name = getattr(fn, "__name__", type(fn).__name__)
    return (
        f"ss.losses.{name}" if module.startswith("shapesafe") else getattr(fn, "__qualname__", name)
    )


def _annotations(loss: Any) -> tuple[Any, Any] | None:
    """The annotations of a loss's first two parameters, where both are array annotations;
    read once per loss (``inspect.signature`` costs tens of us, at every ``fit`` call)."""
    try:
        return _signature_annotations(loss)
    except TypeError:  # a loss that is not hashable
        return _signature_annotations.__wrapped__(loss)


@functools.lru_cache(maxsize=64)
def _signature_annotations(loss: Any) -> tuple[Any, Any] | None:
    try:
        params = list(inspect.signature(loss).parameters.values())
    except (TypeError, ValueError):
        return None
    anns = [p.annotation for p in params[:2]]
    if len(anns) < 2 or not all(hasattr(a, "dim_str") for a in anns):
        return None
    return anns[0], anns[1]


def _output_misfit(loss: Any, pattern: list[str], out_spec: Any) -> ShapeError:
    return ShapeError(
        f"the model's output {show(out_spec)} does not fit {_loss_name(loss)}, which takes "
        f'outputs "{" ".join(pattern)}". Choose a loss for this output, or change the model\'s last layer.'
    )


def target_spec(loss: Callable[..., Any], output_spec: Any) -> Any:
    """The annotation a loss's targets must match, given the model's output spec.

    The loss's first argument's dimension names are bound to ``output_spec``; its second
    argument's annotation is returned with those names filled in.

    Args:
        loss: a loss such as ``ss.losses.cross_entropy`` (or a ``functools.partial`` of one,
            or any function whose first two arguments carry jaxtyping annotations).
        output_spec: the model's output, e.g. ``model.output_spec``
            (``Float32[Array, "batch 10"]``), or anything with ``shape`` and ``dtype``.

    Returns:
        A jaxtyping annotation such as ``Int[Array, "batch"]``, or None when ``loss`` carries
        no annotations to read (it is then not checked).

    Raises:
        ShapeError: the output spec itself does not fit the loss's first argument.

    Example:
        >>> from jaxtyping import Array, Float32
        >>> import shapesafe as ss
        >>> spec = ss.losses.target_spec(ss.losses.cross_entropy, Float32[Array, "batch 10"])
        >>> spec.dtype.__name__, spec.dim_str
        ('Integer', 'batch')
        >>> ss.losses.target_spec(ss.losses.soft_cross_entropy, Float32[Array, "batch 10"]).dim_str
        'batch 10'
    """
    anns = _annotations(loss)
    out = tokens(output_spec)
    if anns is None or out is None:
        return None
    out_ann, target_ann = anns
    dtypes, dims = out
    if not set(dtypes) <= set(out_ann.dtypes):
        raise ShapeError(
            f"the model's output {show(output_spec)} does not fit {_loss_name(loss)}: "
            f"it takes {out_ann.dtype.__name__} outputs. Insert L.Cast(jnp.float32) at the end of the model."
        )
    pattern = out_ann.dim_str.split()
    binding = bind(pattern, dims)
    if binding is None:
        raise _output_misfit(loss, pattern, output_spec)
    return substitute(target_ann, binding)


def check_targets(
    loss: Callable[..., Any],
    output_spec: Any,
    targets_spec: Any,
    *,
    where: str = "the dataset's target spec",
) -> None:
    """Refuse a dataset whose target spec does not fit ``loss`` on the model's outputs.

    Run before the first batch is read (``ss.fit`` does), so a mismatch is reported at once.

    Args:
        loss: the loss, as for ``target_spec``.
        output_spec: the model's output spec, e.g. ``model.output_spec``.
        targets_spec: the dataset's target spec, e.g. ``Int32[Array, "batch"]``, or anything
            with ``shape`` and ``dtype``.
        where: how the message names the targets, e.g. ``"data['label']"``.

    Raises:
        ShapeError: naming the expected and the given spec and, where one is obvious, the fix.

    Example:
        >>> from jaxtyping import Array, Float32, Int32
        >>> import shapesafe as ss
        >>> ss.losses.check_targets(ss.losses.cross_entropy, Float32[Array, "batch 10"],
        ...                         Int32[Array, "batch"])  # fits: no error
    """
    expected = target_spec(loss, output_spec)
    got = tokens(targets_spec)
    if expected is None or got is None:
        return
    dtypes, dims = got
    want = expected.dim_str.split()
    reasons: list[str] = []
    if not set(dtypes) <= set(expected.dtypes):
        reasons.append(f"{'/'.join(dtypes)} is not {dtype_words(expected.dtype.__name__)}.")
    if len(dims) != len(want) or not all(
        token_fits(w, d) for w, d in zip(want, dims, strict=False)
    ):
        reasons.append(
            f"the shapes differ: expected {format_shape(tuple(want))}, got {format_shape(tuple(dims))}."
        )
    if not reasons:
        return
    name = _loss_name(loss)
    fixes = _target_fixes(name, want, dims, dtypes)
    lines = [
        f"{where} does not fit the loss {name}.",
        f"  expected  {show(expected)}   (for the model's output {show(output_spec)})",
        f"  got       {show(targets_spec)}",
        *[f"  {r}" for r in reasons],
        *[f"  {f}" for f in fixes],
    ]
    raise ShapeError("\n".join(lines))


def _target_fixes(
    name: str, want: list[str], dims: list[str], dtypes: tuple[str, ...]
) -> list[str]:
    if dims == [*want, "1"]:
        return [
            "the targets have a trailing dimension of size 1 that the loss does not take: "
            "map the dataset with y[:, 0] (or y.squeeze(-1))."
        ]
    if want == [*dims, "1"]:
        return [
            "the loss takes a trailing dimension of size 1 that the targets lack: "
            "map the dataset with y[:, None], or drop the model's last size-1 dimension."
        ]
    if (
        name.endswith(".cross_entropy")
        and len(dims) == len(want) + 1
        and any("float" in d for d in dtypes)
    ):
        return ["these look like one-hot or soft targets: use ss.losses.soft_cross_entropy."]
    return []
