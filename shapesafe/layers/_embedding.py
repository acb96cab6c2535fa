"""``Embedding``: integer ids in, one learned row of floats per id out.

Out-of-range ids. PyTorch raises an ``IndexError`` for an id outside ``0..vocab-1``. JAX
cannot raise from inside a compiled function, so the built layer does two things:

- called eagerly (concrete values), it raises a ``ValueError`` naming the first bad id, its
  position and the vocabulary size, before any lookup;
- under ``jax.jit``, ``jax.grad``, ``jax.vmap`` (traced values), the lookup uses
  ``mode="fill"`` without wrapping negative ids, so every id ``< 0`` or ``>= vocab`` yields a
  row of NaN (and no gradient reaches the table from it). Plain ``jnp.take`` would wrap ``-1``
  to the last row and ``table[ids]`` would clamp to the first or last row, both silently; a
  NaN row is at least visible in the loss.
"""

import dataclasses
from typing import Any

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from flax import nnx
from jax.core import Tracer
from jaxtyping import Array, Float, Integer

from .._specs import TensorSpec, checked
from . import _typing
from ._blueprint import Blueprint, positive_int
from ._typing import AnyRank, Embeds


@dataclasses.dataclass(frozen=True, repr=False)
class Embedding(Embeds, Blueprint[_typing.Integer, AnyRank, _typing.Float32, Any]):
    """A lookup table: each integer id in ``"*batch"`` becomes a row of ``features`` floats.

    The table is ``(vocab, features)`` float32, initialised from a standard normal like
    ``torch.nn.Embedding``, whose ``weight`` it equals (copy it 1:1). Ids may have any integer
    dtype (``uint8`` included); floats are refused with a ``ShapeError`` that suggests
    ``L.Cast(jnp.int32)``. An id outside ``0..vocab-1`` raises ``ValueError`` when the layer
    runs eagerly, and gives a row of NaN under ``jax.jit`` (see the module docstring).

    Args:
        vocab: number of distinct ids (rows of the table).
        features: size of each embedding vector (the output's new last axis).

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Int32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Embedding(1000, 64), Int32[Array, "batch time"])
        >>> ss.summary(model).output_spec
        'Float32[batch, time, 64]'
    """

    vocab: int
    features: int

    def __post_init__(self) -> None:
        me = f"Embedding({self.vocab!r}, {self.features!r})"
        positive_int(me, "vocab", self.vocab)
        positive_int(me, "features", self.features)

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        # The dtype of the ids is checked by EmbeddingLayer's annotation while infer() traces it,
        # which names the dtype and suggests L.Cast(jnp.int32).
        return EmbeddingLayer(self, rngs=rngs)


class EmbeddingLayer(nnx.Module):
    """Built ``Embedding``: ``table (vocab, features)`` (PyTorch's ``Embedding.weight``)."""

    def __init__(self, blueprint: Embedding, *, rngs: nnx.Rngs):
        self.blueprint = blueprint
        self.vocab = blueprint.vocab
        self.features = blueprint.features
        self.table = nnx.Param(jr.normal(rngs.params(), (self.vocab, self.features), jnp.float32))

    @checked
    def __call__(self, ids: Integer[Array, "*batch"]) -> Float[Array, "*batch {self.features}"]:
        if not isinstance(ids, Tracer):
            check_ids(self.blueprint, ids)
        return (
            self.table[...]
            .at[ids]
            .get(mode="fill", fill_value=jnp.nan, wrap_negative_indices=False)
        )


def check_ids(blueprint: Embedding, ids: Any) -> None:
    """Eagerly, with concrete ids: raise ``ValueError`` for the first id outside ``0..vocab-1``."""
    values = np.asarray(ids)
    bad = (values < 0) | (values >= blueprint.vocab)
    if not bad.any():
        return
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    at = f" at position {where}" if where else ""
    others = int(bad.sum()) - 1
    more = f"; {others} more {'id is' if others == 1 else 'ids are'} out of range" if others else ""
    raise ValueError(
        f"{blueprint!r}: id {int(values[where])}{at} is out of range for a vocabulary "
        f"of {blueprint.vocab} (valid ids are 0..{blueprint.vocab - 1}){more}. Under jax.jit an id "
        "out of range gives a row of NaN instead of this error."
    )
