"""A repeated ``fit`` / ``evaluate`` / ``predict`` reuses its compiled steps; what changes the
compiled program (another optimizer or loss object, a new batch shape, freezing) compiles
again. Compilations are counted with JAX's own log (``jax.log_compiles``)."""

import logging
from typing import Any

import jax
import numpy as np
import optax
import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import from_arrays

SPEC = Float32[Array, "batch 8"]


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32)


class Compiles:
    """The names of the programs XLA compiles while the block runs (JAX logs each one)."""

    def __init__(self, caplog: pytest.LogCaptureFixture):
        self.caplog = caplog

    def __enter__(self) -> list[str]:
        self.names: list[str] = []
        self.caplog.clear()
        self.ctx = jax.log_compiles()
        self.ctx.__enter__()
        self.caplog.set_level(logging.WARNING, logger="jax")
        return self.names

    def __exit__(self, *exc: object) -> None:
        self.ctx.__exit__(None, None, None)
        self.names.extend(
            r.getMessage() for r in self.caplog.records if "Compiling" in r.getMessage()
        )


def _fit(model: ss.Model, ds, tx, loss=ss.losses.cross_entropy, **kw):  # type: ignore[no-untyped-def]
    return ss.fit(model, ds, loss=loss, optimizer=tx, epochs=1, progress=False, **kw)


def test_a_second_fit_with_the_same_objects_compiles_nothing(caplog) -> None:  # type: ignore[no-untyped-def]
    x, y = _data()
    ds = from_arrays({"x": x, "label": y}).shuffle(seed=0).batch(8)
    model = ss.build(L.Linear(16) >> L.ReLU() >> L.Linear(2), SPEC, seed=0)
    tx = optax.adam(1e-2)
    with Compiles(caplog) as first:
        _fit(model, ds, tx, metrics=[ss.metrics.accuracy], eval_data=ds)
    assert any("train" in n for n in first), first  # the log names the program
    first_layer: Any = model.layers[0]
    before = np.asarray(first_layer.kernel[...])
    with Compiles(caplog) as second:
        history = _fit(model, ds, tx, metrics=[ss.metrics.accuracy], eval_data=ds)
    assert second == []
    # it did train: the weights moved on from where the first fit left them
    assert not np.array_equal(before, np.asarray(first_layer.kernel[...]))
    assert len(history.steps) == 5
    with Compiles(caplog) as evals:
        ss.evaluate(model, ds, metrics=[ss.metrics.accuracy], loss=ss.losses.cross_entropy)
        ss.evaluate(model, ds, metrics=[ss.metrics.accuracy], loss=ss.losses.cross_entropy)
    assert len(evals) <= 1  # at most the first evaluate's own program
    with Compiles(caplog) as preds:
        ss.predict(model, [x[:8], x[8:16]])
    with Compiles(caplog) as again:
        out = ss.predict(model, [x[:8], x[8:16]])
    assert again == [] and len(preds) <= 1
    # predict is still the model: an independent NumPy forward pass on the trained weights
    hidden, head = first_layer, model.layers[2]
    w1, b1 = np.asarray(hidden.kernel[...]), np.asarray(hidden.bias[...])
    head_any: Any = head
    w2, b2 = np.asarray(head_any.kernel[...]), np.asarray(head_any.bias[...])
    ref = np.maximum(x[:16] @ w1 + b1, 0) @ w2 + b2
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_what_changes_the_program_compiles_again_and_only_that(caplog) -> None:  # type: ignore[no-untyped-def]
    x, y = _data()
    model = ss.build(L.Linear(16) >> L.ReLU() >> L.Linear(2), SPEC, seed=0)
    tx = optax.adam(1e-2)
    by8 = from_arrays({"x": x, "label": y}).batch(8)
    _fit(model, by8, tx)
    with Compiles(caplog) as new_optimizer:
        _fit(model, by8, optax.adam(1e-2))  # another optimizer object: a new program
    assert any("train" in n for n in new_optimizer)
    with Compiles(caplog) as new_shape:
        _fit(model, from_arrays({"x": x, "label": y}).batch(10), tx)
    assert any("train" in n for n in new_shape)
    with Compiles(caplog) as old_shape:  # the batch of 8 is still compiled for tx
        _fit(model, by8, tx)
    assert old_shape == []
    ss.freeze(model, 0)
    with Compiles(caplog) as frozen:
        _fit(model, by8, tx)
    assert any("train" in n for n in frozen)


def test_steps_per_call_reuses_its_scan_too(caplog) -> None:  # type: ignore[no-untyped-def]
    x, y = _data(48)
    model = ss.build(L.Linear(2), SPEC, seed=0)
    tx = optax.sgd(0.1)
    ds = from_arrays({"x": x, "label": y}).batch(8)
    _fit(model, ds, tx, steps_per_call=3)
    with Compiles(caplog) as second:
        history = _fit(model, ds, tx, steps_per_call=3)
    assert second == [] and len(history.steps) == 6


def test_lists_of_any_length_train_on_one_compiled_step(caplog) -> None:  # type: ignore[no-untyped-def]
    """A list of NumPy batches is copied to the device in chunks of 64 batches, the last one
    ending at the list's end: lists of 70, 75 and 130 batches, and a second fit, compile one
    train step; short lists one per power of two (3 and 4 batches: one)."""
    x, y = _data(8 * 130)
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, len(x), 8)]
    model = ss.build(L.Linear(2), SPEC, seed=0)
    tx = optax.sgd(0.1)
    with Compiles(caplog) as long:
        for n in (70, 75, 130, 70):
            assert len(_fit(model, batches[:n], tx).steps) == n
    assert sum("train_step" in n for n in long) == 1, long
    with Compiles(caplog) as short:
        for n in (3, 4, 3):
            assert len(_fit(model, batches[:n], tx).steps) == n
    assert sum("train_step" in n for n in short) == 1, short


def test_step_losses_read_back_in_chunks_are_each_steps_loss_in_order() -> None:
    """More steps than one read-back chunk (64): ``history.steps`` (read back in stacked chunks)
    equals the losses a callback reads from each step as it ends."""
    x, y = _data(8 * 150)
    model = ss.build(L.Linear(2), SPEC, seed=0)
    seen: list[float] = []

    class Every(ss.callbacks.Callback):
        wants_step_loss = True

        def on_step_end(self, run: Any, step: int, loss: float | None) -> None:
            assert loss is not None
            seen.append(loss)

    history = _fit(
        model, from_arrays({"x": x, "label": y}).batch(8), optax.sgd(0.05), callbacks=[Every()]
    )
    assert len(history.steps) == len(seen) == 150
    np.testing.assert_array_equal(np.asarray(history.steps), np.asarray(seen))
    assert seen[0] != seen[-1]  # it trained: the losses are not one repeated value
