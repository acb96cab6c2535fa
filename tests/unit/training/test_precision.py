"""``fit(..., precision="mixed_bfloat16")``: float32 parameters, a bfloat16 forward, a float32 loss."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jaxtyping import Array, Float32, Int32, UInt8
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._training._engine import Engine
from shapesafe.data import from_arrays
from shapesafe.layers._forward import Forward
from shapesafe.models import rnn

NET = L.Linear(64) >> L.ReLU() >> L.Linear(10)
SPEC = Float32[Array, "batch 64"]


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype(np.float32), y.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _accuracy(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Test accuracy by NumPy argmax over the model's float32 logits."""
    logits = np.asarray(model(jnp.asarray(x)))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def test_mixed_bfloat16_reaches_the_float32_accuracy_on_digits() -> None:
    x, y, x_test, y_test = _digits()
    scores = {}
    for precision in ("float32", "mixed_bfloat16"):
        model = ss.build(NET, SPEC, seed=0)
        ss.fit(
            model,
            from_arrays({"x": x, "label": y}).shuffle(seed=0).batch(64),
            loss=ss.losses.cross_entropy,
            optimizer=optax.adam(0.01),
            epochs=5,
            precision=precision,
            progress=False,
        )
        dtypes = {a.dtype for a in jax.tree.leaves(nnx.state(model, nnx.Param))}
        assert dtypes == {jnp.dtype(jnp.float32)}  # the parameters stay float32
        scores[precision] = _accuracy(model, x_test, y_test)
    assert scores["float32"] > 0.9, scores
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) <= 0.01


def _train_step(
    precision: str, net: Any = NET, spec: Any = SPEC, x: Any = None
) -> tuple[jax.stages.Lowered, Any]:
    """The SGD training step of ``net`` built for ``spec``, lowered for a batch of 8 ``x``
    (zeros of 64 features by default) in ``precision``, and the abstract loss it computes
    (the step writes it into the step log as float32 bits, so it is read off the pure step)."""
    engine = Engine(
        ss.build(net, spec, seed=0),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        metrics=(),
        forward=Forward.of(False, precision, where="test"),
    )
    x = jnp.zeros((8, 64), jnp.float32) if x is None else x
    y, mask = jnp.zeros((8,), jnp.int32), jnp.ones((8,), bool)
    log = np.zeros((65, 5), np.int32)
    lowered = engine.programs.train().lower(engine.state, (), log, x, y, mask)
    trees = (engine.params, engine.rest, engine.opt_state, ())
    out = jax.eval_shape(engine.programs._train_step, *trees, x, y, mask)
    return lowered, out[4]  # (params, rest, opt_state, metric states, loss, value-check flags)


def test_the_mixed_step_multiplies_in_bfloat16_and_returns_a_float32_loss() -> None:
    mixed, loss = _train_step("mixed_bfloat16")
    dots = [line for line in mixed.as_text().splitlines() if "dot_general" in line]
    assert len(dots) >= 4  # two forward matmuls, their kernels' gradients (and more)
    assert all("bf16" in line and "f32>" not in line.split("->")[-1] for line in dots)
    assert "bf16" not in _train_step("float32")[0].as_text()
    state, _, _ = mixed.out_info  # (new state, metric states, step log)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    assert {a.dtype for a in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}


def test_precision_is_part_of_the_program_key_and_checked() -> None:
    model = ss.build(NET, SPEC, seed=0)
    kw = dict(loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.1), metrics=())
    plain = Engine(model, forward=Forward.of(False, "float32", where="t"), **kw)  # type: ignore[arg-type]
    mixed = Engine(model, forward=Forward.of(False, "mixed_bfloat16", where="t"), **kw)  # type: ignore[arg-type]
    assert plain.programs is Engine(model, **kw).programs  # type: ignore[arg-type]
    assert mixed.programs is not plain.programs
    with pytest.raises(
        ValueError, match=r"fit: precision must be one of 'float32', 'mixed_bfloat16', got 'bf16'"
    ):
        ss.fit(
            model,
            [(np.zeros((2, 64), np.float32), np.zeros((2,), np.int32))],
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            precision="bf16",
            progress=False,
        )


