"""``fit(..., remat=...)``: checkpointed runs of layers give the same gradients in less memory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._training._engine import Engine
from shapesafe.layers._forward import Forward

NET = (
    L.Linear(16) >> L.Tanh() >> L.Linear(16) >> L.ReLU() >> L.Linear(16) >> L.Tanh() >> L.Linear(3)
)
SPEC = Float32[Array, "batch 5"]


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int32)
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]


def _reference(batches: list, lr: float) -> tuple[list[float], list[np.ndarray]]:
    """Plain JAX autodiff (no checkpoint) and SGD on the same model: losses and final weights."""
    graph, params, rest = nnx.split(ss.build(NET, SPEC, seed=0), nnx.Param, ...)

    def mean_loss(p: nnx.State, xb: jax.Array, yb: jax.Array) -> jax.Array:
        logits = nnx.merge(graph, p, rest)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    losses = []
    for xb, yb in batches:
        value, grads = jax.value_and_grad(mean_loss)(params, jnp.asarray(xb), jnp.asarray(yb))
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        losses.append(float(value))
    return losses, [np.asarray(a) for a in jax.tree.leaves(params)]


@pytest.mark.parametrize("remat", [True, r"[24]\.Linear"], ids=["sqrt-runs", "regex"])
def test_remat_gives_the_losses_and_weights_of_plain_autodiff(remat: bool | str) -> None:
    batches = _batches()
    want_losses, want_weights = _reference(batches, 0.1)
    model = ss.build(NET, SPEC, seed=0)
    history = ss.fit(
        model,
        batches,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        remat=remat,
        progress=False,
    )
    np.testing.assert_allclose(history.steps, want_losses, atol=1e-6)
    for got, want in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), want_weights, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)


def test_remat_keeps_batch_statistics_and_dropout_streams() -> None:
    """Layers that update state inside a checkpointed run (BatchNorm's running statistics,
    Dropout's random stream) train exactly as without remat. (SGD: the gradient of the bias
    before BatchNorm is zero up to rounding, which Adam would scale up to its learning rate.)"""
    net = L.Linear(16) >> L.BatchNorm() >> L.ReLU() >> L.Dropout(0.2) >> L.Linear(3)
    states = []
    for remat in (False, True):
        model = ss.build(net, SPEC, seed=0)
        history = ss.fit(
            model,
            _batches(),
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=2,
            remat=remat,
            progress=False,
        )
        states.append((history.steps, jax.tree.leaves(nnx.state(model, nnx.Not(nnx.RngState)))))
    (steps0, leaves0), (steps1, leaves1) = states
    np.testing.assert_allclose(steps1, steps0, atol=1e-6)
    for a, b in zip(leaves1, leaves0, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_remat_shrinks_the_compiled_steps_temporaries() -> None:
    """An MLP of wide hidden layers on a big batch: XLA's own temporary bytes of the training
    step (``memory_analysis``) are smaller with remat; the regex form lies in between."""
    net = L.Linear(512)
    for _ in range(5):
        net = net >> L.ReLU() >> L.Linear(512)
    model = ss.build(net >> L.ReLU() >> L.Linear(10), Float32[Array, "batch 64"], seed=0)
    batch = (
        jax.ShapeDtypeStruct((1024, 64), jnp.float32),
        jax.ShapeDtypeStruct((1024,), jnp.int32),
    )

    def temporaries(remat: bool | str) -> int:
        s = ss.summary(
            model, optimizer=optax.sgd(0.1), loss=ss.losses.cross_entropy, batch=batch, remat=remat
        )
        assert s.memory is not None
        one, _ = s.memory.rows["temporaries"]
        assert one is not None
        return one

    off, on = temporaries(False), temporaries(True)
    activation = 1024 * 512 * 4  # one hidden activation of the batch, float32
    assert on < off - 3 * activation  # measured on CPU: 25.0 MiB off, 15.0 MiB on
    shown = str(ss.summary(model, optimizer=optax.sgd(0.1), remat=True))
    assert "remat True" in shown


def test_remat_is_part_of_the_program_key() -> None:
    model = ss.build(NET, SPEC, seed=0)
    kw = dict(loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.1), metrics=())
    plain = Engine(model, **kw).programs  # type: ignore[arg-type]
    on = Engine(model, forward=Forward.of(True, "float32", where="t"), **kw).programs  # type: ignore[arg-type]
    again = Engine(model, forward=Forward.of(True, "float32", where="t"), **kw).programs  # type: ignore[arg-type]
    regex = Engine(model, forward=Forward.of(r"2\.Linear", "float32", where="t"), **kw).programs  # type: ignore[arg-type]
    assert on is again
    assert len({id(plain), id(on), id(regex)}) == 3


def test_remat_refusals_name_the_fix() -> None:
    model = ss.build(NET, SPEC, seed=0)
    kw = dict(loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.1), epochs=1, progress=False)
    with pytest.raises(
        ValueError,
        match=r"remat='Conv2D' matches no layer path .* The model's layers are: 0\.Linear, 1\.Tanh, 2\.Linear",
    ):
        ss.fit(model, _batches(), remat="Conv2D", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"summary: remat='\(' is not a valid regex"):
        ss.summary(model, optimizer=optax.sgd(0.1), remat="(")
    with pytest.raises(ValueError, match=r"matches no layer path"):
        ss.summary(model, optimizer=optax.sgd(0.1), remat=r"\d+\.Residual")
