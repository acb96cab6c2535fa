"""Properties over random shapes: every well-shaped input builds and runs with the output shape
a hand formula gives; every ill-shaped input raises ``ss.ShapeError`` (never a raw XLA, NumPy
or jaxtyping error), both at build time (``ss.build`` with a bad spec) and at call time
(``model(x)`` with a wrong concrete array, eager and under ``jax.jit``).

Formulas (per spatial axis of size n, kernel k, stride s, dilation d, padding lo/hi):
``valid``/explicit: ``floor((n + lo + hi - d * (k - 1) - 1) / s) + 1``; ``same``: ``ceil(n / s)``.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Bool, Float32, Int32, UInt8
from numpy.lib.stride_tricks import sliding_window_view

import shapesafe as ss
from shapesafe import layers as L

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
BATCH = 2
sizes = st.integers(1, 3)  # few distinct shapes: each new one costs XLA compiles (init, run)


def spec(dims: list[Any], dtype: Any = Float32) -> Any:
    return dtype[Array, " ".join(["batch", *map(str, dims)])]


def shape_str(dims: tuple[Any, ...], dtype: str = "Float32") -> str:
    return f"{dtype}[{', '.join(['batch', *map(str, dims)])}]"


def run(model: ss.Model, dims: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(BATCH, *dims)).astype(dtype)
    return np.asarray(jax.jit(model)(jnp.asarray(x)))


def raises_everywhere(model: ss.Model, x: Any, match: str) -> None:
    """``model(x)`` raises ShapeError eagerly and under jax.jit."""
    for call in (model, jax.jit(model)):
        with pytest.raises(ss.ShapeError, match=match):
            call(x)


def conv_out(n: int, k: int, s: int, d: int, pad: Any) -> int:
    if pad == "same":
        return -(-n // s)
    lo, hi = (0, 0) if pad == "valid" else pad
    return (n + lo + hi - d * (k - 1) - 1) // s + 1


def pool_out(n: int, w: int, s: int, pad: str) -> int:
    return -(-n // s) if pad == "same" else (n - w) // s + 1


def blueprint(case: dict[str, Any]) -> Any:
    """Blueprints are made in the test, not the strategy (beartype's checks draw from ``random``)."""
    cls, args, kwargs = case["make"]
    return cls(*args, **kwargs)


# -- strategies --------------------------------------------------------------------------------


@st.composite
def conv2d_cases(draw: st.DrawFn, *, fits: bool = True) -> dict[str, Any]:
    """A Conv2D and an image size that fits it (or, with ``fits=False``, is too small)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pair = st.tuples(st.integers(0, 2), st.integers(0, 2))
    padding = draw(
        st.sampled_from(["valid", "same", "int", "pairs"])
        if fits
        else st.sampled_from(["valid", "pairs"])
    )
    if padding == "int":
        p = draw(st.integers(0, 2))
        pads: Any = ((p, p), (p, p))
        arg: Any = p
    elif padding == "pairs":
        pads = arg = (draw(pair), draw(pair))
    else:
        pads, arg = (padding, padding), padding
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    need = [
        1 if p == "same" else max(1, e - (0 if p == "valid" else sum(p)))
        for e, p in zip(extents, pads, strict=True)
    ]
    if fits:
        hw = tuple(draw(st.integers(n, n + 4)) for n in need)
    else:
        short = [n for n in need if n > 1]
        if not short:  # padding makes every size fit: grow the kernel instead
            kernel, dilation, pads, arg = (4, 4), (2, 2), ("valid", "valid"), "valid"
            need = [7, 7]
        axis = (
            draw(st.integers(0, 1))
            if all(n > 1 for n in need)
            else [n > 1 for n in need].index(True)
        )
        hw = tuple(
            draw(st.integers(1, n - 1)) if i == axis else draw(st.integers(n, n + 3))
            for i, n in enumerate(need)
        )
    channels, filters = draw(sizes), draw(sizes)
    make = (L.Conv2D, (filters, kernel), {"strides": strides, "padding": arg, "dilation": dilation})
    out = tuple(
        conv_out(n, k, s, d, p)
        for n, k, s, d, p in zip(hw, kernel, strides, dilation, pads, strict=True)
    )
    return {"make": make, "in": (*hw, channels), "out": (*out, filters)}


@st.composite
def pool_cases(draw: st.DrawFn, *, fits: bool = True) -> dict[str, Any]:
    nd = draw(st.integers(1, 2))
    window = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    strides = None if draw(st.booleans()) else tuple(draw(st.integers(1, 3)) for _ in range(nd))
    padding = draw(st.sampled_from(["valid", "same"])) if fits else "valid"
    if not fits and max(window) == 1:
        window = (2,) * nd
    if fits:
        spatial = tuple(draw(st.integers(w if padding == "valid" else 1, w + 4)) for w in window)
    else:
        axis = next(i for i, w in enumerate(window) if w > 1)
        spatial = tuple(
            draw(st.integers(1, w - 1)) if i == axis else w for i, w in enumerate(window)
        )
    kind = draw(st.sampled_from([L.MaxPool, L.AvgPool]))
    s = window if strides is None else strides
    channels = draw(sizes)
    out = tuple(pool_out(n, w, k, padding) for n, w, k in zip(spatial, window, s, strict=True))
    return {
        "make": (kind, (window,), {"strides": strides, "padding": padding}),
        "in": (*spatial, channels),
        "out": (*out, channels),
        "window": window,
        "strides": s,
        "padding": padding,
    }


@st.composite
def reshape_cases(draw: st.DrawFn) -> dict[str, Any]:
    """Random dims and a random regrouping of their factors, maybe with one -1."""
    dims = draw(st.lists(sizes, min_size=1, max_size=4))
    factors = draw(st.permutations(dims))
    cuts = sorted(
        draw(st.sets(st.integers(1, max(1, len(factors) - 1)), max_size=len(factors) - 1))
    )
    groups = [
        factors[a:b] for a, b in zip([0, *cuts], [*cuts, len(factors)], strict=True) if factors[a:b]
    ]
    target = [math.prod(g) for g in groups]
    shape = list(target)
    if draw(st.booleans()):
        shape[draw(st.integers(0, len(shape) - 1))] = -1
    return {"dims": tuple(dims), "shape": tuple(shape), "out": tuple(target)}


# -- (a) every well-shaped input builds and runs ---------------------------------------------


@SETTINGS
@given(lead=st.lists(sizes, max_size=3), widths=st.lists(st.integers(1, 4), min_size=2, max_size=4))
def test_linear_stacks_on_any_rank(lead: list[int], widths: list[int]) -> None:
    net = L.Linear(widths[1])
    for w in widths[2:]:
        net = net >> L.ReLU() >> L.Linear(w)
    model = ss.build(net, spec([*lead, widths[0]]), seed=0)
    want = (*lead, widths[-1])
    assert ss.summary(model).output_spec == shape_str(want)
    assert run(model, (*lead, widths[0])).shape == (BATCH, *want)


@SETTINGS
@given(case=conv2d_cases(), symbolic=st.booleans())
def test_conv2d_output_size_is_the_formula(case: dict[str, Any], symbolic: bool) -> None:
    h, w, c = case["in"]
    model = ss.build(blueprint(case), spec(["h", "w", c] if symbolic else [h, w, c]), seed=0)
    if not symbolic:
        assert ss.summary(model).output_spec == shape_str(case["out"])
    assert run(model, case["in"]).shape == (BATCH, *case["out"])


@SETTINGS
@given(case=pool_cases(), symbolic=st.booleans())
def test_pools_output_size_is_the_formula_and_values_are_window_reductions(
    case: dict[str, Any], symbolic: bool
) -> None:
    nd = len(case["window"])
    dims = [f"d{i}" for i in range(nd)] + [case["in"][-1]] if symbolic else list(case["in"])
    bp = blueprint(case)
    model = ss.build(bp, spec(dims), seed=0)
    if not symbolic:
        assert ss.summary(model).output_spec == shape_str(case["out"])
    x = np.random.default_rng(0).normal(size=(BATCH, *case["in"])).astype(np.float32)
    y = np.asarray(jax.jit(model)(x))
    assert y.shape == (BATCH, *case["out"])
    if case["padding"] == "valid":  # reference: every window, strided, reduced
        axes = tuple(range(1, nd + 1))
        windows = sliding_window_view(x, case["window"], axis=axes)
        windows = windows[(slice(None), *[slice(None, None, s) for s in case["strides"]])]
        reduce = np.max if isinstance(bp, L.MaxPool) else np.mean
        want = reduce(windows, axis=tuple(range(-nd, 0)))
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(case=reshape_cases())
def test_flatten_and_reshape(case: dict[str, Any]) -> None:
    flat = ss.build(L.Flatten(), spec(list(case["dims"])))
    assert ss.summary(flat).output_spec == shape_str((math.prod(case["dims"]),))
    model = ss.build(L.Reshape(case["shape"]), spec(list(case["dims"])))
    assert ss.summary(model).output_spec == shape_str(case["out"])
    x = np.arange(BATCH * math.prod(case["dims"]), dtype=np.float32).reshape(BATCH, *case["dims"])
    np.testing.assert_array_equal(np.asarray(model(x)), x.reshape(BATCH, *case["out"]))


@settings(SETTINGS, max_examples=8)
@given(
    hw=st.tuples(st.integers(3, 6), st.integers(3, 6)),
    filters=st.lists(st.integers(1, 2), min_size=1, max_size=3),
    channels=sizes,
)
def test_combinators_keep_shapes(hw: tuple[int, int], filters: list[int], channels: int) -> None:
    same = [L.Conv2D(f, 3, padding="same") for f in filters]
    net = (
        L.Concat(tuple(same))
        >> L.Residual(L.Conv2D(sum(filters), 3, padding="same"))
        >> L.Add((L.Conv2D(2, 1), L.MaxPool((3, 3), strides=1, padding="same") >> L.Conv2D(2, 1)))
        >> L.GlobalAvgPool()
    )
    model = ss.build(net, spec([*hw, channels]))
    assert ss.summary(model).output_spec == "Float32[batch, 2]"
    assert run(model, (*hw, channels)).shape == (BATCH, 2)


# -- (b) every ill-shaped input raises ShapeError ----------------------------------------------

layers_on_images = st.sampled_from(
    [L.Linear(3), L.Conv2D(2, 1), L.MaxPool((1, 1)), L.GlobalAvgPool() >> L.Linear(2)]
)
bad_dtypes = st.sampled_from(
    [(Int32, np.int32, "int32"), (UInt8, np.uint8, "uint8"), (Bool, np.bool_, "bool")]
)


@SETTINGS
@given(bp=layers_on_images, dims=st.tuples(sizes, sizes, sizes), dtype=bad_dtypes)
def test_wrong_dtype(bp: Any, dims: tuple[int, ...], dtype: tuple[Any, Any, str]) -> None:
    annotation, np_dtype, name = dtype
    with pytest.raises(
        ss.ShapeError,
        match=rf"(?s)cannot take its input.*{name} is not a floating dtype.*L.Cast\(jnp.float32\)",
    ):
        ss.build(bp, spec(list(dims), annotation))
    model = ss.build(bp, spec(list(dims)))
    raises_everywhere(
        model,
        np.zeros((BATCH, *dims), np_dtype),
        rf"its dtype is {name}; the model was built for float32",
    )


@SETTINGS
@given(
    bp=st.sampled_from([L.Conv2D(2, 1), L.MaxPool((1, 1)), L.AvgPool((1, 1)), L.GlobalAvgPool()]),
    dims=st.lists(sizes, max_size=1),
)
def test_wrong_rank_at_build_time(bp: Any, dims: list[int]) -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"cannot take its input\.\n  expected  Float\[Array, \"batch .*\n  got  .*\n  .*dimensions",
    ):
        ss.build(bp, spec(dims))


@SETTINGS
@given(bp=layers_on_images, dims=st.tuples(sizes, sizes, sizes), extra=st.sampled_from([-1, 1]))
def test_wrong_rank_at_call_time(bp: Any, dims: tuple[int, ...], extra: int) -> None:
    model = ss.build(bp, spec(list(dims)))
    shape = dims[:extra] if extra < 0 else (*dims, 1)
    raises_everywhere(
        model,
        jnp.zeros((BATCH, *shape)),
        r"The model's input does not match the spec the model was built for",
    )


@SETTINGS
@given(lead=st.lists(sizes, max_size=2), width=sizes, other=sizes, features=sizes)
def test_wrong_last_dim_for_a_built_model(
    lead: list[int], width: int, other: int, features: int
) -> None:
    other = other + width  # differs from width
    model = ss.build(L.Linear(features) >> L.ReLU(), spec([*lead, width]))
    raises_everywhere(
        model, jnp.zeros((BATCH, *lead, other)), rf'expected  Float32\[Array, "batch.* {width}"\]'
    )
    # and a layer further on that cannot take what the previous one makes, at build time
    wrong = math.prod(lead) * features + 1
    with pytest.raises(ss.ShapeError, match=r"layer 3 of 3, Reshape"):
        ss.build(L.Linear(features) >> L.ReLU() >> L.Reshape((wrong,)), spec([*lead, width]))


@SETTINGS
@given(case=st.one_of(conv2d_cases(fits=False), pool_cases(fits=False)))
def test_too_small_images(case: dict[str, Any]) -> None:
    with pytest.raises(ss.ShapeError, match=r"(?s)cannot take its input.*is \d+, smaller than the"):
        ss.build(blueprint(case), spec(list(case["in"])))
    nd = len(case["in"]) - 1  # a model for any spatial size refuses them when called
    model = ss.build(blueprint(case), spec([f"d{i}" for i in range(nd)] + [case["in"][-1]]))
    raises_everywhere(
        model,
        jnp.zeros((BATCH, *case["in"])),
        r"(?s)cannot take its input\.\n  expected  .* >= .*smaller than the",
    )


@SETTINGS
@given(
    dims=st.lists(sizes, min_size=1, max_size=3),
    target=st.lists(st.integers(2, 7), min_size=1, max_size=2),
    minus_one=st.booleans(),
)
def test_reshape_to_an_incompatible_size(
    dims: list[int], target: list[int], minus_one: bool
) -> None:
    total = math.prod(dims)
    shape = (*target, -1) if minus_one else tuple(target)
    if total % math.prod(target) == 0 and (minus_one or math.prod(target) == total):
        shape = (*shape[:-1], shape[-1] + total + 1) if shape[-1] != -1 else (total + 1, -1)
    with pytest.raises(ss.ShapeError, match=rf"{total} elements per example cannot be reshaped to"):
        ss.build(L.Reshape(shape), spec(dims))
    model = ss.build(L.Reshape((total,)), spec(dims))
    raises_everywhere(model, jnp.zeros((BATCH, total + 1)), r"The model's input does not match")
    with pytest.raises(
        ss.ShapeError,
        match=rf"expected  {total} elements per example\n  got       Float32\[{BATCH}, {total + 1}\]",
    ):
        model.layers[0](jnp.zeros((BATCH, total + 1)))  # the layer itself checks too
