"""``image_folder``: class sub-folders of image files -> ``{"image", "label"}`` elements.

Every file is opened once when the dataset is built (Pillow reads the header only: size,
mode, format), so empty files, text named ``.jpg``, unknown formats and decompression bombs
are found before training starts. Damage that only full decoding shows (a truncated JPEG) is
found when the file is read. Nothing is silent: with ``on_error="skip"`` each bad file is
listed once in ``ds.report`` with the reason; with ``on_error="raise"`` the first one raises
``ImageFileError`` with its path and reason.
"""

import dataclasses
import io
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import jaxtyping
import numpy as np
from PIL import Image, ImageOps

from .._errors import ShapesafeError
from ._dataset import Dataset, Item
from ._element_spec import ElementSpec

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
MODES = {"RGB": 3, "L": 1, "RGBA": 4}
RESIZES = ("stretch", "crop", "pad")
ON_ERROR = ("raise", "skip")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ORIENTATION = 0x0112


class DataError(ShapesafeError, ValueError):
    """A dataset cannot be built from what is on disk (no class folders, an empty class)."""


class ImageFileError(DataError):
    """One image file cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str, stage: str):
        self.path, self.reason = path, reason
        super().__init__(
            f"{stage}: cannot read {path}: {reason}. "
            "Remove or fix the file, or pass on_error='skip' to skip bad files "
            "(they are listed in ds.report)."
        )


# Tracebacks name them by a home the user can import from (``shapesafe.DataError``).
DataError.__module__ = ImageFileError.__module__ = "shapesafe"


@dataclasses.dataclass
class Report:
    """What an image folder left out: ``skipped`` (bad image files) and ``ignored`` (hidden or
    non-image files), each a list of ``(path, reason)``; and ``followed``, the symlinked
    folders and files it read through, each ``(link, target)``."""

    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    ignored: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    followed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add_skipped(self, path: str, reason: str) -> None:
        with self._lock:
            if all(p != path for p, _ in self.skipped):
                self.skipped.append((path, reason))

    def __repr__(self) -> str:
        lines = [f"Report: {len(self.skipped)} skipped, {len(self.ignored)} ignored"]
        lines += [f"  skipped {p}: {r}" for p, r in self.skipped]
        lines += [f"  ignored {p}: {r}" for p, r in self.ignored]
        if self.followed:
            lines[0] += f", {len(self.followed)} followed"
            lines += [f"  followed {p} -> {t}" for p, t in self.followed]
        return "\n".join(lines)


def load_image(
    path: str | os.PathLike[str] | io.BufferedIOBase,
    size: tuple[int, int],
    *,
    mode: str = "RGB",
    resize: str = "stretch",
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Decode one image file (a path or a binary file object) to a ``(height, width, channels)`` uint8 array.

    EXIF orientation is applied; JPEGs are decoded at a reduced scale (draft mode) when the
    requested size allows; every Pillow mode is converted to ``mode`` (16-bit images are
    scaled to 8 bits; float images by their range: values in 0..1 times 255, in 0..255 as they
    are, any other range stretched from its minimum to its maximum; transparency is composited
    over ``background``).

    Args:
        path: the image file.
        size: ``(height, width)`` of the result.
        mode: ``"RGB"`` (3 channels), ``"L"`` (1) or ``"RGBA"`` (4).
        resize: ``"stretch"`` to the size, ``"crop"`` (scale to cover, cut the centre) or
            ``"pad"`` (scale to fit, fill with ``background``).
        background: the colour under transparent pixels and around padded images.

    Returns:
        A uint8 array ``(height, width, channels)``.

    Raises:
        OSError, ValueError, Image.DecompressionBombError: Pillow's, for a file it cannot read;
            ``ValueError`` for a float image with NaN or infinite pixels.
    """
    with Image.open(path) as im:  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        return prepare_image(im, size, mode=mode, resize=resize, background=background)


