"""Trace-time checking: the decorator every built layer's ``__call__`` carries, and the
wording of the ``ShapeError`` it raises.

A built layer annotates ``__call__`` with jaxtyping annotations whose sizes refer to the
layer's own attributes (``Float[Array, "*batch {self.in_features}"]``); jaxtyping resolves
them per instance and beartype checks them. Under ``jax.jit`` this runs once, while tracing,
so a compiled function pays nothing for it.
"""

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar

import jaxtyping
import numpy as np
from beartype import beartype

from ._errors import ShapeError
from ._spec import TensorSpec, dtype_kind, format_shape, format_spec, format_value

F = TypeVar("F", bound=Callable[..., Any])


class LayerShapeError(ShapeError):
    """A ``ShapeError`` that knows the layer path it happened at, so containers can add to it."""

    def __init__(self, path: tuple[str, ...], body: str, *, subject: str,
                 boundary: str = ", cannot take its input"):
        self.path, self.body, self.subject, self.boundary = path, body, subject, boundary
        where = " > ".join(path) if path else subject
        super().__init__(f"{where}{boundary}.\n{body}")

    def within(self, where: str) -> "LayerShapeError":
        """The same failure seen from a container: ``where`` is prepended to the path."""
        return LayerShapeError((where, *self.path), self.body, subject=self.subject,
                               boundary=self.boundary)


# Users see this class in tracebacks as what it is to them: ``shapesafe.ShapeError``.
LayerShapeError.__module__, LayerShapeError.__qualname__ = "shapesafe", "ShapeError"


def checked(method: F) -> F:
    """Check a method's jaxtyping annotations with beartype; failures become ``ShapeError``s."""
    inner = jaxtyping.jaxtyped(typechecker=beartype)(method)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return call_checked(self, inner, method, (self, *args), kwargs)

    return wrapper  # type: ignore[return-value]