def test_mixed_bfloat16_runs_nested_models_batch_norm_and_casts() -> None:
    """A ``Cast(float32)`` inside, a ``Residual`` block (a nested model, checked against its
    float32 specs) and BatchNorm statistics (kept float32): the mixed losses follow the float32
    ones within bfloat16 rounding, and the state keeps its dtypes."""
    net = (
        L.Cast(jnp.float32)
        >> L.Conv2D(4, (3, 3))
        >> L.BatchNorm()
        >> L.ReLU()
        >> L.Residual(L.Conv2D(4, (3, 3), padding="same") >> L.ReLU())
        >> L.Flatten()
        >> L.Linear(3)
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (32, 6, 6, 1)).astype(np.uint8)
    y = rng.integers(0, 3, 32).astype(np.int32)
    runs = {}
    for precision in ("float32", "mixed_bfloat16"):
        model = ss.build(net, UInt8[Array, "batch 6 6 1"], seed=0)
        history = ss.fit(
            model,
            [(x[:16], y[:16]), (x[16:], y[16:])],
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.05),
            epochs=2,
            precision=precision,
            progress=False,
        )
        dtypes = {a.dtype for a in jax.tree.leaves(nnx.state(model, nnx.Not(nnx.RngState)))}
        assert dtypes == {jnp.dtype(jnp.float32)}
        runs[precision] = history.steps
    np.testing.assert_allclose(runs["mixed_bfloat16"], runs["float32"], rtol=0.02)


# -- evaluation and prediction -------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_trained() -> tuple[ss.Model, ss.History, np.ndarray, np.ndarray]:
    """NET trained on digits with precision="mixed_bfloat16" (``fit`` evaluating the test
    split each epoch), and that test split."""
    x, y, x_test, y_test = _digits()
    model = ss.build(NET, SPEC, seed=0)
    history = ss.fit(
        model,
        from_arrays({"x": x, "label": y}).shuffle(seed=0).batch(64),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(0.01),
        epochs=3,
        eval_data=from_arrays({"x": x_test, "label": y_test}).batch(100),
        precision="mixed_bfloat16",
        progress=False,
    )
    return model, history, x_test, y_test


def _weights(model: ss.Model) -> list[np.ndarray]:
    """NET's (kernel, bias, kernel, bias), float32 as trained."""
    return [
        np.asarray(getattr(model.layers[i], n)[...]) for i in (0, 2) for n in ("kernel", "bias")
    ]


def _numpy_logits(model: ss.Model, x: np.ndarray) -> np.ndarray:
    """NET's forward in float64 NumPy."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in _weights(model))
    return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2


@jax.jit
def _bfloat16_forward(
    w1: jax.Array, b1: jax.Array, w2: jax.Array, b2: jax.Array, x: jax.Array
) -> jax.Array:
    """NET's forward, every operand bfloat16, the logits made float32. Compiled, as a JAX user
    runs it: XLA then keeps the excess precision of its fused float32 arithmetic on CPU
    (``xla_allow_excess_precision``), so eager op-by-op rounding would differ."""
    w1, b1, w2, b2, x = (a.astype(jnp.bfloat16) for a in (w1, b1, w2, b2, x))
    h = jax.nn.relu(x @ w1 + b1[None])
    return (h @ w2 + b2[None]).astype(jnp.float32)


def _bfloat16_logits(model: ss.Model, x: np.ndarray) -> np.ndarray:
    """NET's forward in plain JAX in bfloat16 (``_bfloat16_forward``)."""
    return np.asarray(_bfloat16_forward(*map(jnp.asarray, (*_weights(model), x))))