def prepare_image(
    im: Image.Image,
    size: tuple[int, int],
    *,
    mode: str = "RGB",
    resize: str = "stretch",
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """``load_image``'s preprocessing of an opened Pillow image: the one code path that training
    (``image_folder``) and serving (``shapesafe.encoders.Image``) share."""
    h, w = size
    orientation = _orientation(im)
    if hasattr(im, "draft") and im.format == "JPEG":
        shown = (im.size[1], im.size[0]) if orientation in (5, 6, 7, 8) else im.size
        nw, nh = _needed(shown, (w, h), resize)
        if orientation in (5, 6, 7, 8):
            nw, nh = nh, nw
        im.draft("L" if mode == "L" and im.mode == "RGB" else None, (nw, nh))
    img: Image.Image = im
    if orientation not in (None, 1):
        img = ImageOps.exif_transpose(im)
    img = _to_mode(img, mode, background)
    img = _fit(img, (w, h), resize, background)
    arr = _pixels(img)
    return arr[..., None] if arr.ndim == 2 else arr


def _pixels(img: Image.Image) -> np.ndarray:
    """``np.asarray(img)`` for 8-bit modes, packed in one piece: ``np.asarray`` goes through
    ``tobytes``, which packs 64 KiB at a time and joins the pieces (a second copy of the image).
    The array is read-only (it wraps the packed bytes); ``batch`` copies it into the batch."""
    getencoder = getattr(Image, "_getencoder", None)  # what tobytes uses (Pillow-internal)
    if img.mode not in ("L", "RGB", "RGBA") or getencoder is None:
        return np.asarray(img, dtype=np.uint8)
    img.load()  # a file not resized is still lazy; a truncated one fails here
    channels = len(img.mode)
    encoder = getencoder(img.mode, "raw", img.mode)
    try:
        encoder.setimage(img.im, (0, 0, *img.size))
        _, status, data = encoder.encode(img.width * img.height * channels)
    finally:
        encoder.cleanup()
    if status != 1 or len(data) != img.width * img.height * channels:  # 1: done, all of it
        return np.asarray(img, dtype=np.uint8)
    shape = (img.height, img.width) if channels == 1 else (img.height, img.width, channels)
    return np.frombuffer(data, np.uint8).reshape(shape)


def _orientation(im: Image.Image) -> int | None:
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except Exception:
        return None


def _needed(shown: tuple[int, int], target: tuple[int, int], resize: str) -> tuple[int, int]:
    (W, H), (w, h) = shown, target
    if resize == "stretch":
        return w, h
    s = max(w / W, h / H) if resize == "crop" else min(w / W, h / H)
    return max(1, math.ceil(W * s)), max(1, math.ceil(H * s))


def _to_mode(im: Image.Image, mode: str, background: tuple[int, int, int]) -> Image.Image:
    if im.mode in _SIXTEEN_BIT or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = _float_to_8_bits(a) if im.mode == "F" else a / 257.0
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    transparent = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if transparent and mode != "RGBA":
        rgba = im.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (*background, 255))
        under.alpha_composite(rgba)
        im = under
    return im if im.mode == mode else im.convert(mode)


def _float_to_8_bits(a: np.ndarray) -> np.ndarray:
    """A float image's values on 0..255, by their range: 0..1 is scaled by 255, 0..255 is kept,
    any other range is stretched from its minimum to its maximum."""
    if not np.all(np.isfinite(a)):
        raise ValueError("the float image has NaN or infinite pixels")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return a * 255.0
    if lo >= 0.0 and hi <= 255.0:
        return a
    return (a - lo) * (255.0 / (hi - lo))


def _fit(
    im: Image.Image, size: tuple[int, int], resize: str, background: tuple[int, int, int]
) -> Image.Image:
    if im.size == size:
        return im
    method = Image.Resampling.BILINEAR
    if resize == "stretch":
        return im.resize(size, method)
    if resize == "crop":
        return ImageOps.fit(im, size, method)
    fill: Any = (
        round(sum(background) / 3)
        if im.mode == "L"
        else ((*background, 255) if im.mode == "RGBA" else background)
    )
    return ImageOps.pad(im, size, method, color=fill)


