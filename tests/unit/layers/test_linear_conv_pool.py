"""Linear, Conv1D/Conv2D and the pools against PyTorch on the same weights (and NumPy).

Layouts: our Linear kernel is ``(in, out)``, PyTorch's weight ``(out, in)``; our conv kernel
is ``(*kernel, in, out)`` (HWIO) on channels-last inputs, PyTorch's weight ``(out, in, *kernel)``
(OIHW) on channels-first inputs. Everything is float32; tolerances are stated per test.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

torch = pytest.importorskip("torch")
F = torch.nn.functional

ATOL = 1e-5
RTOL = 1e-5


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.normal(size=shape) * scale).astype(np.float32)


def set_weights(layer: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Give a built Linear/Conv random weights (and bias); return them as NumPy arrays."""
    kernel = randn(rng, *layer.kernel[...].shape, scale=0.3)
    layer.kernel[...] = jnp.asarray(kernel)
    bias = None
    if layer.bias is not None:
        bias = randn(rng, *layer.bias[...].shape)
        layer.bias[...] = jnp.asarray(bias)
    return kernel, bias


def run(model: ss.Model, x: np.ndarray) -> np.ndarray:
    """The model on ``x``, jitted (one compilation instead of one per operation)."""
    return np.asarray(jax.jit(model)(jnp.asarray(x)))


def to_nchw(x: np.ndarray) -> Any:
    """A channels-last NumPy array as a channels-first torch tensor."""
    return torch.from_numpy(x).movedim(-1, 1).contiguous()


def from_nchw(t: Any) -> np.ndarray:
    return t.movedim(1, -1).detach().numpy()


def oihw(kernel: np.ndarray) -> Any:
    """Our ``(*kernel, in, out)`` kernel as PyTorch's ``(out, in, *kernel)`` weight."""
    nd = kernel.ndim - 2
    return torch.from_numpy(kernel).permute(nd + 1, nd, *range(nd)).contiguous()


def maybe(b: np.ndarray | None) -> Any:
    return None if b is None else torch.from_numpy(b)


# -- Linear ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)], ids=["matrix", "rank3"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
def test_linear_matches_torch(shape: tuple[int, ...], use_bias: bool) -> None:
    spec = Float32[Array, "batch " + " ".join(map(str, shape[1:]))]
    model = ss.build(L.Linear(4, use_bias=use_bias), spec, seed=0)
    rng = np.random.default_rng(0)
    kernel, bias = set_weights(model.layers[0], rng)
    assert kernel.shape == (7, 4)
    x = randn(rng, *shape)
    want = F.linear(
        torch.from_numpy(x), torch.from_numpy(kernel.T.copy()), maybe(bias)
    ).numpy()  # (out, in)
    np.testing.assert_allclose(run(model, x), want, rtol=RTOL, atol=ATOL)


# -- Conv2D ----------------------------------------------------------------------------------