def _numpy_cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_evaluate_and_predict_after_mixed_training_run_the_float32_weights_as_built(
    mixed_trained: tuple[ss.Model, ss.History, np.ndarray, np.ndarray],
) -> None:
    """The model keeps no dtype policy: after mixed training, ``predict`` and ``evaluate``
    compute in float32 from the float32 weights, as a NumPy forward of those weights does."""
    model, _, x_test, y_test = mixed_trained
    want = _numpy_logits(model, x_test)
    got = ss.predict(model, x_test, batch_size=128)
    assert got.dtype == np.float32 and got.shape == (len(x_test), 10)
    np.testing.assert_allclose(got, want, atol=1e-5)
    logs = ss.evaluate(
        model,
        (x_test, y_test),
        metrics=[ss.metrics.accuracy],
        loss=ss.losses.cross_entropy,
        batch_size=128,
    )
    assert logs["accuracy"] == pytest.approx(np.mean(np.argmax(want, -1) == y_test), abs=1e-7)
    assert logs["loss"] == pytest.approx(_numpy_cross_entropy(want, y_test), abs=1e-5)


def test_predict_and_evaluate_with_mixed_precision_compute_in_bfloat16(
    mixed_trained: tuple[ss.Model, ss.History, np.ndarray, np.ndarray],
) -> None:
    """``precision="mixed_bfloat16"`` at inference: the bfloat16 forward of plain JAX, the
    outputs float32, visibly not the float32 forward."""
    model, _, x_test, y_test = mixed_trained
    want = _bfloat16_logits(model, x_test)
    got = ss.predict(model, x_test, batch_size=128, precision="mixed_bfloat16")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - _numpy_logits(model, x_test)).max() > 1e-3  # bfloat16 rounding shows
    logs = ss.evaluate(
        model,
        (x_test, y_test),
        metrics=[ss.metrics.accuracy],
        loss=ss.losses.cross_entropy,
        batch_size=128,
        precision="mixed_bfloat16",
    )
    assert logs["accuracy"] == pytest.approx(np.mean(np.argmax(want, -1) == y_test), abs=1e-7)
    assert logs["loss"] == pytest.approx(_numpy_cross_entropy(want, y_test), abs=1e-5)


def test_fits_own_evaluation_runs_in_its_precision(
    mixed_trained: tuple[ss.Model, ss.History, np.ndarray, np.ndarray],
) -> None:
    """``fit``'s evaluation of ``eval_data`` during mixed training (as Keras's policy does):
    the last epoch's ``eval_loss`` is the bfloat16 forward's loss of the final weights."""
    model, history, x_test, y_test = mixed_trained
    want = _numpy_cross_entropy(_bfloat16_logits(model, x_test), y_test)
    assert history["eval_loss"][-1] == pytest.approx(want, abs=1e-6)  # measured: 2e-9 apart
    as_built = _numpy_cross_entropy(_numpy_logits(model, x_test), y_test)
    assert abs(history["eval_loss"][-1] - as_built) > 1e-5  # not the float32 loss (5e-5 off)


def test_mixed_inference_programs_multiply_in_bfloat16_and_return_float32() -> None:
    model = ss.build(NET, SPEC, seed=0)
    engine = Engine(
        model,
        loss=ss.losses.cross_entropy,
        optimizer=None,
        metrics=(ss.metrics.accuracy,),
        forward=Forward.of(False, "mixed_bfloat16", where="test"),
    )
    state = (engine.state.params, engine.state.rest)
    x, y = jnp.zeros((8, 64), jnp.float32), jnp.zeros((8,), jnp.int32)
    predict = engine.programs.predict.lower(state, x)
    evaluate = engine.programs.eval.lower(state, engine.init_metrics(), x, y, jnp.ones(8, bool))
    for lowered in (predict, evaluate):
        dots = [line for line in lowered.as_text().splitlines() if "dot_general" in line]
        assert len(dots) == 2  # the two Linear layers
        assert all("bf16" in line and "f32>" not in line.split("->")[-1] for line in dots)
    assert predict.out_info.dtype == jnp.float32 and predict.out_info.shape == (8, 10)
    _, loss_sum, count = evaluate.out_info
    assert loss_sum.dtype == count.dtype == jnp.float32


def test_evaluate_and_predict_refuse_an_unknown_precision() -> None:
    model = ss.build(NET, SPEC, seed=0)
    x, y = np.zeros((4, 64), np.float32), np.zeros((4,), np.int32)
    with pytest.raises(
        ValueError,
        match=r"evaluate: precision must be one of 'float32', 'mixed_bfloat16', got 'bfloat16'",
    ):
        ss.evaluate(model, (x, y), metrics=[ss.metrics.accuracy], precision="bfloat16")
    with pytest.raises(
        ValueError,
        match=r"predict: precision must be one of 'float32', 'mixed_bfloat16', got 'fp16'",
    ):
        ss.predict(model, x, precision="fp16")


