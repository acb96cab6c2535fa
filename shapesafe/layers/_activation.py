"""Element-wise activations (and ``Softmax`` over one axis). They take and return floats."""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from .._specs import TensorSpec, checked
from ._blueprint import Blueprint, Refusal
from ._typing import AnyRank, AsInput, Floating, FloatingKeep


class ActivationLayer(nnx.Module):
    """Built activation: same shape and dtype in and out."""

    def __init__(self, blueprint: "_Activation"):
        self.blueprint = blueprint

    @checked
    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return self.blueprint.apply(x)


@dataclasses.dataclass(frozen=True, repr=False)
class _Activation(FloatingKeep[AnyRank], Blueprint[Floating, AnyRank, AsInput, Any]):
    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        raise NotImplementedError

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        return ActivationLayer(self)


@dataclasses.dataclass(frozen=True, repr=False)
class ReLU(_Activation):
    """``max(x, 0)``."""

    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jax.nn.relu(x)


@dataclasses.dataclass(frozen=True, repr=False)
class LeakyReLU(_Activation):
    """``x`` where positive, ``negative_slope * x`` elsewhere (PyTorch's default slope, 0.01)."""

    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        if (
            isinstance(self.negative_slope, bool)
            or not isinstance(self.negative_slope, int | float)
            or not math.isfinite(self.negative_slope)
        ):
            raise ValueError(
                f"LeakyReLU: negative_slope must be a finite number, got {self.negative_slope!r}."
            )

    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jax.nn.leaky_relu(x, negative_slope=self.negative_slope)


@dataclasses.dataclass(frozen=True, repr=False)
class GELU(_Activation):
    """Gaussian error linear unit; exact by default (as PyTorch and Keras), tanh form if ``approximate``."""

    approximate: bool = dataclasses.field(default=False, kw_only=True)

    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jax.nn.gelu(x, approximate=self.approximate)


@dataclasses.dataclass(frozen=True, repr=False)
class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``."""

    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jax.nn.sigmoid(x)


@dataclasses.dataclass(frozen=True, repr=False)
class Tanh(_Activation):
    """Hyperbolic tangent."""

    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jnp.tanh(x)


@dataclasses.dataclass(frozen=True, repr=False)
class Softmax(_Activation):
    """Softmax over ``axis`` (the last by default)."""

    axis: int = dataclasses.field(default=-1, kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise ValueError(f"Softmax: axis must be an int, got {self.axis!r}.")

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        if not -spec.rank <= self.axis < spec.rank:
            need = self.axis + 1 if self.axis >= 0 else -self.axis
            raise Refusal(
                f"at least {need} dimension{'s' * (need != 1)} (for axis={self.axis})",
                f"it has {spec.rank}, so axis {self.axis} does not exist.",
                "Pick an axis the input has (axis=-1 is the last).",
            )
        return ActivationLayer(self)

    def apply(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        return jax.nn.softmax(x, axis=self.axis)
