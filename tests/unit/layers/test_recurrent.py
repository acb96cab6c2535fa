"""LSTM and GRU: outputs and input gradients against PyTorch on the same weights, symbolic
time, jit, composition with Embedding, initialisation, and the wording of bad-input errors."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float32, Int32

import shapesafe as ss
from shapesafe import layers as L

BATCH, TIME, FEATURES, HIDDEN = 3, 5, 4, 6
CELLS = {"lstm": L.LSTM, "gru": L.GRU}


def torch_rnn(cell: str, seed: int = 0) -> Any:
    """A single-layer, batch_first torch.nn.LSTM/GRU with its own (PyTorch) initialisation."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    kind = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    return kind(FEATURES, HIDDEN, num_layers=1, batch_first=True)


def copy_torch_weights(layer: Any, rnn: Any) -> None:
    """The documented 1:1 mapping: kernels are PyTorch's weights transposed, biases as they are."""
    layer.kernel_ih[...] = jnp.asarray(rnn.weight_ih_l0.detach().numpy().T)
    layer.kernel_hh[...] = jnp.asarray(rnn.weight_hh_l0.detach().numpy().T)
    layer.bias_ih[...] = jnp.asarray(rnn.bias_ih_l0.detach().numpy())
    layer.bias_hh[...] = jnp.asarray(rnn.bias_hh_l0.detach().numpy())


def build_like_torch(
    cell: str, *, return_sequences: bool, spec: Any = None
) -> tuple[ss.Model, Any]:
    rnn = torch_rnn(cell)
    spec = spec if spec is not None else Float32[Array, "batch time 4"]
    model = ss.build(CELLS[cell](HIDDEN, return_sequences=return_sequences), spec, seed=0)
    copy_torch_weights(model.layers[0], rnn)
    return model, rnn


