"""Convolutions over channels-last inputs: ``Conv1D`` (``time``) and ``Conv2D`` (``height width``)."""

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax import lax
from jaxtyping import Array, Float

from .._errors import LayerShapeError
from .._specs import TensorSpec, checked, describe, dtype_kind, format_value
from ._blueprint import Blueprint, NeedRank_contra, Refusal, int_tuple, positive_int, set_field
from ._typing import AsInput, Floating, FloatingKeep, Rank3Plus, Rank4Plus

PADDING_MODES = ("valid", "same", "causal")


def _padding(layer: str, value: Any, nd: int) -> str | tuple[tuple[int, int], ...]:
    """``"valid"``, ``"same"``, ``"causal"`` (1-D only), an int, or ``nd`` (low, high) pairs."""
    if isinstance(value, str):
        mode = value.lower()
        if mode not in PADDING_MODES or (mode == "causal" and nd != 1):
            allowed = PADDING_MODES if nd == 1 else PADDING_MODES[:2]
            raise ValueError(
                f"{layer}: padding must be one of {allowed}, an int, or {nd} (low, high) pairs; got {value!r}."
            )
        return mode
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return ((value, value),) * nd
    items = value
    if (
        nd == 1
        and isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        items = (tuple(value),)  # Conv1D's documented (low, high) pair
    if isinstance(items, tuple | list) and len(items) == nd:
        pairs = tuple((p, p) if isinstance(p, int) else tuple(p) for p in items)
        if all(
            len(p) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p)
            for p in pairs
        ):
            return pairs  # type: ignore[return-value]
    raise ValueError(
        f"{layer}: padding must be 'valid', 'same', a non-negative int, or {nd} (low, high) pairs; got {value!r}."
    )


def lax_padding(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...]) -> Any:
    if padding == "causal":
        return tuple(((k - 1) * d, 0) for k, d in zip(kernel, dilation, strict=True))
    return padding.upper() if isinstance(padding, str) else padding


def spatial_names(nd: int) -> tuple[str, ...]:
    return (
        ("time",)
        if nd == 1
        else ("height", "width")
        if nd == 2
        else tuple(f"d{i}" for i in range(nd))
    )


def too_short(
    sizes: tuple[Any, ...], extents: tuple[int, ...], padding: Any, what: str
) -> str | None:
    """Why a fixed spatial size is too short for its window (an empty output), or None."""
    if padding in ("same", "causal"):
        return None
    pads = ((0, 0),) * len(extents) if padding == "valid" else padding
    for name, n, extent, (lo, hi) in zip(
        spatial_names(len(extents)), sizes, extents, pads, strict=True
    ):
        if isinstance(n, int) and n + lo + hi < extent:
            padded = "with padding='valid'" if padding == "valid" else f"even padded by {lo + hi}"
            return f"{name} is {n}, smaller than {what} {extent} {padded}."
    return None


def check_long_enough(
    layer: Any, x: Any, extents: tuple[int, ...], padding: Any, what: str
) -> None:
    """At call time, where the model's spec left a spatial size open: refuse an empty output."""
    names = spatial_names(len(extents))
    if x.ndim < len(extents) + 1:
        body = f"  expected  at least {len(extents) + 1} dimensions ({' '.join(names)} channels)\n  got       {format_value(x)}"
        raise LayerShapeError((), body, subject=describe(layer))
    short = too_short(tuple(x.shape[-len(extents) - 1 : -1]), extents, padding, what)
    if short:
        pads = ((0, 0),) * len(extents) if padding == "valid" else padding
        need = [
            f"{n} >= {e - lo - hi}" for n, e, (lo, hi) in zip(names, extents, pads, strict=True)
        ]
        body = f"  expected  {' and '.join(need)}\n  got       {format_value(x)}\n  {short}\n  Use a larger input."
        raise LayerShapeError((), body, subject=describe(layer))