def call_checked(layer: Any, checked_fn: Callable[..., Any], raw_fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call ``checked_fn`` (``raw_fn`` under jaxtyped+beartype); a failure names ``layer``."""
    try:
        return checked_fn(*args, **kwargs)
    except jaxtyping.TypeCheckError as e:
        params = list(inspect.signature(raw_fn).parameters)
        bound = dict(zip(params, args, strict=False)) | kwargs
        raise LayerShapeError(
            (), explain(bound.get("self", layer), raw_fn, bound, str(e)),
            subject=describe(layer), boundary=_boundary(str(e)),
        ) from None


def describe(layer: Any) -> str:
    """How a layer names itself in messages: its blueprint's repr where it has one."""
    blueprint = getattr(layer, "blueprint", None)
    return repr(blueprint) if blueprint is not None else type(layer).__name__


def _boundary(message: str) -> str:
    return ", returned a wrong output" if "return value" in message else ", cannot take its input"


def resolve(annotation: Any, layer: Any) -> str:
    """A layer's annotation with its ``{self.x}`` sizes filled in, as a string."""
    if not hasattr(annotation, "dim_str"):
        return getattr(annotation, "__name__", repr(annotation))
    dims = annotation.dim_str
    try:
        dims = dims.format(self=layer)
    except (AttributeError, KeyError, IndexError, ValueError):
        pass
    return f'{annotation.dtype.__name__}[Array, "{dims}"]'


def explain(layer: Any, method: Callable[..., Any], bound: dict[str, Any], message: str) -> str:
    """Expected / got / why / fix for a failed check of ``method`` on ``layer``."""
    hints = getattr(method, "__annotations__", {})
    m = re.search(r"parameter '(\w+)'", message)
    name = m.group(1) if m else "return"
    annotation = hints.get(name)
    value = bound.get(name)
    if annotation is None:  # not one of ours: pass the checker's first line through
        first = message.strip().splitlines()
        return "  " + (first[0] if first else message)
    expected = resolve(annotation, layer)
    actual = re.search(r"Actual value: (.*)", message)
    got = format_value(value) if name != "return" else (actual.group(1) if actual else "?")
    lines = [f"  expected  {expected}", f"  got       {got}"]
    why = diagnose(annotation, expected, getattr(value, "shape", None), getattr(value, "dtype", None))
    lines += [f"  {w}" for w in why]
    fix = fix_for(layer, annotation, getattr(value, "dtype", None))
    if fix:
        lines.append(f"  {fix}")
    return "\n".join(lines)


def diagnose(annotation: Any, expected: str, shape: Any, dtype: Any) -> list[str]:
    """Plain-words reasons why a value of ``shape``/``dtype`` does not fit ``annotation``."""
    reasons: list[str] = []
    dtypes = getattr(annotation, "dtypes", None)
    if dtype is not None and isinstance(dtypes, tuple | list) and np.dtype(dtype).name not in dtypes:
        want = annotation.dtype.__name__
        reasons.append(f"{np.dtype(dtype).name} is not {dtype_words(want)}.")
    if shape is not None:
        dims = re.search(r'"(.*)"', expected)
        tokens = dims.group(1).split() if dims else []
        fixed = [t for t in tokens if not t.startswith("*") and t != "..."]
        variadic = len(fixed) != len(tokens)
        rank = len(shape)
        if (rank < len(fixed)) or (not variadic and rank != len(fixed)):
            at_least = "at least " if variadic else ""
            reasons.append(
                f"it needs {at_least}{len(fixed)} dimension{'s' * (len(fixed) != 1)} ({' '.join(fixed)}), got {rank} {format_shape(tuple(shape))}."
            )
        else:
            for k in range(1, len(fixed) + 1):
                tok, got = fixed[-k], shape[-k]
                if tok.isdigit() and str(got) != tok:
                    reasons.append(f"dimension {rank - k} is {got}, expected {tok}.")
    return reasons


def dtype_words(name: str) -> str:
    words = {"Float": "a floating dtype", "Int": "an integer dtype", "Integer": "an integer dtype",
             "Num": "a numeric dtype", "Bool": "bool", "Real": "a real dtype", "Inexact": "an inexact dtype"}
    return words.get(name, name.lower())


def fix_for(layer: Any, annotation: Any, dtype: Any) -> str | None:
    """The obvious fix for a dtype mistake, naming the layer to insert and where."""
    if dtype is None:
        return None
    got = dtype_kind(dtype)
    dtypes = getattr(annotation, "dtypes", None)
    want = set(dtypes) if isinstance(dtypes, tuple | list) else set()
    wants_float = want and all("float" in d for d in want)
    wants_int = want and all("int" in d for d in want)
    where = describe(layer)
    if wants_float and got in ("integer", "bool"):
        pixels = " (or L.Rescale(1 / 255) for 0..255 pixels)" if np.dtype(dtype).name == "uint8" else ""
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
    return f"{format_spec(spec.shape, spec.dtype)}   ({where})" if where else format_spec(spec.shape, spec.dtype)


# -- plain functions (losses) ---------------------------------------------------------------

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

    def decorate(fn: F) -> F:
        inner = jaxtyping.jaxtyped(typechecker=beartype)(fn)
        subject = name or fn.__qualname__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            except jaxtyping.TypeCheckError as e:
                call = inspect.signature(fn).bind(*args, **kwargs)
                call.apply_defaults()
                raise ShapeError(explain_call(subject, fn, dict(call.arguments), str(e), hint)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def explain_call(subject: str, fn: Callable[..., Any], bound: dict[str, Any], message: str,
                 hint: Hint | None = None) -> str:
    """Expected / got / bindings / why / fix for a failed check of a call of ``fn``."""
    m = re.search(r"parameter '(\w+)'", message)
    name = m.group(1) if m else "return"
    annotation = _array_annotation(getattr(fn, "__annotations__", {}).get(name))
    if name == "return":
        actual = re.search(r"Actual value: (.*)", message)
        head = f"{subject} returned a wrong value."
        value, got = None, actual.group(1) if actual else "?"
    else:
        head = f"{subject} cannot take its argument {name!r}."
        value = bound.get(name)
        got = format_value(value)
    if annotation is None:  # not one of ours: pass the checker's first line through
        first = message.strip().splitlines()
        return f"{head}\n  " + (first[0] if first else message)
    expected = resolve(annotation, None)
    lines = [f"  expected  {name}: {expected}", f"  got       {name}: {got}"]
    bindings = bindings_of(message)
    if bindings:
        lines.append(f"  bound     {bindings}   (from the arguments before {name!r})")
    lines += [f"  {w}" for w in diagnose(annotation, expected, getattr(value, "shape", None),
                                         getattr(value, "dtype", None))]
    if hint is not None:
        lines += [f"  {h}" for h in hint(bound)]
    return "\n".join([head, *lines])


def bindings_of(message: str) -> str:
    """``batch=4, rest=(1,)``: the dimension bindings a jaxtyping failure message reports."""
    _, sep, tail = message.partition("axis annotation are as follows.")
    if not sep:
        return ""
    return ", ".join(line.strip() for line in tail.strip().splitlines() if "=" in line)


def _array_annotation(hint: Any) -> Any:
    """The jaxtyping annotation in ``hint`` (``X | None`` gives ``X``), or None."""
    if hasattr(hint, "dim_str"):
        return hint
    for arg in getattr(hint, "__args__", ()):
        if hasattr(arg, "dim_str"):
            return arg
    return None
