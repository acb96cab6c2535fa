"""models/rnn.py: the recurrent classifier learns scikit-learn's digits read row by row."""

from typing import Any

import numpy as np
import pytest

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import rnn


def test_the_rows_are_the_digit_images_top_to_bottom() -> None:
    from sklearn.datasets import load_digits

    xtr, ytr, xte, yte = rnn.digits_arrays(seed=0)
    assert (xtr.shape, xte.shape, ytr.shape, yte.shape) == (
        (1500, 8, 8),
        (297, 8, 8),
        (1500,),
        (297,),
    )
    assert xtr.dtype == np.float32 and ytr.dtype == np.int32
    d: Any = load_digits()  # a Bunch (sklearn types it as Bunch | tuple)
    order = np.random.default_rng(0).permutation(len(d.images))
    np.testing.assert_array_equal(xtr[0] * 16, d.images[order[0]])  # row t is image row t
    assert int(ytr[0]) == int(d.target[order[0]])
    assert 0.0 <= xtr.min() and xtr.max() == 1.0


def test_lstm_learns_digits_rows_in_seconds() -> None:
    model, history = rnn.train_digits(L.LSTM, hidden=64, epochs=6, seed=0)
    assert history["eval_accuracy"][-1] >= 0.85
    assert history["loss"][-1] < history["loss"][0] / 3
    # the logged accuracy agrees with one computed here from the raw predictions
    _, _, xte, yte = rnn.digits_arrays(seed=0)
    logits = ss.predict(model, [xte[i : i + 100] for i in range(0, len(xte), 100)])
    assert logits.shape == (297, 10)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == yte))
    assert accuracy == pytest.approx(history["eval_accuracy"][-1], abs=1e-6)


def test_classifier_takes_only_recurrent_cells() -> None:
    # ValueError from the function; under the tests' runtime type checking, the annotation's TypeError first
    with pytest.raises((ValueError, TypeError), match=r"(?s)cell.*Linear"):
        rnn.classifier(L.Linear)  # type: ignore[arg-type]


def test_flattened_digits_are_refused_with_the_fix() -> None:
    from jaxtyping import Array, Float32

    net, _ = rnn.classifier(L.LSTM, hidden=8)
    with pytest.raises(
        ss.ShapeError, match=r"(?s)LSTM\(8\).*3 dimensions.*L\.Reshape\(\(64, 1\)\)"
    ):
        ss.build(net, Float32[Array, "batch 64"])
