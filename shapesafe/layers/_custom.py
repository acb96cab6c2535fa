"""A user's own layer in a composition: an annotated function or an annotated NNX module.

``fn >> L.ReLU()`` and ``my_module >> L.Linear(2)`` wrap them automatically. Their
jaxtyping annotations are the contract; shapesafe checks them with beartype like its own.
"""

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jaxtyping
from beartype import beartype
from flax import nnx
from jaxtyping import Array, Shaped

from .._errors import LayerShapeError, ShapesafeError
from .._specs import TensorSpec, call_checked, describe, format_value, is_annotation
from ._blueprint import Blueprint


def _require_annotations(what: str, fn: Callable[..., Any]) -> None:
    try:
        hints = inspect.get_annotations(fn)
    except TypeError:
        hints = {}
    if not any(is_annotation(h) for h in hints.values()):
        raise ValueError(
            f"{what} has no jaxtyping annotations, so shapesafe cannot check it. Annotate its "
            'input and output, e.g. def f(x: Float[Array, "*batch 64"]) -> Float[Array, "*batch 64"].'
        )


@dataclasses.dataclass(frozen=True, repr=False)
class Function(Blueprint[Any, Any, Any, Any]):
    """A plain function with jaxtyping annotations, used as a parameter-free layer.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxtyping import Array, Float
        >>> from shapesafe import layers as L
        >>> def double(x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
        ...     return 2 * x
        >>> L.Linear(3) >> double
        Linear(3) >> Function(double)
    """

    fn: Callable[..., Any]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ValueError(f"Function: fn must be callable, got {self.fn!r}.")
        _require_annotations(f"Function({getattr(self.fn, '__name__', self.fn)!r})", self.fn)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        return FunctionLayer(self)


class FunctionLayer(nnx.Module):
    def __init__(self, blueprint: Function):
        self.blueprint = blueprint

    def __call__(self, x: Shaped[Array, "..."]) -> Shaped[Array, "..."]:
        return _call_checked(self, self.blueprint.fn, x)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Custom(Blueprint[Any, Any, Any, Any]):
    """An already-built ``flax.nnx.Module`` whose ``__call__`` has jaxtyping annotations.

    Its parameters are the module's own (the seed of ``build`` does not touch them).
    Compared and hashed by identity, since a module is not plain configuration.
    """

    module: nnx.Module

    def __post_init__(self) -> None:
        if not isinstance(self.module, nnx.Module):
            raise ValueError(
                f"Custom: module must be a flax.nnx.Module, got {type(self.module).__name__}."
            )
        _require_annotations(f"{type(self.module).__name__}.__call__", type(self.module).__call__)

    def __repr__(self) -> str:
        return f"Custom({type(self.module).__name__})"

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        return CustomLayer(self)


class CustomLayer(nnx.Module):
    def __init__(self, blueprint: Custom):
        self.blueprint = dataclasses.replace(blueprint)  # static config; the module is data below
        self.inner = blueprint.module

    def __call__(self, x: Shaped[Array, "..."]) -> Shaped[Array, "..."]:
        return _call_checked(self, type(self.inner).__call__, self.inner, x)


def _call_checked(layer: nnx.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` with its annotations checked by beartype; failures name ``layer``.

    A failure inside the user's own code (a weight of the wrong shape: JAX's ``TypeError``
    or ``ValueError``) becomes a ``ShapeError`` naming the layer, with the original as its
    ``__cause__``.
    """
    wrapped = _CHECKED.get(fn)
    if wrapped is None:
        wrapped = _CHECKED[fn] = jaxtyping.jaxtyped(typechecker=beartype)(fn)
    try:
        return call_checked(layer, wrapped, fn, args, {})
    except ShapesafeError:
        raise
    except (TypeError, ValueError) as e:
        x = args[-1]
        kind = "module's __call__" if isinstance(layer, CustomLayer) else "function"
        raise LayerShapeError(
            (),
            f"  its input {format_value(x)} fits its annotations, but its own code raised:\n"
            f"  {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
            f"  The bug is inside the {kind} (the original error is the cause above): check "
            "the shapes of its weights and operations against its annotations.",
            subject=describe(layer),
            boundary=", failed inside its own code",
        ) from e


_CHECKED: dict[Callable[..., Any], Callable[..., Any]] = {}


def as_blueprint(obj: Any) -> Blueprint:
    """A blueprint as is; a ``flax.nnx.Module`` as ``Custom``; a function as ``Function``."""
    if isinstance(obj, Blueprint):
        return obj
    if isinstance(obj, nnx.Module):
        return Custom(obj)
    if callable(obj) and not isinstance(obj, type):
        return Function(obj)
    hint = " (a class: instantiate it, e.g. L.ReLU())" if isinstance(obj, type) else ""
    raise TypeError(
        f"cannot compose {obj!r}{hint}: use a shapesafe blueprint (L.Linear(64)), an annotated "
        "flax.nnx.Module instance, or an annotated function."
    )
