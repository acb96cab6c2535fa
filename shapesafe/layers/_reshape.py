"""Layers that change shape or dtype but hold no parameters: Flatten, Reshape, Cast, Rescale."""

import dataclasses
import math
from typing import TYPE_CHECKING, Any, overload

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Num, Shaped

from .._errors import LayerShapeError, ShapeError
from .._specs import TensorSpec, checked, dtype_kind, format_value, needs_x64
from ._blueprint import Blueprint, GiveDType_co, Refusal, set_field
from ._typing import (
    AnyDType,
    AnyDTypeTo,
    AnyRank,
    AsInput,
    Bool,
    CastTo,
    Complex,
    Float16,
    Float32,
    Float64,
    Floating,
    Integer,
    Opaque,
    Rank1Plus,
    Rank2,
    RescaleTo,
)


@dataclasses.dataclass(frozen=True, repr=False)
class Flatten(AnyDTypeTo[Rank2], Blueprint[AnyDType, Rank1Plus, AsInput, Rank2]):
    """Keep the first (batch) axis and flatten the rest: ``[batch, 250, 250, 3] -> [batch, 187500]``.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, UInt8
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.Flatten(), UInt8[Array, "batch 250 250 3"])).output_spec
        'UInt8[batch, 187500]'
    """

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        expected = 'Shaped[Array, "batch ..."]'
        if spec.rank < 1:
            raise Refusal(expected, "it needs a batch dimension, got a scalar.")
        rest = spec.shape[1:]
        symbolic = [str(d) for d in rest if not isinstance(d, int)]
        if symbolic:
            raise Refusal(
                expected,
                f"every dimension after the first must have a fixed size, got {', '.join(symbolic)}.",
                "Give those dimensions fixed sizes in the input spec, or pool them away first.",
            )
        return FlattenLayer(self, tuple(rest))


class FlattenLayer(nnx.Module):
    def __init__(self, blueprint: Flatten, rest: tuple[int, ...]):
        self.blueprint = blueprint
        self.features = math.prod(rest)

    @checked
    def __call__(self, x: Shaped[Array, "batch *rest"]) -> Shaped[Array, "batch {self.features}"]:
        return x.reshape(x.shape[0], -1)


