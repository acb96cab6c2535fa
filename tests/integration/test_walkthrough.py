"""The user's story in the design (``shared/DESIGN.md``, "What a user writes"), run as written.

The code below is the design's, line for line, on a folder of real photos (the logo-in-the-wild
set of ``models/logo.py``, 250 x 250 JPEGs, as the talk's). Two things differ, both to keep
CI fast: the folder holds 40 photos, not 800, and ``epochs=1`` instead of 10. The 250 px CNN
has 252 M parameters, so this builds, trains one epoch of it and saves it (about 1 GB).

What is asserted is what the design's comments promise: the specs, the split, the summary,
a falling-or-finite loss, a plot file, a prediction, and an artifact that loads back to the
same predictions.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shapesafe.models import logo


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("walkthrough")
    logo.generate(root / "photos", n=40, seed=3, size=250)
    # a photo to predict on, not in the training folder
    logo.sample(10_000, seed=3, size=250).image.save(root / "holiday.jpg", quality=90)
    return root


def test_the_design_story_runs_as_written(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photos)
    # ---- the design's code, as written (40 photos; epochs=1) ----
    import jax.numpy as jnp
    import optax
    from jaxtyping import Array, UInt8

    import shapesafe as ss
    from shapesafe import layers as L
    from shapesafe.data import image_folder

    # 1. data: class folders -> a typed dataset; every stage knows its element spec
    ds = image_folder("photos", size=(250, 250))
    train, test = ds.split(0.8, seed=0)
    train = train.shuffle(seed=0).batch(32)
    test = test.batch(32)

    # 2. architecture: blueprints composed with >>
    baseline = L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(64) >> L.ReLU() >> L.Linear(2)
    cnn = (
        L.Cast(jnp.float32)
        >> L.Conv2D(32, (3, 3))
        >> L.ReLU()
        >> L.MaxPool((2, 2))
        >> L.Flatten()
        >> L.Linear(512)
        >> L.ReLU()
        >> L.Linear(2)
    )

    # 3. build: shape inference for every batch size, no data, no FLOPs; mismatches raise ShapeError
    model = ss.build(cnn, UInt8[Array, "batch 250 250 3"], seed=0)
    summary = ss.summary(model)
    print(summary)

    # 4. train: loss goes down, test accuracy is measured every epoch
    history = ss.fit(
        model,
        train,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.01),
        epochs=1,
        eval_data=test,
        metrics=[ss.metrics.accuracy],
        progress=False,
    )
    history.plot("curves.png")

    # 5. use it as a function A => B, and ship it
    clf = ss.Predictor(
        model,
        encoder=ss.encoders.Image(size=(250, 250)),
        decoder=ss.decoders.Labels(ds.class_names),
    )
    first = clf("holiday.jpg")
    ss.save(clf, "artifacts/logo/1")
    clf = ss.load("artifacts/logo/1")
    # ---- end of the design's code ----

    # 1. the specs the comments state
    assert ds.spec["image"].dtype.__name__ == "UInt8" and ds.spec["label"].dtype.__name__ == "Int32"
    assert ds.spec["image"].dim_str == "250 250 3" and ds.spec["label"].dim_str == ""
    assert train.spec["image"].dim_str == "batch 250 250 3"
    assert ds.class_names == ["logo", "no_logo"]
    n_train = sum(int(np.asarray(b["image"]).shape[0]) for b in train)  # stratified 80 %
    assert n_train == 32
    # 2.-3. the baseline builds too; the CNN's sizes are the talk's
    assert ss.summary(
        ss.build(baseline, UInt8[Array, "batch 250 250 3"], seed=0)
    ).trainable_params == (250 * 250 * 3 * 64 + 64 + 64 * 2 + 2)
    assert (
        summary.trainable_params == 3 * 3 * 3 * 32 + 32 + 124 * 124 * 32 * 512 + 512 + 512 * 2 + 2
    )
    # 4. one epoch ran, its loss is a number, the test set was measured
    assert len(history) == 1 and np.isfinite(history["loss"][0])
    assert 0.0 <= history["eval_accuracy"][0] <= 1.0
    with Image.open("curves.png") as im:
        assert im.format == "PNG"
    # 5. a Prediction, and the saved predictor answers the same
    assert first.label in ("logo", "no_logo") and 0.5 <= first.confidence <= 1.0
    again = clf("holiday.jpg")
    assert again.label == first.label and again.confidence == pytest.approx(
        first.confidence, abs=1e-6
    )
    assert os.path.isfile("artifacts/logo/1/weights.safetensors")
