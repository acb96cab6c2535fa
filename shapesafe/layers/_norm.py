"""Normalisation and regularisation: ``BatchNorm``, ``LayerNorm`` and ``Dropout``.

Training and evaluation. ``BatchNorm`` and ``Dropout`` behave differently while training;
``ss.build`` returns a model in inference mode (as a Keras model called directly is), and
``fit`` trains in training mode and leaves the model in inference mode. ``model.eval()`` sets
``use_running_average=True`` and ``deterministic=True`` on every layer that has them, and
``model.train()`` sets them back; both are Flax NNX's own methods. These attributes are
static (part of ``nnx.split``'s graph definition), so a jitted step compiles once per mode.

BatchNorm conventions. ``momentum`` follows Keras and Flax: after a training step,
``running = momentum * running + (1 - momentum) * batch``. PyTorch's ``momentum`` weighs the
other side, so ``torch.nn.BatchNorm*d(momentum=m)`` equals ``BatchNorm(momentum=1 - m)``
(PyTorch's default 0.1 is our 0.9; our default 0.99 is PyTorch's 0.01). The batch is
normalised with its biased variance (divide by ``n``) in both libraries, but the running
variance is updated with the *unbiased* batch variance (divide by ``n - 1``), as PyTorch does
(Keras and Flax use the biased one; the two differ by a factor ``n / (n - 1)`` that vanishes
for large batches). We follow PyTorch because the running variance is an estimate of the
population's variance, for which the unbiased estimator is the right one, and so that running
statistics copied to or from ``torch.nn.BatchNorm*d`` stay exactly interchangeable. A
consequence, again as in PyTorch: training needs more than one value per feature
(``batch x spatial > 1``); with a single one the layer raises ``ShapeError``.
"""

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from .._errors import LayerShapeError
from .._specs import TensorSpec, checked, describe, dtype_kind, format_value
from ._blueprint import Blueprint, Refusal
from ._blueprint import rate as check_rate
from ._typing import AnyRank, AsInput, Floating, FloatingKeep, Rank1Plus, Rank2Plus


