"""BatchNorm, LayerNorm and Dropout: numerics against PyTorch and NumPy, train/eval switching
(eagerly and under jax.jit through nnx.split/merge), randomness, and bad arguments.

Conventions checked here: our ``momentum`` m is PyTorch's ``1 - m``; the running variance is
updated with the unbiased batch variance, as PyTorch. Everything is float32; tolerances are
``atol=1e-5, rtol=1e-5`` unless a test says otherwise.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float32, Int32

import shapesafe as ss
from shapesafe import layers as L

torch = pytest.importorskip("torch")

TOL = dict(rtol=1e-5, atol=1e-5)


def randn(
    rng: np.random.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0
) -> np.ndarray:
    return (rng.normal(size=shape) * scale + shift).astype(np.float32)


def spec_for(shape: tuple[int, ...]) -> Any:
    return Float32[Array, "batch " + " ".join(map(str, shape[1:]))]


def jit_step(model: nnx.Module, x: np.ndarray) -> np.ndarray:
    """One call under jax.jit through nnx.split/merge, writing the new state back (as a
    training step does)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state: Any, x: jax.Array) -> tuple[jax.Array, Any]:
        m = nnx.merge(graphdef, state)
        return m(x), nnx.state(m)

    y, new_state = forward(state, jnp.asarray(x))
    nnx.update(model, new_state)
    return np.asarray(y)


# -- BatchNorm -------------------------------------------------------------------------------


def channels_first(x: np.ndarray) -> Any:
    return torch.from_numpy(x).movedim(-1, 1).contiguous()


def channels_last(t: Any) -> np.ndarray:
    return t.movedim(1, -1).detach().numpy()


def torch_and_ours(
    shape: tuple[int, ...], momentum: float, *, affine: bool = True, epsilon: float = 1e-5
) -> tuple[Any, Any, Any]:
    """A built BatchNorm and the equivalent torch.nn.BatchNorm1d/2d with the same random scale,
    bias and running statistics."""
    c = shape[-1]
    bp = L.BatchNorm(momentum=momentum, epsilon=epsilon, use_scale=affine, use_bias=affine)
    model = ss.build(bp, spec_for(shape), seed=0)
    model.train()  # these tests start from training mode (ss.build returns an inference-mode model)
    layer = model.layers[0]
    cls = torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d
    ref = cls(c, eps=epsilon, momentum=1.0 - momentum, affine=affine)
    rng = np.random.default_rng(len(shape))
    mean, var = randn(rng, c), rng.uniform(0.5, 2.0, size=c).astype(np.float32)
    layer.mean[...], layer.var[...] = jnp.asarray(mean), jnp.asarray(var)
    ref.running_mean.copy_(torch.from_numpy(mean))
    ref.running_var.copy_(torch.from_numpy(var))
    if affine:
        scale, bias = randn(rng, c, shift=1.0), randn(rng, c)
        layer.scale[...], layer.bias[...] = jnp.asarray(scale), jnp.asarray(bias)
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(scale))
            ref.bias.copy_(torch.from_numpy(bias))
    return model, layer, ref


BN_SHAPES = {"features": (16, 6), "sequence": (4, 7, 6), "image": (3, 5, 4, 6)}


@pytest.mark.parametrize("momentum", [0.9, 0.5], ids=["m0.9", "m0.5"])
@pytest.mark.parametrize("name", list(BN_SHAPES), ids=list(BN_SHAPES))
def test_batchnorm_train_step_matches_torch(name: str, momentum: float) -> None:
    """Training mode: output from batch statistics, running stats updated as torch's with
    momentum 1 - m (unbiased variance). Eagerly; the layer starts in training mode."""
    shape = BN_SHAPES[name]
    model, layer, ref = torch_and_ours(shape, momentum)
    assert layer.use_running_average is False
    x = randn(np.random.default_rng(0), *shape, scale=2.0, shift=0.5)
    ref.train()
    want = channels_last(ref(channels_first(x)))
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, **TOL)
    np.testing.assert_allclose(np.asarray(layer.mean[...]), ref.running_mean.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(layer.var[...]), ref.running_var.numpy(), **TOL)


