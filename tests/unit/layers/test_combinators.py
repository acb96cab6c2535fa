"""Residual, Concat and Add: numerics against NumPy, build-time errors, nesting, jit, summary."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float32
from numpy.lib.stride_tricks import sliding_window_view

import shapesafe as ss
from shapesafe import layers as L

IMAGE = Float32[Array, "batch 16 16 8"]


def np_conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray,
    *,
    stride: int = 1,
    pads: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
) -> np.ndarray:
    """NHWC x HWIO cross-correlation, written from the definition."""
    x = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw = kernel.shape[:2]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # n h w c kh kw
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias


def set_params(layer: object, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Give a built conv or dense layer random weights and bias; return them as NumPy arrays."""
    kernel = rng.normal(size=layer.kernel[...].shape).astype(np.float32) * 0.3  # type: ignore[attr-defined]
    bias = rng.normal(size=layer.bias[...].shape).astype(np.float32)  # type: ignore[attr-defined]
    layer.kernel[...] = jnp.asarray(kernel)  # type: ignore[attr-defined]
    layer.bias[...] = jnp.asarray(bias)  # type: ignore[attr-defined]
    return kernel, bias


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


# -- Residual --------------------------------------------------------------------------------


def test_basic_block_equals_numpy_reference() -> None:
    block = L.Conv2D(8, 3, padding="same") >> L.ReLU() >> L.Conv2D(8, 3, padding="same")
    model = ss.build(L.Residual(block), IMAGE, seed=0)
    assert ss.summary(model).output_spec == "Float32[batch, 16, 16, 8]"
    rng = np.random.default_rng(0)
    res = model.layers[0]
    k1, b1 = set_params(res.block.layers[0], rng)
    k2, b2 = set_params(res.block.layers[2], rng)
    assert res.shortcut is None
    x = rng.normal(size=(2, 16, 16, 8)).astype(np.float32)
    same = ((1, 1), (1, 1))
    want = np_conv2d(relu(np_conv2d(x, k1, b1, pads=same)), k2, b2, pads=same) + x
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(jax.jit(model)(jnp.asarray(x))), want, rtol=1e-4, atol=1e-4
    )


def test_basic_block_equals_torch() -> None:
    torch = pytest.importorskip("torch")
    block = L.Conv2D(8, 3, padding="same") >> L.ReLU() >> L.Conv2D(8, 3, padding="same")
    model = ss.build(L.Residual(block), IMAGE, seed=0)
    rng = np.random.default_rng(1)
    (k1, b1), (k2, b2) = (set_params(model.layers[0].block.layers[i], rng) for i in (0, 2))
    x = rng.normal(size=(3, 16, 16, 8)).astype(np.float32)

    def conv(t, k, b):  # type: ignore[no-untyped-def]
        return torch.nn.functional.conv2d(
            t, torch.from_numpy(k).permute(3, 2, 0, 1), torch.from_numpy(b), padding=1
        )

    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    want = (conv(torch.relu(conv(t, k1, b1)), k2, b2) + t).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, rtol=1e-4, atol=1e-4)


