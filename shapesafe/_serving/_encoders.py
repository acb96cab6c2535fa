"""Encoders: turn one input of some type ``A`` (a photo, ...) into one example tensor for a model.

An encoder is a small frozen dataclass with ``spec`` (the jaxtyping annotation of one
encoded example), ``__call__(item) -> np.ndarray`` and ``config()`` (its JSON form, stored in
artifacts). ``Image`` applies exactly ``image_folder``'s preprocessing: both call
``shapesafe.data._image_folder.prepare_image``, so what a model sees in serving is what it
saw in training (no train/serve skew).
"""

import dataclasses
import io
import os
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import jaxtyping
import numpy as np
from jaxtyping import UInt8
from PIL import Image as PILImage

from .._errors import ArtifactError, InputError
from ..data._image_folder import MODES, RESIZES, load_image, prepare_image

A_contra = TypeVar("A_contra", contravariant=True)

ImageInput = str | os.PathLike[str] | bytes | PILImage.Image | np.ndarray
"""What ``Image`` accepts: a file path, the file's bytes, a Pillow image, or a uint8 array."""


@runtime_checkable
class Encoder(Protocol[A_contra]):
    """What a ``Predictor`` needs of an encoder of inputs of type ``A_contra``."""

    @property
    def spec(self) -> Any:
        """The jaxtyping annotation of one encoded example (no batch axis)."""
        ...

    def __call__(self, item: A_contra, /) -> np.ndarray: ...

    def config(self) -> dict[str, Any]: ...


def describe_input(item: Any) -> str:
    """A short name for an input in messages: its path, or its type and size."""
    if isinstance(item, str | os.PathLike):
        return repr(os.fspath(item))
    if isinstance(item, bytes | bytearray):
        return f"bytes ({len(item)} bytes)"
    if isinstance(item, PILImage.Image):
        return f"a Pillow image ({item.mode}, {item.size[0]}x{item.size[1]})"
    shape = getattr(item, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)} and dtype {getattr(item, 'dtype', '?')}"
    return f"a {type(item).__name__}"