@pytest.mark.parametrize("name", list(BN_SHAPES), ids=list(BN_SHAPES))
def test_batchnorm_eval_matches_torch(name: str) -> None:
    shape = BN_SHAPES[name]
    model, layer, ref = torch_and_ours(shape, 0.9)
    before = np.asarray(layer.mean[...]), np.asarray(layer.var[...])
    model.eval()
    ref.eval()
    x = randn(np.random.default_rng(1), *shape, scale=2.0)
    want = channels_last(ref(channels_first(x)))
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, **TOL)
    np.testing.assert_array_equal(np.asarray(layer.mean[...]), before[0])  # eval leaves them alone
    np.testing.assert_array_equal(np.asarray(layer.var[...]), before[1])


def test_batchnorm_under_jit_accumulates_running_stats_like_torch() -> None:
    """Three jitted training steps on different batches, then a jitted eval step."""
    shape = BN_SHAPES["image"]
    model, layer, ref = torch_and_ours(shape, 0.8, affine=False, epsilon=1e-3)
    assert layer.scale is None and layer.bias is None
    rng = np.random.default_rng(2)
    ref.train()
    for step in range(3):
        x = randn(rng, *shape, scale=1.0 + step, shift=float(step))
        want = channels_last(ref(channels_first(x)))
        np.testing.assert_allclose(jit_step(model, x), want, **TOL)
    np.testing.assert_allclose(np.asarray(layer.mean[...]), ref.running_mean.numpy(), **TOL)
    np.testing.assert_allclose(np.asarray(layer.var[...]), ref.running_var.numpy(), **TOL)
    model.eval()
    ref.eval()
    x = randn(rng, *shape)
    np.testing.assert_allclose(jit_step(model, x), channels_last(ref(channels_first(x))), **TOL)


def test_batchnorm_momentum_zero_keeps_only_the_last_batch() -> None:
    """momentum=0 (torch's 1.0): the running stats become the batch's mean and unbiased
    variance, computed here with NumPy."""
    model = ss.build(L.BatchNorm(momentum=0.0), Float32[Array, "batch 3"], seed=0)
    model.train()  # training mode (ss.build returns a model for inference)
    x = randn(np.random.default_rng(3), 5, 3, scale=3.0, shift=1.0)
    y = np.asarray(model(jnp.asarray(x)))
    layer = model.layers[0]
    np.testing.assert_allclose(np.asarray(layer.mean[...]), x.mean(axis=0), **TOL)
    np.testing.assert_allclose(np.asarray(layer.var[...]), x.var(axis=0, ddof=1), **TOL)
    np.testing.assert_allclose(y, (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5), **TOL)


def test_batchnorm_params_and_summary() -> None:
    model = ss.build(L.Linear(4) >> L.BatchNorm(), Float32[Array, "batch 5 3"], seed=0)
    bn = model.layers[1]
    assert isinstance(bn.scale, nnx.Param) and isinstance(bn.mean, nnx.BatchStat)
    np.testing.assert_array_equal(np.asarray(bn.scale[...]), np.ones(4, np.float32))
    np.testing.assert_array_equal(np.asarray(bn.var[...]), np.ones(4, np.float32))
    s = ss.summary(model)
    assert s.output_spec == "Float32[batch, 5, 4]"
    assert s.rows[1][4] == 8  # scale and bias; the running stats are not trainable
    assert s.trainable_params == 3 * 4 + 4 + 8


# -- LayerNorm -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "use_scale, use_bias, epsilon",
    [(True, True, 1e-5), (True, False, 1e-2), (False, False, 1e-5)],
    ids=["affine", "scale-only-eps1e-2", "plain"],
)
def test_layernorm_matches_torch(use_scale: bool, use_bias: bool, epsilon: float) -> None:
    bp = L.LayerNorm(epsilon=epsilon, use_scale=use_scale, use_bias=use_bias)
    model = ss.build(bp, Float32[Array, "batch 5 8"], seed=0)
    layer = model.layers[0]
    ref = torch.nn.LayerNorm(8, eps=epsilon, elementwise_affine=use_scale, bias=use_bias)
    rng = np.random.default_rng(4)
    with torch.no_grad():
        if use_scale:
            scale = randn(rng, 8, shift=1.0)
            layer.scale[...] = jnp.asarray(scale)
            ref.weight.copy_(torch.from_numpy(scale))
        if use_bias:
            bias = randn(rng, 8)
            layer.bias[...] = jnp.asarray(bias)
            ref.bias.copy_(torch.from_numpy(bias))
    assert (layer.scale is None) == (not use_scale) and (layer.bias is None) == (not use_bias)
    x = randn(rng, 3, 5, 8, scale=3.0, shift=2.0)
    want = ref(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, **TOL)
    model.eval()  # no train/eval difference
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, **TOL)


