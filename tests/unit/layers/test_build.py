"""ss.build: spec inference for every batch size, composition, naming, user layers, jit."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float, Float32, Int32, UInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import talk


def _spec_str(annotation: object) -> tuple[tuple[str, ...], str]:
    return annotation.dtypes, annotation.dim_str  # type: ignore[attr-defined]


def test_talk_baseline_builds_from_uint8_images_with_hand_computed_sizes() -> None:
    model = ss.build(talk.mlp(64), talk.image_spec(250), seed=0)
    assert _spec_str(model.input_spec) == (("uint8",), "batch 250 250 3")
    assert _spec_str(model.output_spec) == (("float32",), "batch 2")
    s = ss.summary(model)
    # 250*250*3 = 187500 inputs; 187500*64 + 64 and 64*2 + 2 parameters.
    assert [r[3] for r in s.rows] == [
        "UInt8[batch, 187500]",
        "Float32[batch, 187500]",
        "Float32[batch, 64]",
        "Float32[batch, 64]",
        "Float32[batch, 2]",
    ]
    assert [r[4] for r in s.rows] == [0, 0, 187500 * 64 + 64, 0, 64 * 2 + 2]
    assert s.total_params == s.trainable_params == 187500 * 64 + 64 + 130


def test_talk_cnn_builds_summarises_and_runs_under_jit_at_250() -> None:
    model = ss.build(talk.cnn(), talk.image_spec(250), seed=0)
    s = ss.summary(model)
    # valid 3x3 conv: 250 -> 248; 2x2 pool: 124; 124*124*32 = 492032 features.
    assert s.rows[1][3] == "Float32[batch, 248, 248, 32]"
    assert s.rows[3][3] == "Float32[batch, 124, 124, 32]"
    assert s.rows[4][3] == "Float32[batch, 492032]"
    assert s.rows[1][4] == 3 * 3 * 3 * 32 + 32
    # the model passed in: jax.jit(model) would close over its 1 GB of weights, making them
    # constants of the program (17.7 s to compile, against 0.8 s)
    y = nnx.jit(lambda m, x: m(x))(model, jnp.zeros((2, 250, 250, 3), jnp.uint8))
    assert y.shape == (2, 2) and y.dtype == jnp.float32


def test_one_build_serves_every_batch_size() -> None:
    model = ss.build(talk.cnn(filters=4, hidden=8), talk.image_spec(16), seed=0)
    forward = jax.jit(model)
    for batch in (1, 3, 8):
        assert forward(jnp.zeros((batch, 16, 16, 3), jnp.uint8)).shape == (batch, 2)


def test_build_reads_no_data_and_specs_are_symbolic_in_batch() -> None:
    model = ss.build(L.Linear(3), Float32[Array, "n 5"])
    assert _spec_str(model.output_spec) == (("float32",), "n 3")
    assert model(jnp.ones((7, 5), jnp.float32)).shape == (7, 3)


def test_linear_matches_numpy_with_its_own_weights_set_by_hand() -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"])
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    b = np.array([0.5, -1.0], np.float32)
    model.layers[0].kernel[...] = jnp.asarray(w)
    model.layers[0].bias[...] = jnp.asarray(b)
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), [[16.5, 21.0]])  # [0+2+6, 1+4+9] + b


def test_seed_determines_parameters() -> None:
    a = ss.build(L.Linear(4), Float32[Array, "b 3"], seed=1)
    b = ss.build(L.Linear(4), Float32[Array, "b 3"], seed=1)
    c = ss.build(L.Linear(4), Float32[Array, "b 3"], seed=2)
    np.testing.assert_array_equal(a.layers[0].kernel[...], b.layers[0].kernel[...])
    assert not np.array_equal(a.layers[0].kernel[...], c.layers[0].kernel[...])


def test_composition_flattens_indexes_slices_and_names() -> None:
    head = L.Linear(2).named("head")
    net = (L.Flatten() >> L.Linear(8)) >> (L.ReLU() >> head)
    assert len(net) == 4
    assert list(net) == [L.Flatten(), L.Linear(8), L.ReLU(), head]
    assert net[-1] == head and net["head"] == head
    assert net[:-1] == L.Flatten() >> L.Linear(8) >> L.ReLU()
    assert repr(net) == "Flatten() >> Linear(8) >> ReLU() >> Linear(2, name='head')"
    with pytest.raises(KeyError, match="no layer named 'tail'"):
        net["tail"]
    model = ss.build(net, Float32[Array, "batch 2 2"])
    assert isinstance(model["head"], nnx.Module) and model["head"] is model.layers[3]
    assert ss.summary(model).rows[3][0] == "3 (head)"


def test_blueprints_are_immutable_hashable_and_readable() -> None:
    conv = L.Conv2D(32, (3, 3))
    assert repr(conv) == "Conv2D(32, (3, 3))"
    assert (
        repr(L.Conv2D(8, 3, strides=2, padding="same"))
        == "Conv2D(8, (3, 3), strides=(2, 2), padding='same')"
    )
    assert repr(L.MaxPool((2, 2))) == "MaxPool((2, 2))"
    assert repr(L.Cast(jnp.float32)) == "Cast(jnp.float32)"
    assert repr(L.Rescale(1 / 255)) == "Rescale(1 / 255)"  # not 0.00392156862745098
    assert repr(L.Dropout(0.25)) == "Dropout(0.25)"
    assert conv == L.Conv2D(32, 3) and hash(conv) == hash(L.Conv2D(32, 3))
    assert len({talk.cnn(), talk.cnn()}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.filters = 3  # type: ignore[misc]


def test_maxpool_strides_default_to_window_and_halve_the_image() -> None:
    model = ss.build(L.MaxPool((2, 2)), Float32[Array, "batch 6 4 1"])
    x = np.arange(24, dtype=np.float32).reshape(1, 6, 4, 1)
    expected = x.reshape(1, 3, 2, 2, 2, 1).max(axis=(2, 4))
    np.testing.assert_array_equal(np.asarray(model(x)), expected)


def test_rescale_turns_uint8_pixels_into_floats() -> None:
    model = ss.build(L.Rescale(1 / 255, -0.5), UInt8[Array, "batch 3"])
    y = model(np.array([[0, 51, 255]], np.uint8))
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), [[-0.5, 0.2 - 0.5, 0.5]], atol=1e-6)


def test_a_plain_annotated_function_joins_a_composition() -> None:
    def double(x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
        return 2 * x

    model = ss.build(L.Linear(3) >> double, Float32[Array, "batch 4"])
    x = jnp.ones((2, 4), jnp.float32)
    np.testing.assert_allclose(model(x), 2 * model.layers[0](x))

    def bad(x: Float[Array, "*batch 5"]) -> Float[Array, "*batch 5"]:
        return x

    with pytest.raises(
        ss.ShapeError, match=r"layer 2 of 2, Function\(bad\), cannot take its input"
    ):
        ss.build(L.Linear(3) >> bad, Float32[Array, "batch 4"])


class Scale(nnx.Module):
    """A user's own layer: one learned scale per feature."""

    def __init__(self, n: int):
        self.n = n
        self.scale = nnx.Param(jnp.full((n,), 3.0))

    def __call__(self, x: Float[Array, "batch {self.n}"]) -> Float[Array, "batch {self.n}"]:
        return x * self.scale[...].reshape(1, -1)


