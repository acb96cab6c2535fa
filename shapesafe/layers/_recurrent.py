"""Recurrent layers over ``"*batch time features"``: ``LSTM`` and ``GRU``, PyTorch-compatible.

Both follow PyTorch's gate equations and parameter layout (one layer, ``batch_first=True``,
initial state zeros), so weights copy 1:1 from ``torch.nn.LSTM`` / ``torch.nn.GRU``. Kernels
are stored in the JAX convention ``x @ kernel`` (as ``Linear`` stores them), i.e. transposed:

=====================================  ====================================
PyTorch (``layer_l0`` suffix omitted)  built ``LSTM`` / ``GRU`` module
=====================================  ====================================
``weight_ih`` ``(G*hidden, in)``       ``kernel_ih = weight_ih.T`` ``(in, G*hidden)``
``weight_hh`` ``(G*hidden, hidden)``   ``kernel_hh = weight_hh.T`` ``(hidden, G*hidden)``
``bias_ih`` ``(G*hidden,)``            ``bias_ih``
``bias_hh`` ``(G*hidden,)``            ``bias_hh``
=====================================  ====================================

``G`` is 4 for the LSTM, whose column blocks are the gates ``(i, f, g, o)``, and 3 for the
GRU, ``(r, z, n)``, in PyTorch's order. The input projection of every step is one matmul
before the loop; ``jax.lax.scan`` then runs the recurrence time-major. ``time`` may be
symbolic in the model's spec: one build serves every sequence length.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
from flax import nnx
from jaxtyping import Array, Float

from .._specs import TensorSpec, checked, dtype_kind
from ._blueprint import Blueprint, Refusal, positive_int
from ._typing import AsInput, Floating, FloatingTo, Rank3Plus

Carry = Any  # (h, c) for the LSTM, h for the GRU; each (n, hidden)


@dataclasses.dataclass(frozen=True, repr=False)
class _Recurrent(FloatingTo[Any], Blueprint[Floating, Rank3Plus, AsInput, Any]):
    hidden: int
    return_sequences: bool = dataclasses.field(default=False, kw_only=True)

    gates = 0  # gate blocks per parameter, set by subclasses

    def __post_init__(self) -> None:
        me = f"{type(self).__name__}({self.hidden!r})"
        positive_int(me, "hidden", self.hidden)
        if not isinstance(self.return_sequences, bool):
            raise ValueError(
                f"{me}: return_sequences must be True or False, got {self.return_sequences!r}."
            )

    def start(self, h0: Array) -> Carry:
        raise NotImplementedError

    def output(self, carry: Carry) -> Array:
        raise NotImplementedError

    def step(self, carry: Carry, xw: Array, hw: Array) -> Carry:
        """One step from ``xw = x_t @ kernel_ih + bias_ih`` and ``hw = h @ kernel_hh + bias_hh``."""
        raise NotImplementedError

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        expected = 'Float[Array, "batch time features"]'
        if spec.rank < 3:
            fix = None
            if spec.rank == 2 and isinstance(spec.shape[1], int):
                fix = (
                    f"Add a feature axis with L.Reshape(({spec.shape[1]}, 1)) before {self!r}, or, for "
                    "token ids, insert L.Embedding(vocab, features) before it."
                )
            raise Refusal(
                expected, f"it needs 3 dimensions (batch time features), got {spec.rank}.", fix
            )
        in_features = spec.shape[-1]
        if not isinstance(in_features, int):
            raise Refusal(
                expected,
                f"features must be a fixed size, got the symbolic {in_features}.",
                "Give the last dimension a fixed size in the input spec.",
            )
        if dtype_kind(spec.dtype) != "floating":
            raise Refusal(
                expected,
                f"{spec.dtype.name} is not a floating dtype.",
                f"Insert L.Embedding(vocab, features) before {self!r} if these are token ids, "
                "or L.Cast(jnp.float32) if they are values.",
            )
        layer = RecurrentSequenceLayer if self.return_sequences else RecurrentLastLayer
        return layer(self, in_features, dtype=spec.dtype, rngs=rngs)


@dataclasses.dataclass(frozen=True, repr=False)
class LSTM(_Recurrent):
    """A long short-term memory layer over ``"*batch time features"``, as ``torch.nn.LSTM``.

    With ``h``, ``c`` zeros at the first step and ``x`` each step of ``time``::

        i, f, g, o = split(x @ kernel_ih + bias_ih + h @ kernel_hh + bias_hh, 4)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c)

    Parameters are uniform in ``(-1/sqrt(hidden), 1/sqrt(hidden))`` like PyTorch's; the
    module docstring gives the 1:1 mapping from a ``torch.nn.LSTM(batch_first=True)``.

    Args:
        hidden: size of the hidden state (the output's last axis).
        return_sequences: return ``h`` at every step, ``"*batch time hidden"``, instead of
            the last one, ``"*batch hidden"``.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.LSTM(16), Float32[Array, "batch time 8"])).output_spec
        'Float32[batch, 16]'
        >>> ss.summary(ss.build(L.LSTM(16, return_sequences=True), Float32[Array, "batch time 8"])).output_spec
        'Float32[batch, time, 16]'
    """

    gates = 4

    def start(self, h0: Array) -> Carry:
        return h0, h0

    def output(self, carry: Carry) -> Array:
        return carry[0]

    def step(self, carry: Carry, xw: Array, hw: Array) -> Carry:
        _, c = carry
        i, f, g, o = jnp.split(xw + hw, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return jax.nn.sigmoid(o) * jnp.tanh(c), c


@dataclasses.dataclass(frozen=True, repr=False)
class GRU(_Recurrent):
    """A gated recurrent unit layer over ``"*batch time features"``, as ``torch.nn.GRU``.

    With ``h`` zeros at the first step and ``x`` each step of ``time``::

        xr, xz, xn = split(x @ kernel_ih + bias_ih, 3)
        hr, hz, hn = split(h @ kernel_hh + bias_hh, 3)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = tanh(xn + r * hn)
        h = (1 - z) * n + z * h

    Parameters are uniform in ``(-1/sqrt(hidden), 1/sqrt(hidden))`` like PyTorch's; the
    module docstring gives the 1:1 mapping from a ``torch.nn.GRU(batch_first=True)``.

    Args:
        hidden: size of the hidden state (the output's last axis).
        return_sequences: return ``h`` at every step, ``"*batch time hidden"``, instead of
            the last one, ``"*batch hidden"``.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> ss.summary(ss.build(L.GRU(32), Float32[Array, "batch 20 8"])).output_spec
        'Float32[batch, 32]'
    """

    gates = 3

    def start(self, h0: Array) -> Carry:
        return h0

    def output(self, carry: Carry) -> Array:
        return carry

    def step(self, carry: Carry, xw: Array, hw: Array) -> Carry:
        xr, xz, xn = jnp.split(xw, 3, axis=-1)
        hr, hz, hn = jnp.split(hw, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        return n + z * (carry - n)  # (1 - z) * n + z * h


class RecurrentLayer(nnx.Module):
    """Built ``LSTM`` or ``GRU``: ``kernel_ih (in, G*hidden)``, ``kernel_hh (hidden, G*hidden)``,
    ``bias_ih``, ``bias_hh (G*hidden,)``; ``G`` gate blocks in PyTorch's order."""

    def __init__(self, blueprint: _Recurrent, in_features: int, *, dtype: Any, rngs: nnx.Rngs):
        self.blueprint = blueprint
        self.in_features = in_features
        self.hidden = blueprint.hidden
        width = blueprint.gates * self.hidden
        bound = 1.0 / math.sqrt(self.hidden)
        # One draw, split by rows: iid uniform like four draws, but one RNG kernel to compile.
        u = jr.uniform(rngs.params(), (in_features + self.hidden + 2, width), dtype, -bound, bound)
        self.kernel_ih = nnx.Param(u[:in_features])
        self.kernel_hh = nnx.Param(u[in_features:-2])
        self.bias_ih = nnx.Param(u[-2])
        self.bias_hh = nnx.Param(u[-1])

    def scan(self, x: Array) -> tuple[Array, Array]:
        """Every step's ``h`` as ``(*batch, time, hidden)`` and the last ``h`` as ``(*batch, hidden)``."""
        bp = self.blueprint
        lead, (time, features) = x.shape[:-2], x.shape[-2:]
        n = math.prod(lead)
        xs = jnp.swapaxes(x.reshape((n, time, features)), 0, 1)  # time-major: (time, n, in)
        xw = xs @ self.kernel_ih[...] + self.bias_ih[...].reshape((1, 1, -1))
        kernel_hh, bias_hh = self.kernel_hh[...], self.bias_hh[...].reshape((1, -1))

        def body(carry: Carry, xw_t: Array) -> tuple[Carry, Array]:
            carry = bp.step(carry, xw_t, bp.output(carry) @ kernel_hh + bias_hh)
            return carry, bp.output(carry)

        h0 = jnp.zeros((n, self.hidden), xw.dtype)
        carry, hs = jax.lax.scan(body, bp.start(h0), xw)
        every = jnp.swapaxes(hs, 0, 1).reshape((*lead, time, self.hidden))
        return every, bp.output(carry).reshape((*lead, self.hidden))


class RecurrentSequenceLayer(RecurrentLayer):
    """Built ``LSTM``/``GRU`` with ``return_sequences=True``: ``h`` at every step."""

    @checked
    def __call__(
        self, x: Float[Array, "*batch time {self.in_features}"]
    ) -> Float[Array, "*batch time {self.hidden}"]:
        return self.scan(x)[0]


class RecurrentLastLayer(RecurrentLayer):
    """Built ``LSTM``/``GRU`` with ``return_sequences=False``: ``h`` after the last step."""

    @checked
    def __call__(
        self, x: Float[Array, "*batch time {self.in_features}"]
    ) -> Float[Array, "*batch {self.hidden}"]:
        return self.scan(x)[1]
