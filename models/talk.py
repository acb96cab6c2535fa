"""The talk's two networks for the logo task: the baseline MLP and the one-conv CNN."""

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, UInt8

from shapesafe import layers as L


def image_spec(size: int = 250) -> Any:
    """The input spec of the logo task: a batch of ``size``x``size`` RGB uint8 photos."""
    return UInt8[Array, f"batch {size} {size} 3"]


def mlp(width: int = 64, *, classes: int = 2) -> L.Sequential:
    """The talk's baseline: ``Flatten >> Cast >> Linear(width) >> ReLU >> Linear(classes)``."""
    return L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(width) >> L.ReLU() >> L.Linear(classes)


def cnn(*, filters: int = 32, hidden: int = 512, classes: int = 2) -> L.Sequential:
    """The talk's convolutional network: one 3x3 convolution, ReLU, 2x2 max pooling, then an MLP."""
    return (
        L.Cast(jnp.float32)
        >> L.Conv2D(filters, (3, 3))
        >> L.ReLU()
        >> L.MaxPool((2, 2))
        >> L.Flatten()
        >> L.Linear(hidden)
        >> L.ReLU()
        >> L.Linear(classes)
    )