def test_downsampling_block_with_projection_shortcut() -> None:
    net = L.Residual(
        L.Conv2D(16, 3, strides=2, padding="same") >> L.ReLU() >> L.Conv2D(16, 3, padding="same"),
        shortcut=L.Conv2D(16, (1, 1), strides=2),
    )
    model = ss.build(net, IMAGE, seed=0)
    assert ss.summary(model).output_spec == "Float32[batch, 8, 8, 16]"
    rng = np.random.default_rng(2)
    res = model.layers[0]
    k1, b1 = set_params(res.block.layers[0], rng)
    k2, b2 = set_params(res.block.layers[2], rng)
    ks, bs = set_params(res.shortcut.layers[0], rng)
    x = rng.normal(size=(2, 16, 16, 8)).astype(np.float32)
    # 'same' with stride 2 on 16 pads (0, 1): out = ceil(16 / 2) = 8 needs (8 - 1) * 2 + 3 - 16 = 1.
    h = relu(np_conv2d(x, k1, b1, stride=2, pads=((0, 1), (0, 1))))
    want = np_conv2d(h, k2, b2, pads=((1, 1), (1, 1))) + np_conv2d(x, ks, bs, stride=2)
    np.testing.assert_allclose(
        np.asarray(jax.jit(model)(jnp.asarray(x))), want, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    ("block", "spec", "returns", "fix"),
    [
        (
            L.Conv2D(16, 3, strides=2, padding="same"),
            IMAGE,
            "Float32[batch, 8, 8, 16]",
            "shortcut=L.Conv2D(16, (1, 1), strides=2)",
        ),
        (
            L.Conv2D(16, 3, padding="same"),
            IMAGE,
            "Float32[batch, 16, 16, 16]",
            "shortcut=L.Conv2D(16, (1, 1))",
        ),
        (L.Linear(5), Float32[Array, "batch 3"], "Float32[batch, 5]", "shortcut=L.Linear(5)"),
        (
            L.Cast(jnp.bfloat16),
            Float32[Array, "batch 3"],
            "BFloat16[batch, 3]",
            "shortcut=L.Cast(jnp.bfloat16)",
        ),
    ],
    ids=["downsample", "widen", "dense", "dtype"],
)
def test_identity_shortcut_mismatch_says_both_specs_and_the_fix(
    block: L.Blueprint, spec: Any, returns: str, fix: str
) -> None:
    with pytest.raises(ss.ShapeError) as info:
        ss.build(L.Residual(block), spec)
    message = str(info.value)
    assert message.startswith("layer 1 of 1, Residual(")
    assert f"the block returns {returns}; the identity shortcut (the input, " in message
    assert fix in message


def test_shortcut_that_disagrees_with_the_block_names_both() -> None:
    net = L.Residual(L.Conv2D(16, 3, strides=2, padding="same"), shortcut=L.Conv2D(16, 1))
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)the block returns Float32\[batch, 8, 8, 16\] but the shortcut, "
        r"Conv2D\(16, \(1, 1\)\), returns Float32\[batch, 16, 16, 16\].*strides=2",
    ):
        ss.build(net, IMAGE)


def test_error_inside_the_block_keeps_its_path() -> None:
    net = L.Flatten() >> L.Residual(L.Linear(4) >> L.Cast(jnp.int32) >> L.Linear(4)).named("res")
    with pytest.raises(
        ss.ShapeError,
        match=r"^layer 2 of 2, Residual\(.*\) > block > layer 3 of 3, Linear\(4\), "
        r"cannot take its input\.(?s:.*)Insert L.Cast\(jnp.float32\) before Linear\(4\)",
    ):
        ss.build(net, Float32[Array, "batch 2 2"])


def test_call_time_error_inside_the_block_keeps_its_path() -> None:
    model = ss.build(
        L.Residual(L.Conv2D(3, 3), shortcut=L.Conv2D(3, 3)), Float32[Array, "batch h w 3"]
    )
    assert model(jnp.ones((1, 5, 4, 3))).shape == (1, 3, 2, 3)
    with pytest.raises(
        ss.ShapeError,
        match=r"Residual\(.*\) > block > layer 1 of 1, Conv2D\(3, \(3, 3\)\), cannot take its "
        r"input\.\n  expected  height >= 3 and width >= 3\n  got       Float32\[1, 2, 4, 3\]",
    ):
        jax.jit(model)(jnp.ones((1, 2, 4, 3)))


# -- Concat and Add --------------------------------------------------------------------------