@dataclasses.dataclass(frozen=True, repr=False)
class _Conv(Blueprint[Floating, NeedRank_contra, AsInput, Any]):
    filters: int
    kernel: Any
    strides: Any = dataclasses.field(default=1, kw_only=True)
    padding: Any = dataclasses.field(default="valid", kw_only=True)
    dilation: Any = dataclasses.field(default=1, kw_only=True)
    use_bias: bool = dataclasses.field(default=True, kw_only=True)

    ndim = 0  # spatial dimensions, set by subclasses

    def __post_init__(self) -> None:
        me = f"{type(self).__name__}({self.filters!r}, {self.kernel!r})"
        positive_int(me, "filters", self.filters)
        set_field(self, "kernel", int_tuple(me, "kernel", self.kernel, self.ndim))
        set_field(self, "strides", int_tuple(me, "strides", self.strides, self.ndim))
        set_field(self, "dilation", int_tuple(me, "dilation", self.dilation, self.ndim))
        set_field(self, "padding", _padding(me, self.padding, self.ndim))

    def extent(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation, strict=True))

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        names = spatial_names(self.ndim)
        expected = f'Float[Array, "batch {" ".join(names)} channels"]'
        if spec.rank < self.ndim + 2:
            fix = None
            if spec.rank == self.ndim + 1 and all(isinstance(d, int) for d in spec.shape[1:]):
                fix = f"Add a channel axis: L.Reshape({(*spec.shape[1:], 1)}) before {self!r}."
            raise Refusal(
                expected,
                f"it needs {self.ndim + 2} dimensions (batch {' '.join(names)} channels), got {spec.rank}.",
                fix,
            )
        channels = spec.shape[-1]
        if not isinstance(channels, int):
            raise Refusal(
                expected, f"the channel dimension must have a fixed size, got {channels}."
            )
        short = too_short(
            spec.shape[-self.ndim - 1 : -1], self.extent(), self.padding, "the kernel's extent"
        )
        if short:
            raise Refusal(
                expected, short, "Use padding='same', a smaller kernel, or a larger input."
            )
        dtype = spec.dtype if dtype_kind(spec.dtype) == "floating" else jnp.float32
        layer = Conv1DLayer if self.ndim == 1 else Conv2DLayer
        return layer(self, channels, dtype=dtype, rngs=rngs)


class ConvLayer(nnx.Module):
    """Built convolution: ``kernel`` is ``(*kernel_size, in_channels, filters)`` (HWIO)."""

    def __init__(self, blueprint: _Conv, in_channels: int, *, dtype: Any, rngs: nnx.Rngs):
        self.blueprint = blueprint
        self.in_channels = in_channels
        self.filters = blueprint.filters
        init = nnx.initializers.lecun_normal()
        shape = (*blueprint.kernel, in_channels, blueprint.filters)
        self.kernel = nnx.Param(init(rngs.params(), shape, dtype))
        self.bias = (
            nnx.Param(jnp.zeros((blueprint.filters,), dtype)) if blueprint.use_bias else None
        )

    def convolve(self, x: Any) -> Any:
        bp = self.blueprint
        nd = bp.ndim
        check_long_enough(self, x, bp.extent(), bp.padding, "the kernel's extent")
        lead = x.shape[: -nd - 1]
        x = x.reshape((-1, *x.shape[-nd - 1 :]))
        dims = "N" + "HWD"[:nd] + "C"
        y = lax.conv_general_dilated(
            x,
            self.kernel[...],
            window_strides=bp.strides,
            padding=lax_padding(bp.padding, bp.kernel, bp.dilation),
            rhs_dilation=bp.dilation,
            dimension_numbers=(dims, "HWD"[:nd] + "IO", dims),
        )
        if self.bias is not None:
            y = y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
        return y.reshape((*lead, *y.shape[1:]))


class Conv1DLayer(ConvLayer):
    """Built ``Conv1D``; any length of ``time`` is accepted."""

    @checked
    def __call__(
        self, x: Float[Array, "*batch time {self.in_channels}"]
    ) -> Float[Array, "*batch out_time {self.filters}"]:
        return self.convolve(x)


class Conv2DLayer(ConvLayer):
    """Built ``Conv2D``; any ``height`` and ``width`` are accepted (the model's spec fixes them)."""

    @checked
    def __call__(
        self, x: Float[Array, "*batch height width {self.in_channels}"]
    ) -> Float[Array, "*batch out_height out_width {self.filters}"]:
        return self.convolve(x)


@dataclasses.dataclass(frozen=True, repr=False)
class Conv1D(FloatingKeep[Rank3Plus], _Conv[Rank3Plus]):
    """1-D convolution over ``"*batch time channels"``.

    Args:
        filters: output channels.
        kernel: window length (an int or a 1-tuple).
        strides, dilation: ints or 1-tuples.
        padding: ``"valid"`` (default), ``"same"``, ``"causal"``, an int, or a (low, high) pair.
        use_bias: add a learned bias.
    """

    ndim = 1


@dataclasses.dataclass(frozen=True, repr=False)
class Conv2D(FloatingKeep[Rank4Plus], _Conv[Rank4Plus]):
    """2-D convolution over channels-last images ``"*batch height width channels"``.

    Args:
        filters: output channels.
        kernel: ``(kh, kw)`` or one int for both.
        strides, dilation: ints or pairs (default 1).
        padding: ``"valid"`` (default, as Keras), ``"same"``, an int, or two (low, high) pairs.
        use_bias: add a learned bias.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.Conv2D(32, (3, 3)), Float32[Array, "batch 250 250 3"])).output_spec
        'Float32[batch, 248, 248, 32]'
    """

    ndim = 2
