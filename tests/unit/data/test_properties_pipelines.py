"""Random dataset pipelines (chains of map/filter/batch/shuffle/take over random element specs,
from arrays, a generator or a random-access source, with functions that keep, change or lie
about the shape): building a stage raises nothing but ``ValueError``/``TypeError`` (a
``ShapeError`` is one), and reading two epochs raises nothing but ``ss.ShapeError``.

Run many more with ``pytest --hypothesis-profile=long``.
"""

from typing import Any

import numpy as np
import pytest
from conftest import hypothesis_scale
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Float, Float32, Shaped

import shapesafe as ss
from shapesafe import data as D
from shapesafe._specs import DTYPE_TO_JAXTYPING

DTYPES = ["float32", "float64", "int32", "uint8", "bool"]


def ident(x: Shaped[np.ndarray, "*s"]) -> Shaped[np.ndarray, "*s"]:
    return x


def double(x: Float[np.ndarray, "*s"]) -> Float[np.ndarray, "*s"]:
    return x * 2


def to_float(x: Shaped[np.ndarray, "*s"]) -> Float32[np.ndarray, "*s"]:
    return x.astype(np.float32)


def flatten(x: Shaped[np.ndarray, "*s"]) -> Shaped[np.ndarray, " _"]:
    return x.reshape(-1)


def shrink(x: Shaped[np.ndarray, "*s n"]) -> Shaped[np.ndarray, "*s n"]:
    return x[..., :-1]  # breaks its own annotation


def ragged(x: Shaped[np.ndarray, "*s"]) -> Shaped[np.ndarray, " _"]:
    flat = x.reshape(-1)
    size = max(1, flat.size)
    return flat[: 1 + int(abs(float(flat.sum())) * 10) % size]  # a length per element


def as_list(x: Shaped[np.ndarray, "*s"]) -> Shaped[np.ndarray, "*s"]:
    return x.tolist()  # type: ignore[no-any-return]  # not an array at all


def nonzero(x: Shaped[np.ndarray, "*s"]) -> bool:
    return bool(np.any(x))


def first_positive(x: Shaped[np.ndarray, "*s"]) -> bool:
    return bool(x.reshape(-1)[:1].sum() > 0) if x.size else False


MAPS = [ident, double, to_float, flatten, shrink, ragged, as_list]
FILTERS = [nonzero, first_positive]

stages = st.one_of(
    st.tuples(st.just("map"), st.sampled_from(MAPS)),
    st.tuples(st.just("filter"), st.sampled_from(FILTERS)),
    st.tuples(st.just("batch"), st.tuples(st.integers(0, 3), st.booleans())),
    st.tuples(st.just("shuffle"), st.sampled_from([0, 1, None])),
    st.tuples(st.just("take"), st.integers(-1, 4)),
)


@st.composite
def sources(draw: st.DrawFn) -> dict[str, Any]:
    dtype = draw(st.sampled_from(DTYPES))
    dims = draw(st.lists(st.integers(0, 4), max_size=3))
    n = draw(st.integers(0, 5))
    keyed = draw(st.booleans())
    kind = draw(st.sampled_from(["arrays", "generator", "source"]))
    lie = kind != "arrays" and draw(st.integers(0, 3)) == 0  # the source yields another shape
    return {"dtype": dtype, "dims": dims, "n": n, "keyed": keyed, "kind": kind, "lie": lie}


def _values(src: dict[str, Any]) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(src["n"], *src["dims"]))
    return (x > 0 if src["dtype"] == "bool" else x).astype(src["dtype"])


def make_source(src: dict[str, Any]) -> Any:
    values = _values(src)
    wrap = (lambda v: {"x": v}) if src["keyed"] else (lambda v: v)
    if src["kind"] == "arrays":
        return D.from_arrays(wrap(values))
    annotation = DTYPE_TO_JAXTYPING[src["dtype"]][np.ndarray, " ".join(map(str, src["dims"]))]
    spec = wrap(annotation)
    yielded = [
        np.zeros((*src["dims"], 1), values.dtype) if src["lie"] and i == 1 else v
        for i, v in enumerate(values)
    ]

    class Source:
        def __len__(self) -> int:
            return len(yielded)

        def __getitem__(self, i: int) -> Any:
            return wrap(yielded[i])

    if src["kind"] == "source":
        return D.from_source(Source(), spec)
    return D.from_generator(lambda: iter([wrap(v) for v in yielded]), spec)


def apply(ds: Any, stage: tuple[str, Any]) -> Any:
    name, arg = stage
    if name == "map":
        return ds.map(arg)
    if name == "filter":
        return ds.filter(arg)
    if name == "batch":
        return ds.batch(arg[0], drop_remainder=arg[1])
    if name == "shuffle":
        return ds.shuffle(seed=0) if arg is None else ds.shuffle(seed=arg, buffer_size=2)
    return ds.take(arg)


def check_pipeline(src: dict[str, Any], chain: list[tuple[str, Any]]) -> str:
    """Build the pipeline and read two epochs; returns how far it got (for the tallies)."""
    try:
        ds = make_source(src)
        for stage in chain:
            ds = apply(ds, stage)
    except (ValueError, TypeError) as e:
        assert str(e).strip()
        return "refused when built"
    try:
        for epoch in range(2):
            elements = list(ds.epoch(epoch))
            assert all(e is not None for e in elements)
    except ss.ShapeError as e:
        assert str(e).strip()
        return "ShapeError when read"
    except Exception as e:
        pytest.fail(f"{ds!r}: reading raised a raw {type(e).__name__}: {e}")
    return "read"


@settings(max_examples=100 * hypothesis_scale())
@given(src=sources(), chain=st.lists(stages, max_size=5))
def test_random_pipelines_raise_only_shape_errors(
    src: dict[str, Any], chain: list[tuple[str, Any]]
) -> None:
    check_pipeline(src, chain)


def test_pipelines_that_fit_are_read_and_lies_are_caught() -> None:
    """The property above is not vacuous: members of its space are read, or caught lying."""
    src = {"dtype": "float32", "dims": [3], "n": 5, "keyed": True, "kind": "source", "lie": False}
    assert (
        check_pipeline(src, [("map", double), ("shuffle", None), ("batch", (2, False))]) == "read"
    )
    assert check_pipeline({**src, "lie": True}, [("map", ident)]) == "ShapeError when read"
    assert check_pipeline(src, [("map", ragged), ("batch", (3, False))]) == "ShapeError when read"
    assert (
        check_pipeline(src, [("batch", (2, False)), ("batch", (2, False))]) == "refused when built"
    )
