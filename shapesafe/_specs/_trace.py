"""Trace-time checking: the decorators built layers and plain functions carry.

A built layer annotates ``__call__`` with jaxtyping annotations whose sizes refer to the
layer's own attributes (``Float[Array, "*batch {self.in_features}"]``); jaxtyping resolves
them per instance and beartype checks them. Under ``jax.jit`` this runs once, while tracing,
so a compiled function pays nothing for it. When a check fails, the message is computed by
``compare`` from the arguments themselves (which one, which axis, the bindings), never read
from the checker's own wording.
"""

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

import jaxtyping
import numpy as np
from beartype import beartype

from .._errors import LayerShapeError
from ._compare import Mismatch, compare, format_bindings
from ._format import format_annotation, format_spec
from ._parse import dtype_kind, is_annotation, parse
from ._symbolic import TensorSpec

F = TypeVar("F", bound=Callable[..., Any])


def checked(method: F) -> F:
    """Check a method's jaxtyping annotations with beartype; failures become ``ShapeError``s."""
    inner = jaxtyping.jaxtyped(typechecker=beartype)(method)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return call_checked(self, inner, method, (self, *args), kwargs)

    return wrapper  # type: ignore[return-value]


def call_checked(
    layer: Any,
    checked_fn: Callable[..., Any],
    raw_fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Call ``checked_fn`` (``raw_fn`` under jaxtyped+beartype); a failure names ``layer``."""
    try:
        return checked_fn(*args, **kwargs)
    except jaxtyping.TypeCheckError:
        bound = _bind(raw_fn, args, kwargs)
        owner = bound.get("self", layer)
        failure = find_failure(raw_fn, bound, args, kwargs, self_=owner)
        boundary = (
            ", returned a wrong output" if failure.name == "return" else ", cannot take its input"
        )
        raise LayerShapeError(
            (), explain(owner, failure), subject=describe(layer), boundary=boundary
        ) from None


def describe(layer: Any) -> str:
    """How a layer names itself in messages: its blueprint's repr where it has one."""
    blueprint = getattr(layer, "blueprint", None)
    return repr(blueprint) if blueprint is not None else type(layer).__name__


class Failure:
    """Which argument (or ``"return"``) of a call broke its annotations, and how."""

    def __init__(
        self,
        name: str,
        annotation: Any,
        value: Any,
        mismatch: Mismatch | None,
        before: dict[str, Any],
    ):
        self.name, self.annotation, self.value, self.mismatch, self.before = (
            name,
            annotation,
            value,
            mismatch,
            before,
        )


def find_failure(
    fn: Callable[..., Any],
    bound: dict[str, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    self_: Any = None,
) -> Failure:
    """Check ``fn``'s annotated arguments in order with one set of bindings, then its return."""
    hints = getattr(fn, "__annotations__", {})
    bindings: dict[str, Any] = {}
    for name, value in bound.items():
        ann = array_annotation(hints.get(name))
        if ann is None or value is None:
            continue
        before = dict(bindings)
        m = compare(ann, value, bindings, self_=self_)
        if m is not None:
            return Failure(name, ann, value, m, before)
    ann = array_annotation(hints.get("return"))
    try:
        value = fn(*args, **kwargs)
    except Exception:
        value = None
    m = (
        compare(ann, value, dict(bindings), self_=self_)
        if ann is not None and value is not None
        else None
    )
    return Failure("return", ann, value, m, dict(bindings))


def explain(layer: Any, failure: Failure) -> str:
    """Expected / got / why / fix for a failed check on ``layer``."""
    if failure.mismatch is None:
        expected = (
            format_annotation(failure.annotation, array="Array", self_=layer)
            if failure.annotation
            else "?"
        )
        return f"  expected  {expected}\n  got       {_got(failure.value)}"
    lines = failure.mismatch.lines()
    fix = fix_for(layer, failure.annotation, getattr(failure.value, "dtype", None))
    if fix:
        lines.append(f"  {fix}")
    return "\n".join(lines)


def _got(value: Any) -> str:
    from ._format import format_value

    return "?" if value is None else format_value(value)


def fix_for(layer: Any, annotation: Any, dtype: Any) -> str | None:
    """The obvious fix for a dtype mistake, naming the layer to insert and where."""
    if dtype is None or annotation is None:
        return None
    got = dtype_kind(dtype)
    want = parse(annotation).dtypes or frozenset()
    wants_float = want and all("float" in d for d in want)
    wants_int = want and all("int" in d for d in want)
    where = describe(layer)
    if wants_float and got in ("integer", "bool"):
        pixels = (
            " (or L.Rescale(1 / 255) for 0..255 pixels)" if np.dtype(dtype).name == "uint8" else ""
        )
        return f"Insert L.Cast(jnp.float32){pixels} before {where}."
    if wants_int and got == "floating":
        return f"{where} takes integer ids; insert L.Cast(jnp.int32) before it if these are ids."
    return None


def got_with_origins(spec: TensorSpec) -> str:
    """``UInt8[batch, 187500]   (187500 from layer 2, Flatten(); batch from the input)``."""
    groups: dict[str, list[str]] = {}
    for d, o in zip(spec.shape, spec.origins, strict=True):
        groups.setdefault(o, []).append(str(d))
    where = "; ".join(f"{', '.join(ds)} from {o}" for o, ds in groups.items())
    return (
        f"{format_spec(spec.shape, spec.dtype)}   ({where})"
        if where
        else format_spec(spec.shape, spec.dtype)
    )


# -- plain functions (losses, metrics) ---------------------------------------------------------

Hint = Callable[[dict[str, Any]], list[str]]


def checked_function(*, name: str | None = None, hint: Hint | None = None) -> Callable[[F], F]:
    """Check a plain function's jaxtyping annotations with beartype; failures become ``ShapeError``s.

    All annotated parameters share one set of dimension bindings (jaxtyping's), so a
    ``(batch,)`` given where ``(batch, 1)`` is bound fails instead of broadcasting.

    Args:
        name: how the function names itself in messages (default: its qualified name).
        hint: called with the bound arguments of a failed call; returns extra lines for
            the message, such as the fix for a ``(batch,)`` vs ``(batch, 1)`` mix-up.
    """
    from .._errors import ShapeError

    def decorate(fn: F) -> F:
        inner = jaxtyping.jaxtyped(typechecker=beartype)(fn)
        subject = name or fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            except jaxtyping.TypeCheckError:
                call = inspect.signature(fn).bind(*args, **kwargs)
                call.apply_defaults()
                bound = dict(call.arguments)
                failure = find_failure(fn, bound, args, kwargs)
                raise ShapeError(explain_call(subject, failure, bound, hint)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def explain_call(
    subject: str, failure: Failure, bound: dict[str, Any], hint: Hint | None = None
) -> str:
    """Expected / got / bindings / why / fix for a failed check of a call."""
    name = failure.name
    head = (
        f"{subject} returned a wrong value."
        if name == "return"
        else f"{subject} cannot take its argument {name!r}."
    )
    if failure.annotation is None:
        return f"{head}\n  got       {name}: {_got(failure.value)}"
    expected = format_annotation(failure.annotation, array="Array")
    lines = [f"  expected  {name}: {expected}", f"  got       {name}: {_got(failure.value)}"]
    if failure.before:
        lines.append(
            f"  bound     {format_bindings(failure.before)}   (from the arguments before {name!r})"
        )
    if failure.mismatch is not None:
        lines += [f"  {r}" for r in failure.mismatch.reasons()]
    if hint is not None:
        lines += [f"  {h}" for h in hint(bound)]
    return "\n".join([head, *lines])


def _bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    params = list(inspect.signature(fn).parameters)
    return dict(zip(params, args, strict=False)) | kwargs


def array_annotation(hint: Any) -> Any:
    """The jaxtyping annotation in ``hint`` (``X | None`` gives ``X``), or None."""
    if is_annotation(hint):
        return hint
    for arg in getattr(hint, "__args__", ()):
        if is_annotation(arg):
            return arg
    return None


# -- a model's input boundary ------------------------------------------------------------------


def input_advice(
    spec: Any,
    shape: tuple[Any, ...],
    dtype: Any,
    *,
    built_for: str = "",
    dataset: bool = False,
    key: Any = None,
) -> list[str]:
    """Why an input of ``shape``/``dtype`` does not fit a model's input ``spec``, and the fix.

    One line says what is wrong (computed by ``compare``: the dimension and both sizes, or
    both dtypes), the next what to type: ``x[None]`` for one unbatched example,
    ``np.repeat(x, 3, axis=-1)`` for a grayscale image into an RGB model,
    ``x.astype(np.float32)`` for float64 data, a transpose for channels-first images.

    Args:
        spec: the model's input annotation (``Float32[Array, "batch 64"]``).
        shape: the input's shape (sizes; a dataset's spec may give names).
        dtype: the input's dtype.
        built_for: the dtype the model converts to, where it takes a kind (``Float``).
        dataset: the input is a dataset's element spec (the fixes then name dataset stages).
        key: the dataset elements' key of the input (``"image"``), for the ``map`` it suggests.

    Returns:
        The lines to print after ``expected``/``got``; empty where the input fits.
    """
    want = parse(spec)
    sizes = [d.size if d.kind == "fixed" else None for d in want.dims]
    shape = tuple(shape)
    lines: list[str] = []
    arg = key if isinstance(key, str) and key.isidentifier() else "x"
    name = np.dtype(dtype).name
    allowed = want.dtypes
    if allowed is not None and name not in allowed:
        target = built_for or (sorted(allowed)[0] if len(allowed) == 1 else "")
        lines += _dtype_advice(name, target, want.category, dataset=dataset, arg=arg)
    if len(shape) + 1 == len(sizes) and _fits(shape, sizes[1:]):
        lines.append(
            "  it has no batch dimension: "
            + (
                "batch the dataset first (ds.batch(32))."
                if dataset
                else "for one example, pass a batch of one: model(x[None])."
            )
        )
        return lines
    channels = sizes[-1] if sizes else None
    if len(shape) == len(sizes) >= 3 and _fits(shape[:-1], sizes[:-1]) and channels is not None:
        have = shape[-1]
        if channels == 3 and have == 1:
            lines.append(
                "  the images have 1 channel (grayscale); the model takes 3 (RGB). Repeat the "
                'channel, np.repeat(x, 3, axis=-1), or load them as RGB (image_folder(..., mode="RGB")).'
            )
            return lines
        if channels == 3 and have == 4:
            lines.append(
                "  the images have 4 channels (RGBA); the model takes 3: drop alpha, x[..., :3]."
            )
            return lines
        if channels == 1 and have in (3, 4):
            lines.append(
                f"  the images have {have} channels; the model takes 1 (grayscale): "
                'x[..., :3].mean(axis=-1, keepdims=True), or image_folder(..., mode="L").'
            )
            return lines
    if len(shape) + 1 == len(sizes) >= 4 and channels == 3 and _fits(shape[1:], sizes[1:-1]):
        lines.append(
            "  the images have no channel axis (grayscale); the model takes 3 channels (RGB): "
            "np.repeat(x[..., None], 3, axis=-1)."
        )
        return lines
    if (
        len(shape) == len(sizes) >= 3
        and shape[1] == sizes[-1] is not None
        and _fits(shape[2:], sizes[1:-1])
        and not _fits(shape[1:], sizes[1:])
    ):
        perm = ", ".join(["0", *[str(i) for i in range(2, len(shape))], "1"])
        lines.append(
            "  the input looks channels-first (batch, channels, ...) but the model is channels-last."
        )
        lines.append(f"  Transpose it first: jnp.transpose(x, ({perm})).")
        return lines
    if len(shape) != len(sizes):
        head = (
            f"  it has {len(shape)} dimension{'s' * (len(shape) != 1)}; the model takes "
            f"{len(sizes)} ({want.dim_str})."
        )
        example = [s for s in sizes[1:] if s is not None]
        have = [int(h) for h in shape[1:] if isinstance(h, int | np.integer)]
        if (
            example
            and len(example) == len(sizes) - 1
            and len(have) == len(shape) - 1
            and math.prod(have) == math.prod(example)
        ):
            dims = ", ".join(str(s) for s in example)
            fix = (
                f"reshape each example before .batch(), .map(lambda {arg}: {arg}.reshape({dims}))"
                if dataset
                else f"reshape it, x.reshape(-1, {dims})"
            )
            lines.append(f"{head} The sizes agree: {fix}.")
        else:
            lines.append(f"{head} Reshape the input, or build the model for this shape.")
        return lines
    for axis, (have, size) in enumerate(zip(shape, sizes, strict=True)):
        if size is not None and isinstance(have, int | np.integer) and int(have) != size:
            token = want.dims[axis].token
            named = f" ({token.split('=')[0]})" if "=" in token else ""
            lines.append(
                f"  dimension {axis}{named} is {int(have)}, the model takes {size}: resize or crop the "
                f"input to {size} there, or build the model for {int(have)}."
            )
            break
    return lines


def _fits(shape: tuple[Any, ...], sizes: list[int | None]) -> bool:
    """Whether ``shape`` agrees with ``sizes`` (``None``: any size; a name fits anything)."""
    if len(shape) != len(sizes):
        return False
    return all(
        s is None or not isinstance(h, int | np.integer) or int(h) == s
        for h, s in zip(shape, sizes, strict=True)
    )


def _dtype_advice(
    name: str, target: str, category: str, *, dataset: bool, arg: str = "x"
) -> list[str]:
    from ._parse import dtype_words

    have = dtype_kind(name)
    wanted = (
        f"the model was built for {target}"
        if target
        else f"the model takes {dtype_words(category)}"
    )
    head = f"  its dtype is {name}; {wanted}."
    if not target:
        return [head]
    convert = (
        f".map(lambda {arg}: {arg}.astype(np.{target})) on the dataset"
        if dataset
        else f"x.astype(np.{target})"
    )
    if have == "floating" and dtype_kind(target) == "floating":
        note = " (NumPy's and scikit-learn's default)" if name == "float64" else ""
        return [
            f"  its dtype is {name}{note}; {wanted}.",
            f"  Convert it first: {convert}; or build the model for Float[...], which takes any "
            f"floating dtype and converts it to {target} at its input (as L.Cast(jnp.{target}) would).",
        ]
    pixels = " (divide 0..255 pixels by 255)" if name == "uint8" and "float" in target else ""
    return [
        head,
        f"  Convert the data first: {convert}{pixels}; or begin the blueprint with "
        f"L.Cast(jnp.{target}) and build the model for {name} data.",
    ]
