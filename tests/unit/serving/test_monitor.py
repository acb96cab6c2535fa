"""ss.monitor: drift flags on shifted photos, none on fresh in-distribution ones; accuracy checks;
retraining from a loaded artifact."""

import numpy as np
import optax
import pytest
from jaxtyping import Array, UInt8
from PIL import Image, ImageFilter

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.monitor import DriftMonitor, check_accuracy, input_statistics

NAMES = ["china", "flower"]


def _crops(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """16x16 crops of scikit-learn's two sample photos; the label is the photo."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(n):
        label = i % 2
        photo = photos[label]
        top, left = rng.integers(0, photo.shape[0] - 64), rng.integers(0, photo.shape[1] - 64)
        crop = Image.fromarray(photo[top : top + 64, left : left + 64]).resize(
            (16, 16), Image.Resampling.BILINEAR
        )
        xs.append(np.asarray(crop))
        ys.append(label)
    return np.stack(xs), np.array(ys, np.int32)


class _Batches:
    def __init__(self, x, y, size=50):
        self.x, self.y, self.size = x, y, size

    def __iter__(self):
        for i in range(0, len(self.x), self.size):
            yield self.x[i : i + self.size], self.y[i : i + self.size]

    def __len__(self):
        return -(-len(self.x) // self.size)


@pytest.fixture(scope="module")
def task():
    x, y = _crops(0, 400)
    fresh_x, fresh_y = _crops(1, 160)  # other crops of the same photos: in distribution
    model = ss.build(
        L.Rescale(1 / 255) >> L.Flatten() >> L.Linear(32) >> L.ReLU() >> L.Linear(2),
        UInt8[Array, "batch 16 16 3"],
        seed=0,
    )
    ss.fit(
        model,
        _Batches(x, y),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=6,
        progress=False,
    )
    clf = ss.Predictor(model, ss.encoders.Image(size=(16, 16)), ss.decoders.Labels(NAMES))
    accuracy = float(
        np.mean([p.label == NAMES[t] for p, t in zip(clf(list(fresh_x)), fresh_y, strict=True)])
    )
    assert accuracy > 0.8, accuracy  # a model worth monitoring
    clf.metrics = {"accuracy": accuracy}
    return clf, DriftMonitor.from_data(clf, x), x, y, fresh_x, fresh_y


def test_input_statistics_by_hand():
    x = np.zeros((1, 2, 2, 1), np.uint8)
    x[0, :, 1, 0] = 10  # columns 0 and 10: mean 5, std 5, neighbours differ by 10 across, 0 down
    names, v = input_statistics(x)
    assert names == ["mean[0]", "std[0]", "sharpness"]
    np.testing.assert_allclose(v, [[5.0, 5.0, 5.0]])


def test_fresh_in_distribution_photos_do_not_raise_the_flag(task):
    _, monitor, *_, fresh_x, _ = task
    report = monitor.check(fresh_x)
    assert not report.drift, report
    assert report.psi < 0.1
    assert not monitor.check(list(fresh_x[:64])).drift  # raw inputs go through the encoder


def test_brighter_photos_raise_the_flag(task):
    _, monitor, *_, fresh_x, _ = task
    brighter = np.clip(fresh_x.astype(np.int16) + 60, 0, 255).astype(np.uint8)
    report = monitor.check(brighter)
    assert report.drift
    assert any(r.startswith("mean[") for r in report.reasons), report.reasons
    assert all(report.shift[f"mean[{c}]"] > 0.5 for c in range(3))


def test_blurred_photos_raise_the_flag(task):
    _, monitor, *_, fresh_x, _ = task
    blurred = np.stack(
        [np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(1.5))) for x in fresh_x]
    )
    report = monitor.check(blurred)
    assert report.drift
    assert any(r.startswith("sharpness:") for r in report.reasons), report.reasons
    assert (
        abs(report.shift["mean[0]"]) < 0.1
    )  # blur keeps the brightness: only the sharpness test sees it


def test_a_shift_in_predicted_classes_raises_the_flag(task):
    _, monitor, *_, fresh_x, fresh_y = task
    report = monitor.check(fresh_x[fresh_y == 0])  # only one class arrives now
    assert report.drift and report.psi > 0.25
    assert any("predicted classes" in r for r in report.reasons)


def test_accuracy_check_against_the_recorded_accuracy(task):
    clf, *_, fresh_x, fresh_y = task
    ok = check_accuracy(clf, fresh_x, fresh_y)
    assert not ok.degraded and ok.expected == clf.metrics["accuracy"] and ok.n == len(fresh_y)
    flipped = check_accuracy(
        clf, fresh_x, [NAMES[1 - t] for t in fresh_y]
    )  # concept drift: labels changed
    assert flipped.degraded and flipped.accuracy == pytest.approx(1 - ok.accuracy)
    with pytest.raises(ValueError, match=r"has no recorded accuracy"):
        check_accuracy(ss.Predictor(clf.model, clf.encoder, clf.decoder), fresh_x, fresh_y)


def test_the_monitor_travels_with_the_artifact_and_retraining_from_it_works(task, tmp_path):
    clf, monitor, x, y, fresh_x, fresh_y = task
    ss.save(clf, tmp_path / "1", monitor=monitor)
    loaded = ss.load(tmp_path / "1")
    again = DriftMonitor.load(tmp_path / "1", loaded)
    assert again.check(fresh_x).z == pytest.approx(monitor.check(fresh_x).z)
    brighter = np.clip(fresh_x.astype(np.int16) + 60, 0, 255).astype(np.uint8)
    assert again.check(brighter).drift
    # the world got brighter: retrain the loaded model on fresh, labelled bright photos
    before = check_accuracy(loaded, brighter, fresh_y).accuracy
    ss.fit(
        loaded.model,
        _Batches(np.clip(x.astype(np.int16) + 60, 0, 255).astype(np.uint8), y),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=4,
        progress=False,
    )
    after = check_accuracy(loaded, brighter, fresh_y)
    assert after.accuracy >= max(before, 0.8), (before, after)
    ss.save(loaded, tmp_path / "2", metrics={"accuracy": after.accuracy})
    assert ss.load(tmp_path / "2").metrics == {"accuracy": after.accuracy}


def test_monitor_without_a_stored_monitor(task, tmp_path):
    clf, *_ = task
    ss.save(clf, tmp_path / "1")
    with pytest.raises(
        ss.ArtifactError,
        match=r"monitor\.json is missing: the artifact was saved without a monitor",
    ):
        DriftMonitor.load(tmp_path / "1", clf)


def test_encoded_arrays_must_match_the_model(task):
    _, monitor, *_ = task
    with pytest.raises(
        ss.InputError, match=r"must be uint8\[n, 16, 16, 3\], got float32\[4, 16, 16, 3\]"
    ):
        monitor.check(np.zeros((4, 16, 16, 3), np.float32))