# -- token ids and recurrent layers --------------------------------------------------------


def _train_and_score(
    net: Any, spec: Any, data: tuple[np.ndarray, ...], precision: str, epochs: int
) -> tuple[ss.Model, list[float], float]:
    """Train with Adam; the per-epoch losses and the NumPy test accuracy of the float32 model."""
    x, y, x_test, y_test = data
    model = ss.build(net, spec, seed=0)
    history = ss.fit(
        model,
        from_arrays({"x": x, "label": y}).shuffle(seed=0).batch(50),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(0.01),
        epochs=epochs,
        precision=precision,
        progress=False,
    )
    dtypes = {a.dtype for a in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.float32)}  # the parameters stay float32
    return model, history["loss"], _accuracy(model, x_test, y_test)


def _parity_tokens() -> tuple[np.ndarray, ...]:
    """Five ids in 256..511 per example, the label the parity of the first. bfloat16 holds
    only the even integers there (8 significant bits), so ids cast to it lose the label."""
    rng = np.random.default_rng(0)
    ids = rng.integers(256, 512, (3000, 5)).astype(np.int32)
    labels = (ids[:, 0] % 2).astype(np.int32)
    assert np.all(np.asarray(jnp.asarray(ids[:, 0], jnp.bfloat16), np.int64) % 2 == 0)
    return ids[:2500], labels[:2500], ids[2500:], labels[2500:]


@pytest.mark.parametrize(
    "net",
    [
        L.Embedding(512, 8) >> L.Flatten() >> L.Linear(2),
        L.Embedding(512, 8) >> L.GRU(16) >> L.Linear(2),
    ],
    ids=["embedding", "embedding-gru"],
)
def test_mixed_bfloat16_trains_on_token_ids_without_casting_them(net: Any) -> None:
    data = _parity_tokens()
    spec = Int32[Array, "batch 5"]
    scores = {}
    for precision in ("float32", "mixed_bfloat16"):
        _, losses, scores[precision] = _train_and_score(net, spec, data, precision, epochs=5)
        assert losses[-1] < 0.5 * losses[0], (precision, losses)
    assert scores["float32"] > 0.95, scores  # the ids arrive whole: their parity is learnt
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) <= 0.02, scores
    ids = jnp.zeros((8, 5), jnp.int32)
    text = _train_step("mixed_bfloat16", net, spec, ids)[0].as_text()
    converts = [line for line in text.splitlines() if "stablehlo.convert" in line]
    assert converts and not [line for line in converts if "8x5xi32>) -> tensor<8x5xbf16" in line]
    assert "stablehlo.gather" in text and "bf16" in text


@pytest.mark.parametrize("cell", [L.LSTM, L.GRU], ids=["lstm", "gru"])
def test_mixed_bfloat16_trains_the_recurrent_zoo_model_to_the_float32_accuracy(cell: Any) -> None:
    """``models.rnn``'s digits-rows classifier: the recurrence runs in bfloat16 (every matmul
    of the step, the scan's included) and reaches the float32 run's accuracy within 0.02."""
    net, spec = rnn.classifier(cell, hidden=32)
    data = rnn.digits_arrays()
    scores = {}
    for precision in ("float32", "mixed_bfloat16"):
        _, losses, scores[precision] = _train_and_score(net, spec, data, precision, epochs=6)
        assert losses[-1] < 0.25 * losses[0], (precision, losses)
    assert scores["float32"] > 0.9, scores
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) <= 0.02, scores
    lowered, loss = _train_step("mixed_bfloat16", net, spec, jnp.zeros((8, 8, 8), jnp.float32))
    text = lowered.as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert "stablehlo.while" in text and len(dots) >= 6  # the scan, forward and backward matmuls
    assert all("bf16" in line and "f32>" not in line.split("->")[-1] for line in dots)
    assert loss.dtype == jnp.float32 and loss.shape == ()
