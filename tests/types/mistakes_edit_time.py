"""Checked by pyright and mypy, never executed: users' mistakes that both checkers flag.

Each line with a mistake ends in the marker ``expect-error``; ``tests/test_types_static.py`` asserts that
pyright and mypy flag exactly those lines. The ``# type: ignore`` before it keeps the project's
own ``pyright``/``mypy`` runs clean; the test removes it before checking.
"""

import numpy as np
import optax
from jaxtyping import Array

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.typing import Bool, Float32, Int32, UInt8

photos = UInt8[Array, "batch", 250, 250, 3]

# 1. a layer that needs floats after a stage that gives integers or bools: the missing Cast
ss.build(L.Flatten() >> L.Linear(64), photos)  # type: ignore  # expect-error
ss.build(L.Flatten() >> L.Linear(64), UInt8[Array, "batch 250 250 3"])  # type: ignore  # expect-error
ss.build(L.Flatten() >> L.ReLU() >> L.Linear(64), photos)  # type: ignore  # expect-error
ss.build(L.Conv2D(32, (3, 3)) >> L.ReLU() >> L.MaxPool((2, 2)), photos)  # type: ignore  # expect-error
ss.build(L.Dropout(0.5), Bool[Array, "batch", 8])  # type: ignore  # expect-error
ints = L.Cast(np.int32)
ints >> L.Linear(8)  # type: ignore  # expect-error
ints >> L.Conv1D(8, 3)  # type: ignore  # expect-error
ints >> L.Conv2D(8, 3)  # type: ignore  # expect-error
ints >> L.LayerNorm()  # type: ignore  # expect-error
ints >> L.BatchNorm()  # type: ignore  # expect-error
ints >> L.GELU()  # type: ignore  # expect-error
ints >> L.Softmax()  # type: ignore  # expect-error
ints >> L.Sigmoid()  # type: ignore  # expect-error
ints >> L.Tanh()  # type: ignore  # expect-error
ints >> L.LSTM(8)  # type: ignore  # expect-error
ints >> L.GRU(8)  # type: ignore  # expect-error
ints >> L.GlobalAvgPool()  # type: ignore  # expect-error
L.Cast(np.bool_) >> L.Flatten() >> L.Linear(2)  # type: ignore  # expect-error
L.Rescale(1.0) >> L.Cast(np.uint8) >> L.Reshape((4, 4)) >> L.Linear(3)  # type: ignore  # expect-error
L.Cast(np.bool_) >> L.Rescale(1 / 255)  # type: ignore  # expect-error

# 2. Embedding after a stage that gives floats
L.Rescale(1 / 255) >> L.Embedding(1000, 64)  # type: ignore  # expect-error
L.Linear(8) >> L.Embedding(1000, 64)  # type: ignore  # expect-error
L.Embedding(1000, 64) >> L.LSTM(8) >> L.Embedding(1000, 64)  # type: ignore  # expect-error
ss.build(L.Embedding(1000, 64), Float32[Array, "batch", 20])  # type: ignore  # expect-error

# 3. a rank that is known to be wrong
L.Flatten() >> L.Conv2D(32, (3, 3))  # type: ignore  # expect-error
L.Flatten() >> L.MaxPool((2, 2))  # type: ignore  # expect-error
L.Flatten() >> L.GlobalAvgPool()  # type: ignore  # expect-error
L.Flatten() >> L.LSTM(64)  # type: ignore  # expect-error
L.Flatten() >> L.GRU(64)  # type: ignore  # expect-error
L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Conv1D(8, 3)  # type: ignore  # expect-error
L.GlobalAvgPool() >> L.MaxPool(2)  # type: ignore  # expect-error
ss.build(L.Conv1D(8, 3), Float32[Array, "batch", 100])  # type: ignore  # expect-error
ss.build(L.Conv2D(8, 3) >> L.ReLU(), Float32[Array, "batch", 28, 28])  # type: ignore  # expect-error
features = L.Rescale(1 / 255) >> L.Flatten()
features >> (L.Conv2D(8, 3) >> L.ReLU())  # type: ignore  # expect-error

# 4. not a spec; a blueprint where a built model is needed, and the reverse
net = L.Flatten() >> L.Rescale(1 / 255) >> L.Linear(2)
ss.build(net, (250, 250, 3))  # type: ignore  # expect-error
ss.build(net, "batch 250 250 3")  # type: ignore  # expect-error
ss.build(net, np.zeros((1, 250, 250, 3), np.uint8))  # type: ignore  # expect-error
ss.build(photos, net)  # type: ignore  # expect-error
model = ss.build(net, photos)
data = [(np.zeros((2, 250, 250, 3), np.uint8), np.zeros(2, np.int32))]
ss.fit(net, data, loss=ss.losses.cross_entropy, optimizer=optax.adam(1e-3), epochs=1)  # type: ignore  # expect-error
ss.evaluate(net, data)  # type: ignore  # expect-error
ss.predict(net, data)  # type: ignore  # expect-error
ss.summary(net)  # type: ignore  # expect-error
model[:-1]  # type: ignore  # expect-error
model.named("logo")  # type: ignore  # expect-error

# 5. an optimizer that is not an optax transformation; a loss given by name
ss.fit(model, data, loss=ss.losses.cross_entropy, optimizer="adam", epochs=1)  # type: ignore  # expect-error
ss.fit(model, data, loss=ss.losses.cross_entropy, optimizer=optax.adam, epochs=1)  # type: ignore  # expect-error
ss.fit(model, data, loss="cross_entropy", optimizer=optax.adam(1e-3), epochs=1)  # type: ignore  # expect-error

# and the typed specs take one axis per item
Int32[Array, "batch", "time"]
