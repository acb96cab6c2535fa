"""Predictor, encoders.Image and decoders: a model as a function from photos to predictions."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, UInt8
from PIL import Image

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.data import image_folder

NAMES = ["cat", "dog"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def model():
    net = (
        L.Rescale(1 / 255)
        >> L.Flatten()
        >> L.Linear(8)
        >> L.ReLU()
        >> L.Dropout(0.5)
        >> L.Linear(2)
    )
    return ss.build(net, UInt8[Array, "batch 12 10 3"], seed=0)


@pytest.fixture(scope="module")
def clf(model):
    return ss.Predictor(model, ss.encoders.Image(size=(12, 10)), ss.decoders.Labels(NAMES))


@pytest.fixture
def folder(tmp_path):
    """Photos in several formats and modes, including an EXIF-rotated JPEG and a transparent PNG."""
    rng = np.random.default_rng(0)
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
        tmp_path / "cat" / "a.jpg", quality=90
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(
        tmp_path / "cat" / "rot.jpg", exif=exif
    )
    rgba = rng.integers(0, 256, (20, 25, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "dog" / "alpha.png")
    Image.fromarray(rng.integers(0, 256, (33, 33), dtype=np.uint8)).save(
        tmp_path / "dog" / "grey.png"
    )
    return tmp_path


@pytest.mark.parametrize("resize", ["stretch", "crop", "pad"])
def test_image_encoder_is_image_folders_preprocessing(folder, resize):
    ds = image_folder(folder, size=(12, 10), resize=resize, workers=1)
    enc = ss.encoders.Image(size=(12, 10), resize=resize)
    paths = [p for p, _ in ds.files]
    for path, element in zip(paths, list(ds), strict=True):
        expected = element["image"]
        np.testing.assert_array_equal(enc(path), expected)
        with open(path, "rb") as f:
            np.testing.assert_array_equal(enc(f.read()), expected)
        with Image.open(path) as im:
            np.testing.assert_array_equal(enc(im), expected)


def test_an_array_is_an_image_already_decoded(clf):
    x = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(clf.encoder(x), x)  # the right size: unchanged
    big = np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)
    expected = np.asarray(Image.fromarray(big).resize((10, 12), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(clf.encoder(big), expected)


def test_predictor_on_every_kind_of_input_agrees_with_the_model(clf, model, folder):
    path = folder / "cat" / "a.jpg"
    data = path.read_bytes()
    with Image.open(path) as im:
        pil = im.copy()
    array = np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    inputs = [str(path), path, data, pil, array]
    encoded = np.stack([ss.encoders.Image(size=(12, 10))(x) for x in inputs])
    model.eval()
    probs = _softmax(np.asarray(model(jnp.asarray(encoded)), np.float64))
    model.train()
    found = clf(inputs)
    assert [p.label for p in found] == [NAMES[i] for i in probs.argmax(axis=1)]
    np.testing.assert_allclose([p.confidence for p in found], probs.max(axis=1), rtol=1e-5)
    one = clf(data)
    assert isinstance(one, ss.Prediction) and one.label == found[2].label
    assert repr(one).startswith(f"Prediction(label='{one.label}', confidence=0.")


def test_predictor_runs_in_eval_mode_and_leaves_the_model_as_it_was(clf, model):
    x = np.full((12, 10, 3), 100, np.uint8)
    assert clf(x) == clf(x)  # dropout off: deterministic
    assert model.layers[4].deterministic is False  # the model itself still trains with dropout


def test_top_k(model):
    clf = ss.Predictor(model, ss.encoders.Image(size=(12, 10)), ss.decoders.Labels(NAMES, top_k=2))
    p = clf(np.zeros((12, 10, 3), np.uint8))
    assert [name for name, _ in p.top] == sorted(NAMES, key=lambda n: n != p.label)
    assert sum(q for _, q in p.top) == pytest.approx(1.0)
    assert p.top[0][1] == p.confidence
    with pytest.raises(ValueError, match=r"top_k must be None or an int in 1\.\.2, got 3"):
        ss.decoders.Labels(NAMES, top_k=3)


def test_other_decoders():
    scores = np.array([[2.0, -1.0, 0.0]], np.float32)
    (labels,) = ss.decoders.MultiLabel(["a", "b", "c"])(scores)
    assert [p.label for p in labels] == ["a", "c"]
    assert labels[0].confidence == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert ss.decoders.Regression(["x", "y", "z"])(scores) == [{"x": 2.0, "y": -1.0, "z": 0.0}]


def test_raw_arrays_without_an_encoder(model):
    raw = ss.Predictor(model)
    out = raw(np.zeros((12, 10, 3), np.uint8))
    assert out.shape == (2,)
    with pytest.raises(ss.InputError, match=r"takes one example of uint8\[12, 10, 3\]"):
        raw(np.zeros((12, 10, 3), np.float32))


def test_undecodable_image_names_the_file(clf, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture\n")
    with pytest.raises(
        ss.InputError, match=r"Predictor: cannot read '.*notes\.jpg': not an image format Pillow"
    ):
        clf(bad)
    good = np.zeros((12, 10, 3), np.uint8)
    with pytest.raises(ss.InputError, match=r"input 2 of 3: cannot read '.*notes\.jpg'"):
        clf([good, str(bad), good])
    with pytest.raises(ss.InputError, match=r"cannot read bytes \(5 bytes\): not an image"):
        clf(b"hello")
    with pytest.raises(ss.InputError, match=r"cannot read '.*missing\.png': no such file"):
        clf(tmp_path / "missing.png")


def test_truncated_jpeg_at_predict_time(clf, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[:400])
    with pytest.raises(ss.InputError, match=r"cannot read '.*cut\.jpg': .*truncated"):
        clf(path)


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [
        (
            (12, 10),
            np.uint8,
            r"shape \(12, 10\).*expected one image as an array of shape \(height, width, 3\)",
        ),
        ((3, 12, 10), np.uint8, r"looks channels-first; transpose it"),
        ((4, 12, 10, 3), np.uint8, r"pass a list of arrays"),
        ((12, 10, 3), np.float32, r"expected uint8 pixels"),
    ],
    ids=["2d", "channels-first", "a-batch", "float"],
)
def test_array_of_the_wrong_shape_or_dtype(clf, shape, dtype, message):
    with pytest.raises(ss.InputError, match=message):
        clf(np.zeros(shape, dtype))


def test_encoder_and_decoder_must_fit_the_model(model):
    with pytest.raises(
        ss.ShapeError,
        match=r"makes examples of uint8\[16, 16, 3\], but the model takes "
        r"UInt8\[batch, 12, 10, 3\].*Image\(size=\(12, 10\)\)",
    ):
        ss.Predictor(model, ss.encoders.Image(size=(16, 16)))
    with pytest.raises(
        ss.ShapeError, match=r"reads outputs of shape \[batch, 3\].*returns \[batch, 2\]"
    ):
        ss.Predictor(model, decoder=ss.decoders.Labels(["a", "b", "c"]))


def test_encoder_arguments_are_validated():
    with pytest.raises(ValueError, match=r"mode must be one of \['L', 'RGB', 'RGBA'\]"):
        ss.encoders.Image(size=(4, 4), mode="CMYK")
    with pytest.raises(ValueError, match=r"size must be \(height, width\)"):
        ss.encoders.Image(size=(4,))  # type: ignore[arg-type]