def test_a_users_annotated_nnx_module_joins_a_composition() -> None:
    model = ss.build(L.Flatten() >> Scale(4) >> L.ReLU(), Float32[Array, "batch 2 2"])
    x = (-jnp.ones((1, 2, 2))).at[0, 0, 0].set(2.0)
    np.testing.assert_allclose(model(x), [[6.0, 0.0, 0.0, 0.0]])
    assert ss.summary(model).rows[1][4] == 4  # its parameters count
    with pytest.raises(ss.ShapeError, match=r"layer 2 of 2, Custom\(Scale\)"):
        ss.build(L.Flatten() >> Scale(5), Float32[Array, "batch 2 2"])


def test_unannotated_user_layers_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="no jaxtyping annotations"):
        L.Linear(2) >> (lambda x: x)


def test_jit_equals_eager_and_compiles_once() -> None:
    model = ss.build(talk.cnn(filters=4, hidden=8), talk.image_spec(12), seed=0)
    graphdef, state = nnx.split(model)
    traces = 0

    @jax.jit
    def forward(state: nnx.State, x: jax.Array) -> jax.Array:
        nonlocal traces
        traces += 1
        return nnx.merge(graphdef, state)(x)

    x = jnp.asarray(np.random.default_rng(0).integers(0, 255, (2, 12, 12, 3)), jnp.uint8)
    np.testing.assert_allclose(forward(state, x), model(x), rtol=1e-5, atol=1e-5)
    forward(state, x)
    forward(state, x + 1)
    assert traces == 1


def test_checks_are_not_in_the_compiled_program() -> None:
    """The jaxpr of a checked model holds only the layer math: no callbacks, no asserts."""
    model = ss.build(talk.mlp(4), talk.image_spec(4))
    graphdef, state = nnx.split(model)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(
        state, jnp.zeros((2, 4, 4, 3), jnp.uint8)
    )
    prims = {str(e.primitive) for e in jaxpr.jaxpr.eqns}
    assert prims <= {
        "reshape",
        "convert_element_type",
        "mul",
        "dot_general",
        "add",
        "max",
        "broadcast_in_dim",
        "pjit",
        "custom_jvp_call",
    }, prims


def test_integer_input_to_embedding_style_models_keeps_int_spec() -> None:
    model = ss.build(L.Cast(jnp.float32) >> L.Linear(2), Int32[Array, "batch 3"])
    assert _spec_str(model.input_spec) == (("int32",), "batch 3")