def torch_pads_2d(pads: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
    """((h_lo, h_hi), (w_lo, w_hi)) as F.pad's (w_lo, w_hi, h_lo, h_hi)."""
    (h_lo, h_hi), (w_lo, w_hi) = pads
    return (w_lo, w_hi, h_lo, h_hi)


CONV2D_CASES = {
    # id: (blueprint kwargs, kernel, explicit (h, w) padding PyTorch gets with F.pad).
    # Two kernel shapes only: each new shape costs an initialiser compilation.
    "valid": (dict(), (3, 3), ((0, 0), (0, 0))),
    "valid-rect-nobias": (dict(use_bias=False), (2, 4), ((0, 0), (0, 0))),
    "same-odd": (dict(padding="same"), (3, 3), ((1, 1), (1, 1))),
    "same-even": (dict(padding="same"), (2, 4), ((0, 1), (1, 2))),  # the extra padding goes last
    "int": (dict(padding=1), (3, 3), ((1, 1), (1, 1))),
    "pairs": (dict(padding=((1, 2), (0, 1))), (3, 3), ((1, 2), (0, 1))),
    "stride2-rect": (dict(strides=(2, 1)), (3, 3), ((0, 0), (0, 0))),
    # n=8, k=3, s=2: out = ceil(8/2) = 4, total pad = (4-1)*2 + 3 - 8 = 1 -> (0, 1)
    "same-stride2": (dict(padding="same", strides=2), (3, 3), ((0, 1), (0, 1))),
    # dilated extent 5: total pad 4 -> (2, 2)
    "same-dilation2": (dict(padding="same", dilation=2), (3, 3), ((2, 2), (2, 2))),
    "stride2-dilation2-pairs-nobias": (
        dict(strides=2, dilation=2, padding=((1, 0), (2, 1)), use_bias=False),
        (2, 4),
        ((1, 0), (2, 1)),
    ),
}


@pytest.mark.parametrize("case", list(CONV2D_CASES), ids=list(CONV2D_CASES))
def test_conv2d_matches_torch(case: str) -> None:
    kwargs, kernel_size, pads = CONV2D_CASES[case]
    model = ss.build(L.Conv2D(5, kernel_size, **kwargs), Float32[Array, "batch 8 8 3"], seed=0)
    rng = np.random.default_rng(1)
    kernel, bias = set_weights(model.layers[0], rng)
    assert kernel.shape == (*kernel_size, 3, 5)
    assert (bias is None) == (kwargs.get("use_bias") is False)
    x = randn(rng, 2, 8, 8, 3)
    bp = model.blueprint.layers[0]
    t = F.pad(to_nchw(x), torch_pads_2d(pads))
    want = from_nchw(
        F.conv2d(t, oihw(kernel), maybe(bias), stride=bp.strides, dilation=bp.dilation)
    )
    got = run(model, x)
    assert ss.summary(model).output_spec == f"Float32[batch, {want.shape[1]}, {want.shape[2]}, 5]"
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# PyTorch warns that it copies the input to pad an even kernel asymmetrically; that is the case tested.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
def test_conv2d_same_matches_torch_same() -> None:
    """PyTorch's own padding='same' (stride 1) on an even, dilated kernel."""
    model = ss.build(
        L.Conv2D(4, (2, 4), padding="same", dilation=(1, 2)), Float32[Array, "batch 7 9 2"], seed=0
    )
    rng = np.random.default_rng(2)
    kernel, bias = set_weights(model.layers[0], rng)
    x = randn(rng, 3, 7, 9, 2)
    want = from_nchw(
        F.conv2d(to_nchw(x), oihw(kernel), maybe(bias), padding="same", dilation=(1, 2))
    )
    np.testing.assert_allclose(run(model, x), want, rtol=1e-4, atol=1e-5)


# -- Conv1D ----------------------------------------------------------------------------------

CONV1D_CASES = {
    # id: (blueprint kwargs, explicit (lo, hi) time padding PyTorch gets with F.pad)
    "valid": (dict(), (0, 0)),
    "same": (dict(padding="same"), (1, 1)),
    "int-stride2": (dict(padding=2, strides=2), (2, 2)),
    "pair": (dict(padding=((2, 1),)), (2, 1)),
    "flat-pair": (dict(padding=(2, 1)), (2, 1)),  # Conv1D's documented (low, high) pair
    "causal": (dict(padding="causal"), (2, 0)),  # left pad (k - 1) * d
    "causal-dilation2": (dict(padding="causal", dilation=2), (4, 0)),
    "causal-nobias": (dict(padding="causal", use_bias=False), (2, 0)),
}


@pytest.mark.parametrize("case", list(CONV1D_CASES), ids=list(CONV1D_CASES))
def test_conv1d_matches_torch(case: str) -> None:
    kwargs, pad = CONV1D_CASES[case]
    model = ss.build(L.Conv1D(6, 3, **kwargs), Float32[Array, "batch 11 4"], seed=0)
    rng = np.random.default_rng(3)
    kernel, bias = set_weights(model.layers[0], rng)
    assert kernel.shape == (3, 4, 6)
    x = randn(rng, 2, 11, 4)
    bp = model.blueprint.layers[0]
    t = F.pad(to_nchw(x), pad)
    want = from_nchw(
        F.conv1d(t, oihw(kernel), maybe(bias), stride=bp.strides, dilation=bp.dilation)
    )
    np.testing.assert_allclose(run(model, x), want, rtol=1e-4, atol=1e-5)


def test_conv1d_causal_output_ignores_the_future() -> None:
    """Changing step t changes no output before t (and keeps the length)."""
    model = ss.build(
        L.Conv1D(6, 3, padding="causal", dilation=2), Float32[Array, "batch 12 4"], seed=0
    )
    rng = np.random.default_rng(4)
    x = randn(rng, 1, 12, 4)
    y = run(model, x)
    x2 = x.copy()
    x2[:, 7] += 1.0
    y2 = run(model, x2)
    assert y.shape == (1, 12, 6)
    np.testing.assert_array_equal(y[:, :7], y2[:, :7])
    assert not np.allclose(y[:, 7], y2[:, 7])


# -- pooling ---------------------------------------------------------------------------------


def np_pool_same(
    x: np.ndarray, window: tuple[int, ...], strides: tuple[int, ...], reduce: str
) -> np.ndarray:
    """TF/Keras 'same' pooling over the spatial axes of a channels-last array, from the definition:
    out = ceil(n / s), total padding max((out - 1) * s + w - n, 0), the smaller half first; padded
    positions are skipped (so an average counts only real entries)."""
    nd = len(window)
    spatial = x.shape[1:-1]
    outs = [math.ceil(n / s) for n, s in zip(spatial, strides, strict=True)]
    lows = [
        max((o - 1) * s + w - n, 0) // 2
        for o, s, w, n in zip(outs, strides, window, spatial, strict=True)
    ]
    y = np.zeros((x.shape[0], *outs, x.shape[-1]), x.dtype)
    for idx in np.ndindex(*outs):
        region = tuple(
            slice(max(i * s - lo, 0), min(i * s - lo + w, n))
            for i, s, lo, w, n in zip(idx, strides, lows, window, spatial, strict=True)
        )
        patch = x[(slice(None), *region, slice(None))]
        axes = tuple(range(1, nd + 1))
        y[(slice(None), *idx, slice(None))] = (
            patch.max(axis=axes) if reduce == "max" else patch.mean(axis=axes)
        )
    return y


def torch_pool(
    x: np.ndarray, kind: str, window: tuple[int, ...], strides: tuple[int, ...], padding: int = 0
) -> np.ndarray:
    t = to_nchw(x)
    nd = len(window)
    if kind == "max":
        fn = F.max_pool1d if nd == 1 else F.max_pool2d
        return from_nchw(fn(t, window, strides, padding=padding))
    fn = F.avg_pool1d if nd == 1 else F.avg_pool2d
    return from_nchw(fn(t, window, strides, padding=padding, count_include_pad=False))


POOL_CASES = {
    # id: (window, strides or None, spatial sizes, tiled fast path expected)
    "2x2-tiled": ((2, 2), None, (8, 6), True),
    "2x2-tiled-odd-sizes": ((2, 2), None, (7, 9), True),  # the last row/column is dropped, as torch
    "3x3-tiled": ((3, 3), None, (9, 7), True),
    "3x3-stride2-overlapping": ((3, 3), (2, 2), (9, 8), False),
    "2x3-stride1": ((2, 3), (1, 1), (6, 7), False),
    "1d-tiled": ((2,), None, (11,), True),
    "1d-3-stride2": ((3,), (2,), (11,), False),
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", list(POOL_CASES), ids=list(POOL_CASES))
def test_pool_valid_matches_torch(case: str, kind: str) -> None:
    window, strides, spatial, tiled = POOL_CASES[case]
    blueprint = (L.MaxPool if kind == "max" else L.AvgPool)(window, strides=strides)
    spec = Float32[Array, "batch " + " ".join(map(str, (*spatial, 4)))]
    model = ss.build(blueprint, spec, seed=0)
    assert model.layers[0].tiles is tiled
    x = randn(np.random.default_rng(5), 3, *spatial, 4)
    want = torch_pool(x, kind, window, strides or window)
    np.testing.assert_allclose(run(model, x), want, rtol=RTOL, atol=ATOL)


SAME_CASES = {
    "3x3-stride2": ((3, 3), (2, 2), (9, 8)),  # pads (1, 1) on height, (0, 1) on width
    "2x2": ((2, 2), (2, 2), (7, 5)),  # odd sizes: one padded row/column at the end
    "3x3-stride1": ((3, 3), (1, 1), (5, 6)),
    "4x2-stride3": ((4, 2), (3, 1), (10, 5)),
    "1d-3-stride2": ((3,), (2,), (10,)),
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", list(SAME_CASES), ids=list(SAME_CASES))
def test_pool_same_matches_numpy(case: str, kind: str) -> None:
    window, strides, spatial = SAME_CASES[case]
    blueprint = (L.MaxPool if kind == "max" else L.AvgPool)(window, strides=strides, padding="same")
    spec = Float32[Array, "batch " + " ".join(map(str, (*spatial, 3)))]
    model = ss.build(blueprint, spec, seed=0)
    x = randn(np.random.default_rng(6), 2, *spatial, 3)
    want = np_pool_same(x, window, strides, kind)
    assert (
        ss.summary(model).output_spec
        == "Float32[batch, " + ", ".join(map(str, want.shape[1:])) + "]"
    )
    np.testing.assert_allclose(run(model, x), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_same_stride1_matches_torch(kind: str) -> None:
    """Odd window, stride 1: 'same' is symmetric padding, which PyTorch can express
    (count_include_pad=False for the average, as Keras)."""
    blueprint = (L.MaxPool if kind == "max" else L.AvgPool)((3, 3), strides=1, padding="same")
    model = ss.build(blueprint, Float32[Array, "batch 6 5 2"], seed=0)
    x = randn(np.random.default_rng(7), 2, 6, 5, 2)
    want = torch_pool(x, kind, (3, 3), (1, 1), padding=1)
    np.testing.assert_allclose(run(model, x), want, rtol=RTOL, atol=ATOL)


def test_avgpool_same_excludes_padding_from_the_count() -> None:
    """A hand-computed corner: ones everywhere average to exactly one, padding or not."""
    model = ss.build(
        L.AvgPool((3, 3), strides=2, padding="same"), Float32[Array, "batch 4 4 1"], seed=0
    )
    np.testing.assert_array_equal(
        run(model, np.ones((1, 4, 4, 1), np.float32)), np.ones((1, 2, 2, 1), np.float32)
    )


EXPLICIT_POOL_CASES = {
    # id: (window, strides, padding as given to both libraries, spatial sizes)
    "resnet-stem-3x3-stride2-pad1": ((3, 3), (2, 2), 1, (9, 8)),
    "3x3-stride1-pad1": ((3, 3), (1, 1), 1, (5, 6)),
    "1d-3-stride2-pad1": ((3,), (2,), 1, (10,)),
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", list(EXPLICIT_POOL_CASES), ids=list(EXPLICIT_POOL_CASES))
def test_pool_explicit_padding_matches_torch(case: str, kind: str) -> None:
    """An int padding, as torch.nn.MaxPool2d(padding=p): -inf padding for the max, not counted
    in the average. Negative inputs show that the max pads with -inf, not zeros."""
    window, strides, padding, spatial = EXPLICIT_POOL_CASES[case]
    blueprint = (L.MaxPool if kind == "max" else L.AvgPool)(
        window, strides=strides, padding=padding
    )
    model = ss.build(
        blueprint, Float32[Array, "batch " + " ".join(map(str, (*spatial, 3)))], seed=0
    )
    x = randn(np.random.default_rng(10), 2, *spatial, 3) - 5.0
    want = torch_pool(x, kind, window, strides, padding=padding)
    assert (
        ss.summary(model).output_spec
        == "Float32[batch, " + ", ".join(map(str, want.shape[1:])) + "]"
    )
    np.testing.assert_allclose(run(model, x), want, rtol=RTOL, atol=ATOL)


def test_maxpool_uneven_padding_pairs_match_numpy() -> None:
    """(low, high) pairs per axis: pad with -inf by hand, then take 2x2 maxima with stride 2."""
    model = ss.build(
        L.MaxPool((2, 2), padding=((1, 0), (0, 1))), Float32[Array, "batch 3 3 1"], seed=0
    )
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    padded = np.pad(x, ((0, 0), (1, 0), (0, 1), (0, 0)), constant_values=-np.inf)
    want = padded.reshape(1, 2, 2, 2, 2, 1).max(axis=(2, 4))
    np.testing.assert_array_equal(run(model, x), want)


@pytest.mark.parametrize(
    "padding",
    [-1, 3, ((0, 2), (0, 0)), "full"],
    ids=["negative", "int-too-big", "pair-too-big", "word"],
)
def test_pool_padding_is_validated(padding: Any) -> None:
    with pytest.raises(ValueError, match=r"MaxPool\(\(2, 2\)\): padding must be"):
        L.MaxPool((2, 2), padding=padding)


@pytest.mark.parametrize("spec_shape", [(5, 4, 3), (6, 3), (2, 3, 4, 3)], ids=["2d", "1d", "3d"])
def test_global_avg_pool_matches_numpy(spec_shape: tuple[int, ...]) -> None:
    model = ss.build(
        L.GlobalAvgPool(), Float32[Array, "batch " + " ".join(map(str, spec_shape))], seed=0
    )
    x = randn(np.random.default_rng(8), 4, *spec_shape)
    want = x.mean(axis=tuple(range(1, x.ndim - 1)))
    assert ss.summary(model).output_spec == f"Float32[batch, {spec_shape[-1]}]"
    np.testing.assert_allclose(run(model, x), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "window, strides", [((2, 2), None), ((3, 3), (2, 2))], ids=["tiled", "overlapping"]
)
def test_pool_gradient_under_jit_matches_torch(
    kind: str, window: tuple[int, int], strides: tuple[int, int] | None
) -> None:
    """d/dx sum(pool(x) * g), jitted: a max routes each g to its window's maximum (continuous x,
    so no ties), an average spreads it evenly. The overlapping windows take lax.reduce_window."""
    blueprint = (L.MaxPool if kind == "max" else L.AvgPool)(window, strides=strides)
    model = ss.build(blueprint, Float32[Array, "batch 9 8 3"], seed=0)
    assert model.layers[0].tiles is (strides is None)
    rng = np.random.default_rng(9)
    x = randn(rng, 2, 9, 8, 3)
    graphdef, state = nnx.split(model)
    out_shape = jax.eval_shape(lambda a: nnx.merge(graphdef, state)(a), jnp.asarray(x)).shape
    g = randn(rng, *out_shape)

    def loss(a: jax.Array) -> jax.Array:
        return jnp.sum(nnx.merge(graphdef, state)(a) * jnp.asarray(g))

    got = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(x)))
    t = to_nchw(x).requires_grad_(True)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    (pool(t, window, strides or window) * to_nchw(g)).sum().backward()
    want = from_nchw(t.grad)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    if kind == "max" and strides is None:  # disjoint windows: one entry per window gets gradient
        assert np.count_nonzero(got) == g.size
