"""Training data that used to fail raw or silently: NaN targets, an empty batch, out-of-range
labels under jit (a documented NaN, never a finite wrong loss)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L


def _model(out: int) -> ss.Model:
    return ss.build(L.Flatten() >> L.Linear(out), Float32[Array, "batch 4 3"], seed=0)


def test_nan_in_targets_stops_with_the_message_of_nan_in_inputs() -> None:
    x = np.ones((4, 4, 3), np.float32)
    y = np.ones((4, 1), np.float32)
    y[1, 0] = np.nan
    fit = {"loss": ss.losses.mean_squared_error, "optimizer": optax.sgd(0.1), "epochs": 1}
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^batch 0 of epoch 1 has NaN or infinite values in its targets; clean the data "
        r"\(nothing was trained on this batch\)\.",
    ):
        ss.fit(_model(1), [(x, y)], **fit)
    x_bad = x.copy()
    x_bad[0, 0, 0] = np.inf
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^batch 0 of epoch 1 has NaN or infinite values in its inputs; clean the data",
    ):
        ss.fit(_model(1), [(x_bad, np.ones((4, 1), np.float32))], **fit)


def test_a_zero_example_batch_into_fit() -> None:
    x, y = np.ones((0, 4, 3), np.float32), np.zeros((0,), np.int32)
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^batch 0 of epoch 1 holds no examples \(its inputs are Float32\[0, 4, 3\]\); an "
        r"empty batch has nothing to train on\. Drop empty batches from the data",
    ):  # before: ZeroDivisionError in Flatten
        ss.fit(
            _model(2), [(x, y)], loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.1), epochs=1
        )


@pytest.mark.parametrize("label", [3, 7, -1], ids=["classes", "beyond", "negative"])
def test_cross_entropy_under_jit_is_nan_for_an_out_of_range_label(label: int) -> None:
    logits = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    labels = jnp.array([0, label], jnp.int32)
    loss = jax.jit(ss.losses.cross_entropy)
    assert np.isnan(float(loss(logits, labels)))  # before: -1 wrapped to class 2, a finite loss
    smoothed = jax.jit(lambda a, b: ss.losses.cross_entropy(a, b, label_smoothing=0.1))
    assert np.isnan(float(smoothed(logits, labels)))  # before: a zero one-hot, a finite loss
    # a masked (padded) slot does not count, and its gradient is zero, not NaN
    mask = jnp.array([True, False])
    assert float(loss(logits, labels, mask=mask)) == pytest.approx(np.log(3.0), rel=1e-6)
    grad = jax.jit(jax.grad(lambda a: ss.losses.cross_entropy(a, labels, mask=mask)))(logits)
    np.testing.assert_allclose(np.asarray(grad), [[-2 / 3, 1 / 3, 1 / 3], [0, 0, 0]], rtol=1e-6)
    with pytest.raises(ValueError, match=rf"label {label} is out of range for 3 classes"):
        ss.losses.cross_entropy(logits, labels)  # eagerly it raises
