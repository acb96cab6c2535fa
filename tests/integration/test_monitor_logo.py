"""ss.monitor on the talk's logo task (models/logo.py), end to end.

A small CNN learns generated logo photos (32 px); its predictor is saved with a drift monitor
built from the training photos and the test accuracy. Then, on photos it has never seen:
fresh photos of a new generator seed raise no flag; the same photos made brighter or blurred
(Pillow's ImageEnhance / ImageFilter) do; the accuracy on fresh labelled photos agrees with
the recorded one; and the loaded artifact retrains on fresh photos into a new version.
"""

from pathlib import Path

import numpy as np
import optax
import pytest
from PIL import Image, ImageEnhance, ImageFilter

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import image_folder
from shapesafe.models import logo, talk
from shapesafe.monitor import DriftMonitor, check_accuracy

SIZE = 32
NET = (
    L.Rescale(1 / 255)
    >> L.Conv2D(16, (3, 3))
    >> L.ReLU()
    >> L.MaxPool((2, 2))
    >> L.Conv2D(16, (3, 3))
    >> L.ReLU()
    >> L.MaxPool((2, 2))
    >> L.Flatten()
    >> L.Linear(32)
    >> L.ReLU()
    >> L.Linear(2)
)


def _fit(model, data, *, epochs: int, learning_rate: float = 3e-3) -> ss.History:
    return ss.fit(
        model,
        data,
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(learning_rate),
        epochs=epochs,
        progress=False,
    )


def _photos(root: Path) -> tuple[list[Path], list[str]]:
    """The photos of a generated set and their labels (class folder names)."""
    files = sorted(root.rglob("*.jpg"))
    return files, [f.parent.name for f in files]


def _changed(files: list[Path], change) -> list[Image.Image]:
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(change(im.convert("RGB")))
    return out


def _brighter(im: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(1.6)


def _darker(im: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(0.5)


def _blurred(im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(1.2))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Artifact version 1 (predictor, test accuracy, monitor) and two fresh photo sets."""
    root = tmp_path_factory.mktemp("logo")
    ds = image_folder(
        logo.generate(root / "train", n=400, seed=0, size=SIZE), size=(SIZE, SIZE)
    ).cache()
    train, test = ds.split(0.8, seed=0)
    model = ss.build(NET, talk.image_spec(SIZE), seed=0)
    _fit(model, train.shuffle(seed=0).batch(32), epochs=8)
    test_accuracy = ss.evaluate(model, test.batch(64), metrics=[ss.metrics.accuracy])["accuracy"]
    assert test_accuracy > 0.8, test_accuracy  # a model worth monitoring
    clf = ss.Predictor(
        model, ss.encoders.Image(size=(SIZE, SIZE)), ss.decoders.Labels(ds.class_names)
    )
    training_images = np.stack([element["image"] for element in train])
    monitor = DriftMonitor.from_data(clf, training_images)
    ss.save(clf, root / "artifacts" / "1", metrics={"accuracy": test_accuracy}, monitor=monitor)
    fresh = logo.generate(
        root / "fresh", n=160, seed=1, size=SIZE
    )  # new seed: new photos, same world
    more = logo.generate(root / "more", n=160, seed=2, size=SIZE)
    return root / "artifacts" / "1", fresh, more


@pytest.fixture(scope="module")
def loaded(saved) -> tuple[ss.Predictor, DriftMonitor]:
    clf = ss.load(saved[0])
    return clf, DriftMonitor.load(saved[0], clf)


def test_fresh_photos_of_a_new_seed_raise_no_flag(saved, loaded):
    _, monitor = loaded
    files, _ = _photos(saved[1])
    report = monitor.check(files)  # file paths, through the artifact's own encoder
    assert not report.drift, report
    assert max(abs(z) for z in report.z.values()) < monitor.z_threshold and report.psi < 0.1


@pytest.mark.parametrize(
    ("change", "statistic"),
    [(_brighter, "mean["), (_darker, "mean["), (_blurred, "sharpness")],
    ids=["brighter", "darker", "blurred"],
)
def test_shifted_photos_raise_the_flag(saved, loaded, change, statistic):
    _, monitor = loaded
    files, _ = _photos(saved[1])
    report = monitor.check(_changed(files, change))  # Pillow images
    assert report.drift, report
    assert any(r.startswith(statistic) for r in report.reasons), report.reasons
    if change is _blurred:
        assert report.shift["sharpness"] < -1 and all(
            abs(report.shift[f"mean[{c}]"]) < 0.25 for c in range(3)
        )
    else:
        sign = 1 if change is _brighter else -1
        assert all(sign * report.shift[f"mean[{c}]"] > 0.5 for c in range(3)), report.shift


def test_accuracy_on_fresh_labelled_photos_matches_the_recorded_one(saved, loaded):
    clf, _ = loaded
    files, labels = _photos(saved[1])
    report = check_accuracy(clf, files, labels)
    assert report.expected == clf.metrics["accuracy"] and report.n == 160
    assert not report.degraded, report
    assert abs(report.accuracy - report.expected) < 0.05, report


def test_darker_photos_lower_the_accuracy_and_retraining_the_loaded_artifact_restores_it(
    saved, tmp_path
):
    path, fresh, more = saved
    clf = ss.load(path)  # its own copy: the other tests keep version 1
    fresh_files, fresh_labels = _photos(fresh)
    dark_fresh = _changed(fresh_files, _darker)
    before = check_accuracy(clf, dark_fresh, fresh_labels)
    assert before.degraded, before  # the world got darker and the model noticed less
    # fine-tune on new labelled photos of the darker world (seed 2), measure on others (seed 1)
    more_files, more_labels = _photos(more)
    x = clf.encode(_changed(more_files, _darker))
    y = np.array([clf.decoder.names.index(label) for label in more_labels], np.int32)
    _fit(
        clf.model,
        [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32)],
        epochs=4,
        learning_rate=1e-3,
    )
    after = check_accuracy(clf, dark_fresh, fresh_labels)
    assert not after.degraded and after.accuracy >= before.accuracy + 0.05, (before, after)
    monitor = DriftMonitor.from_data(clf, x)  # the darker world is the reference now
    ss.save(clf, tmp_path / "2", metrics={"accuracy": after.accuracy}, monitor=monitor)
    again = ss.load(tmp_path / "2")
    assert again.version == "2" and again.metrics == {"accuracy": after.accuracy}
    assert not DriftMonitor.load(tmp_path / "2", again).check(dark_fresh).drift
    np.testing.assert_array_equal(again.outputs(dark_fresh[:8]), clf.outputs(dark_fresh[:8]))
    assert (
        check_accuracy(ss.load(path), dark_fresh, fresh_labels) == before
    )  # version 1 is unchanged