def _positive_float(layer: str, arg: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{layer}: {arg} must be a positive finite float, got {value!r}.")
    return float(value)


def _features(spec: TensorSpec, expected: str, *, min_rank: int) -> int:
    """The fixed size of the last axis of ``spec``, or a ``Refusal``."""
    if spec.rank < min_rank:
        need = "batch and features" if min_rank == 2 else "features"
        raise Refusal(
            expected,
            f"it needs at least {min_rank} dimension{'s' * (min_rank > 1)} ({need}), got {spec.rank}.",
        )
    features = spec.shape[-1]
    if not isinstance(features, int):
        raise Refusal(
            expected,
            f"the last (features) dimension must have a fixed size, got the symbolic {features}.",
            "Reshape so the last dimension has a fixed size.",
        )
    return features


def _param_dtype(spec: TensorSpec) -> Any:
    # An integer input is refused by the built layer's annotation (with a fix) while infer() traces it.
    return spec.dtype if dtype_kind(spec.dtype) == "floating" else np.dtype(np.float32)


def _row(v: Any, ndim: int) -> Any:
    """A ``(features,)`` vector shaped to broadcast over the last axis of an ``ndim`` array."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


# -- Dropout ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class Dropout(FloatingKeep[AnyRank], Blueprint[Floating, AnyRank, AsInput, Any]):
    """Inverted dropout: while training, zero each entry with probability ``rate`` and scale
    the kept ones by ``1 / (1 - rate)``; in evaluation mode, the identity.

    The mask is drawn from the layer's own random stream, forked at build time from the
    ``dropout`` stream of ``ss.build``'s seed: the same seed gives the same masks, and each call
    advances the stream (so consecutive calls draw different masks). Under ``jax.jit`` with
    ``nnx.split``/``nnx.merge``, return the updated state so the stream advances.

    Args:
        rate: probability of zeroing an entry, in ``[0, 1)``.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(64) >> L.Dropout(0.5), Float32[Array, "batch 784"])
        >>> ss.summary(model).output_spec
        'Float32[batch, 64]'
        >>> model.layers[1].deterministic  # built for inference: no dropout
        True
        >>> model.train()  # dropout on, until model.eval() (fit switches on its own)
        >>> model.layers[1].deterministic
        False
    """

    rate: float

    def __post_init__(self) -> None:
        check_rate(f"Dropout({self.rate!r})", "rate", self.rate)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        return DropoutLayer(self, rngs=rngs)


class DropoutLayer(nnx.Module):
    """Built ``Dropout``: its own ``rngs`` stream and a ``deterministic`` flag (False: training)."""

    def __init__(self, blueprint: Dropout, *, rngs: nnx.Rngs):
        self.blueprint = blueprint
        self.rate = float(blueprint.rate)
        self.deterministic = False
        self.rngs = rngs["dropout"].fork()

    @checked
    def __call__(self, x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        if self.deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jr.bernoulli(self.rngs(), keep, x.shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


# -- BatchNorm -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class BatchNorm(FloatingKeep[Rank2Plus], Blueprint[Floating, Rank2Plus, AsInput, Any]):
    """Batch normalisation of the last (features) axis, with statistics over every other axis.

    While training, the input is normalised with the batch's mean and (biased) variance, and
    the running mean and variance are updated:
    ``running = momentum * running + (1 - momentum) * batch_statistic``, where the variance
    fed to the running one is the unbiased batch variance (as PyTorch; see the module
    docstring). In evaluation mode (``model.eval()``) the running statistics are used.
    ``torch.nn.BatchNorm1d/2d(momentum=m)`` corresponds to ``BatchNorm(momentum=1 - m)``.

    The built layer holds ``scale`` and ``bias`` (``nnx.Param``, PyTorch's ``weight`` and
    ``bias``) and ``mean`` and ``var`` (``nnx.BatchStat``, PyTorch's ``running_mean`` and
    ``running_var``), each of shape ``(features,)``.

    Args:
        momentum: weight of the old running statistics, in ``[0, 1)`` (default 0.99, as Keras).
        epsilon: added to the variance before the square root; positive.
        use_scale: learn a per-feature scale (initialised to ones).
        use_bias: learn a per-feature offset (initialised to zeros).

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Conv2D(8, 3) >> L.BatchNorm(), Float32[Array, "batch 28 28 1"])
        >>> ss.summary(model).output_spec
        'Float32[batch, 26, 26, 8]'
    """

    momentum: float = dataclasses.field(default=0.99, kw_only=True)
    epsilon: float = dataclasses.field(default=1e-5, kw_only=True)
    use_scale: bool = dataclasses.field(default=True, kw_only=True)
    use_bias: bool = dataclasses.field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        check_rate(f"BatchNorm(momentum={self.momentum!r})", "momentum", self.momentum)
        _positive_float(f"BatchNorm(epsilon={self.epsilon!r})", "epsilon", self.epsilon)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        features = _features(spec, 'Float[Array, "batch *rest features"]', min_rank=2)
        return BatchNormLayer(self, features, dtype=_param_dtype(spec))


class BatchNormLayer(nnx.Module):
    """Built ``BatchNorm``; ``use_running_average`` is False while training (the default).

    ``frozen`` is set by ``ss.freeze``: a frozen BatchNorm keeps using (and never updates)
    its running statistics, even in train mode, as transfer learning wants.
    """

    def __init__(self, blueprint: BatchNorm, features: int, *, dtype: Any):
        self.blueprint = blueprint
        self.features = features
        self.momentum = float(blueprint.momentum)
        self.epsilon = float(blueprint.epsilon)
        self.use_running_average = False
        self.frozen = False
        self.scale = nnx.Param(jnp.ones((features,), dtype)) if blueprint.use_scale else None
        self.bias = nnx.Param(jnp.zeros((features,), dtype)) if blueprint.use_bias else None
        self.mean = nnx.BatchStat(jnp.zeros((features,), dtype))
        self.var = nnx.BatchStat(jnp.ones((features,), dtype))

    @checked
    def __call__(
        self, x: Float[Array, "batch *rest {self.features}"]
    ) -> Float[Array, "batch *rest {self.features}"]:
        if self.use_running_average or self.frozen:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = self.batch_statistics(x)
        y = (x - _row(mean, x.ndim)) * _row(jnp.reciprocal(jnp.sqrt(var + self.epsilon)), x.ndim)
        if self.scale is not None:
            y = y * _row(self.scale[...], x.ndim)
        if self.bias is not None:
            y = y + _row(self.bias[...], x.ndim)
        return y

    def batch_statistics(self, x: Any) -> tuple[Any, Any]:
        """The batch's mean and biased variance; updates the running ones (the one mutation)."""
        axes = tuple(range(x.ndim - 1))
        count = math.prod(x.shape[:-1])
        if isinstance(count, int) and count < 2:
            body = (
                f"  expected  more than one value per feature to compute batch statistics\n"
                f"  got       {format_value(x)}\n"
                f"  Train with a batch of at least 2, or call model.eval() to use the running statistics."
            )
            raise LayerShapeError((), body, subject=describe(self))
        mean = jnp.mean(x, axis=axes)
        squares = jnp.sum(jnp.square(x - _row(mean, x.ndim)), axis=axes)
        n = jnp.asarray(count, x.dtype)
        var = squares / n
        old = self.momentum
        self.mean[...] = old * self.mean[...] + (1.0 - old) * mean
        self.var[...] = old * self.var[...] + (1.0 - old) * (squares / (n - 1.0))
        return mean, var


