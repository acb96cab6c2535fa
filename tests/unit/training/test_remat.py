"""``fit(..., remat=...)``: checkpointed runs of layers give the same gradients in less memory."""

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.extend.core import jaxprs_in_params
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._training._engine import Engine
from shapesafe.layers._forward import Forward, running
from shapesafe.models import resnet

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


def _temporaries(model: ss.Model, batch: Any, remat: bool | str) -> int:
    """XLA's temporary bytes of ``model``'s SGD training step on ``batch`` (``ss.summary``)."""
    s = ss.summary(
        model, optimizer=optax.sgd(0.1), loss=ss.losses.cross_entropy, batch=batch, remat=remat
    )
    assert s.memory is not None
    one, _ = s.memory.rows["temporaries"]
    assert one is not None
    return one


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
        return _temporaries(model, batch, remat)

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
        match=r"remat='Conv2D' matches no layer path \(the regex must match a whole path, at any "
        r"depth\)\. The model's layer paths are: 0\.Linear, 1\.Tanh, 2\.Linear, .*, 6\.Linear\. "
        r"Fix the regex",
    ):
        ss.fit(model, _batches(), remat="Conv2D", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"summary: remat='\(' is not a valid regex"):
        ss.summary(model, optimizer=optax.sgd(0.1), remat="(")
    with pytest.raises(ValueError, match=r"matches no layer path"):
        ss.summary(model, optimizer=optax.sgd(0.1), remat=r"\d+\.Residual")


# -- nested layers: a regex at any depth ----------------------------------------------------


@pytest.fixture(scope="module")
def small_resnet() -> ss.Model:
    """``resnet_small``: stem conv, three stages of two blocks (``Residual >> ReLU``), the last
    two stages starting with a projection; 1 + 6 * 2 + 2 = 15 convolutions in all."""
    return ss.build(*resnet.resnet_small(classes=4, width=8, size=32), seed=0)


def _convs(jaxpr: Any) -> int:
    return sum(
        (e.primitive.name == "conv_general_dilated")
        + sum(_convs(j) for j in jaxprs_in_params(e.params))
        for e in jaxpr.eqns
    )


def _checkpoints(jaxpr: Any, found: list[tuple[int, int]]) -> int:
    """Convolutions outside any checkpoint; appends ``(convolutions inside, checkpoints directly
    inside)`` for each outermost checkpoint (``jax.checkpoint``'s primitive), in order."""
    outside = 0
    for e in jaxpr.eqns:
        inner = list(jaxprs_in_params(e.params))
        if e.primitive.name in ("checkpoint", "remat2"):
            nested: list[tuple[int, int]] = []
            for j in inner:
                _checkpoints(j, nested)
            found.append((sum(map(_convs, inner)), len(nested)))
            continue
        outside += e.primitive.name == "conv_general_dilated"
        outside += sum(_checkpoints(j, found) for j in inner)
    return outside


@pytest.mark.parametrize(
    ("remat", "outside", "checkpoints"),
    [
        # every block's Residual: 2 convolutions, 3 where the shortcut projects
        (r"\d+\.Sequential\.\d+\.Residual", 1, [(2, 0), (2, 0), (3, 0), (2, 0), (3, 0), (2, 0)]),
        (r"\d+\.Sequential", 1, [(4, 0), (5, 0), (5, 0)]),  # the stages
        (r"5\.Sequential\.0\.Residual\.shortcut\.0\.Conv2D", 14, [(1, 0)]),  # one projection
        (r".*\.block\.3\.Conv2D", 9, [(1, 0)] * 6),  # each block's second convolution
        (r"\d+\.Sequential(\.\d+\.Residual)?", 1, [(4, 2), (5, 2), (5, 2)]),  # both, nested
    ],
    ids=["blocks", "stages", "one-shortcut-conv", "second-convs", "stages-and-blocks"],
)
def test_a_nested_regex_checkpoints_exactly_the_layers_it_matches(
    small_resnet: ss.Model, remat: str, outside: int, checkpoints: list[tuple[int, int]]
) -> None:
    """The training forward's jaxpr: one ``jax.checkpoint`` per matched layer, holding that
    layer's convolutions (counted by hand from the architecture) and no others."""
    model = small_resnet
    model.train()
    graph, state = nnx.split(model)
    policy = Forward.of(remat, "float32", where="test")

    def forward(state: nnx.State, x: jax.Array) -> jax.Array:
        with running(policy):
            return nnx.merge(graph, state)(x)

    jaxpr = jax.make_jaxpr(forward)(state, jnp.zeros((2, 32, 32, 3), jnp.uint8))
    found: list[tuple[int, int]] = []
    assert _checkpoints(jaxpr.jaxpr, found) == outside
    assert found == checkpoints


