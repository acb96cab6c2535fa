"""Typed transforms against hand-computed values and NumPy; seeded ones are deterministic."""

import functools

import numpy as np
import pytest

import shapesafe as ss
from shapesafe.data import (
    channel_stats,
    from_arrays,
    jitter,
    normalise,
    random_crop,
    random_flip,
    standardise,
)


def _images(n: int = 6, h: int = 5, w: int = 7):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_channel_stats_equal_numpy_and_ignore_padding():
    x = _images(5)
    ds = from_arrays({"image": x, "label": np.zeros(5, np.int32)})
    s = channel_stats(ds.batch(2))  # the padded slot of the last batch is masked out
    pixels = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(s.mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s.std, pixels.std(0), rtol=1e-5)


def test_standardise_through_map_is_zero_mean_unit_std():
    x = _images()
    ds = from_arrays({"image": x, "label": np.zeros(6, np.int32)})
    s = channel_stats(ds)
    out = ds.map(functools.partial(standardise, mean=s.mean, std=s.std))
    assert repr(out.spec["image"]) and out.spec["image"].dtype.__name__ == "Float32"
    all_pixels = np.stack([e["image"] for e in out]).reshape(-1, 3)
    np.testing.assert_allclose(all_pixels.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(all_pixels.std(0), 1, atol=1e-5)


def test_normalise_then_float_only_map_composes():
    ds = from_arrays({"image": _images()})
    out = list(ds.map(normalise))
    np.testing.assert_allclose(out[0]["image"], _images()[0] / 255.0, rtol=1e-6)


def test_random_crop_is_a_window_of_the_image_and_deterministic():
    x = _images(1, 10, 12)[0]
    a = random_crop(x, height=4, width=5, rng=np.random.default_rng(3))
    b = random_crop(x, height=4, width=5, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    windows = [x[t : t + 4, c : c + 5] for t in range(7) for c in range(8)]
    assert any(np.array_equal(a, w) for w in windows)
    with pytest.raises(ValueError, match="smaller than the crop"):
        random_crop(x, height=11, width=5, rng=np.random.default_rng(0))


def test_random_flip_mirrors_with_the_probability():
    x = _images(1)[0]
    np.testing.assert_array_equal(
        random_flip(x, rng=np.random.default_rng(0), probability=1.0), x[:, ::-1]
    )
    np.testing.assert_array_equal(random_flip(x, rng=np.random.default_rng(0), probability=0.0), x)


def test_jitter_hand_computed():
    x = np.array([[[100, 100, 100], [200, 200, 200]]], np.uint8)  # grey pixels: grey level = value
    rng = np.random.default_rng(7)
    r2 = np.random.default_rng(7)  # the same draws, in the documented order
    b = r2.uniform(0.8, 1.2)
    k = r2.uniform(0.8, 1.2)
    bright = np.clip(np.array([100.0, 200.0]) * b, 0, 255)
    expected = np.clip(np.rint(k * bright + (1 - k) * bright.mean()), 0, 255)
    out = jitter(x, rng=rng)
    np.testing.assert_allclose(out[0, :, 0], expected, atol=1)
    assert out.dtype == np.uint8


def test_seeded_augmentation_in_a_pipeline_is_the_same_every_run_and_differs_by_epoch():
    ds = from_arrays({"image": _images(4, 8, 8), "label": np.zeros(4, np.int32)})
    aug = ds.map(functools.partial(random_crop, height=6, width=6), seed=1).map(jitter, seed=2)
    e0 = np.stack([e["image"] for e in aug.epoch(0)])
    np.testing.assert_array_equal(e0, np.stack([e["image"] for e in aug.epoch(0)]))
    assert not np.array_equal(e0, np.stack([e["image"] for e in aug.epoch(1)]))


def test_float_transform_on_uint8_images_fails_when_built():
    from jaxtyping import Float32

    def scale(image: Float32[np.ndarray, "h w c"]) -> Float32[np.ndarray, "h w c"]:
        return image

    ds = from_arrays({"image": _images()})
    with pytest.raises(ss.ShapeError, match=r"(?s)map\(scale\).*uint8 is not float32"):
        ds.map(scale)
