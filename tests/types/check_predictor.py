"""Checked by pyright and mypy, never executed: a Predictor's input and output types."""

from pathlib import Path
from typing import assert_type

from jaxtyping import Array, UInt8
from PIL import Image

import shapesafe as ss
from shapesafe import layers as L

model = ss.build(
    L.Flatten() >> L.Rescale(1 / 255) >> L.Linear(2), UInt8[Array, "batch 8 8 3"], seed=0
)
clf = ss.Predictor(model, ss.encoders.Image(size=(8, 8)), ss.decoders.Labels(["cat", "dog"]))
assert_type(clf("holiday.jpg"), ss.Prediction)
assert_type(clf(Path("holiday.jpg")), ss.Prediction)
assert_type(clf(b"\xff\xd8"), ss.Prediction)
assert_type(clf(Image.new("RGB", (8, 8))), ss.Prediction)
assert_type(clf(["a.jpg", b"\xff\xd8"]), list[ss.Prediction])
label: str = clf("holiday.jpg").label
confidence: float = clf("holiday.jpg").confidence
clf(3.5)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]  # expect-error
