"""Specs as jaxtyping users write them, and a model's input boundary as new users hit it
(issue 13): a kind of dtype (``Float``) builds, ``Float64`` without 64-bit mode is refused at
build time, and each common wrong input says what to type instead."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Float32, Float64, Int32, Integer, Shaped, UInt8

import shapesafe as ss
from shapesafe import layers as L


def _linear(model: ss.Model) -> tuple[np.ndarray, np.ndarray]:
    layer = model.layers[0]
    return np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, jnp.bfloat16], ids=str)
def test_a_float_spec_builds_for_float32_and_takes_any_floating_dtype(dtype: object) -> None:
    model = ss.build(L.Linear(2), Float[Array, "batch 3"], seed=0)
    assert set(model.input_spec.dtypes) == {"float32"}
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 4  # exact in float16 and bfloat16
    kernel, bias = _linear(model)
    got = model(jnp.asarray(x, dtype))
    assert got.dtype == jnp.float32  # converted at the boundary to what the layers hold
    np.testing.assert_allclose(np.asarray(got), x @ kernel + bias, rtol=1e-6)


def test_a_float_model_still_refuses_integers_and_its_summary_says_what_it_takes() -> None:
    model = ss.build(L.Linear(2), Float[Array, "batch 3"], seed=0)
    with pytest.raises(ss.ShapeError, match=r'expected  Float\[Array, "batch 3"\]'):
        model(np.ones((2, 3), np.int32))
    text = str(ss.summary(model))
    assert text.splitlines()[:2] == [
        "input  Float32[batch, 3]",
        '       (built from Float[Array, "batch 3"]: takes any floating dtype, converted to '
        "float32 at its input)",
    ]


def test_integer_and_shaped_specs_build_for_the_default_dtype_of_their_kind() -> None:
    emb = ss.build(L.Embedding(10, 4), Integer[Array, "batch 5"], seed=0)
    assert set(emb.input_spec.dtypes) == {"int32"}
    ids = np.array([[1, 2, 3, 4, 9]], np.uint8)
    table = np.asarray(emb.layers[0].table[...])
    np.testing.assert_array_equal(np.asarray(emb(ids)), table[ids.astype(np.int64)])
    shaped = ss.build(L.Flatten(), Shaped[Array, "batch 2 2"], seed=0)
    assert str(ss.summary(shaped).input_spec) == "Float32[batch, 2, 2]"


def test_a_concrete_spec_stays_exact() -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    assert not model.converts
    with pytest.raises(
        ss.ShapeError, match="its dtype is float16; the model was built for float32"
    ):
        model(jnp.ones((2, 3), jnp.float16))


def test_float64_without_x64_is_refused_at_build_time_with_how_to_turn_it_on() -> None:
    assert not jax.config.jax_enable_x64
    with pytest.raises(ss.ShapeError) as info:
        ss.build(L.Linear(2), Float64[Array, "batch 3"])
    message = str(info.value)
    assert message.startswith("build: input spec Float64[")
    assert message.endswith(
        "float64 needs JAX's 64-bit mode, which is off, so JAX would compute in float32. Use "
        'float32 instead, or turn 64-bit mode on first: jax.config.update("jax_enable_x64", '
        "True). Or set the environment variable JAX_ENABLE_X64=1 before the first array is made."
    )


def test_float64_numpy_data_into_a_float32_model_says_astype() -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    with pytest.raises(ss.ShapeError) as info:
        model(np.ones((4, 3)))  # NumPy's default float64: refused, not silently downcast
    lines = str(info.value).splitlines()
    assert lines[2:] == [
        "  got       Float64[4, 3]",
        "  its dtype is float64 (NumPy's and scikit-learn's default); the model was built for float32.",
        "  Convert it first: x.astype(np.float32); or build the model for Float[...], which takes "
        "any floating dtype and converts it to float32 at its input (as L.Cast(jnp.float32) would).",
    ]


def test_one_unbatched_example_says_x_none() -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    x = np.ones((5, 3), np.float32)
    with pytest.raises(ss.ShapeError) as info:
        model(x[0])
    assert str(info.value).splitlines()[-1] == (
        "  it has no batch dimension: for one example, pass a batch of one: model(x[None])."
    )
    assert model(x[0][None]).shape == (1, 2)  # the fix works


def test_grayscale_into_an_rgb_model_says_how_to_convert() -> None:
    model = ss.build(L.Flatten(), UInt8[Array, "batch 4 4 3"], seed=0)
    with pytest.raises(ss.ShapeError) as info:
        model(np.zeros((2, 4, 4, 1), np.uint8))
    assert str(info.value).splitlines()[-1] == (
        "  the images have 1 channel (grayscale); the model takes 3 (RGB). Repeat the channel, "
        'np.repeat(x, 3, axis=-1), or load them as RGB (image_folder(..., mode="RGB")).'
    )
    with pytest.raises(ss.ShapeError) as info:
        model(np.zeros((2, 4, 4), np.uint8))
    assert str(info.value).splitlines()[-1] == (
        "  the images have no channel axis (grayscale); the model takes 3 channels (RGB): "
        "np.repeat(x[..., None], 3, axis=-1)."
    )
    assert model(np.repeat(np.zeros((2, 4, 4, 1), np.uint8), 3, axis=-1)).shape == (2, 48)


def test_a_wrong_size_names_the_dimension_and_both_values() -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    with pytest.raises(ss.ShapeError) as info:
        model(np.ones((4, 5), np.float32))
    assert str(info.value).splitlines()[-1] == (
        "  dimension 1 is 5, the model takes 3: resize or crop the input to 3 there, or build "
        "the model for 5."
    )


def test_int_spec_message_names_both_dtypes_and_astype() -> None:
    model = ss.build(L.Embedding(10, 4), Int32[Array, "batch 5"], seed=0)
    with pytest.raises(ss.ShapeError) as info:
        model(np.ones((2, 5), np.float32))
    assert "  its dtype is float32; the model was built for int32." in str(info.value)
    assert "x.astype(np.int32)" in str(info.value)


def test_a_flat_dataset_into_an_image_model_says_the_reshape_and_the_reshape_works() -> None:
    from shapesafe.data import from_arrays

    model = ss.build(L.Flatten() >> L.Linear(3), Float32[Array, "batch 2 2 1"], seed=0)
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    flat = from_arrays({"image": x, "label": np.zeros(6, np.int32)})
    with pytest.raises(ss.ShapeError) as info:
        ss.evaluate(model, flat.batch(4), loss=ss.losses.cross_entropy)
    assert str(info.value).splitlines()[-1] == (
        "  it has 2 dimensions; the model takes 4 (batch 2 2 1). The sizes agree: reshape each "
        "example before .batch(), .map(lambda image: image.reshape(2, 2, 1))."
    )
    fixed = flat.map(lambda image: image.reshape(2, 2, 1)).batch(4)  # the fix, as printed
    out = ss.predict(model, fixed)
    layer = model.layers[1]
    np.testing.assert_allclose(
        out, x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...]), rtol=1e-5
    )
