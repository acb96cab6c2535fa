"""A repeated ``fit`` reads the model's state from its variables and writes it back into them
(``_training._split``), without ``nnx.split``/``nnx.update``, and still trains from whatever
the user did to the model in between: set weights, replaced a variable, froze a layer,
switched its mode."""

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L


def _batches(n: int = 3, dim: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        (rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, dim)).astype(np.float32))
        for _ in range(n)
    ]


SGD = optax.sgd(0.1)  # one object: a second fit reuses the compiled step


def _fit(model: ss.Model, batches: list[Any]) -> None:
    ss.fit(
        model,
        batches,
        loss=ss.losses.mean_squared_error,
        optimizer=SGD,
        epochs=1,
        progress=False,
    )


def _sgd(
    layers: list[tuple[np.ndarray, np.ndarray]], batches: list[Any], lr: float = 0.1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """SGD on the mean squared error of a stack of linear layers, by hand in NumPy (float64)."""
    ws = [(w.astype(np.float64), b.astype(np.float64)) for w, b in layers]
    for x, y in batches:
        acts = [x.astype(np.float64)]
        for w, b in ws:
            acts.append(acts[-1] @ w + b)
        grad = 2 * (acts[-1] - y) / y.size
        new = []
        for (w, b), a in zip(ws[::-1], acts[-2::-1], strict=True):
            new.append((w - lr * a.T @ grad, b - lr * grad.sum(axis=0)))
            grad = grad @ w.T
        ws = new[::-1]
    return ws


def _weights(model: ss.Model, *at: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(model.layers[i].kernel), np.asarray(model.layers[i].bias)) for i in at]


def _assert_close(got: list[Any], want: list[Any]) -> None:
    for (w, b), (ew, eb) in zip(got, want, strict=True):
        np.testing.assert_allclose(w, ew, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, eb, rtol=1e-5, atol=1e-6)


def _model(*net: Any) -> ss.Model:
    stack = net[0]
    for layer in net[1:]:
        stack = stack >> layer
    return ss.build(stack, Float32[Array, "batch 3"], seed=0)


def test_a_second_fit_walks_no_graph_and_writes_into_the_same_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, batches = _model(L.Linear(2)), _batches()
    _fit(model, batches)
    kernel = model.layers[0].kernel
    before = _weights(model, 0)
    walks: list[str] = []
    for name in ("split", "update"):
        real = getattr(nnx, name)
        monkeypatch.setattr(
            nnx, name, lambda *a, _r=real, _n=name, **k: walks.append(_n) or _r(*a, **k)
        )
    _fit(model, batches)
    assert walks == []
    assert model.layers[0].kernel is kernel  # the user's variable, now holding the trained array
    _assert_close(_weights(model, 0), _sgd(before, batches))


def test_weights_set_by_hand_between_fits_are_trained_from() -> None:
    model, batches = _model(L.Linear(2)), _batches()
    _fit(model, batches)
    w, b = np.full((3, 2), 0.5, np.float32), np.array([1.0, -1.0], np.float32)
    model.layers[0].kernel.set_value(jnp.asarray(w))
    model.layers[0].bias.set_value(jnp.asarray(b))
    _fit(model, batches)
    _assert_close(_weights(model, 0), _sgd([(w, b)], batches))


def test_a_variable_replaced_between_fits_is_trained_and_written_back() -> None:
    model, batches = _model(L.Linear(2)), _batches()
    _fit(model, batches)
    w = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
    b = np.asarray(model.layers[0].bias)
    model.layers[0].kernel = nnx.Param(jnp.asarray(w))
    replaced = model.layers[0].kernel
    _fit(model, batches)
    assert model.layers[0].kernel is replaced
    _assert_close(_weights(model, 0), _sgd([(w, b)], batches))


def test_a_layer_frozen_between_fits_stays_as_it_was() -> None:
    model, batches = _model(L.Linear(3), L.Linear(2)), _batches()
    _fit(model, batches)
    frozen, last = _weights(model, 0, 1)
    ss.freeze(model, 0)
    _fit(model, batches)
    np.testing.assert_array_equal(model.layers[0].kernel.get_value(), frozen[0])
    x_hidden = [(x @ frozen[0] + frozen[1], y) for x, y in batches]  # the frozen layer's outputs
    _assert_close(_weights(model, 1), _sgd([last], x_hidden))


def test_two_variables_holding_one_array_are_trained_apart() -> None:
    model, batches = _model(L.Linear(3), L.Linear(3)), _batches(dim=3)
    _fit(model, batches)
    model.layers[1].kernel.set_raw_value(model.layers[0].kernel.get_raw_value())
    start = _weights(model, 0, 1)
    _fit(model, batches)
    _assert_close(_weights(model, 0, 1), _sgd(start, batches))


def test_a_model_switched_to_training_mode_between_fits_is_left_for_inference() -> None:
    model = _model(L.Linear(2), L.Dropout(0.5))
    batches = _batches()
    _fit(model, batches)
    model.train()
    _fit(model, batches)
    x = jnp.asarray(batches[0][0])
    np.testing.assert_array_equal(model(x), model(x))  # Dropout off: the same outputs
    w, b = _weights(model, 0)[0]
    np.testing.assert_allclose(model(x), batches[0][0] @ w + b, rtol=1e-5, atol=1e-6)