def inputs(shape: tuple[int, ...] = (BATCH, TIME, FEATURES), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_full_sequence_and_last_state_match_torch(cell: str) -> None:
    torch = pytest.importorskip("torch")
    x = inputs()
    every, _ = build_like_torch(cell, return_sequences=True)
    last, rnn = build_like_torch(cell, return_sequences=False)
    with torch.no_grad():
        out, state = rnn(torch.from_numpy(x))
    h_n = (state[0] if cell == "lstm" else state)[
        0
    ].numpy()  # (num_layers, batch, hidden) -> layer 0
    y_every, y_last = every(jnp.asarray(x)), last(jnp.asarray(x))
    assert y_every.shape == (BATCH, TIME, HIDDEN) and y_last.shape == (BATCH, HIDDEN)
    np.testing.assert_allclose(np.asarray(y_every), out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(y_last), h_n, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("cell", "return_sequences"),
    [("lstm", False), ("gru", True)],
    ids=["lstm-last", "gru-sequences"],
)
def test_input_gradient_of_summed_outputs_matches_torch_autograd(
    cell: str, return_sequences: bool
) -> None:
    torch = pytest.importorskip("torch")
    x = inputs()
    model, rnn = build_like_torch(cell, return_sequences=return_sequences)
    xt = torch.from_numpy(x).requires_grad_(True)
    out, state = rnn(xt)
    h_n = state[0] if cell == "lstm" else state
    (out if return_sequences else h_n).sum().backward()
    grad = jax.grad(lambda v: model(v).sum())(jnp.asarray(x))
    assert xt.grad is not None
    np.testing.assert_allclose(np.asarray(grad), xt.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_extra_leading_batch_dims_match_torch_on_the_flattened_batch(cell: str) -> None:
    torch = pytest.importorskip("torch")
    x = inputs((2, BATCH, TIME, FEATURES))
    model, rnn = build_like_torch(cell, return_sequences=True, spec=Float32[Array, "a b time 4"])
    with torch.no_grad():
        out, _ = rnn(torch.from_numpy(x.reshape(2 * BATCH, TIME, FEATURES)))
    y = model(jnp.asarray(x))
    assert y.shape == (2, BATCH, TIME, HIDDEN)
    np.testing.assert_allclose(
        np.asarray(y).reshape(2 * BATCH, TIME, HIDDEN), out.numpy(), rtol=1e-5, atol=1e-6
    )


def test_gru_one_step_by_hand() -> None:
    # One step from h = 0 with every weight 0 except bias_ih: r, z = sigmoid(b), n = tanh(b_n),
    # h' = (1 - z) * n.
    model = ss.build(L.GRU(1), Float32[Array, "batch 1 1"])
    layer: Any = model.layers[0]
    for p in (layer.kernel_ih, layer.kernel_hh, layer.bias_hh):
        p[...] = jnp.zeros_like(p[...])
    layer.bias_ih[...] = jnp.array([0.0, 0.5, 2.0], jnp.float32)  # r, z, n
    z, n = 1 / (1 + math.exp(-0.5)), math.tanh(2.0)
    np.testing.assert_allclose(
        np.asarray(model(jnp.zeros((1, 1, 1), jnp.float32))), [[(1 - z) * n]], rtol=1e-6
    )


def test_lstm_one_step_by_hand() -> None:
    # From h = c = 0 with zero kernels: c' = sigmoid(i) * tanh(g), h' = sigmoid(o) * tanh(c').
    model = ss.build(L.LSTM(1), Float32[Array, "batch 1 1"])
    layer: Any = model.layers[0]
    for p in (layer.kernel_ih, layer.kernel_hh, layer.bias_hh):
        p[...] = jnp.zeros_like(p[...])
    layer.bias_ih[...] = jnp.array([1.0, -3.0, 0.5, 2.0], jnp.float32)  # i, f, g, o

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    c = sig(1.0) * math.tanh(0.5)
    np.testing.assert_allclose(
        np.asarray(model(jnp.zeros((1, 1, 1), jnp.float32))), [[sig(2.0) * math.tanh(c)]], rtol=1e-6
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_jit_equals_eager(cell: str) -> None:
    model = ss.build(
        CELLS[cell](HIDDEN, return_sequences=True), Float32[Array, "batch time 4"], seed=3
    )
    x = jnp.asarray(inputs())
    np.testing.assert_allclose(
        np.asarray(jax.jit(model)(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    ("cell", "return_sequences"),
    [("lstm", True), ("gru", False)],
    ids=["lstm-sequences", "gru-last"],
)
def test_builds_from_a_spec_with_symbolic_time_and_serves_every_length(
    cell: str, return_sequences: bool
) -> None:
    model = ss.build(
        CELLS[cell](8, return_sequences=return_sequences), Float32[Array, "batch time 4"]
    )
    want = "Float32[batch, time, 8]" if return_sequences else "Float32[batch, 8]"
    assert ss.summary(model).output_spec == want
    forward = jax.jit(model)
    for batch, time in ((1, 3), (2, 7)):
        y = forward(jnp.ones((batch, time, 4), jnp.float32))
        assert y.shape == ((batch, time, 8) if return_sequences else (batch, 8))
        assert bool(jnp.all(jnp.isfinite(y)))


def test_builds_with_a_fixed_time() -> None:
    model = ss.build(L.LSTM(8, return_sequences=True), Float32[Array, "batch 12 4"])
    assert ss.summary(model).output_spec == "Float32[batch, 12, 8]"


def test_conv1d_then_lstm_builds_although_the_conv_changes_the_length() -> None:
    model = ss.build(L.Conv1D(4, 3) >> L.LSTM(6), Float32[Array, "batch 10 4"])
    assert ss.summary(model).rows[1][2:4] == ("Float32[batch, 8, 4]", "Float32[batch, 6]")
    assert model(jnp.ones((2, 10, 4), jnp.float32)).shape == (2, 6)


def test_embedding_lstm_linear_builds_from_int_ids_and_runs_under_jit() -> None:
    model = ss.build(
        L.Embedding(10, 8) >> L.LSTM(16) >> L.Linear(2), Int32[Array, "batch 12"], seed=0
    )
    s = ss.summary(model)
    assert [r[3] for r in s.rows] == [
        "Float32[batch, 12, 8]",
        "Float32[batch, 16]",
        "Float32[batch, 2]",
    ]
    # 10*8; 4*16*(8 + 16) + 2*4*16; 16*2 + 2.
    assert [r[4] for r in s.rows] == [80, 4 * 16 * 24 + 2 * 64, 34]
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 10, size=(3, 12)), jnp.int32)
    y = jax.jit(model)(ids)
    assert y.shape == (3, 2) and y.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y), np.asarray(model(ids)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initialisation_is_uniform_within_one_over_sqrt_hidden_like_torch(cell: str) -> None:
    hidden = 64
    layer: Any = ss.build(CELLS[cell](hidden), Float32[Array, "batch time 16"], seed=0).layers[0]
    gates = 4 if cell == "lstm" else 3
    bound = 1 / math.sqrt(hidden)
    shapes = {
        "kernel_ih": (16, gates * hidden),
        "kernel_hh": (hidden, gates * hidden),
        "bias_ih": (gates * hidden,),
        "bias_hh": (gates * hidden,),
    }
    for name, shape in shapes.items():
        w = np.asarray(getattr(layer, name)[...])
        assert w.shape == shape, name
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound, name
    kernel = np.asarray(layer.kernel_hh[...])
    assert abs(kernel.mean()) < 0.01 and abs(kernel.std() - bound / math.sqrt(3)) < 0.01


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_parameter_shapes_are_torchs_transposed(cell: str) -> None:
    rnn = torch_rnn(cell)
    layer: Any = ss.build(CELLS[cell](HIDDEN), Float32[Array, "batch time 4"]).layers[0]
    assert layer.kernel_ih[...].shape == tuple(rnn.weight_ih_l0.shape)[::-1]
    assert layer.kernel_hh[...].shape == tuple(rnn.weight_hh_l0.shape)[::-1]
    assert layer.bias_ih[...].shape == tuple(rnn.bias_ih_l0.shape)
    assert layer.bias_hh[...].shape == tuple(rnn.bias_hh_l0.shape)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_rank_two_spec_is_refused_with_a_fix(cell: str) -> None:
    with pytest.raises(
        ss.ShapeError,
        match=rf"(?s)layer 1 of 1, {cell}\(6\), cannot take its input.*"
        r"it needs 3 dimensions \(batch time features\), got 2.*"
        rf"L.Reshape\(\(5, 1\)\) before {cell}\(6\).*L.Embedding",
    ):
        ss.build(getattr(L, cell)(6), Float32[Array, "batch 5"])


def test_rank_two_input_into_a_built_lstm_is_refused() -> None:
    model = ss.build(L.LSTM(6), Float32[Array, "batch time 4"])
    with pytest.raises(
        ss.ShapeError, match=r"(?s)The model's input does not match.*got       Float32\[3, 4\]"
    ):
        model(jnp.ones((3, 4), jnp.float32))
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)LSTM\(6\), cannot take its input.*"
        r"it needs at least 2 dimensions \(time 4\), got 1",
    ):
        model.layers[0](jnp.ones((4,), jnp.float32))


def test_int_input_into_lstm_suggests_embedding_or_cast() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)LSTM\(6\), cannot take its input.*int32 is not a floating dtype.*"
        r"Insert L.Embedding\(vocab, features\) before LSTM\(6\) if these are token ids, "
        r"or L.Cast\(jnp.float32\)",
    ):
        ss.build(L.LSTM(6), Int32[Array, "batch 5 4"])


