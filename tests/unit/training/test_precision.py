"""``fit(..., precision="mixed_bfloat16")``: float32 parameters, a bfloat16 forward, a float32 loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jaxtyping import Array, Float32, UInt8
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._training._engine import Engine
from shapesafe.data import from_arrays
from shapesafe.layers._forward import Forward

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


def _lowered_train_step(precision: str) -> jax.stages.Lowered:
    model = ss.build(NET, SPEC, seed=0)
    engine = Engine(
        model,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        metrics=(),
        forward=Forward.of(False, precision, where="test"),
    )
    x = jnp.zeros((8, 64), jnp.float32)
    y, mask = jnp.zeros((8,), jnp.int32), jnp.ones((8,), bool)
    return engine.programs.train.lower(engine.state, (), x, y, mask)


def test_the_mixed_step_multiplies_in_bfloat16_and_returns_a_float32_loss() -> None:
    mixed = _lowered_train_step("mixed_bfloat16")
    dots = [line for line in mixed.as_text().splitlines() if "dot_general" in line]
    assert len(dots) >= 4  # two forward matmuls, their kernels' gradients (and more)
    assert all("bf16" in line and "f32>" not in line.split("->")[-1] for line in dots)
    assert "bf16" not in _lowered_train_step("float32").as_text()
    state, _, loss, _ = mixed.out_info  # (new state, metric states, loss, value-check flags)
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
