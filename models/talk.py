"""The talk's two networks for the logo task: the baseline MLP and the one-conv CNN.

Both start with ``L.Rescale(1 / 255)`` where the talk had ``L.Cast(jnp.float32)``: the same
place in the network and the same change of type (``uint8`` pixels in, ``float32`` out), but
the pixels land in [0, 1]. On raw 0..255 pixels the first logits are in the hundreds and SGD
does not recover (measured: training loss still 9-15 after 20 epochs for MLP 64 and MLP 512
at learning rates from 1e-8 to 1e-7), so the talk's networks as written here train with the
talk's optimizer.
"""

from typing import Any

from jaxtyping import Array, UInt8

from shapesafe import layers as L

PIXELS = L.Rescale(1 / 255)
"""The first layer of both networks: ``uint8`` pixels 0..255 to ``float32`` in [0, 1]."""


def image_spec(size: int = 250) -> Any:
    """The input spec of the logo task: a batch of ``size``x``size`` RGB uint8 photos."""
    return UInt8[Array, f"batch {size} {size} 3"]


def mlp(width: int = 64, *, classes: int = 2) -> L.Sequential:
    """The talk's baseline: ``Flatten >> Rescale(1 / 255) >> Linear(width) >> ReLU >> Linear(classes)``.

    Example:
        >>> import shapesafe as ss
        >>> mlp(64)
        Flatten() >> Rescale(1 / 255) >> Linear(64) >> ReLU() >> Linear(2)
        >>> ss.summary(ss.build(mlp(64), image_spec(64))).output_spec
        'Float32[batch, 2]'
    """
    return L.Flatten() >> PIXELS >> L.Linear(width) >> L.ReLU() >> L.Linear(classes)


def cnn(*, filters: int = 32, hidden: int = 512, classes: int = 2) -> L.Sequential:
    """The talk's convolutional network: one 3x3 convolution, ReLU, 2x2 max pooling, then an MLP.

    ``Rescale(1 / 255) >> Conv2D(filters, (3, 3)) >> ReLU >> MaxPool((2, 2)) >> Flatten
    >> Linear(hidden) >> ReLU >> Linear(classes)``.
    """
    return (
        PIXELS
        >> L.Conv2D(filters, (3, 3))
        >> L.ReLU()
        >> L.MaxPool((2, 2))
        >> L.Flatten()
        >> L.Linear(hidden)
        >> L.ReLU()
        >> L.Linear(classes)
    )
