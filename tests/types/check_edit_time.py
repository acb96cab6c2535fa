"""Checked by pyright and mypy, never executed: correct user code, which must stay unflagged,
and what the checkers infer of it (``assert_type`` is what ``reveal_type`` shows).

``tests/test_types_static.py`` runs both checkers on this folder.
"""

from typing import Any, assert_type

import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float
from jaxtyping import UInt8 as JaxUInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.layers._typing import Complex, Float32, Floating, Int32, UInt8
from shapesafe.typing import (
    AnyDType,
    AnyRank,
    AsInput,
    Integer,
    Rank1Plus,
    Rank2,
    Rank3,
    Rank4,
    Rank4Plus,
    Spec,
)
from shapesafe.typing import Float32 as F32
from shapesafe.typing import Int32 as I32
from shapesafe.typing import UInt8 as U8

# -- the talk's networks: what each composition needs and gives -------------------------------
baseline = L.Flatten() >> L.Rescale(1 / 255) >> L.Linear(64) >> L.ReLU() >> L.Linear(2)
assert_type(baseline, L.Sequential[AnyDType, Rank1Plus, Float32, Rank2])
cnn = (
    L.Rescale(1 / 255)
    >> L.Conv2D(32, (3, 3))
    >> L.ReLU()
    >> L.MaxPool((2, 2))
    >> L.Flatten()
    >> L.Linear(512)
    >> L.ReLU()
    >> L.Linear(2)
)
assert_type(cnn, L.Sequential[Integer | Floating | Complex, AnyRank, Float32, Rank2])
needs_floats = L.Flatten() >> L.Linear(64)  # fine until it is built on integers
assert_type(needs_floats, L.Sequential[Floating, Rank1Plus, AsInput, Rank2])

# -- a typed spec: the same jaxtyping annotation at run time, with a dtype and a rank here ------
photos = U8[Array, "batch", 250, 250, 3]
assert_type(photos, Spec[UInt8, Rank4])
assert_type(U8[Array, "batch 250 250 3"], Spec[UInt8, Any])
model = ss.build(baseline, photos, seed=0)
assert_type(model, ss.Model[UInt8, Rank4, Float32, Rank2])  # uint8 rank 4 in, float32 rank 2 out
assert_type(ss.build(cnn, photos), ss.Model[UInt8, Rank4, Float32, Rank2])
assert_type(
    ss.build(needs_floats, F32[Array, "batch", 28, 28]), ss.Model[Float32, Rank3, AsInput, Rank2]
)
assert_type(
    ss.build(L.Conv2D(8, 3), F32[Array, "batch", 32, 32, 3]), ss.Model[Float32, Rank4, AsInput, Any]
)
tokens = L.Embedding(1000, 64) >> L.LSTM(32) >> L.Linear(2)
assert_type(ss.build(tokens, I32[Array, "batch", 20]), ss.Model[Int32, Rank2, Float32, Any])

# -- what the checkers cannot see is not flagged (gradual typing) ----------------------------
ss.build(
    L.Flatten() >> L.Linear(64), JaxUInt8[Array, "batch 250 250 3"]
)  # a jaxtyping spec: opaque to checkers
to_floats = L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(64)  # jnp.float32 is Any to checkers
ss.build(to_floats, photos)
assert_type(L.Cast(np.float32), L.Cast[Float32])
ss.build(L.Cast(np.float32) >> L.Conv2D(8, 3), photos)
ids = (
    L.Cast(jnp.int32)
    >> L.Embedding(100, 8)
    >> L.GRU(16, return_sequences=True)
    >> L.GlobalAvgPool()
)
ss.build(ids, photos)


def double(x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
    return 2 * x


with_user_code = L.Flatten() >> double >> L.Linear(3)  # a user's function: its types are its own
after_user_code = double >> L.Flatten() >> L.Linear(3)
ss.build(with_user_code, photos)


def make(width: int) -> L.Sequential:  # a bare annotation forgets the types: nothing is flagged
    return L.Linear(width) >> L.ReLU()


ss.build(make(3) >> make(4) >> L.Embedding(10, 2), photos)
block = L.Conv2D(8, 3, padding="same") >> L.BatchNorm() >> L.ReLU()
resnet_like = (
    L.Rescale(1 / 255)
    >> L.Conv2D(8, 3)
    >> L.Residual(block)
    >> L.Residual(block)
    >> L.GlobalAvgPool()
)
ss.build(resnet_like >> L.Linear(10), photos)
stages = L.Rescale(1 / 255) >> (L.Conv2D(8, 3) >> L.MaxPool((2, 2))) >> (L.Flatten() >> L.Linear(2))
assert_type(stages, L.Sequential[Integer | Floating | Complex, AnyRank, Float32, Rank2])
assert_type(L.MaxPool((2, 2)), L.MaxPool[Rank4Plus])
# An argument typed Any: the pool's need is not known (not "rank 3", its first typed overload),
# nor the cast's dtype (not float16).
window: Any = 2
unknown_pool = L.Flatten() >> L.MaxPool(window)
dtype: Any = np.int32
unknown_cast = L.Cast(dtype) >> L.Embedding(10, 4)
named = L.Flatten() >> L.Rescale(1 / 255) >> L.Linear(2).named("head")
assert_type(named, L.Sequential[AnyDType, Rank1Plus, Float32, Rank2])
head: L.Blueprint = named[-1]
trunk = named[:-1] >> L.Linear(5)

# -- training takes a built model, an optax transformation and a loss function ----------------
data = [(np.zeros((2, 250, 250, 3), np.uint8), np.zeros(2, np.int32))]
history = ss.fit(model, data, loss=ss.losses.cross_entropy, optimizer=optax.adam(1e-3), epochs=1)
ss.evaluate(model, data, metrics=[ss.metrics.accuracy])
print(ss.summary(model))
