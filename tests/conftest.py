"""Test settings and shared fixtures.

Strict promotion makes a silent broadcast or upcast fail a test. jaxtyping+beartype
checking of ``shapesafe`` and ``models`` is on through ``--jaxtyping-packages`` in
``pyproject.toml``.
"""

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


class Batches:
    """Re-iterable ``(x, y)`` batches over arrays, in a fixed order (the last one may be short)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int):
        self.x, self.y, self.size = x, y, size

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(0, len(self.x), self.size):
            yield self.x[i:i + self.size], self.y[i:i + self.size]

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's real 8x8 handwritten digits, scaled to [0, 1], split 1500 / 297."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1500], y[:1500], x[1500:], y[1500:]
