"""Datasets as Python users write them (issue 13): unannotated ``map`` functions get an
inferred output spec (traced, else from the first element) that every element is checked
against; NumPy scalars are 0-d arrays; ``from_arrays`` of nothing says which array is empty."""

import numpy as np
import pytest
from jaxtyping import Float32, Int32

import shapesafe as ss
from shapesafe.data import from_arrays, from_generator


def _ds() -> ss.data.Dataset:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    return from_arrays({"x": x, "label": np.arange(4, dtype=np.int32)})


def test_a_lambda_over_the_whole_element_is_traced_for_its_spec() -> None:
    ds = _ds().map(lambda e: {"x": e["x"] * 2, "label": e["label"], "n": e["x"].sum()})
    assert ds.spec.tree["x"].dim_str == "3" and ds.spec.tree["n"].dim_str == ""
    assert ds.spec.tree["x"].dtype.__name__ == "Float32"
    first = next(iter(ds))
    np.testing.assert_array_equal(first["x"], [0.0, 2.0, 4.0])
    assert first["n"].shape == () and float(first["n"]) == 3.0
    assert ds.batch(2).spec.tree["x"].dim_str == "batch 3"  # downstream stages see it


def test_traced_dtypes_follow_numpy_for_the_host_arrays() -> None:
    pixels = from_arrays({"image": np.full((2, 2, 2), 51, np.uint8)})
    ds = pixels.map(lambda image: image / 255.0)
    assert ds.spec.tree["image"].dtype.__name__ == "Float64"  # as NumPy computes uint8 / 255.0
    got = next(iter(ds))["image"]
    np.testing.assert_array_equal(got, np.full((2, 2), 0.2))


def test_an_untraceable_function_gets_its_spec_from_the_first_element() -> None:
    def lengths(e):  # type: ignore[no-untyped-def]  # unannotated, NumPy-only: no tracing
        return {"len": np.asarray([len(np.asarray(e["x"]).tolist())], np.int64)}

    ds = _ds().map(lengths)
    assert repr(ds.spec) == '{"len": Int64[np.ndarray, "1"]}'
    assert [int(e["len"][0]) for e in ds] == [3, 3, 3, 3]


def test_an_inferred_spec_is_checked_on_every_element() -> None:
    def ragged(e):  # type: ignore[no-untyped-def]
        n = int(np.asarray(e["label"]))  # value-dependent: not traceable
        return np.zeros((1 + n,), np.float32)

    ds = _ds().map(ragged)
    assert repr(ds.spec) == 'Float32[np.ndarray, "1"]'
    it = iter(ds)
    next(it)
    with pytest.raises(ss.ShapeError) as info:
        next(it)
    assert "stage 2, map(ragged): element from example 1 does not match the spec." in str(
        info.value
    )
    assert info.value.__notes__ == [
        "The spec of ragged's output was inferred from its result on the first element; "
        "where its outputs differ, annotate its return or pass spec=."
    ]


def test_annotations_still_win_and_are_still_checked() -> None:
    def scale(x: Float32[np.ndarray, "3"]) -> Float32[np.ndarray, "3"]:
        return (x * 2).astype(np.float64)  # breaks its own annotation

    ds = _ds().map(scale)
    x_spec = ds.spec.tree["x"]  # the annotation; tracing would have said Float64
    assert (x_spec.dtype.__name__, x_spec.dim_str) == ("Float32", "3")
    with pytest.raises(ss.ShapeError, match="does not match the spec at 'x'"):
        next(iter(ds))


def test_a_numpy_scalar_is_a_0d_array() -> None:
    ds = _ds().map(
        lambda label: label * 2,  # on a 0-d array NumPy returns np.int32, a scalar
        spec={"x": Float32[np.ndarray, "3"], "label": Int32[np.ndarray, ""]},
    )
    labels = [e["label"] for e in ds]
    assert all(isinstance(v, np.ndarray) and v.shape == () for v in labels)
    assert [int(v) for v in labels] == [0, 2, 4, 6]

    def gen():  # type: ignore[no-untyped-def]
        yield np.float32(1.5)

    assert [float(v) for v in from_generator(gen, Float32[np.ndarray, ""])] == [1.5]


def test_from_arrays_of_zero_examples_names_the_empty_array() -> None:
    with pytest.raises(ValueError) as info:
        from_arrays({"image": np.zeros((0, 8, 8), np.uint8), "label": np.zeros((0,), np.int32)})
    assert str(info.value) == (
        "from_arrays: the array 'image' has no examples (shape (0, 8, 8); the first dimension "
        "counts the examples). A dataset needs at least one: check the array was filled (a "
        "filter or a split that kept nothing?)."
    )