# -- Dropout ---------------------------------------------------------------------------------

DROP_SPEC = Float32[Array, "batch 100"]


def ones_ish(seed: int = 5) -> np.ndarray:
    """Entries in [1, 2): never zero, so a zero in the output is a dropped entry."""
    return np.random.default_rng(seed).uniform(1.0, 2.0, size=(200, 100)).astype(np.float32)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_train_zeroes_rate_and_scales_the_rest(rate: float) -> None:
    model = ss.build(L.Dropout(rate), DROP_SPEC, seed=0)
    assert model.layers[0].deterministic is True  # built for inference
    model.train()
    x = ones_ish()
    y = np.asarray(model(jnp.asarray(x)))
    dropped = y == 0
    # 20,000 Bernoulli draws: the standard deviation of the fraction is at most 0.0036.
    assert abs(dropped.mean() - rate) < 0.02
    np.testing.assert_allclose(y[~dropped], x[~dropped] / np.float32(1 - rate), rtol=1e-6, atol=0)


def test_dropout_eval_is_the_identity() -> None:
    model = ss.build(L.Dropout(0.5), DROP_SPEC, seed=0)
    model.eval()
    assert model.layers[0].deterministic is True
    x = ones_ish()
    np.testing.assert_array_equal(np.asarray(model(jnp.asarray(x))), x)


def test_dropout_rate_zero_is_the_identity_in_training() -> None:
    model = ss.build(L.Dropout(0.0), DROP_SPEC, seed=0)
    x = ones_ish()
    np.testing.assert_array_equal(np.asarray(model(jnp.asarray(x))), x)


def test_dropout_masks_differ_between_calls_and_repeat_with_the_seed() -> None:
    x = jnp.asarray(ones_ish())
    a = ss.build(L.Dropout(0.5), DROP_SPEC, seed=0)
    a.train()  # training mode (ss.build returns a model for inference)
    b = ss.build(L.Dropout(0.5), DROP_SPEC, seed=0)
    b.train()  # training mode (ss.build returns a model for inference)
    c = ss.build(L.Dropout(0.5), DROP_SPEC, seed=1)
    c.train()  # training mode (ss.build returns a model for inference)
    a1, a2 = np.asarray(a(x)) == 0, np.asarray(a(x)) == 0
    b1, b2 = np.asarray(b(x)) == 0, np.asarray(b(x)) == 0
    c1 = np.asarray(c(x)) == 0
    assert (a1 != a2).mean() > 0.3  # independent masks disagree on about half the entries
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert (a1 != c1).mean() > 0.3


def test_dropout_under_jit_advances_its_stream() -> None:
    """Through nnx.split/merge, the returned state carries the stream: jitted calls draw the
    same masks, in the same order, as eager calls of a model built with the same seed."""
    x = ones_ish()
    jitted = ss.build(L.Dropout(0.5), DROP_SPEC, seed=0)
    jitted.train()  # training mode (ss.build returns a model for inference)
    eager = ss.build(L.Dropout(0.5), DROP_SPEC, seed=0)
    eager.train()  # training mode (ss.build returns a model for inference)
    j1, j2 = jit_step(jitted, x), jit_step(jitted, x)
    assert ((j1 == 0) != (j2 == 0)).mean() > 0.3
    np.testing.assert_array_equal(j1, np.asarray(eager(jnp.asarray(x))))
    np.testing.assert_array_equal(j2, np.asarray(eager(jnp.asarray(x))))
    jitted.eval()
    np.testing.assert_array_equal(jit_step(jitted, x), x)


# -- train/eval inside a built Sequential ----------------------------------------------------


