"""Inputs that used to escape as raw Python, NumPy, JAX or Flax errors: each is now a shapesafe
error that names the layer (or the spec) and the fix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float, Float32, Float64, Shaped

import shapesafe as ss
from shapesafe import layers as L


def test_a_zero_size_dimension_at_build_names_the_layer_and_the_axis() -> None:
    # before: ZeroDivisionError from the initializer
    with pytest.raises(
        ss.ShapeError,
        match=r"^layer 1 of 1, Linear\(1\), cannot take its input\.\n"
        r"  expected  every dimension at least 1\n"
        r"  got       Float32\[batch, 0\]   \(batch, 0 from the input\)\n"
        r"  dimension 1 is 0: an empty axis leaves the layer nothing to compute\.\n"
        r"  Give it a size of at least 1 in the input spec \(or in the layer before\)\.",
    ):
        ss.build(L.Linear(1), Float32[Array, "batch 0"])


def test_conv_same_padding_on_a_zero_wide_input() -> None:
    # before: TypeError "reshape new_sizes must all be positive"
    with pytest.raises(
        ss.ShapeError,
        match=r"layer 1 of 2, Conv2D\(2, \(3, 3\), padding='same'\), cannot take its input\.\n"
        r"  expected  every dimension at least 1\n  got       Float32\[batch, 4, 0, 3\].*\n"
        r"  dimension 2 is 0",
    ):
        ss.build(L.Conv2D(2, 3, padding="same") >> L.ReLU(), Float32[Array, "batch 4 0 3"])


def test_a_zero_example_batch_into_a_built_model() -> None:
    model = ss.build(L.Flatten() >> L.Linear(2), Float32[Array, "batch 4 3"])
    for call in (model, jax.jit(model)):  # before: ZeroDivisionError in Flatten
        with pytest.raises(
            ss.ShapeError,
            match=r"^The model's input is empty\.\n  expected  every dimension at least 1\n"
            r"  got       Float32\[0, 4, 3\]\n  the batch holds no examples: there is nothing "
            r"to compute\.\n  Skip empty batches before calling the model",
        ):
            call(jnp.zeros((0, 4, 3)))


class WrongWeight(nnx.Module):
    def __init__(self) -> None:
        self.w = nnx.Param(jnp.ones((5, 2)))  # should be (3, 2)

    def __call__(self, x: Float[Array, "batch 3"]) -> Float[Array, "batch 2"]:
        return x @ self.w[...]


def test_a_user_module_whose_body_fails_names_the_layer_and_keeps_the_cause() -> None:
    # before: a raw TypeError from dot_general
    for net in (WrongWeight(), L.Linear(3) >> WrongWeight()):
        with pytest.raises(ss.ShapeError) as info:
            ss.build(net, Float32[Array, "batch 3"])
        n = 1 if isinstance(net, WrongWeight) else 2
        assert str(info.value).split("\n---")[0] == (
            f"layer {n} of {n}, Custom(WrongWeight), failed inside its own code.\n"
            "  its input Float32[batch, 3] fits its annotations, but its own code raised:\n"
            "  TypeError: dot_general requires contracting dimensions to have the same shape, "
            "got (3,) and (5,).\n"
            "  The bug is inside the module's __call__ (the original error is the cause above): "
            "check the shapes of its weights and operations against its annotations."
        )
        assert isinstance(info.value.__cause__, TypeError)
        assert "dot_general" in str(info.value.__cause__)


def test_a_function_whose_body_fails_is_wrapped_the_same_way() -> None:
    def mix(x: Float[Array, "*b n"]) -> Float[Array, "*b n"]:
        return x @ jnp.ones((2, 2))

    with pytest.raises(
        ss.ShapeError, match=r"layer 2 of 2, Function\(mix\), failed inside its own code\."
    ) as info:
        ss.build(L.Linear(3) >> mix, Float32[Array, "batch 3"])
    assert "The bug is inside the function" in str(info.value)
    assert isinstance(info.value.__cause__, TypeError)


def test_a_function_that_changes_the_shape_says_which_dimension_differs() -> None:
    def crop(x: Float[Array, "batch 4"]) -> Float[Array, "batch 4"]:
        return x[:, :3]

    def shrink(x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
        return x[..., :-1]

    with pytest.raises(
        ss.ShapeError,
        match=r"^layer 2 of 2, Function\(crop\), returned a wrong output\.\n"
        r'  expected  Float\[Array, "batch 4"\]\n  got       Float32\[batch, 3\]\n'
        r"  dimension 1 is 3, expected 4\.",
    ):
        ss.build(L.Linear(4) >> crop, Float32[Array, "batch 3"])
    with pytest.raises(ss.ShapeError, match=r"dimension 1 is 3, but n is 4 elsewhere\."):
        ss.build(L.Linear(4) >> shrink, Float32[Array, "batch 3"])


def test_specs_print_as_written_never_as_an_object() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r'^build: input spec Float32\[Array, "\.\.\. 3"\]: dimension \'\.\.\.\' is not allowed here',
    ):
        ss.build(L.Linear(2), Float32[Array, "... 3"])
    from shapesafe import data as D

    ds = D.from_generator(lambda: iter([object()]), Shaped[np.ndarray, "..."])
    with pytest.raises(ss.ShapeError) as info:
        list(ds)
    assert "  got       object (not an array)\n  it is an object, not a ndarray." in str(info.value)
    assert " at 0x" not in str(info.value)  # before: "object <object object at 0x7f...>"


def test_64_bit_dtypes_without_jax_64_bit_mode() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r'^build: input spec Float64\[Array, "batch 2"\]: float64 needs JAX\'s 64-bit mode, '
        r"which is off, so JAX would compute in float32\. Use float32 instead, or turn 64-bit mode "
        r'on first: jax\.config\.update\("jax_enable_x64", True\)\.',
    ):
        ss.build(L.Linear(1), Float64[Array, "batch 2"])
    with pytest.raises(
        ss.ShapeError,
        match=r"layer 1 of 1, Cast\(jnp\.float64\), cannot take its input\.\n"
        r"  expected  JAX's 64-bit mode on, to make float64\n.*\n  float64 needs JAX's 64-bit mode",
    ):
        ss.build(L.Cast(jnp.float64), Float32[Array, "batch 2"])


def test_softmax_over_an_axis_the_input_lacks() -> None:
    # before: a raw ValueError "axis -1 is out of bounds for array of dimension 0"
    with pytest.raises(
        ss.ShapeError,
        match=r"^layer 1 of 1, Softmax\(\), cannot take its input\.\n"
        r"  expected  at least 1 dimension \(for axis=-1\)\n  got       Float32\[\]\n"
        r"  it has 0, so axis -1 does not exist\.\n  Pick an axis the input has",
    ):
        ss.build(L.Softmax(), Float32[Array, ""])


def test_dropout_in_training_mode_under_a_plain_jit_says_what_to_do() -> None:
    model = ss.build(L.Linear(2) >> L.Dropout(0.5), Float32[Array, "batch 3"])
    x = jnp.ones((2, 3))
    model.train()  # a built model starts in inference mode
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^layer 2 of 2, Dropout\(0\.5\), updates its own state while training \(a random "
        r"stream, batch statistics\), which a plain jax\.jit of the model cannot carry out\.\n"
        r"  For inference call model\.eval\(\) first; to train, use ss\.fit",
    ):  # before: flax's TraceContextError
        jax.jit(model)(x)
    model.eval()
    np.testing.assert_allclose(np.asarray(jax.jit(model)(x)), np.asarray(model(x)))