def test_int_input_into_a_built_lstm_is_a_shape_error() -> None:
    model = ss.build(L.LSTM(6), Float32[Array, "batch time 4"])
    with pytest.raises(
        ss.ShapeError, match=r"(?s)int32 is not a floating dtype.*Insert L.Cast\(jnp.float32\)"
    ):
        model.layers[0](jnp.ones((2, 5, 4), jnp.int32))


def test_wrong_feature_size_into_a_built_gru_names_the_dimension() -> None:
    model = ss.build(L.GRU(6), Float32[Array, "batch time 4"])
    with pytest.raises(
        ss.ShapeError, match=r"(?s)GRU\(6\), cannot take its input.*dimension 2 is 5, expected 4"
    ):
        model.layers[0](jnp.ones((2, 3, 5), jnp.float32))


def test_symbolic_features_are_refused() -> None:
    with pytest.raises(ss.ShapeError, match=r"features must be a fixed size, got the symbolic f"):
        ss.build(L.GRU(6), Float32[Array, "batch time f"])


@pytest.mark.parametrize("hidden", [0, -3, True], ids=["zero", "negative", "bool"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_hidden_must_be_a_positive_int(cell: str, hidden: Any) -> None:
    with pytest.raises(
        ValueError, match=rf"{cell}\(.*\): hidden must be a positive integer, got {hidden!r}"
    ):
        getattr(L, cell)(hidden)


def test_repr_shows_non_default_options() -> None:
    assert repr(L.LSTM(6)) == "LSTM(6)"
    assert repr(L.GRU(6, return_sequences=True)) == "GRU(6, return_sequences=True)"
    assert L.LSTM(6) == L.LSTM(6) and hash(L.LSTM(6)) == hash(L.LSTM(6)) and L.LSTM(6) != L.GRU(6)
