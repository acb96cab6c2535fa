"""map(fn, workers=n, processes=True): a GIL-bound function in worker processes gives the
elements the serial map gives, in the same order; an unpicklable function is refused early."""

import numpy as np
import pytest
from jaxtyping import Float32, Int32

from shapesafe.data import from_arrays


def digit_sum(x: Int32[np.ndarray, "4"], rng: np.random.Generator) -> Float32[np.ndarray, "2"]:
    """Pure Python (holds the GIL): the digit sums of the numbers, and a seeded random draw."""
    total = 0
    for v in x.tolist():
        for c in str(v * 7919):
            total += int(c)
    return np.array([total, rng.random()], np.float32)


def _source(n: int):
    x = (np.arange(n * 4, dtype=np.int32) * 31).reshape(n, 4)
    return from_arrays({"x": x, "label": (np.arange(n) % 3).astype(np.int32)})


def _rows(ds) -> list[tuple[list[float], int]]:
    return [(e["x"].tolist(), int(e["label"])) for e in ds]


def test_processes_give_the_serial_elements_in_order():
    serial = _source(24).map(digit_sum, seed=5).shuffle(seed=1)
    parallel = _source(24).map(digit_sum, seed=5, workers=2, processes=True).shuffle(seed=1)
    assert parallel.spec == serial.spec
    expected = _rows(serial)
    assert _rows(parallel) == expected
    assert next(e["x"].tolist() for e in parallel.batch(5).epoch(0)) == [x for x, _ in expected[:5]]
    stream = (
        _source(24)
        .filter(lambda label: label != 1)
        .map(digit_sum, seed=5, workers=2, processes=True)
    )
    assert _rows(stream) == _rows(
        _source(24).filter(lambda label: label != 1).map(digit_sum, seed=5)
    )


def test_an_unpicklable_function_is_refused_naming_it_and_the_fix():
    def local(x: Int32[np.ndarray, "4"]) -> Int32[np.ndarray, "4"]:
        return x

    with pytest.raises(
        ValueError,
        match=r"stage 2, map\(local\): processes=True sends local to worker "
        r"processes, but it cannot be pickled.*top level of an importable module",
    ):
        _source(4).map(local, workers=2, processes=True)
    with pytest.raises(ValueError, match=r"map\(<lambda>\).*cannot be pickled.*processes=False"):
        _source(4).map(lambda x: x, spec=_source(4).spec, workers=2, processes=True)
    with pytest.raises(ValueError, match=r"processes=True needs workers=n >= 1"):
        _source(4).map(digit_sum, processes=True)


def test_an_error_in_a_worker_process_names_the_stage_and_element():
    with pytest.raises(ValueError, match="invalid literal") as info:
        list(_source(4).map(int_of_text, workers=2, processes=True))
    assert any("map(int_of_text)" in note and "example 0" in note for note in info.value.__notes__)


def int_of_text(x: Int32[np.ndarray, "4"]) -> Int32[np.ndarray, "4"]:
    return np.array([int("four")] * 4, np.int32)