@dataclasses.dataclass(frozen=True, repr=False)
class Reshape(AnyDTypeTo[Any], Blueprint[AnyDType, Rank1Plus, AsInput, Any]):
    """Reshape every axis after the first (batch) axis; one entry may be -1.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.Reshape((8, -1)), Float32[Array, "batch 64"])).output_spec
        'Float32[batch, 8, 8]'
    """

    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, list | tuple) else self.shape
        ok = (
            isinstance(shape, tuple)
            and all(
                isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape
            )
            and sum(d == -1 for d in shape) <= 1
        )
        if not ok:
            raise ValueError(
                f"Reshape({self.shape!r}): shape must be a tuple of positive ints with at most one -1."
            )
        set_field(self, "shape", shape)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        expected = f'Shaped[Array, "batch ..."] with {abs(math.prod(self.shape))}{"·k" if -1 in self.shape else ""} elements per example'
        rest = spec.shape[1:]
        if spec.rank < 1 or not all(isinstance(d, int) for d in rest):
            raise Refusal(expected, "every dimension after the first must have a fixed size.")
        size, known = math.prod(rest), math.prod(d for d in self.shape if d != -1)
        target = tuple(size // known if d == -1 else d for d in self.shape)
        if size % known or math.prod(target) != size:
            raise Refusal(
                expected, f"{size} elements per example cannot be reshaped to {self.shape}."
            )
        return ReshapeLayer(self, tuple(rest), target)


class ReshapeLayer(nnx.Module):
    def __init__(self, blueprint: Reshape, rest: tuple[int, ...], target: tuple[int, ...]):
        self.blueprint = blueprint
        self.target = target
        self.features = math.prod(rest)

    @checked
    def __call__(self, x: Shaped[Array, "batch *rest"]) -> Shaped[Array, "batch ..."]:
        if math.prod(x.shape[1:]) != self.features:
            raise _reshape_error(self, x)
        return x.reshape(x.shape[0], *self.target)


def _reshape_error(layer: ReshapeLayer, x: Any) -> ShapeError:
    return LayerShapeError(
        (),
        f"  expected  {layer.features} elements per example\n  got       {format_value(x)}",
        subject=repr(layer.blueprint),
    )


def _dtype(layer: str, value: Any) -> np.dtype:
    try:
        return np.dtype(jnp.dtype(value))
    except TypeError:
        raise ValueError(
            f"{layer}: {value!r} is not a dtype; pass one such as jnp.float32 or jnp.int32."
        ) from None


@dataclasses.dataclass(frozen=True, repr=False)
class Cast(CastTo[GiveDType_co], Blueprint[AnyDType, AnyRank, GiveDType_co, Any]):
    """Convert to ``dtype`` (values are not scaled: uint8 255 becomes 255.0).

    Example:
        >>> import jax.numpy as jnp
        >>> from shapesafe import layers as L
        >>> L.Cast(jnp.float32)
        Cast(jnp.float32)
    """

    dtype: Any

    if (
        TYPE_CHECKING
    ):  # NumPy's scalar types are typed; jnp.float32 is Any to checkers, so unknown here

        @overload
        def __init__(self: "Cast[Any]", dtype: Opaque, *, name: str | None = None) -> None: ...
        @overload
        def __init__(
            self: "Cast[Float16]", dtype: type[np.float16], *, name: str | None = None
        ) -> None: ...
        @overload
        def __init__(
            self: "Cast[Float32]", dtype: type[np.float32], *, name: str | None = None
        ) -> None: ...
        @overload
        def __init__(
            self: "Cast[Float64]", dtype: type[np.float64], *, name: str | None = None
        ) -> None: ...
        @overload
        def __init__(
            self: "Cast[Integer]", dtype: type[np.integer[Any]], *, name: str | None = None
        ) -> None: ...
        @overload
        def __init__(
            self: "Cast[Bool]", dtype: type[np.bool_], *, name: str | None = None
        ) -> None: ...
        @overload
        def __init__(self: "Cast[Any]", dtype: Any, *, name: str | None = None) -> None: ...
        def __init__(self, dtype: Any, *, name: str | None = None) -> None: ...

    def __post_init__(self) -> None:
        set_field(self, "dtype", _dtype(f"Cast({self.dtype!r})", self.dtype))

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        x64 = needs_x64(self.dtype)
        if x64:
            raise Refusal(f"JAX's 64-bit mode on, to make {self.dtype.name}", x64)
        return CastLayer(self)


class CastLayer(nnx.Module):
    def __init__(self, blueprint: Cast):
        self.blueprint = blueprint

    @checked
    def __call__(self, x: Shaped[Array, "*shape"]) -> Shaped[Array, "*shape"]:
        return x.astype(self.blueprint.dtype)


@dataclasses.dataclass(frozen=True, repr=False)
class Rescale(
    RescaleTo[GiveDType_co], Blueprint[Integer | Floating | Complex, AnyRank, GiveDType_co, Any]
):
    """``x * scale + offset`` in floating point: uint8 pixels become floats in one layer.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, UInt8
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Rescale(1 / 255), UInt8[Array, "batch 2"])
        >>> model(jnp.array([[0, 255]], dtype=jnp.uint8))
        Array([[0., 1.]], dtype=float32)
    """

    scale: float
    offset: float = 0.0
    dtype: Any = dataclasses.field(default=np.dtype("float32"), kw_only=True)

    if TYPE_CHECKING:  # float32 by default, some floating dtype otherwise

        @overload
        def __init__(
            self: "Rescale[Float32]", scale: float, offset: float = 0.0, *, name: str | None = None
        ) -> None: ...
        @overload
        def __init__(
            self: "Rescale[Floating]",
            scale: float,
            offset: float = 0.0,
            *,
            dtype: Any,
            name: str | None = None,
        ) -> None: ...
        def __init__(
            self, scale: float, offset: float = 0.0, *, dtype: Any = None, name: str | None = None
        ) -> None: ...

    def __post_init__(self) -> None:
        for arg in ("scale", "offset"):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"Rescale: {arg} must be a finite number, got {v!r}.")
        dtype = _dtype("Rescale", self.dtype)
        if dtype_kind(dtype) != "floating":
            raise ValueError(
                f"Rescale: dtype must be a floating dtype (jnp.float32, jnp.bfloat16, ...), got {dtype.name}."
            )
        set_field(self, "dtype", dtype)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        x64 = needs_x64(self.dtype)
        if x64:
            raise Refusal(f"JAX's 64-bit mode on, to make {self.dtype.name}", x64)
        return RescaleLayer(self)


class RescaleLayer(nnx.Module):
    def __init__(self, blueprint: Rescale):
        self.blueprint = blueprint

    @checked
    def __call__(self, x: Num[Array, "*shape"]) -> Float[Array, "*shape"]:
        bp = self.blueprint
        return x.astype(bp.dtype) * jnp.asarray(bp.scale, bp.dtype) + jnp.asarray(
            bp.offset, bp.dtype
        )
