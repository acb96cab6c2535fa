"""Pooling over channels-last inputs: ``MaxPool``, ``AvgPool`` and ``GlobalAvgPool``.

When windows tile the input exactly (strides equal to the window, ``padding="valid"``)
pooling is a reshape and a reduction, whose gradient is cheap; XLA's general
``reduce_window`` max has a slow ``select_and_scatter`` gradient on CPU.
"""

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, overload

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jaxtyping import Array, Float

from .._specs import TensorSpec, checked
from ._blueprint import Blueprint, NeedRank_contra, Refusal, int_tuple, set_field
from ._conv import _padding as conv_padding
from ._conv import check_long_enough, spatial_names, too_short
from ._typing import (
    AnyRank,
    AsInput,
    Floating,
    FloatingKeep,
    FloatingTo,
    Opaque,
    Rank2,
    Rank3Plus,
    Rank4Plus,
)


@dataclasses.dataclass(frozen=True, repr=False)
class _Pool(FloatingKeep[NeedRank_contra], Blueprint[Floating, NeedRank_contra, AsInput, Any]):  # type: ignore[misc]  # mypy: FloatingKeep's __rrshift__ wins, as at run time
    window: Any
    strides: Any = dataclasses.field(default=None, kw_only=True)
    padding: Any = dataclasses.field(default="valid", kw_only=True)

    def __post_init__(self) -> None:
        me = f"{type(self).__name__}({self.window!r})"
        window = (
            (self.window,)
            if isinstance(self.window, int) and not isinstance(self.window, bool)
            else self.window
        )
        window = int_tuple(
            me, "window", window, len(window) if isinstance(window, tuple | list) else 1
        )
        set_field(self, "window", window)
        strides = (
            window if self.strides is None else int_tuple(me, "strides", self.strides, len(window))
        )
        set_field(self, "strides", strides)
        if isinstance(self.padding, str) and self.padding not in ("valid", "same"):
            raise ValueError(
                f"{me}: padding must be 'valid', 'same', a non-negative int, or {len(window)} "
                f"(low, high) pairs; got {self.padding!r}."
            )
        set_field(self, "padding", conv_padding(me, self.padding, len(window)))
        if not isinstance(self.padding, str) and any(
            p >= w for pair, w in zip(self.padding, window, strict=True) for p in pair
        ):
            raise ValueError(
                f"{me}: padding must be smaller than the window on every side (so every window "
                f"overlaps the input), got {self.padding!r}."
            )

    def lax_padding(self, x: Any) -> Any:
        """``"VALID"``/``"SAME"``, or explicit (low, high) pairs for every axis of ``x``."""
        if isinstance(self.padding, str):
            return self.padding.upper()
        return ((0, 0),) * (x.ndim - len(self.window) - 1) + tuple(self.padding) + ((0, 0),)

    @staticmethod
    def reduce(x: Any, axis: tuple[int, ...]) -> Any:
        raise NotImplementedError

    def windowed(self, x: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:  # strides default to the window: don't show them when they do
        extra = "" if self.strides == self.window else f", strides={self.strides}"
        pad = "" if self.padding == "valid" else f", padding={self.padding!r}"
        name = "" if self.name is None else f", name={self.name!r}"
        return f"{type(self).__name__}({self.window}{extra}{pad}{name})"

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        nd = len(self.window)
        names = spatial_names(nd)
        expected = f'Float[Array, "batch {" ".join(names)} channels"]'
        if spec.rank < nd + 2:
            raise Refusal(
                expected,
                f"a {nd}-D window needs {nd + 2} dimensions (batch {' '.join(names)} channels), got {spec.rank}.",
            )
        spatial = spec.shape[-nd - 1 : -1]
        short = too_short(spatial, self.window, self.padding, "the window")
        if short:
            raise Refusal(expected, short, "Use padding='same' or a smaller window.")
        return PoolLayer(self, spatial)


class PoolLayer(nnx.Module):
    """Built pooling; any spatial size is accepted (the model's spec fixes it)."""

    def __init__(self, blueprint: _Pool, spatial: tuple[Any, ...]):
        self.blueprint = blueprint
        self.tiles = (
            blueprint.padding == "valid"
            and blueprint.strides == blueprint.window
            and all(isinstance(d, int) for d in spatial)
        )

    @checked
    def __call__(
        self, x: Float[Array, "*batch_and_spatial channels"]
    ) -> Float[Array, "*batch_and_out channels"]:
        bp = self.blueprint
        check_long_enough(self, x, bp.window, bp.padding, "the window")
        if self.tiles and isinstance(bp, MaxPool):
            return _tiled_max(x, bp.window)
        if self.tiles:
            return _tiled(x, bp.window, bp.reduce)
        return bp.windowed(x)


def _tiled(x: Any, window: tuple[int, ...], reduce: Any) -> Any:
    """Pool by reshaping each spatial axis ``n`` into ``(n // w, w)`` and reducing the ``w`` axes."""
    nd = len(window)
    lead, spatial, c = x.shape[: -nd - 1], x.shape[-nd - 1 : -1], x.shape[-1]
    x = x[
        (..., *[slice(0, (n // w) * w) for n, w in zip(spatial, window, strict=True)], slice(None))
    ]
    shape = [*lead]
    for n, w in zip(spatial, window, strict=True):
        shape += [n // w, w]
    x = x.reshape((*shape, c))
    axes = tuple(len(lead) + 2 * i + 1 for i in range(nd))
    return reduce(x, axis=axes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max(x: Any, window: tuple[int, ...]) -> Any:
    """Max pooling over windows that tile the input.

    The forward pass is XLA's ``reduce_window`` (the fastest max pooling on CPU); the
    gradient is the tiled formulation's (an equality mask over reshaped windows, shared
    evenly among ties as ``jnp.max`` does), which avoids ``select_and_scatter``, XLA's slow
    general max-pool gradient on CPU.
    """
    return lax.reduce_window(
        x, _identity(-np.inf, x), lax.max, _window_dims(x, window), _window_dims(x, window), "VALID"
    )


def _tiled_max_fwd(x: Any, window: tuple[int, ...]) -> tuple[Any, tuple[Any, Any]]:
    y = _tiled_max(x, window)
    return y, (x, y)


def _tiled_max_bwd(window: tuple[int, ...], res: tuple[Any, Any], g: Any) -> tuple[Any]:
    x, y = res
    nd = len(window)
    lead, spatial, c = x.shape[: -nd - 1], x.shape[-nd - 1 : -1], x.shape[-1]
    kept = [(n // w) * w for n, w in zip(spatial, window, strict=True)]
    xc = x[(..., *[slice(0, k) for k in kept], slice(None))]
    split: list[Any] = [*lead]
    for n, w in zip(spatial, window, strict=True):
        split += [n // w, w]
    xr = xc.reshape((*split, c))
    expand = tuple(len(lead) + 2 * i + 1 for i in range(nd))
    mask = (xr == jnp.expand_dims(y, expand)).astype(x.dtype)
    share = mask / jnp.sum(mask, axis=expand, keepdims=True)
    grad = (share * jnp.expand_dims(g, expand)).reshape(xc.shape)
    pads = (
        [(0, 0)] * len(lead) + [(0, n - k) for n, k in zip(spatial, kept, strict=True)] + [(0, 0)]
    )
    return (jnp.pad(grad, pads),)


_tiled_max.defvjp(_tiled_max_fwd, _tiled_max_bwd)


def _identity(value: float, x: Any) -> Any:
    """A concrete NumPy scalar, not a ``jnp`` one: under ``jax.jit`` a ``jnp.array`` is a tracer,
    and ``lax.reduce_window`` then falls back to its generic form, which has no gradient."""
    return np.array(value, x.dtype)


def _window_dims(x: Any, t: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (x.ndim - len(t) - 1) + t + (1,)


@dataclasses.dataclass(frozen=True, repr=False)
class MaxPool(_Pool[NeedRank_contra]):
    """Max over windows; ``strides`` default to the window (as Keras), so ``MaxPool((2, 2))`` halves
    height and width. The window's length is the number of spatial axes (``(2,)`` pools time).

    Args:
        window: the window's size per spatial axis (an int for 1-D).
        strides: steps between windows (default: the window).
        padding: ``"valid"`` (default), ``"same"``, an int, or one (low, high) pair per spatial
            axis. Explicit padding is with ``-inf``, as ``torch.nn.MaxPool2d(padding=p)``; it must
            be smaller than the window on every side.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.MaxPool((2, 2)), Float32[Array, "batch 248 248 32"])).output_spec
        'Float32[batch, 124, 124, 32]'
        >>> stem_pool = L.MaxPool((3, 3), strides=2, padding=1)  # ResNet's, as torchvision
        >>> ss.summary(ss.build(stem_pool, Float32[Array, "batch 112 112 64"])).output_spec
        'Float32[batch, 56, 56, 64]'
    """

    if (
        TYPE_CHECKING
    ):  # the window's length sets the rank it needs (the run-time __init__ is the dataclass's)

        @overload
        def __init__(
            self: "MaxPool[AnyRank]",
            window: Opaque,
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        @overload
        def __init__(
            self: "MaxPool[Rank3Plus]",
            window: int | tuple[int],
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        @overload
        def __init__(
            self: "MaxPool[Rank4Plus]",
            window: tuple[int, int],
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        @overload
        def __init__(
            self: "MaxPool[AnyRank]",
            window: Any,
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        def __init__(
            self,
            window: Any,
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...

    @staticmethod
    def reduce(x: Any, axis: tuple[int, ...]) -> Any:
        return jnp.max(x, axis=axis)

    def windowed(self, x: Any) -> Any:
        return lax.reduce_window(
            x,
            _identity(-np.inf, x),
            lax.max,
            _window_dims(x, self.window),
            _window_dims(x, self.strides),
            self.lax_padding(x),
        )


@dataclasses.dataclass(frozen=True, repr=False)
class AvgPool(_Pool[NeedRank_contra]):
    """Mean over windows (padding is not counted, as in Keras and as
    ``torch.nn.AvgPool2d(count_include_pad=False)``); strides default to the window; ``padding``
    as ``MaxPool``'s."""

    if (
        TYPE_CHECKING
    ):  # the window's length sets the rank it needs (the run-time __init__ is the dataclass's)

        @overload
        def __init__(
            self: "AvgPool[AnyRank]",
            window: Opaque,
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        @overload
        def __init__(
            self: "AvgPool[Rank3Plus]",
            window: int | tuple[int],
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        @overload
        def __init__(
            self: "AvgPool[Rank4Plus]",
            window: tuple[int, int],
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        @overload
        def __init__(
            self: "AvgPool[AnyRank]",
            window: Any,
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...
        def __init__(
            self,
            window: Any,
            *,
            strides: Any = None,
            padding: Any = "valid",
            name: str | None = None,
        ) -> None: ...

    @staticmethod
    def reduce(x: Any, axis: tuple[int, ...]) -> Any:
        return jnp.mean(x, axis=axis)

    def windowed(self, x: Any) -> Any:
        dims, strides = _window_dims(x, self.window), _window_dims(x, self.strides)
        pad = self.lax_padding(x)
        total = lax.reduce_window(x, _identity(0.0, x), lax.add, dims, strides, pad)
        ones = jnp.ones(
            (1,) * (x.ndim - len(self.window) - 1) + x.shape[-len(self.window) - 1 : -1] + (1,),
            x.dtype,
        )
        count = lax.reduce_window(ones, _identity(0.0, x), lax.add, dims, strides, pad)
        return total / jnp.broadcast_to(count, total.shape)


@dataclasses.dataclass(frozen=True, repr=False)
class GlobalAvgPool(FloatingTo[Rank2], Blueprint[Floating, Rank3Plus, AsInput, Rank2]):
    """Mean over every axis between the first (batch) and the last (channels):
    ``[batch, h, w, c] -> [batch, c]``.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.GlobalAvgPool(), Float32[Array, "batch 7 7 512"])).output_spec
        'Float32[batch, 512]'
    """

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        if spec.rank < 3:
            raise Refusal(
                'Float[Array, "batch ... channels"] with at least one axis to pool',
                f"it needs batch, at least one spatial axis and channels, got {spec.rank} dimensions.",
            )
        return GlobalAvgPoolLayer(self)


class GlobalAvgPoolLayer(nnx.Module):
    def __init__(self, blueprint: GlobalAvgPool):
        self.blueprint = blueprint

    @checked
    def __call__(
        self, x: Float[Array, "batch *spatial channels"]
    ) -> Float[Array, "batch channels"]:
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
