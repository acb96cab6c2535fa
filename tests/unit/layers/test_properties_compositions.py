"""Random compositions of 1-6 layers from the whole layer set, on random specs (ranks 0-5, sizes
0-64 with 0 and 1, every dtype with float64 and bool): building them, then calling them on a
matching and on a mismatched input, eagerly and under ``jax.jit``, raises nothing but
``ss.ShapeError`` (and ``ValueError``/``TypeError`` while a blueprint is constructed). The one
other refusal is not about shapes: a layer that updates its state in training mode (Dropout,
BatchNorm) under a plain ``jax.jit`` raises ``ss.ShapesafeError`` saying to call
``model.eval()`` or train with ``ss.fit``.

``test_properties.py`` checks the output *values and sizes* of single layers against hand
formulas; this file checks the *promise about errors* over compositions nobody wrote by hand.
Run many more with ``pytest --hypothesis-profile=long``.
"""

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from conftest import hypothesis_scale
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._specs import DTYPE_TO_JAXTYPING

DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int8", "uint8", "bool"]
SIZES = [0, 1, 2, 3, 4, 7, 64]
MAX_ELEMENTS = 2048  # per example: keeps every array (and the suite) small
BATCH = 2

small = st.sampled_from([0, 1, 2, 3, 64])
kernel = st.one_of(
    st.integers(0, 3), st.tuples(st.integers(1, 3)), st.tuples(st.integers(1, 3), st.integers(1, 3))
)
padding = st.sampled_from(["valid", "same", 1, (1, 0), "full"])
window = st.one_of(st.tuples(st.integers(1, 3)), st.tuples(st.integers(1, 3), st.integers(1, 3)))
dtype_names = st.sampled_from(DTYPES)

Recipe = tuple[str, tuple[Any, ...], dict[str, Any]]


def _leaf_recipes() -> st.SearchStrategy[Recipe]:
    one = st.just(())
    return st.one_of(
        st.tuples(st.just("Linear"), st.tuples(small), st.just({})),
        st.tuples(
            st.sampled_from(["Conv1D", "Conv2D"]),
            st.tuples(st.integers(0, 3), kernel),
            st.fixed_dictionaries({"padding": padding, "strides": st.integers(1, 2)}),
        ),
        st.tuples(
            st.sampled_from(["MaxPool", "AvgPool"]),
            st.tuples(window),
            st.fixed_dictionaries(
                {
                    "padding": st.sampled_from(["valid", "same"]),
                    "strides": st.sampled_from([None, 1, 2]),
                }
            ),
        ),
        st.tuples(
            st.sampled_from(
                [
                    "GlobalAvgPool",
                    "BatchNorm",
                    "LayerNorm",
                    "Flatten",
                    "ReLU",
                    "GELU",
                    "LeakyReLU",
                    "Sigmoid",
                    "Tanh",
                ]
            ),
            one,
            st.just({}),
        ),
        st.tuples(
            st.just("Softmax"), one, st.fixed_dictionaries({"axis": st.sampled_from([-1, 0, 1, 5])})
        ),
        st.tuples(
            st.just("Dropout"), st.tuples(st.sampled_from([0.0, 0.5, 1.0, -0.1])), st.just({})
        ),
        st.tuples(
            st.just("Reshape"),
            st.tuples(
                st.lists(st.sampled_from([-1, 0, 1, 2, 3, 4, 6, 8]), min_size=1, max_size=3).map(
                    tuple
                )
            ),
            st.just({}),
        ),
        st.tuples(st.just("Cast"), st.tuples(dtype_names), st.just({})),
        st.tuples(st.just("Rescale"), st.tuples(st.sampled_from([1 / 255, 2.0])), st.just({})),
        st.tuples(
            st.sampled_from(["GRU", "LSTM"]),
            st.tuples(st.integers(0, 3)),
            st.fixed_dictionaries({"return_sequences": st.booleans()}),
        ),
        st.tuples(
            st.just("Embedding"),
            st.tuples(st.sampled_from([0, 1, 5, 64]), st.integers(0, 3)),
            st.just({}),
        ),
    )


def _recipes() -> st.SearchStrategy[Recipe]:
    leaf = _leaf_recipes()
    branches = st.lists(leaf, min_size=1, max_size=2).map(tuple)
    return st.one_of(
        leaf,
        leaf,
        leaf,
        st.tuples(st.just("Residual"), st.tuples(leaf), st.just({})),
        st.tuples(
            st.just("Concat"),
            st.tuples(branches),
            st.fixed_dictionaries({"axis": st.sampled_from([-1, 1])}),
        ),
        st.tuples(st.just("Add"), st.tuples(branches), st.just({})),
    )