@dataclasses.dataclass(frozen=True)
class Image:
    """Photos to ``UInt8[np.ndarray, "height width channels"]``, exactly as ``image_folder`` reads them.

    Accepts a file path, the raw bytes of an image file, a Pillow image, or a uint8 array of
    shape ``(height, width, channels)`` (an already decoded image; it is resized and
    converted like a decoded file). Arguments mean what they mean for ``image_folder``; use
    the same values as the training data.

    Args:
        size: ``(height, width)`` of the encoded image.
        mode: ``"RGB"`` (3 channels), ``"L"`` (1) or ``"RGBA"`` (4).
        resize: ``"stretch"``, ``"crop"`` or ``"pad"``.
        background: colour under transparency and around padded images.

    Raises:
        InputError: at call time, an input that is not a readable image (naming it).

    Example:
        >>> import numpy as np
        >>> from PIL import Image as PILImage
        >>> enc = Image(size=(4, 6))
        >>> enc.spec.dim_str
        '4 6 3'
        >>> enc(PILImage.new("RGB", (12, 8), "red")).shape
        (4, 6, 3)
    """

    size: Sequence[int]
    mode: str = dataclasses.field(default="RGB", kw_only=True)
    resize: str = dataclasses.field(default="stretch", kw_only=True)
    background: Sequence[int] = dataclasses.field(default=(255, 255, 255), kw_only=True)

    def __post_init__(self) -> None:
        size = self.size
        if (
            not isinstance(size, tuple | list)
            or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        ):
            raise ValueError(
                f"encoders.Image: size must be (height, width) of positive ints, got {size!r}."
            )
        if self.mode not in MODES:
            raise ValueError(
                f"encoders.Image: mode must be one of {sorted(MODES)}, got {self.mode!r}."
            )
        if self.resize not in RESIZES:
            raise ValueError(
                f"encoders.Image: resize must be one of {list(RESIZES)}, got {self.resize!r}."
            )
        bg = self.background
        if (
            not isinstance(bg, tuple | list)
            or len(bg) != 3
            or not all(isinstance(c, int) and 0 <= c <= 255 for c in bg)
        ):
            raise ValueError(f"encoders.Image: background must be 3 ints in 0..255, got {bg!r}.")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "background", tuple(int(c) for c in bg))

    @property
    def _hw(self) -> tuple[int, int]:
        return (int(self.size[0]), int(self.size[1]))

    @property
    def channels(self) -> int:
        return MODES[self.mode]

    @property
    def spec(self) -> Any:
        return jaxtyping.UInt8[np.ndarray, f"{self.size[0]} {self.size[1]} {self.channels}"]

    def __call__(self, item: ImageInput, /) -> UInt8[np.ndarray, "height width channels"]:
        options: dict[str, Any] = {
            "mode": self.mode,
            "resize": self.resize,
            "background": self.background,
        }
        if isinstance(item, np.ndarray) or (hasattr(item, "__array__") and hasattr(item, "shape")):
            return prepare_image(self._from_array(item), self._hw, **options)
        try:
            if isinstance(item, str | os.PathLike):
                return load_image(item, self._hw, **options)
            if isinstance(item, bytes | bytearray):
                return load_image(io.BytesIO(bytes(item)), self._hw, **options)
            if isinstance(item, PILImage.Image):
                return prepare_image(item, self._hw, **options)
        except FileNotFoundError:
            raise InputError(f"cannot read {describe_input(item)}: no such file.") from None
        except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as e:
            raise InputError(f"cannot read {describe_input(item)}: {_reason(e)}.") from None
        raise InputError(
            f"cannot encode {describe_input(item)}: encoders.Image takes a file path, the bytes of "
            "an image file, a Pillow image, or a uint8 array (height, width, channels)."
        )

    def _from_array(self, item: Any) -> PILImage.Image:
        x = np.asarray(item)
        what = describe_input(x)
        c = self.channels
        h, w = self.size
        if x.ndim != 3 or x.shape[-1] != c:
            hint = ""
            if x.ndim == 3 and x.shape[0] == c:
                hint = " It looks channels-first; transpose it: np.transpose(x, (1, 2, 0))."
            elif x.ndim == 4:
                hint = " For several images, pass a list of arrays (one per image)."
            elif x.ndim == 2 and c == 1:
                hint = " Add the channel axis: x[..., None]."
            raise InputError(
                f"cannot encode {what}: expected one image as an array of shape (height, width, {c}) "
                f"({self.mode}, resized to {h}x{w}).{hint}"
            )
        if x.dtype != np.uint8:
            raise InputError(
                f"cannot encode {what}: expected uint8 pixels (0..255), as image files decode to. "
                "Convert it, e.g. np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1]."
            )
        return PILImage.fromarray(
            np.ascontiguousarray(x[..., 0] if c == 1 else x)
        )  # L, RGB or RGBA

    def config(self) -> dict[str, Any]:
        return {
            "kind": "Image",
            "size": list(self.size),
            "mode": self.mode,
            "resize": self.resize,
            "background": list(self.background),
        }


def _reason(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, PILImage.UnidentifiedImageError):
        return "not an image format Pillow can read"
    if "truncated" in text.lower():
        return f"truncated image data ({text})"
    return f"{type(e).__name__}: {text}"


def encoder_from_config(data: Any, file: str) -> Any:
    """The encoder a ``config()`` describes (only known kinds; nothing is executed)."""
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("kind") != "Image":
        raise ArtifactError(f"{file}: unknown encoder {data!r}; known: Image.")
    try:
        return Image(
            size=tuple(data["size"]),
            mode=data["mode"],
            resize=data["resize"],  # type: ignore[arg-type]
            background=tuple(data["background"]),  # type: ignore[arg-type]
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{file}: the encoder {data!r} cannot be rebuilt: {e}") from None