def test_eval_and_train_switch_a_built_sequential() -> None:
    """Linear >> BatchNorm >> Dropout against NumPy: eval uses the running statistics and no
    dropout; train uses the batch statistics, updates the running ones and drops entries."""
    model = ss.build(
        L.Linear(4) >> L.BatchNorm(momentum=0.9) >> L.Dropout(0.5),
        Float32[Array, "batch 3"],
        seed=0,
    )
    linear, bn, drop = model.layers[0], model.layers[1], model.layers[2]
    rng = np.random.default_rng(6)
    kernel, bias = randn(rng, 3, 4), randn(rng, 4)
    linear.kernel[...], linear.bias[...] = jnp.asarray(kernel), jnp.asarray(bias)
    mean, var = randn(rng, 4), rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    bn.mean[...], bn.var[...] = jnp.asarray(mean), jnp.asarray(var)
    x = randn(rng, 32, 3)
    h = x @ kernel + bias

    model.eval()
    assert (bn.use_running_average, drop.deterministic) == (True, True)
    want = (h - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, **TOL)
    np.testing.assert_allclose(jit_step(model, x), want, **TOL)
    np.testing.assert_array_equal(np.asarray(bn.mean[...]), mean)  # untouched in eval mode

    model.train()
    assert (bn.use_running_average, drop.deterministic) == (False, False)
    normalised = (h - h.mean(axis=0)) / np.sqrt(h.var(axis=0) + 1e-5)
    for y in (np.asarray(model(jnp.asarray(x))), jit_step(model, x)):
        kept = y != 0
        assert 0.3 < kept.mean() < 0.7
        np.testing.assert_allclose(y[kept], normalised[kept] / 0.5, **TOL)
    # two training steps on the same batch: running = 0.81 * old + 0.19 * batch statistic
    np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.81 * mean + 0.19 * h.mean(axis=0), **TOL)
    np.testing.assert_allclose(
        np.asarray(bn.var[...]), 0.81 * var + 0.19 * h.var(axis=0, ddof=1), **TOL
    )


# -- bad arguments and inputs ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L.Dropout(1.0), r"Dropout\(1.0\): rate must be a float in \[0, 1\), got 1.0"),
        (lambda: L.Dropout(-0.1), r"rate must be a float in \[0, 1\), got -0.1"),
        (
            lambda: L.BatchNorm(momentum=1.0),
            r"BatchNorm.*momentum must be a float in \[0, 1\), got 1.0",
        ),
        (lambda: L.BatchNorm(momentum=-0.1), r"momentum must be a float in \[0, 1\), got -0.1"),
        (
            lambda: L.BatchNorm(epsilon=0.0),
            r"BatchNorm.*epsilon must be a positive finite float, got 0.0",
        ),
        (
            lambda: L.BatchNorm(epsilon=-1e-5),
            r"epsilon must be a positive finite float, got -1e-05",
        ),
        (
            lambda: L.LayerNorm(epsilon=0.0),
            r"LayerNorm.*epsilon must be a positive finite float, got 0.0",
        ),
        (
            lambda: L.LayerNorm(epsilon=float("nan")),
            r"epsilon must be a positive finite float, got nan",
        ),
    ],
    ids=[
        "rate-1",
        "rate-negative",
        "momentum-1",
        "momentum-negative",
        "epsilon-0",
        "epsilon-negative",
        "layernorm-epsilon-0",
        "layernorm-epsilon-nan",
    ],
)
def test_bad_arguments_raise_value_error(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("blueprint", [L.BatchNorm(), L.LayerNorm(), L.Dropout(0.5)], ids=repr)
def test_integer_input_is_refused_with_a_fix(blueprint: Any) -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)int32 is not a floating dtype.*Insert L\.Cast\(jnp\.float32\) before "
        + type(blueprint).__name__,
    ):
        ss.build(blueprint, Int32[Array, "batch 4"], seed=0)


def test_batchnorm_refuses_a_symbolic_or_missing_feature_axis() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)BatchNorm\(\).*last \(features\) dimension must have a fixed size",
    ):
        ss.build(L.BatchNorm(), Float32[Array, "batch n"], seed=0)
    with pytest.raises(
        ss.ShapeError, match=r"needs at least 2 dimensions \(batch and features\), got 1"
    ):
        ss.build(L.BatchNorm(), Float32[Array, "batch"], seed=0)


def test_batchnorm_training_on_one_value_per_feature_is_refused() -> None:
    model = ss.build(L.BatchNorm(), Float32[Array, "batch 4"], seed=0)
    model.train()  # training mode (ss.build returns a model for inference)
    x = jnp.ones((1, 4), jnp.float32)
    with pytest.raises(
        ss.ShapeError, match=r"(?s)more than one value per feature.*model\.eval\(\)"
    ):
        model(x)
    model.eval()
    assert model(x).shape == (1, 4)