@st.composite
def specs(draw: st.DrawFn) -> tuple[str, list[Any]]:
    """A dtype and dims (``"batch"`` first where the rank allows), at most MAX_ELEMENTS per batch."""
    rank = draw(st.integers(0, 5))
    dims: list[Any] = [draw(st.sampled_from(SIZES)) for _ in range(rank)]
    if rank and draw(st.booleans()):
        dims[0] = "batch"
    while math.prod(d if isinstance(d, int) else BATCH for d in dims) > MAX_ELEMENTS:
        i = max((j for j, d in enumerate(dims) if isinstance(d, int)), key=lambda j: dims[j])
        dims[i] = max(1, dims[i] // 4)
    return draw(st.one_of(st.just("float32"), dtype_names)), dims  # float32 half the time


# most random specs are refused at once; these (a batch and small sizes) mostly build, so the
# calls, eager and under jit, get their share of the examples
buildable_specs = st.tuples(
    st.sampled_from(["float32", "float32", "float16", "int32"]),
    st.lists(st.integers(1, 6), min_size=1, max_size=3).map(lambda d: ["batch", *d]),
)


def _make(recipe: Recipe) -> Any:
    name, args, kwargs = recipe
    if name in ("Residual",):
        return L.Residual(_make(args[0]))
    if name in ("Concat", "Add"):
        branches = tuple(_make(r) for r in args[0])
        return getattr(L, name)(branches, **kwargs)
    if name == "Cast":
        return L.Cast(jnp.dtype(args[0]))
    return getattr(L, name)(*args, **kwargs)


def _array(dtype: str, shape: tuple[int, ...]) -> Any:
    rng = np.random.default_rng(0)
    if dtype == "bool":
        return jnp.asarray(rng.integers(0, 2, shape).astype(bool))
    if dtype in ("int32", "int8", "uint8"):
        return jnp.asarray(rng.integers(0, 5, shape).astype(dtype))
    return jnp.asarray(rng.normal(size=shape).astype(np.float32)).astype(jnp.dtype(dtype))


def _mismatch(dtype: str, dims: list[Any], shape: tuple[int, ...], how: int) -> Any:
    if how == 2 and dims and dims[-1] == "batch":  # any batch size fits: add an axis instead
        how = 1
    if how == 0 or not shape:  # another dtype
        other = "int32" if dtype != "int32" else "float32"
        return _array(other, shape)
    if how == 1:  # one more axis
        return _array(dtype, (*shape, 2))
    return _array(dtype, (*shape[:-1], shape[-1] + 1))  # the last axis one longer


class Raw(AssertionError):
    """A raw (non-shapesafe) exception escaped where only ShapeError may."""


def _expect_shape_error(stage: str, call: Any, *args: Any) -> bool:
    """Run ``call``; True if it worked, False on ShapeError; anything else is a ``Raw`` failure."""
    try:
        with warnings.catch_warnings():
            # JAX without x64 warns that float64 becomes float32: not an error of shapesafe's
            warnings.filterwarnings(
                "ignore", message="Explicitly requested dtype", category=UserWarning
            )
            jax.block_until_ready(call(*args))
        return True
    except ss.ShapeError as e:
        assert str(e).strip(), f"{stage}: an empty ShapeError message"
        return False
    except ss.ShapesafeError as e:  # the one non-shape refusal: a training-mode state update
        if "model.eval()" not in str(e):  # under a plain jax.jit (Dropout, BatchNorm)
            raise Raw(f"{stage}: {type(e).__name__}: {e}") from e
        return False
    except Exception as e:
        raise Raw(f"{stage}: raw {type(e).__name__}: {e}") from e


def check_composition(recipes: list[Recipe], spec: tuple[str, list[Any]], how: int) -> str:
    """One composition through the whole story; returns how far it got (for the tallies)."""
    dtype, dims = spec
    try:
        blueprints = [_make(r) for r in recipes]
        net = blueprints[0]
        for b in blueprints[1:]:
            net = net >> b
    except (ValueError, TypeError) as e:
        assert not isinstance(e, ss.ShapesafeError) or isinstance(e, ss.ShapeError), e
        return "refused at construction"
    annotation = DTYPE_TO_JAXTYPING[dtype][Array, " ".join(map(str, dims))]
    model: Any = None

    def build() -> Any:
        nonlocal model
        model = ss.build(net, annotation, seed=0)
        return jnp.zeros(())

    if not _expect_shape_error(f"build {net!r} for {annotation}", build):
        return "ShapeError at build"
    shape = tuple(BATCH if d == "batch" else d for d in dims)
    x = _array(dtype, shape)
    for name, call in (("eager", model), ("jit", jax.jit(model))):
        _expect_shape_error(f"{name} call of {net!r} on {x.dtype}{list(shape)}", call, x)
        bad = _mismatch(dtype, dims, shape, how)
        if _expect_shape_error(
            f"{name} call of {net!r} on mismatched {bad.dtype}{list(bad.shape)}", call, bad
        ):
            raise Raw(f"{name}: {net!r} built for {annotation} took {bad.dtype}{list(bad.shape)}")
    return "built and called"


@settings(max_examples=40 * hypothesis_scale())
@given(
    recipes=st.lists(_recipes(), min_size=1, max_size=6),
    spec=st.one_of(specs(), buildable_specs),
    how=st.integers(0, 2),
)
def test_random_compositions_raise_only_shape_errors(
    recipes: list[Recipe], spec: tuple[str, list[Any]], how: int
) -> None:
    check_composition(recipes, spec, how)


def test_compositions_that_fit_build_and_run() -> None:
    """The property above is not vacuous: hand-picked members of its space build and run."""
    cases: list[tuple[list[Recipe], tuple[str, list[Any]]]] = [
        (
            [
                ("Conv2D", (2, 3), {"padding": "same", "strides": 1}),
                ("ReLU", (), {}),
                ("GlobalAvgPool", (), {}),
            ],
            ("float32", ["batch", 4, 4, 2]),
        ),
        (
            [("Embedding", (5, 3), {}), ("GRU", (2,), {"return_sequences": False})],
            ("int32", ["batch", 4]),
        ),
        (
            [("Cast", ("float32",), {}), ("Flatten", (), {}), ("Linear", (2,), {})],
            ("bool", ["batch", 3, 2]),
        ),
        (
            [
                ("Residual", (("LayerNorm", (), {}),), {}),
                ("Concat", ((("Linear", (1,), {}), ("Tanh", (), {})),), {"axis": -1}),
            ],
            ("float16", ["batch", 2]),
        ),
    ]
    for recipes, spec in cases:
        assert check_composition(recipes, spec, 2) == "built and called", (recipes, spec)