def _header_problem(path: Path) -> str | None:
    """Why Pillow will not read this file, from its size and header; ``None`` if it looks fine."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w < 1 or h < 1:
                    return f"image has no pixels ({w}x{h})"
    except Image.DecompressionBombWarning as e:
        return f"decompression bomb: {e}"
    except Image.DecompressionBombError as e:
        return f"decompression bomb: {e}"
    except Image.UnidentifiedImageError:
        head = path.read_bytes()[:64]
        text = head and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
        return "not an image (it is text)" if text else "not an image format Pillow can read"
    except (OSError, ValueError, SyntaxError) as e:
        return f"unreadable header ({type(e).__name__}: {e})"
    return None


class ImageFolder(Dataset):
    def __init__(
        self,
        root: Path,
        size: tuple[int, int],
        *,
        mode: str,
        resize: str,
        on_error: str,
        background: tuple[int, int, int],
        workers: int,
    ):
        self.root, self.size, self.mode, self.resize = root, size, mode, resize
        self.on_error, self.background = on_error, background
        self._stage = f"image_folder({str(root)!r})"
        self._random_access, self._workers = True, workers
        self._report = Report()
        self._class_names, self.files = self._scan()
        self.spec = ElementSpec(
            {
                "image": jaxtyping.UInt8[np.ndarray, f"{size[0]} {size[1]} {MODES[mode]}"],
                "label": jaxtyping.Int32[np.ndarray, ""],
            }
        )

    def _scan(self) -> tuple[list[str], list[tuple[str, int]]]:
        root = self.root
        if not root.is_dir():
            raise FileNotFoundError(f"image_folder: {root} is not a directory.")
        classes = sorted(
            p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not classes:
            loose = [p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
            raise DataError(
                f"image_folder: {root} has no class folders; expected {root}/<class name>/<image files>"
                + (
                    f" (found {len(loose)} files at the top level, e.g. {loose[0]!r})."
                    if loose
                    else "."
                )
            )
        files: list[tuple[str, int]] = []
        links = _Links(root, self._report)
        for label, name in enumerate(classes):
            found = 0
            links.enter(root / name)
            for path in _walk(root / name, self._report, links):
                problem = _header_problem(path)
                if problem is None:
                    files.append((str(path), label))
                    found += 1
                elif self.on_error == "raise":
                    raise ImageFileError(str(path), problem, self.where())
                else:
                    self._report.add_skipped(str(path), problem)
            if found == 0:
                raise DataError(
                    f"image_folder: class folder {root / name} has no readable image files "
                    f"({', '.join(EXTENSIONS)}); add images or remove the folder. See ds.report for "
                    "files that were skipped or ignored."
                    if self._report.skipped or self._report.ignored
                    else f"image_folder: class folder {root / name} has no image files "
                    f"({', '.join(EXTENSIONS)}); add images or remove the folder."
                )
        return classes, files

    def _length(self) -> int | None:
        return len(self.files)

    def _labels(self) -> Any:
        return np.array([label for _, label in self.files], np.int32)

    def _get(self, epoch: int, index: int) -> Item | None:
        path, label = self.files[index]
        try:
            image = load_image(
                path, self.size, mode=self.mode, resize=self.resize, background=self.background
            )
        except Exception as e:
            reason = _reason(e)
            if self.on_error == "raise":
                raise ImageFileError(path, reason, self.where()) from e
            self._report.add_skipped(path, reason)
            return None
        return self.check(({"image": image, "label": np.array(label, np.int32)}, path))


def _reason(e: Exception) -> str:
    text = str(e)
    if "truncated" in text:
        return f"truncated image data ({text})"
    return f"{type(e).__name__}: {text}"


class _Links:
    """The symlinks an image folder reads through: each must lead outside the root (or its
    images would be counted again, under another class or twice) and must not lead where an
    earlier one did (a loop); a sane one is followed and listed in ``report.followed``."""

    def __init__(self, root: Path, report: Report):
        self.root, self.real, self.report = root, root.resolve(), report
        self.seen: dict[Path, Path] = {}

    def enter(self, folder: Path) -> None:
        if not folder.is_symlink():
            return
        target = folder.resolve()
        why = None
        if target == self.real or target in self.real.parents:
            why = "which contains the image folder itself (a loop)"
        elif self.real in target.parents:
            inside = target.relative_to(self.real).parts[0]
            why = (
                f"inside the image folder (in class {inside!r}), so its images would be "
                "counted again"
            )
        elif target in self.seen or any(p in self.seen for p in target.parents):
            why = f"which {self.seen.get(target) or 'another link'} already leads to (a loop or a re-count)"
        elif any(target in p.parents for p in self.seen):
            why = "which holds a folder another link already leads to (a re-count)"
        if why is not None:
            raise DataError(
                f"image_folder: {folder} is a symlink to {target}, {why}. Remove the link, or "
                f"point it at a folder outside {self.root} that no other link reaches."
            )
        self.seen[target] = folder
        self.report.followed.append((str(folder), str(target)))

    def enter_file(self, path: Path) -> None:
        """A symlinked image file: one inside the root would count an image twice."""
        target = path.resolve()
        if self.real in target.parents:
            inside = target.relative_to(self.real).parts[0]
            raise DataError(
                f"image_folder: {path} is a symlink to {target}, inside the image folder (in "
                f"class {inside!r}), so that image would be counted twice. Remove the link, or "
                "copy the file."
            )
        self.report.followed.append((str(path), str(target)))


def _walk(folder: Path, report: Report, links: "_Links | None" = None) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        for d in sorted(dirnames):
            if d.startswith("."):
                report.ignored.append((str(Path(dirpath) / d), "hidden folder"))
            elif links is not None:
                links.enter(Path(dirpath) / d)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            path = Path(dirpath) / f
            if f.startswith("."):
                report.ignored.append((str(path), "hidden file"))
            elif path.suffix.lower() not in EXTENSIONS:
                report.ignored.append(
                    (str(path), f"not an image extension ({', '.join(EXTENSIONS)})")
                )
            else:
                if links is not None and path.is_symlink():
                    links.enter_file(path)
                out.append(path)
    return out


def image_folder(
    path: str | os.PathLike[str],
    size: tuple[int, int],
    *,
    mode: str = "RGB",
    resize: str = "stretch",
    on_error: str = "raise",
    background: tuple[int, int, int] = (255, 255, 255),
    workers: int | None = None,
) -> Dataset:
    """A labelled image dataset from ``path/<class name>/<image files>``.

    Labels number the class folders in sorted order (``ds.class_names``). Elements are
    ``{"image": UInt8[np.ndarray, "h w c"], "label": Int32[np.ndarray, ""]}`` with ``c`` 3 for
    RGB, 1 for L, 4 for RGBA. JPEG, PNG, GIF (first frame), BMP, WebP and TIFF are read; hidden
    files and other extensions are ignored and listed in ``ds.report.ignored``. A symlinked
    folder (a class or a sub-folder) is followed and listed in ``ds.report.followed`` when it
    leads outside ``path``; one that leads back into ``path`` (its images would count again,
    under another class) or somewhere a link already led (a loop) is refused with
    ``DataError``.

    Args:
        path: the root folder.
        size: ``(height, width)`` of every image.
        mode: ``"RGB"``, ``"L"`` or ``"RGBA"``; every Pillow mode is converted to it.
        resize: ``"stretch"``, ``"crop"`` (keep aspect, cut the centre) or ``"pad"``.
        on_error: ``"raise"`` at the first bad file, or ``"skip"`` it and list it in ``ds.report``.
        background: colour under transparency and around padded images.
        workers: decoding threads (default: the CPUs this process may use).

    Returns:
        A random-access ``Dataset`` of ``{"image": UInt8[np.ndarray, "height width channels"],
        "label": Int32[np.ndarray, ""]}``, with ``class_names`` and ``report``.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
        DataError: no class folders, a class folder without images, or a symlinked folder
            that loops or leads back into ``path``.
        ImageFileError: a bad file under ``on_error="raise"``.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     Image.new("RGB", (40, 30), "red").save(root / name / "a.png")
        >>> ds = image_folder(root, size=(25, 25))
        >>> ds.spec
        {"image": UInt8[np.ndarray, "25 25 3"], "label": Int32[np.ndarray, ""]}
        >>> ds.class_names, len(ds)
        (['cat', 'dog'], 2)
    """
    if mode not in MODES:
        raise ValueError(f"image_folder: mode must be one of {sorted(MODES)}, got {mode!r}.")
    if resize not in RESIZES:
        raise ValueError(f"image_folder: resize must be one of {list(RESIZES)}, got {resize!r}.")
    if on_error not in ON_ERROR:
        raise ValueError(
            f"image_folder: on_error must be one of {list(ON_ERROR)}, got {on_error!r}."
        )
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(
            f"image_folder: size must be (height, width) of positive ints, got {size!r}."
        )
    if workers is None:
        workers = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    return ImageFolder(
        Path(path),
        (int(size[0]), int(size[1])),
        mode=mode,
        resize=resize,
        on_error=on_error,
        background=tuple(background),  # type: ignore[arg-type]
        workers=int(workers),
    )
