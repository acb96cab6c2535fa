"""Bad input gives a clear error naming the argument, the layer and the fix: at construction
or build time, never later, and never a raw XLA or jaxtyping stack."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Float32, Key, UInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import talk

IMAGES = UInt8[Array, "batch 32 32 3"]


def test_shape_error_is_a_type_error_and_a_shapesafe_error() -> None:
    assert issubclass(ss.ShapeError, TypeError) and issubclass(ss.ShapeError, ss.ShapesafeError)


def test_missing_cast_names_layer_position_dims_origin_and_fix() -> None:
    net = L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(2)
    with pytest.raises(ss.ShapeError) as info:
        ss.build(net, IMAGES)
    lines = str(info.value).splitlines()
    assert lines[0] == "layer 2 of 4, Linear(64), cannot take its input."
    assert lines[1] == '  expected  Float[Array, "*batch 3072"]'
    assert (
        lines[2]
        == "  got       UInt8[batch, 3072]   (batch from the input; 3072 from layer 1, Flatten())"
    )
    assert lines[3] == "  uint8 is not a floating dtype."
    assert (
        lines[4]
        == "  Insert L.Cast(jnp.float32) (or L.Rescale(1 / 255) for 0..255 pixels) before Linear(64)."
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no raw stack chained


def test_wrong_dtype_at_call_time() -> None:
    model = ss.build(talk.mlp(8), IMAGES)
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)The model's input does not match.*its dtype is float32; "
        r"the model was built for uint8.\n  Convert the data first: x.astype\(np.uint8\)",
    ):
        model(jnp.zeros((2, 32, 32, 3), jnp.float32))


def test_wrong_rank_at_call_time_and_under_jit() -> None:
    model = ss.build(talk.mlp(8), IMAGES)
    x = jnp.zeros((32, 32, 3), jnp.uint8)
    for f in (model, jax.jit(model)):
        with pytest.raises(
            ss.ShapeError,
            match=r'(?s)expected  UInt8\[Array, "batch 32 32 3"\].*got       UInt8\[32, 32, 3\]',
        ):
            f(x)


def test_wrong_size_at_call_time() -> None:
    model = ss.build(talk.mlp(8), IMAGES)
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)got       UInt8\[2, 28, 28, 3\]\n  dimension 1 is 28, the model takes 32: "
        r"resize or crop the input to 32 there, or build the model for 28\.",
    ):
        model(np.zeros((2, 28, 28, 3), np.uint8))


def test_channels_first_image_into_channels_last_model() -> None:
    model = ss.build(talk.cnn(filters=2, hidden=4), IMAGES)
    with pytest.raises(
        ss.ShapeError, match=r"(?s)looks channels-first.*jnp.transpose\(x, \(0, 2, 3, 1\)\)"
    ):
        model(jnp.zeros((4, 3, 32, 32), jnp.uint8))


def test_channels_first_spec_for_a_conv_is_caught_at_build_time() -> None:
    # 32 channels of 3x32 "images": the 3x3 valid conv needs 3 rows, fine; but a 5x5 one cannot fit.
    with pytest.raises(ss.ShapeError, match=r"height is 3, smaller than the kernel's extent 5"):
        ss.build(L.Cast(jnp.float32) >> L.Conv2D(8, (5, 5)), UInt8[Array, "batch 3 32 32"])


def test_rank_too_low_for_conv_says_how_to_add_channels() -> None:
    with pytest.raises(
        ss.ShapeError, match=r"(?s)it needs 4 dimensions.*got 3.*L.Reshape\(\(28, 28, 1\)\)"
    ):
        ss.build(L.Conv2D(8, 3), Float32[Array, "batch 28 28"])


def test_error_inside_a_layer_called_directly_names_it() -> None:
    model = ss.build(L.Linear(4) >> L.ReLU(), Float32[Array, "batch 3"])
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)^Linear\(4\), cannot take its input.*dimension 1 is 5, expected 3",
    ):
        model.layers[0](jnp.zeros((2, 5)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: L.Linear(0), r"Linear\(0\): features must be a positive integer, got 0"),
        (lambda: L.Linear(-3), r"features must be a positive integer, got -3"),
        (lambda: L.Conv2D(0, 3), r"Conv2D\(0, 3\): filters must be a positive integer"),
        (
            lambda: L.Conv2D(8, (3, 0)),
            r"kernel must be a positive int or a tuple of 2 such ints, got \(3, 0\)",
        ),
        (lambda: L.Conv2D(8, 3, strides=-1), r"strides must be a positive int"),
        (
            lambda: L.Conv2D(8, 3, padding="full"),
            r"padding must be one of \('valid', 'same'\).*got 'full'",
        ),
        (lambda: L.Conv2D(8, 3, padding="causal"), r"padding must be one of \('valid', 'same'\)"),
        (
            lambda: L.Conv1D(8, 3, padding="reflect"),
            r"padding must be one of \('valid', 'same', 'causal'\)",
        ),
        (lambda: L.MaxPool((2, 0)), r"window must be a positive int"),
        (
            lambda: L.MaxPool((2, 2), padding="full"),
            r"padding must be 'valid', 'same', a non-negative int, or 2 \(low, high\) pairs; got 'full'",
        ),
        (lambda: L.Reshape((2, -1, -1)), r"at most one -1"),
        (lambda: L.Cast("float99"), r"'float99' is not a dtype"),
        (lambda: L.Rescale(float("nan")), r"scale must be a finite number"),
        (lambda: L.Rescale(1.0, dtype=jnp.int32), r"dtype must be a floating dtype"),
        (lambda: L.Linear(2).named("2nd"), r"a name must be a Python identifier"),
        (lambda: L.Linear(2).named("a") >> L.ReLU().named("a"), r"names must be unique, \['a'\]"),
    ],
    ids=[
        "zero",
        "negative",
        "conv-filters",
        "kernel",
        "strides",
        "padding",
        "causal-2d",
        "padding-1d",
        "pool-window",
        "pool-padding",
        "reshape",
        "cast",
        "rescale-nan",
        "rescale-int",
        "name",
        "duplicate-names",
    ],
)
def test_bad_configuration_is_a_value_error_at_construction(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_a_size_of_the_wrong_type_names_the_argument() -> None:
    # TypeError from the annotation when beartype checks the package (as in these tests),
    # ValueError from the constructor's own validation otherwise: both name `features`.
    with pytest.raises((TypeError, ValueError), match=r"features"):
        L.Linear(2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("batch 3", r'expected a jaxtyping annotation such as UInt8\[Array, "batch 250 250 3"\]'),
        (Key[Array, "batch 3"], r"names no array dtype a model can take"),
        (
            Float32[Array, "*batch 3"],
            r"dimension 'batch' is not allowed here.*instead of '\*batch'",
        ),
        (Float32[Array, "... 3"], r"not allowed here"),
    ],
    ids=["string", "key", "variadic", "ellipsis"],
)
def test_bad_specs_are_shape_errors(spec: Any, message: str) -> None:
    with pytest.raises(ss.ShapeError, match=message):
        ss.build(L.Linear(2), spec)


def test_composing_something_that_is_not_a_layer() -> None:
    with pytest.raises(TypeError, match=r"cannot compose 3"):
        L.Linear(2) >> 3  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"a class: instantiate it, e.g. L.ReLU\(\)"):
        L.Linear(2) >> L.ReLU


def test_reshape_to_an_incompatible_size_at_build_time() -> None:
    with pytest.raises(
        ss.ShapeError, match=r"12 elements per example cannot be reshaped to \(5, -1\)"
    ):
        ss.build(L.Reshape((5, -1)), Float32[Array, "batch 3 4"])


def test_flatten_of_a_symbolic_axis_is_refused_with_reason() -> None:
    with pytest.raises(
        ss.ShapeError, match=r"every dimension after the first must have a fixed size, got time"
    ):
        ss.build(L.Flatten(), Float32[Array, "batch time 3"])


def test_nested_error_paths_read_outside_in() -> None:
    def ok(x: Float[Array, "*b n"]) -> Float[Array, "*b n"]:
        return x

    inner = (L.Linear(4) >> L.Linear(3) >> ok).named("block")
    with pytest.raises(ss.ShapeError) as info:
        ss.build(L.Flatten() >> inner, UInt8[Array, "batch 2 2"])
    assert str(info.value).splitlines()[0] == (
        "layer 2 of 2, (Linear(4) >> Linear(3) >> Function(ok)).named('block') > layer 1 of 3, Linear(4), "
        "cannot take its input."
    )
