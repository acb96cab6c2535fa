"""Checked by pyright and mypy, never executed: the public API's types as a user sees them."""

import jax.numpy as jnp
from jaxtyping import Array, UInt8

import shapesafe as ss
from shapesafe import layers as L

net: L.Sequential = L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(64) >> L.ReLU() >> L.Linear(2)
head: L.Sequential = net[:-1]
first: L.Blueprint = net[0]
model: ss.Model = ss.build(net, UInt8[Array, "batch 250 250 3"], seed=0)
table: str = str(ss.summary(model))
