"""Typed image transforms: plain annotated functions of one ``(height, width, channels)`` image.

Dimensions: ``h``/``w`` the image's height and width, ``c`` its channels. Use them with
``ds.map``; a parameter named ``image`` takes the element's ``"image"``, keyword settings are
bound with ``functools.partial``, and ``rng`` is supplied by ``map`` (seeded by ``(seed,
epoch, index)``), so every random transform is deterministic and resumes exactly.
"""

import dataclasses
from typing import Any

import numpy as np
from jaxtyping import Float32, Real, Shaped, UInt8

from ._dataset import Dataset


def normalise(image: UInt8[np.ndarray, "h w c"]) -> Float32[np.ndarray, "h w c"]:
    """uint8 pixels to float32 in ``[0, 1]``.

    Args:
        image: one uint8 image ``(h, w, c)``.

    Returns:
        ``image / 255`` as float32, same shape.

    Example:
        >>> import numpy as np
        >>> normalise(np.array([[[0, 51, 255]]], np.uint8)).tolist()
        [[[0.0, 0.20000000298023224, 1.0]]]
    """
    return image.astype(np.float32) / np.float32(255)


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of a dataset's images, in their own units."""

    mean: Float32[np.ndarray, " c"]
    std: Float32[np.ndarray, " c"]


def channel_stats(ds: Dataset, *, key: str = "image") -> ChannelStats:
    """Mean and standard deviation of every channel over all (real) pixels of ``ds``.

    Works on batched datasets too (padded examples are left out by the mask).

    Args:
        ds: a dataset whose elements (or batches) hold images under ``key``.
        key: the images' key in a dict element.

    Returns:
        ``ChannelStats(mean, std)``, float32 arrays ``(channels,)``, to bind into ``standardise``.

    Example:
        >>> import numpy as np
        >>> from shapesafe.data import from_arrays
        >>> x = np.array([[[[0, 10]]], [[[2, 30]]]], np.uint8)   # 2 images of 1x1x2
        >>> s = channel_stats(from_arrays({"image": x}))
        >>> s.mean.tolist(), s.std.tolist()
        ([1.0, 20.0], [1.0, 10.0])
    """
    total = total_sq = None
    count = 0
    for element in ds:
        image = np.asarray(element[key], np.float64)
        if "mask" in element:
            image = image[np.asarray(element["mask"], bool)]
        pixels = image.reshape(-1, image.shape[-1])
        s, sq = pixels.sum(0), (pixels * pixels).sum(0)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        count += pixels.shape[0]
    if total is None or total_sq is None or count == 0:
        raise ValueError("channel_stats: the dataset has no elements.")
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    return ChannelStats(mean.astype(np.float32), np.sqrt(var).astype(np.float32))


def standardise(
    image: Real[np.ndarray, "h w c"],
    *,
    mean: Float32[np.ndarray, " c"],
    std: Float32[np.ndarray, " c"],
) -> Float32[np.ndarray, "h w c"]:
    """``(image - mean) / std`` per channel, as float32 (bind ``mean``/``std`` with ``partial``).

    Args:
        image: one image ``(h, w, c)`` of any real dtype.
        mean: per-channel means ``(c,)`` (``channel_stats(ds).mean``).
        std: per-channel standard deviations ``(c,)``.

    Returns:
        The standardised image, float32, same shape.

    Example:
        >>> import numpy as np
        >>> x = np.array([[[1, 20], [3, 40]]], np.uint8)
        >>> standardise(x, mean=np.array([2, 30], np.float32), std=np.array([1, 10], np.float32)).tolist()
        [[[-1.0, -1.0], [1.0, 1.0]]]
    """
    safe = np.where(std > 0, std, np.float32(1)).astype(np.float32)
    return ((image.astype(np.float32) - mean.reshape(1, 1, -1)) / safe.reshape(1, 1, -1)).astype(
        np.float32
    )


def random_crop(
    image: Shaped[np.ndarray, "h w c"], *, height: int, width: int, rng: np.random.Generator
) -> Shaped[np.ndarray, "{height} {width} c"]:
    """A ``height`` x ``width`` window at a random position (uniform over all positions).

    Dimensions: ``h``, ``w`` the image's height and width, ``c`` its channels.

    Args:
        image: one image, channels last.
        height: the window's height.
        width: the window's width.
        rng: the generator ``map`` passes (seeded per epoch and element).

    Returns:
        The window, ``(height, width, c)``, same dtype.

    Raises:
        ValueError: the image is smaller than the window.
    """
    h, w = image.shape[0], image.shape[1]
    if h < height or w < width:
        raise ValueError(
            f"random_crop: the image is {h}x{w}, smaller than the crop {height}x{width}."
        )
    top = int(rng.integers(0, h - height + 1))
    left = int(rng.integers(0, w - width + 1))
    return image[top : top + height, left : left + width]


def random_flip(
    image: Shaped[np.ndarray, "h w c"], *, rng: np.random.Generator, probability: float = 0.5
) -> Shaped[np.ndarray, "h w c"]:
    """Mirror left-right with ``probability``.

    Args:
        image: one image ``(h, w, c)``.
        rng: the generator ``map`` passes (seeded per epoch and element).
        probability: the chance of a mirror.

    Returns:
        The image, mirrored or not, same shape and dtype.
    """
    return image[:, ::-1] if rng.random() < probability else image


def jitter(
    image: UInt8[np.ndarray, "h w c"],
    *,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> UInt8[np.ndarray, "h w c"]:
    """Random brightness then contrast, as in torchvision's ``ColorJitter``.

    Args:
        image: one uint8 image ``(h, w, c)``.
        rng: the generator ``map`` passes (seeded per epoch and element).
        brightness: the largest relative change of brightness.
        contrast: the largest relative change of contrast.

    Returns:
        The changed image, uint8, same shape.

    Brightness multiplies by ``b ~ U(1 - brightness, 1 + brightness)``; contrast blends with
    the image's mean grey level by ``k ~ U(1 - contrast, 1 + contrast)``:
    ``clip(k * (b * x) + (1 - k) * mean(b * x))``, rounded back to uint8.
    """
    b = float(rng.uniform(max(0.0, 1 - brightness), 1 + brightness))
    k = float(rng.uniform(max(0.0, 1 - contrast), 1 + contrast))
    x = np.clip(image.astype(np.float32) * np.float32(b), 0, 255)
    grey = _grey(x)
    out = np.float32(k) * x + np.float32(1 - k) * grey
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey(x: Any) -> np.float32:
    if x.shape[-1] == 3:
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        return np.float32((x * weights.reshape(1, 1, 3)).sum(-1).mean())
    return np.float32(x.mean())
