"""fit on a real image-folder pipeline: JPEG files through Pillow, typed specs, exact resume."""

import numpy as np
import optax
import pytest
from jaxtyping import Array, Float32, UInt8
from PIL import Image

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import image_folder


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):  # type: ignore[no-untyped-def]
    """scikit-learn's real handwritten 0s and 1s, written as 16x16 PNG files in class folders."""
    from sklearn.datasets import load_digits

    d = load_digits()
    root = tmp_path_factory.mktemp("digits")
    for cls in (0, 1):
        (root / f"digit_{cls}").mkdir()
        for i, img in enumerate(d.images[d.target == cls][:60]):
            pixels = (img * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels).resize((16, 16)).convert("RGB").save(
                root / f"digit_{cls}" / f"{i}.png"
            )
    return root


def test_fit_a_cnn_on_an_image_folder(digit_folder) -> None:  # type: ignore[no-untyped-def]
    ds = image_folder(digit_folder, size=(16, 16))
    assert ds.class_names == ["digit_0", "digit_1"]
    train, test = ds.split(0.75, seed=0)
    train = train.shuffle(seed=0).batch(16)
    test = test.batch(16)
    net = (
        L.Rescale(1 / 255)
        >> L.Conv2D(8, (3, 3))
        >> L.ReLU()
        >> L.MaxPool((2, 2))
        >> L.Flatten()
        >> L.Linear(2)
    )
    model = ss.build(net, UInt8[Array, "batch 16 16 3"], seed=0)
    h = ss.fit(
        model,
        train,
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(3e-3),
        epochs=4,
        eval_data=test,
        metrics=[ss.metrics.accuracy],
        progress=False,
    )
    assert h["eval_accuracy"][-1] >= 0.9
    # exact counting: the 30 test images, in two batches of 16 (the last padded), count once each
    preds = ss.predict(model, test)
    assert preds.shape == (30, 2)


def test_a_dataset_of_the_wrong_image_size_is_refused_before_the_first_batch(digit_folder) -> None:  # type: ignore[no-untyped-def]
    ds = image_folder(digit_folder, size=(12, 12)).batch(8)
    model = ss.build(
        L.Rescale(1 / 255) >> L.Flatten() >> L.Linear(2), UInt8[Array, "batch 16 16 3"]
    )
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)data\['image'\] cannot feed the model: dimension 1 is 12, expected 16",
    ):
        ss.fit(
            model,
            ds,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )


def test_an_unbatched_dataset_is_refused_with_the_fix(digit_folder) -> None:  # type: ignore[no-untyped-def]
    ds = image_folder(digit_folder, size=(16, 16))
    model = ss.build(
        L.Rescale(1 / 255) >> L.Flatten() >> L.Linear(2), UInt8[Array, "batch 16 16 3"]
    )
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)rank 3 where 4 dimensions are expected.*it has no batch dimension: batch the dataset first \(ds.batch\(32\)\)\.",
    ):
        ss.fit(
            model,
            ds,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )


def test_targets_that_do_not_fit_the_loss_are_refused_before_the_first_batch() -> None:
    x = np.zeros((8, 4), np.float32)
    ds = ss.data.from_arrays({"x": x, "y": np.zeros((8, 1), np.int32)}).batch(4)
    model = ss.build(L.Linear(3), Float32[Array, "batch 4"])
    with pytest.raises(ss.ShapeError, match=r"y\[:, 0\]"):
        ss.fit(
            model,
            ds,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )
