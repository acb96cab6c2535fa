"""Embedding: lookups and table gradients against PyTorch, every integer dtype, initialisation,
out-of-range ids (eager ValueError, NaN rows under jit), and the wording of bad-input errors."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float32, Int8, Int16, Int32, UInt8, UInt32

import shapesafe as ss
from shapesafe import layers as L

VOCAB, FEATURES = 10, 8
SPEC_TYPES: dict[str, Any] = {
    "int32": Int32,
    "int16": Int16,
    "int8": Int8,
    "uint8": UInt8,
    "uint32": UInt32,
}
IDS = np.array([[0, 3, 9, 3, 1], [7, 7, 2, 0, 5], [9, 8, 4, 6, 3]])  # batch 3, time 5; repeats


def torch_embedding(seed: int = 0) -> Any:
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    return torch.nn.Embedding(VOCAB, FEATURES)


def build_like_torch(spec: Any = Int32[Array, "batch time"]) -> tuple[ss.Model, Any]:
    emb = torch_embedding()
    model = ss.build(L.Embedding(VOCAB, FEATURES), spec, seed=0)
    layer: Any = model.layers[0]
    layer.table[...] = jnp.asarray(emb.weight.detach().numpy())
    return model, emb


@pytest.mark.parametrize("dtype", ["int32", "int16", "int8", "uint8", "uint32"])
def test_lookup_matches_torch_for_every_integer_dtype(dtype: str) -> None:
    torch = pytest.importorskip("torch")
    spec = SPEC_TYPES[dtype][Array, "batch time"]
    model, emb = build_like_torch(spec)
    with torch.no_grad():
        want = emb(torch.from_numpy(IDS)).numpy()
    y = model(jnp.asarray(IDS, dtype))
    assert y.shape == (3, 5, FEATURES) and y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), want)


def test_lookup_under_jit_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    model, emb = build_like_torch()
    with torch.no_grad():
        want = emb(torch.from_numpy(IDS)).numpy()
    np.testing.assert_array_equal(np.asarray(jax.jit(model)(jnp.asarray(IDS, jnp.int32))), want)


def test_table_gradient_matches_torch_and_accumulates_repeated_ids() -> None:
    torch = pytest.importorskip("torch")
    model, emb = build_like_torch()
    w = np.random.default_rng(0).normal(size=(3, 5, FEATURES)).astype(np.float32)
    (emb(torch.from_numpy(IDS)) * torch.from_numpy(w)).sum().backward()
    ids = jnp.asarray(IDS, jnp.int32)
    grads = nnx.grad(lambda m: (m(ids) * jnp.asarray(w)).sum())(model)
    np.testing.assert_allclose(
        np.asarray(grads["layers"][0]["table"][...]), emb.weight.grad.numpy(), rtol=1e-6, atol=1e-6
    )


def test_scalar_id_and_extra_leading_dims() -> None:
    layer: Any = ss.build(L.Embedding(VOCAB, FEATURES), Int32[Array, "batch time"]).layers[0]
    table = np.asarray(layer.table[...])
    np.testing.assert_array_equal(np.asarray(layer(jnp.asarray(4, jnp.int32))), table[4])
    ids = np.arange(24).reshape(2, 3, 4) % VOCAB
    np.testing.assert_array_equal(np.asarray(layer(jnp.asarray(ids, jnp.int32))), table[ids])


def test_builds_with_symbolic_dims_and_summary() -> None:
    model = ss.build(L.Embedding(1000, 64), UInt8[Array, "batch time"])
    s = ss.summary(model)
    assert s.output_spec == "Float32[batch, time, 64]"
    assert s.total_params == 1000 * 64


def test_table_is_standard_normal_like_torch() -> None:
    layer: Any = ss.build(L.Embedding(1000, 64), Int32[Array, "batch"], seed=0).layers[0]
    table = np.asarray(layer.table[...])
    assert table.shape == (1000, 64) and table.dtype == np.float32
    assert abs(table.mean()) < 0.02 and abs(table.std() - 1.0) < 0.02


# -- out-of-range ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "dtype", "message"),
    [
        (
            [[1, 2, 3], [4, 12, 5]],
            "int32",
            r"id 12 at position \(1, 1\) is out of range for a vocabulary of 10 "
            r"\(valid ids are 0\.\.9\)",
        ),
        ([[1, -1, 3], [4, 5, 6]], "int32", r"id -1 at position \(0, 1\) is out of range"),
        (
            [[1, 2, 255], [10, 5, 6]],
            "uint8",
            r"id 255 at position \(0, 2\) is out of range.*1 more id is out of range",
        ),
    ],
    ids=["too-large", "negative", "uint8"],
)
def test_out_of_range_ids_raise_value_error_when_called_eagerly(
    ids: list[list[int]], dtype: str, message: str
) -> None:
    model = ss.build(L.Embedding(VOCAB, FEATURES), Int32[Array, "batch time"])
    with pytest.raises(ValueError, match=rf"(?s)Embedding\(10, 8\): {message}"):
        model.layers[0](jnp.asarray(ids, dtype))


def test_out_of_range_ids_give_nan_rows_under_jit_and_negative_ids_do_not_wrap() -> None:
    model = ss.build(L.Embedding(VOCAB, FEATURES), Int32[Array, "batch time"])
    layer: Any = model.layers[0]
    table = np.asarray(layer.table[...])
    y = np.asarray(jax.jit(model)(jnp.asarray([[1, 10, -1, 9]], jnp.int32)))
    np.testing.assert_array_equal(y[0, 0], table[1])
    np.testing.assert_array_equal(y[0, 3], table[9])
    assert (
        np.isnan(y[0, 1]).all() and np.isnan(y[0, 2]).all()
    )  # not table[9] (clamp) nor table[-1] (wrap)


# -- errors ---------------------------------------------------------------------------------


def test_float_input_is_refused_with_a_cast_fix() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)layer 1 of 1, Embedding\(10, 8\), cannot take its input.*"
        r"got       Float32\[batch, 12\].*float32 is not an integer dtype.*"
        r"insert L.Cast\(jnp.int32\) before it",
    ):
        ss.build(L.Embedding(VOCAB, FEATURES), Float32[Array, "batch 12"])


def test_float_input_into_a_built_embedding_is_a_shape_error() -> None:
    layer = ss.build(L.Embedding(VOCAB, FEATURES), Int32[Array, "batch"]).layers[0]
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)Embedding\(10, 8\), cannot take its input.*"
        r"float32 is not an integer dtype.*L.Cast\(jnp.int32\)",
    ):
        layer(jnp.zeros((2,), jnp.float32))


def test_wrong_dtype_into_the_built_model_names_the_dtype() -> None:
    model = ss.build(L.Embedding(VOCAB, FEATURES), Int32[Array, "batch"])
    with pytest.raises(
        ss.ShapeError, match=r"(?s)its dtype is float32; the model was built for int32"
    ):
        model(jnp.zeros((2,), jnp.float32))


@pytest.mark.parametrize(
    ("args", "arg"),
    [((0, 8), "vocab"), ((-5, 8), "vocab"), ((10, 0), "features"), ((True, 8), "vocab")],
    ids=["vocab-zero", "vocab-negative", "features-zero", "vocab-bool"],
)
def test_sizes_must_be_positive_ints(args: tuple[int, int], arg: str) -> None:
    with pytest.raises(
        ValueError, match=rf"Embedding\(.*\): {arg} must be a positive integer, got "
    ):
        L.Embedding(*args)


def test_repr() -> None:
    assert repr(L.Embedding(10, 8)) == "Embedding(10, 8)"
    assert repr(L.Embedding(10, 8).named("tokens")) == "Embedding(10, 8, name='tokens')"
