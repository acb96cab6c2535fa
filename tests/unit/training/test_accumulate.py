"""``fit(..., accumulate=k)``: k batches' mean gradient, one update, as one k-times-larger batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

NET = L.Linear(16) >> L.ReLU() >> L.Linear(3)
SPEC = Float32[Array, "batch 5"]


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


def _reference(x: np.ndarray, y: np.ndarray, big: int, tx: optax.GradientTransformation) -> list:
    """Plain optax on the big batches: mean softmax cross-entropy, its gradient, one update."""
    graph, params, rest = nnx.split(ss.build(NET, SPEC, seed=0), nnx.Param, ...)

    def mean_loss(p: nnx.State, xb: jax.Array, yb: jax.Array) -> jax.Array:
        logits = nnx.merge(graph, p, rest)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def update(p: nnx.State, state: optax.OptState, xb: jax.Array, yb: jax.Array) -> tuple:
        grads = jax.grad(mean_loss)(p, xb, yb)
        with jax.numpy_dtype_promotion("standard"):
            updates, state = tx.update(grads, state, p)
            return optax.apply_updates(p, updates), state

    state = tx.init(params)
    for i in range(0, len(x), big):
        params, state = update(
            params, state, jnp.asarray(x[i : i + big]), jnp.asarray(y[i : i + big])
        )
    return jax.tree.leaves(params)


@pytest.mark.parametrize("k", [4])
def test_accumulated_updates_equal_one_larger_batch(k: int) -> None:
    x, y = _data(16 * k * 2)  # two updates
    model = ss.build(NET, SPEC, seed=0)
    history = ss.fit(
        model,
        [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16)],
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(0.05),
        epochs=1,
        accumulate=k,
        progress=False,
    )
    assert len(history.steps) == 2 * k  # steps count batches
    want = _reference(x, y, 16 * k, optax.adam(0.05))
    got = jax.tree.leaves(nnx.state(model, nnx.Param))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # and it is not the same as updating after every batch
    unaccumulated = _reference(x, y, 16, optax.adam(0.05))
    assert not np.allclose(np.asarray(got[1]), np.asarray(unaccumulated[1]), atol=1e-4)


@pytest.mark.parametrize("bad", [0, -1, True])
def test_accumulate_must_be_a_positive_integer(bad: object) -> None:
    model = ss.build(NET, SPEC, seed=0)
    with pytest.raises(
        ValueError, match=rf"^fit: accumulate must be a positive integer, got {bad!r}\.$"
    ):
        ss.fit(
            model,
            [_data(4)],
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            accumulate=bad,
            progress=False,
        )  # type: ignore[arg-type]
