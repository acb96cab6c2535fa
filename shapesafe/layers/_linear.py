"""``Linear``: a dense layer over the last axis."""

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from .._specs import TensorSpec, checked, dtype_kind
from ._blueprint import Blueprint, Refusal, positive_int
from ._typing import AsInput, Floating, FloatingKeep, Rank1Plus


@dataclasses.dataclass(frozen=True, repr=False)
class Linear(FloatingKeep[Rank1Plus], Blueprint[Floating, Rank1Plus, AsInput, Any]):
    """A dense layer, ``x @ kernel + bias``, over the last axis.

    ``in_features`` is read from the input spec at build time; the kernel is
    ``(in_features, features)``, LeCun-normal initialised, the bias zeros.

    Args:
        features: size of the output's last axis.
        use_bias: add a learned bias.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(64), Float32[Array, "batch 784"])
        >>> ss.summary(model).output_spec
        'Float32[batch, 64]'
    """

    features: int
    use_bias: bool = dataclasses.field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        positive_int(f"Linear({self.features!r})", "features", self.features)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        expected = 'Float[Array, "*batch in_features"]'
        if spec.rank < 1:
            raise Refusal(expected, "it needs at least one dimension (in_features), got a scalar.")
        in_features = spec.shape[-1]
        if not isinstance(in_features, int):
            raise Refusal(
                expected,
                f"in_features must be a fixed size, got the symbolic {in_features}.",
                "Reshape so the last dimension has a fixed size.",
            )
        dtype = spec.dtype if dtype_kind(spec.dtype) == "floating" else np.dtype(np.float32)
        return LinearLayer(self, in_features, dtype=dtype, rngs=rngs)


class LinearLayer(nnx.Module):
    """Built ``Linear``: ``kernel (in_features, out_features)`` and ``bias (out_features,)``."""

    def __init__(self, blueprint: Linear, in_features: int, *, dtype: np.dtype, rngs: nnx.Rngs):
        self.blueprint = blueprint
        self.in_features = in_features
        self.out_features = blueprint.features
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (in_features, self.out_features), dtype))
        self.bias = (
            nnx.Param(jnp.zeros((self.out_features,), dtype)) if blueprint.use_bias else None
        )

    @checked
    def __call__(
        self, x: Float[Array, "*batch {self.in_features}"]
    ) -> Float[Array, "*batch {self.out_features}"]:
        y = x @ self.kernel[...]
        if self.bias is not None:
            y = y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
        return y