def test_nested_remat_gives_the_loss_gradients_and_statistics_of_plain_autodiff(
    small_resnet: ss.Model,
) -> None:
    """One training step of the ResNet (BatchNorm in training mode), checkpointed per block,
    against ``jax.value_and_grad`` of the plain forward: loss, every gradient, the new running
    statistics."""
    model = small_resnet
    model.train()
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (8, 32, 32, 3)).astype(np.uint8))
    y = jnp.asarray(rng.integers(0, 4, 8).astype(np.int32))

    def step(policy: Forward | None) -> tuple[Any, Any, Any]:
        def mean_loss(p: nnx.State) -> tuple[jax.Array, Any]:
            m = nnx.merge(graph, p, rest, copy=True)
            with running(policy):
                logits = m(x)
            value = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return value, nnx.split(m, nnx.Param, ...)[2]

        (value, new_rest), grads = jax.jit(jax.value_and_grad(mean_loss, has_aux=True))(params)
        return value, jax.tree.leaves(grads), jax.tree.leaves(new_rest)

    want_value, want_grads, want_rest = step(None)
    got_value, got_grads, got_rest = step(
        Forward.of(r"\d+\.Sequential\.\d+\.Residual", "float32", where="test")
    )
    np.testing.assert_allclose(float(got_value), float(want_value), atol=1e-6)
    assert len(got_grads) == len(want_grads) == 15 + 2 * 15 + 2  # kernels, BatchNorms, fc
    assert len(got_rest) == len(want_rest) == 2 * 15  # the BatchNorms' means and variances
    for got, want in zip(got_grads + got_rest, want_grads + want_rest, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


NESTED = (
    L.Linear(16)
    >> L.Residual(L.Linear(16) >> L.BatchNorm() >> L.ReLU() >> L.Dropout(0.2) >> L.Linear(16))
    >> (L.Linear(16) >> L.Tanh() >> L.Residual(L.Linear(16) >> L.Dropout(0.1) >> L.Tanh())).named(
        "stage"
    )
    >> L.Linear(3)
)


def test_nested_remat_in_fit_trains_as_plain_autodiff_with_statistics_and_dropout() -> None:
    """``fit`` with BatchNorm, ReLU and Dropout inside a ``Residual`` each checkpointed alone,
    and a ``Residual`` (with Dropout) inside a named sequence checkpointed whole: the losses,
    weights and running statistics of two epochs of SGD by plain JAX autodiff (the same dropout
    draws: the random stream's counters advance as they do without remat)."""
    batches = _batches()
    model = ss.build(NESTED, SPEC, seed=0)
    model.train()
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def sgd(p: nnx.State, r: nnx.State, xb: jax.Array, yb: jax.Array) -> tuple[Any, ...]:
        def mean_loss(p: nnx.State) -> tuple[jax.Array, Any]:
            m = nnx.merge(graph, p, r, copy=True)
            value = optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()
            return value, nnx.split(m, nnx.Param, ...)[2]

        (value, r), grads = jax.value_and_grad(mean_loss, has_aux=True)(p)
        return value, jax.tree.map(lambda a, g: a - 0.1 * g, p, grads), r

    want_losses = []
    for _ in range(2):
        for xb, yb in batches:
            value, params, rest = sgd(params, rest, jnp.asarray(xb), jnp.asarray(yb))
            want_losses.append(float(value))

    model = ss.build(NESTED, SPEC, seed=0)
    remat = r"1\.Residual\.block\.[123]\.\w+|2\.Sequential\.2\.Residual"
    history = ss.fit(
        model,
        batches,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=2,
        remat=remat,
        progress=False,
    )
    np.testing.assert_allclose(history.steps, want_losses, atol=1e-6)
    got = jax.tree.leaves(nnx.state(model, nnx.Not(nnx.RngState)))
    want = jax.tree.leaves(nnx.state(nnx.merge(graph, params, rest), nnx.Not(nnx.RngState)))
    assert len(got) == len(want) == 16  # 6 Linear kernels and biases, BatchNorm's 4
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    shown = str(ss.summary(model, remat=remat))
    assert (
        "(remat checkpoints 4 layers: 1.Residual.block.1.BatchNorm, 1.Residual.block.2.ReLU, "
        "1.Residual.block.3.Dropout, 2.Sequential.2.Residual)" in shown
    )


def test_nested_remat_shrinks_the_resnets_compiled_step(small_resnet: ss.Model) -> None:
    """XLA's temporary bytes of the ResNet's training step (``memory_analysis``, batch 128 of
    32 px): checkpointing every block's ``Residual`` keeps each block's input only, not its
    five inner activations."""
    model = small_resnet
    batch = (
        jax.ShapeDtypeStruct((128, 32, 32, 3), jnp.uint8),
        jax.ShapeDtypeStruct((128,), jnp.int32),
    )

    def temporaries(remat: bool | str) -> int:
        return _temporaries(model, batch, remat)

    off, blocks = temporaries(False), temporaries(r"\d+\.Sequential\.\d+\.Residual")
    activation = 128 * 16 * 16 * 8 * 4  # one activation of the first stage, float32: 1 MiB
    assert blocks < off - 8 * activation  # measured on CPU: 36.7 MiB off, 18.2 MiB on


def test_a_nested_regex_that_matches_nothing_is_refused_before_compiling(
    small_resnet: ss.Model, caplog: pytest.LogCaptureFixture
) -> None:
    """A deep model's paths are listed by form (an index as N), each with an example, and
    with a regex for a nested form; no program is compiled first."""
    model = small_resnet
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8), np.zeros(4, np.int32))]
    with jax.log_compiles(), caplog.at_level(logging.DEBUG), pytest.raises(ValueError) as info:
        ss.fit(
            model,
            batches,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            remat=r"\d+\.Residual",  # a top-level form: the blocks are inside the stages
            progress=False,
        )
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
    message = str(info.value)
    assert message.startswith(
        "remat='\\\\d+\\\\.Residual' matches no layer path (the regex must match a whole path, "
        "at any depth). The model has 55 layer paths, of 14 forms (N is any index, "
        'r"\\d+" in a regex):\n'
    )
    lines = message.splitlines()
    assert "    N.Sequential.N.Residual                       e.g. 4.Sequential.0.Residual" in lines
    assert (
        "    N.Sequential.N.Residual.shortcut.N.BatchNorm  e.g. 5.Sequential.0.Residual.shortcut.1.BatchNorm"
        in lines
    )
    assert len([line for line in lines if " e.g. " in line]) == 14
    assert lines[-2:] == [
        '  remat=r"\\d+\\.Sequential\\.\\d+\\.Residual", for one, checkpoints every '
        "N.Sequential.N.Residual.",
        "  Fix the regex, or use remat=True to checkpoint the whole model in about sqrt(n) runs.",
    ]
