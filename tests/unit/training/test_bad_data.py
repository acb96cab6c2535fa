"""Training data that used to fail raw or silently: NaN targets, an empty batch, out-of-range
labels under jit (a documented NaN, never a finite wrong loss)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import Reader
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


def _linear_batches(n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 1)).astype(np.float32))
        for _ in range(n)
    ]


def _sgd_reference(
    w: np.ndarray, b: np.ndarray, batches: list[tuple[np.ndarray, np.ndarray]], lr: float
) -> tuple[np.ndarray, np.ndarray]:
    """Plain SGD on the mean squared error of ``x @ w + b``, by hand in NumPy (float64)."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    for x, y in batches:
        err = x @ w + b - y  # (4, 1)
        w = w - lr * 2 * x.T @ err / err.size
        b = b - lr * 2 * err.sum(axis=0) / err.size
    return w, b


def _fit_sgd(model: ss.Model, batches: list, steps_per_call: int = 1, **kw) -> ss.History:  # type: ignore[type-arg]
    return ss.fit(
        model,
        batches,
        loss=ss.losses.mean_squared_error,
        optimizer=optax.sgd(0.1),
        epochs=1,
        steps_per_call=steps_per_call,
        progress=False,
        **kw,
    )


def _with_nan(where: str, at: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    batches = _linear_batches(6, np.random.default_rng(0))
    x_bad, y_bad = batches[at][0].copy(), batches[at][1].copy()
    (x_bad if where == "inputs" else y_bad)[2, 0] = np.nan
    batches[at] = (x_bad, y_bad)
    return batches


_NAN_IN_BATCH_3 = (
    r"^batch 3 of epoch 1 has NaN or infinite values in its {where}; clean the data "
    r"\(nothing was trained on this batch\)\.$"
)


@pytest.mark.parametrize("steps_per_call", [1, 2])
@pytest.mark.parametrize("where", ["inputs", "targets"])
def test_a_later_bad_host_batch_is_refused_as_it_is_read(where: str, steps_per_call: int) -> None:
    """NumPy batches read one by one are checked on the host as they are read: fit stops at
    the bad batch before it trains, with the batches before it trained (plain SGD by hand);
    a batch waiting to be stacked with it for ``steps_per_call=2`` does not train either."""
    batches = _with_nan(where)
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    with pytest.raises(ss.ShapesafeError, match=_NAN_IN_BATCH_3.format(where=where)):
        _fit_sgd(model, Reader(batches), steps_per_call)
    trained = batches[:3] if steps_per_call == 1 else batches[:2]
    w, b = _sgd_reference(w0, b0, trained, 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps_per_call", [1, 2])
@pytest.mark.parametrize("kind", ["jax", "numpy list"])
@pytest.mark.parametrize("where", ["inputs", "targets"])
def test_a_later_bad_device_batch_is_found_in_the_step_and_not_trained_on(
    where: str, kind: str, steps_per_call: int
) -> None:
    """Batches already on the device (JAX arrays), and a list of NumPy batches (copied to the
    device whole), are checked inside the jitted step: the batch with a NaN applies no
    update, the others train (weights as plain SGD without it, by hand), and fit raises the
    host check's message naming that batch once the step's log is read."""
    batches = _with_nan(where)
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches] if kind == "jax" else batches
    with pytest.raises(ss.ShapesafeError, match=_NAN_IN_BATCH_3.format(where=where)):
        _fit_sgd(model, data, steps_per_call)
    w, b = _sgd_reference(w0, b0, batches[:3] + batches[4:], 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-5, atol=1e-6)


def test_a_short_last_device_batch_is_still_checked_though_padding_copies_it() -> None:
    """A short batch is padded on the host, which turns it into NumPy; its values are still
    checked (by the step, as it came from the device), and the batches before it trained."""
    batches = _linear_batches(4, np.random.default_rng(3))
    x_short, y_short = batches[3][0][:2].copy(), batches[3][1][:2].copy()
    x_short[1, 2] = np.nan
    batches[3] = (x_short, y_short)
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    on_device = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches]
    with pytest.raises(
        ss.ShapesafeError, match=r"^batch 3 of epoch 1 has NaN or infinite values in its inputs"
    ):
        _fit_sgd(model, on_device)
    w, b = _sgd_reference(w0, b0, batches[:3], 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("on_device", [False, True])
def test_a_later_out_of_range_label_names_the_label_and_the_batch(on_device: bool) -> None:
    """The same message from the host's check of a NumPy batch and the step's of a JAX one."""
    rng = np.random.default_rng(1)
    batches = [
        (rng.normal(size=(4, 4, 3)).astype(np.float32), rng.integers(0, 3, 4).astype(np.int32))
        for _ in range(4)
    ]
    batches[2][1][[1, 3]] = [5, 3]
    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches] if on_device else batches
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^batch 2 of epoch 1: label 5 is out of range for the model's 3 classes "
        r"\(labels must be 0\.\.2; 2 of 4 are outside\)\. Fix the labels, or build the model "
        r"with more output classes\.$",
    ):
        ss.fit(
            _model(3),
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )


def test_a_padded_slot_never_counts_as_a_bad_value() -> None:
    """A short last batch is padded (masked); a NaN target or a wrong label in a slot the
    mask marks as padding is not the data's fault and trains."""
    x = np.ones((4, 4, 3), np.float32)
    y = np.array([0, 1, 2, 9], np.int32)  # 9 is in a masked slot
    mask = np.array([True, True, True, False])
    batches = [(x, np.array([0, 1, 2, 0], np.int32), np.ones(4, bool)), (x, y, mask)]
    history = ss.fit(
        _model(3),
        batches,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        progress=False,
    )
    assert len(history.steps) == 2 and np.isfinite(history.steps).all()


class _Steps(ss.callbacks.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, run: ss.Run, step: int, loss: float | None) -> None:
        self.steps = step


def test_a_bad_device_batch_is_reported_within_two_chunks_of_steps_not_at_the_epochs_end() -> None:
    batches = _linear_batches(1000, np.random.default_rng(2))
    batches[5][0][0, 0] = np.inf
    batches = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches]
    seen = _Steps()
    with pytest.raises(ss.ShapesafeError, match=r"^batch 5 of epoch 1 has NaN or infinite"):
        ss.fit(
            ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0),
            batches,
            loss=ss.losses.mean_squared_error,
            optimizer=optax.sgd(0.1),
            epochs=1,
            callbacks=[seen],
            progress=False,
        )
    assert 5 < seen.steps <= 5 + 2 * 64 + 1  # read back with the losses, long before step 1000
