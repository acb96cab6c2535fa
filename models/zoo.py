"""The zoo's registry: every model of ``models/``, small, with an input spec and a test batch.

``tests/unit/models/test_zoo.py`` runs one battery over ``REGISTRY`` (builds, output spec, jit equals
eager, finite gradients, one optimizer step lowers the loss, a wrong input raises
``ShapeError``, compiles once). Adding a model adds one entry: a name and a function that
returns ``entry(blueprint, spec, classes)``. Entries are sized for a fast test, not for
accuracy (e.g. 16 px images); the model functions themselves take the real sizes.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from shapesafe import layers as L

from . import resnet, rnn, talk


class ZooModel(NamedTuple):
    """A registry entry, made: the blueprint, its input spec, the number of classes, and a
    plain-SGD learning rate at which one step on a random batch lowers the loss.

    ``batch(n, seed)`` makes a fixed random batch ``(x, y)`` for it: ``x`` of the spec's
    dtype and shape with ``batch = n`` (uniform pixels 0..255 for ``uint8``, uniform [0, 1)
    for floats), ``y`` int32 labels in ``0..classes-1``.
    """

    blueprint: L.Blueprint
    spec: Any
    classes: int
    learning_rate: float = 1e-2

    def batch(self, n: int = 8, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return random_batch(self.spec, self.classes, n, seed=seed)


def random_batch(
    spec: Any, classes: int, n: int = 8, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``(x, y)`` batch of ``n`` examples for an input spec whose first dimension is ``batch``.

    Example:
        >>> from jaxtyping import Array, UInt8
        >>> x, y = random_batch(UInt8[Array, "batch 4 4 3"], classes=2, n=5)
        >>> x.shape, x.dtype, y.shape, y.dtype
        ((5, 4, 4, 3), dtype('uint8'), (5,), dtype('int32'))
    """
    first, *rest = spec.dim_str.split()
    if first != "batch" or not all(d.isdigit() for d in rest) or len(spec.dtypes) != 1:
        raise ValueError(
            f"random_batch: the spec needs one dtype, a leading batch dimension and fixed sizes "
            f"after it, got {spec.__name__}."
        )
    shape = (n, *(int(d) for d in rest))
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.dtypes[0])
    if np.issubdtype(dtype, np.integer):
        hi = min(int(np.iinfo(dtype).max), 255)
        x = rng.integers(0, hi + 1, shape).astype(dtype)
    else:
        x = rng.random(shape).astype(dtype)
    y = rng.integers(0, classes, (n,)).astype(np.int32)
    return x, y


def entry(
    blueprint: L.Blueprint, spec: Any, classes: int, *, learning_rate: float = 1e-2
) -> ZooModel:
    """A ``ZooModel`` from what a model function returns (``entry(*rnn.classifier(), 10)``)."""
    return ZooModel(blueprint, spec, classes, learning_rate)


REGISTRY: dict[str, Callable[[], ZooModel]] = {
    "mlp": lambda: entry(talk.mlp(16), talk.image_spec(16), 2),
    "cnn": lambda: entry(talk.cnn(filters=4, hidden=16), talk.image_spec(16), 2),
    "lstm": lambda: entry(*rnn.classifier(L.LSTM, hidden=16), rnn.CLASSES),
    "gru": lambda: entry(*rnn.classifier(L.GRU, hidden=16), rnn.CLASSES),
    "resnet_small": lambda: entry(*resnet.resnet_small(3, width=4, size=16), 3),
}
"""Name -> a function making the (small) model. One line per model."""
