"""Elements that used to escape as raw NumPy errors inside the pipeline: batching elements of
different shapes, an array source with no rows, a one-array function over tuple elements."""

import numpy as np
import pytest
from jaxtyping import Float32, Shaped

import shapesafe as ss
from shapesafe import data as D

FIX = (
    "  Make them one shape before batching: pad or resize each element in a map (e.g. "
    "ds.map(pad_to_64) returning a fixed-size spec, or image_folder(size=...)), or declare "
    "fixed sizes in the spec so the source refuses the odd element."
)


def test_batching_a_generator_of_different_shapes_names_stage_elements_and_shapes() -> None:
    def grow():  # type: ignore[no-untyped-def]
        yield {"x": np.zeros(3, np.float32)}
        yield {"x": np.zeros(4, np.float32)}

    ds = D.from_generator(grow, {"x": Float32[np.ndarray, " n"]}).batch(2)
    with pytest.raises(
        ss.ShapeError
    ) as info:  # before: "all input arrays must have the same shape"
        list(ds)
    assert str(info.value) == (
        "stage 2, batch(2): element 1 of the batch (from element 1 of from_generator(grow)) "
        "has ['x'] of shape (4,), but element 0 (from element 0 of from_generator(grow)) has "
        "(3,); a batch stacks elements of one shape.\n" + FIX
    )


def test_batching_a_source_of_different_shapes() -> None:
    class Ragged:
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> np.ndarray:
            return np.zeros((2, 2 + i), np.float32)

    ds = D.from_source(Ragged(), Float32[np.ndarray, "2 w"]).batch(3)
    with pytest.raises(
        ss.ShapeError,
        match=r"^stage 2, batch\(3\): element 1 of the batch \(from from_source\(Ragged\)\[1\]\) "
        r"has the element of shape \(2, 3\), but element 0 \(from from_source\(Ragged\)\[0\]\) "
        r"has \(2, 2\); a batch stacks elements of one shape\.\n  Make them one shape",
    ):
        list(ds)


def test_from_arrays_with_no_rows_is_refused_naming_the_array() -> None:
    with pytest.raises(
        ValueError, match=r"^from_arrays: the array 'x' has no examples \(shape \(0, 3\)"
    ):
        D.from_arrays({"x": np.zeros((0, 3), np.float32)})  # before: IndexError


def test_a_one_array_function_over_tuple_elements_is_refused_when_built() -> None:
    def positive(x: Shaped[np.ndarray, "*s"]) -> bool:
        return bool(x.sum() > 0)

    ds = D.from_arrays(np.ones((4, 2), np.float32)).batch(2)  # elements (x, mask)
    with pytest.raises(
        ss.ShapeError,
        match=r"^stage 3, filter\(positive\): parameter 'x' takes one array "
        r'\(Shaped\[np\.ndarray, "\*s"\]\), but the elements are a tuple of 2 parts\.\n'
        r"  Take each part as its own parameter \(def positive\(x, mask\): \.\.\.\), or name "
        r"the key it takes\.",
    ):  # before: the function got the tuple and failed inside (AttributeError)
        ds.filter(positive)