def test_concat_and_add_equal_numpy() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    cat = ss.build(L.Concat((L.Linear(3), L.Linear(2) >> L.ReLU())), Float32[Array, "batch 4"])
    (k0, b0), (k1, b1) = (set_params(cat.layers[0].branches[i].layers[0], rng) for i in (0, 1))
    want = np.concatenate([x @ k0 + b0, relu(x @ k1 + b1)], axis=-1)
    assert ss.summary(cat).output_spec == "Float32[batch, 5]"
    np.testing.assert_allclose(np.asarray(jax.jit(cat)(x)), want, rtol=1e-5, atol=1e-5)

    add = ss.build(
        L.Add((L.Linear(3), L.Linear(3) >> L.Tanh(), L.Linear(3))), Float32[Array, "batch 4"]
    )
    params = [set_params(add.layers[0].branches[i].layers[0], rng) for i in range(3)]
    want = (
        (x @ params[0][0] + params[0][1])
        + np.tanh(x @ params[1][0] + params[1][1])
        + (x @ params[2][0] + params[2][1])
    )
    np.testing.assert_allclose(np.asarray(jax.jit(add)(x)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(add(x)), want, rtol=1e-5, atol=1e-5)


def test_concat_along_an_inner_axis_of_images() -> None:
    rng = np.random.default_rng(4)
    net = L.Concat((L.Conv2D(4, 1), L.Conv2D(4, (3, 1), padding=((1, 1), (0, 0)))), axis=1)
    model = ss.build(net, Float32[Array, "batch 6 5 2"])
    assert ss.summary(model).output_spec == "Float32[batch, 12, 5, 4]"
    (k0, b0), (k1, b1) = (set_params(model.layers[0].branches[i].layers[0], rng) for i in (0, 1))
    x = rng.normal(size=(2, 6, 5, 2)).astype(np.float32)
    want = np.concatenate(
        [np_conv2d(x, k0, b0), np_conv2d(x, k1, b1, pads=((1, 1), (0, 0)))], axis=1
    )
    np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("net", "message"),
    [
        (
            L.Concat((L.Conv2D(4, 3), L.Conv2D(2, 1))),
            r"(?s)Concat\(.*the branches' outputs differ on axis 1, not only on axis 3:\n"
            r"    branch 1, Conv2D\(4, \(3, 3\)\): Float32\[batch, 14, 14, 4\]\n"
            r"    branch 2, Conv2D\(2, \(1, 1\)\): Float32\[batch, 16, 16, 2\]\n.*padding='same'",
        ),
        (
            L.Concat((L.Flatten(), L.Conv2D(2, 1))),
            r"(?s)different ranks:\n    branch 1, Flatten\(\): Float32\[batch, 2048\]",
        ),
        (
            L.Concat((L.Flatten(), L.Flatten() >> L.Cast(jnp.bfloat16))),
            r"(?s)different dtypes:.*branch 2, Flatten\(\) >> Cast\(jnp.bfloat16\): BFloat16\[batch, 2048\]",
        ),
        (
            L.Concat((L.Conv2D(2, 1), L.Conv2D(2, 1)), axis=4),
            r"the branches' outputs have no axis 4",
        ),
        (
            L.Add((L.Conv2D(4, 1), L.Conv2D(2, 1))),
            r"(?s)Add\(.*the branches' outputs differ:\n    branch 1, Conv2D\(4, \(1, 1\)\): Float32\[batch, 16, 16, 4\]\n"
            r"    branch 2, Conv2D\(2, \(1, 1\)\): Float32\[batch, 16, 16, 2\]",
        ),
        (
            L.Add((L.Linear(2), L.Conv2D(2, 3) >> L.Linear(2))),
            r"(?s)branch 1, Linear\(2\): Float32\[batch, 16, 16, 2\].*branch 2, Conv2D\(2, \(3, 3\)\) >> Linear\(2\): "
            r"Float32\[batch, 14, 14, 2\]",
        ),
        (
            L.Add((L.Linear(2), L.Reshape((7, -1)))),
            r"^layer 1 of 1, Add\(.*\) > branch 2 of 2 > layer 1 of 1, Reshape\(\(7, -1\)\), cannot take its input",
        ),
    ],
    ids=[
        "concat-spatial",
        "concat-rank",
        "concat-dtype",
        "concat-axis",
        "add-channels",
        "add-spatial",
        "inner-error",
    ],
)
def test_branch_disagreement_is_a_build_time_shape_error(net: L.Blueprint, message: str) -> None:
    with pytest.raises(ss.ShapeError, match=message):
        ss.build(net, IMAGE)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: L.Concat(()), r"Concat: branches must be a non-empty tuple"),
        (lambda: L.Add(L.Linear(2)), r"Add: branches must be a non-empty tuple"),
        (lambda: L.Concat((L.Linear(2),), axis=True), r"Concat: axis must be an int, got True"),
    ],
    ids=["empty", "not-a-tuple", "axis"],
)
def test_bad_arguments_are_value_errors(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


# -- blueprints as data, nesting, summary ---------------------------------------------------


def resnet_stem() -> L.Sequential:
    conv = L.Conv2D(8, 3, padding="same")
    block = conv.named("conv1") >> L.ReLU() >> conv.named("conv2")
    return (
        L.Conv2D(8, 1).named("stem")
        >> L.Residual(block).named("res")
        >> L.Concat((L.MaxPool((2, 2)), L.AvgPool((2, 2))), name="pools")
        >> L.GlobalAvgPool()
    )


def test_blueprints_are_hashable_comparable_data_with_a_readable_repr() -> None:
    a, b = resnet_stem(), resnet_stem()
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert (
        repr(L.Residual(L.Linear(4) >> L.ReLU(), shortcut=L.Linear(4)))
        == "Residual(Linear(4) >> ReLU(), shortcut=Linear(4))"
    )
    assert (
        repr(L.Concat([L.Linear(2), L.Linear(3)], axis=1))
        == "Concat((Linear(2), Linear(3)), axis=1)"
    )
    assert repr(L.Add((L.Linear(2),)).named("sum")) == "Add((Linear(2),), name='sum')"
    assert L.Residual(L.Linear(4)) != L.Residual(L.Linear(5))


def test_nested_indexing_slicing_and_naming() -> None:
    net = resnet_stem()
    res = net["res"]
    assert isinstance(res, L.Residual)
    assert res.block["conv2"] == L.Conv2D(8, 3, padding="same", name="conv2")
    assert res.block[:-1] == L.Conv2D(8, 3, padding="same").named("conv1") >> L.ReLU()
    assert net["pools"].branches[1] == L.Sequential((L.AvgPool((2, 2)),))  # type: ignore[attr-defined]
    assert net["pools"].branches[1][0] == L.AvgPool((2, 2))  # type: ignore[attr-defined]
    assert L.Residual(res.block[:1]).block == res.block[:1]

    model = ss.build(net, IMAGE, seed=0)
    assert model["res"].block["conv2"].kernel[...].shape == (3, 3, 8, 8)
    assert model["pools"].branches[1][0].blueprint == L.AvgPool((2, 2))
    assert ss.summary(model).output_spec == "Float32[batch, 16]"


def test_summary_shows_nested_rows_with_paths() -> None:
    model = ss.build(resnet_stem() >> L.Linear(2), IMAGE, seed=0)
    table = ss.summary(model)
    paths = [row[0] for row in table.rows]
    assert paths == [
        "0 (stem)",
        "1 (res)",
        "1.block.0 (conv1)",
        "1.block.1",
        "1.block.2 (conv2)",
        "2 (pools)",
        "2.branches.0.0",
        "2.branches.1.0",
        "3",
        "4",
    ]
    by_path = {row[0]: row for row in table.rows}
    assert by_path["1 (res)"][1:4] == (
        "Residual(...)",
        "Float32[batch, 16, 16, 8]",
        "Float32[batch, 16, 16, 8]",
    )
    assert (
        by_path["1.block.0 (conv1)"][1].strip() == "Conv2D(8, (3, 3), padding='same', name='conv1')"
    )
    assert by_path["2.branches.1.0"][2:4] == (
        "Float32[batch, 16, 16, 8]",
        "Float32[batch, 8, 8, 8]",
    )
    assert by_path["2 (pools)"][3] == "Float32[batch, 8, 8, 16]"
    conv = 3 * 3 * 8 * 8 + 8
    assert (
        by_path["1 (res)"][4]
        == 2 * conv
        == by_path["1.block.0 (conv1)"][4] + by_path["1.block.2 (conv2)"][4]
    )
    assert table.total_params == (8 * 8 + 8) + 2 * conv + (16 * 2 + 2)
    assert "1.block.0 (conv1)    Conv2D(8, (3, 3), padding='same', name='conv1')" in str(table)


def test_everything_under_jit_matches_eager_and_checks_the_input() -> None:
    model = ss.build(resnet_stem() >> L.Linear(2), IMAGE, seed=0)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(3, 16, 16, 8)), jnp.float32)
    np.testing.assert_allclose(
        np.asarray(jax.jit(model)(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ss.ShapeError, match=r"The model's input does not match"):
        jax.jit(model)(x[..., :4])

    def loss(m: ss.Model, x: jax.Array) -> jax.Array:
        return jnp.mean(m(x) ** 2)

    grads = nnx.jit(nnx.grad(loss))(model, x)
    leaves = jax.tree_util.tree_leaves(grads)
    assert len(leaves) == 8  # kernel and bias of the stem, the two convs in the block and the head
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