# -- LayerNorm -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class LayerNorm(FloatingKeep[Rank1Plus], Blueprint[Floating, Rank1Plus, AsInput, Any]):
    """Layer normalisation over the last (features) axis, as ``torch.nn.LayerNorm(features)``.

    Each vector along the last axis is shifted to mean 0 and scaled to (biased) variance 1,
    then multiplied by ``scale`` and shifted by ``bias`` (per feature). Training and
    evaluation behave the same.

    Args:
        epsilon: added to the variance before the square root; positive.
        use_scale: learn a per-feature scale (initialised to ones).
        use_bias: learn a per-feature offset (initialised to zeros).

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.LayerNorm(), Float32[Array, "batch time 64"])).output_spec
        'Float32[batch, time, 64]'
    """

    epsilon: float = dataclasses.field(default=1e-5, kw_only=True)
    use_scale: bool = dataclasses.field(default=True, kw_only=True)
    use_bias: bool = dataclasses.field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        _positive_float(f"LayerNorm(epsilon={self.epsilon!r})", "epsilon", self.epsilon)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        features = _features(spec, 'Float[Array, "*batch features"]', min_rank=1)
        return LayerNormLayer(self, features, dtype=_param_dtype(spec))


class LayerNormLayer(nnx.Module):
    """Built ``LayerNorm``: ``scale`` and ``bias`` of shape ``(features,)``."""

    def __init__(self, blueprint: LayerNorm, features: int, *, dtype: Any):
        self.blueprint = blueprint
        self.features = features
        self.epsilon = float(blueprint.epsilon)
        self.scale = nnx.Param(jnp.ones((features,), dtype)) if blueprint.use_scale else None
        self.bias = nnx.Param(jnp.zeros((features,), dtype)) if blueprint.use_bias else None

    @checked
    def __call__(
        self, x: Float[Array, "*batch {self.features}"]
    ) -> Float[Array, "*batch {self.features}"]:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        centred = x - mean
        var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
        y = centred * jnp.reciprocal(jnp.sqrt(var + self.epsilon))
        if self.scale is not None:
            y = y * _row(self.scale[...], x.ndim)
        if self.bias is not None:
            y = y + _row(self.bias[...], x.ndim)
        return y
