"""The talk's logo-in-the-wild task: photos that do or do not contain a red stacked-ribbon logo.

Nothing is downloaded. Backgrounds are random crops, scales, flips and colour shifts of the
real photographs that installed packages ship: scikit-learn's ``china.jpg`` and
``flower.jpg`` (``sklearn.datasets.load_sample_images``) and matplotlib's
``grace_hopper.jpg`` (``matplotlib.cbook.get_sample_data``). Half of the photos get the logo,
drawn here with Pillow in the style of the Scala logo: three slanted red ribbons stacked
vertically, each shaded darker at its left end, with thin white gaps between them. It is
pasted at a random position, scale, rotation and opacity, sometimes blurred, sometimes
partly covered by a patch of another photo. How is a ``Style``: in ``STYLES["anywhere"]``
(the default) the logo may be anywhere; in ``STYLES["conference"]`` (``shapesafe demo``'s)
every shape sits on one of a few recurring places, as a conference's screens and banners.

Colour alone does not give the answer away. Every photo without the logo has one or two
*distractors* of the logo's size and treatment: red shapes (a single ribbon, a disc, a ring,
a triangle, a blob, half of them shaded like the ribbons), red-and-white ones (a no-entry
sign, a target) or the logo's own shape in another colour; half of the photos with the logo
have one too. So both classes hold as many shapes and about as much red, dark red and white
(``tests/integration/test_logo.py`` checks the shares), and what tells them apart is the shape: red
bands stacked with white between them. (On a similar set whose logo was simply brighter and
more saturated than its background, a plain MLP reached 0.87 on that alone.)

``generate(root)`` writes JPEG files in class folders (``root/logo``, ``root/no_logo``) that
``shapesafe.data.image_folder`` reads back; photo ``i`` depends only on ``(seed, i)`` and the
generator's ``VERSION``, so a seed always gives the same files, and a ``manifest.json``
with the parameters makes a second call with the same parameters return at once.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import UInt8
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

VERSION = 1
"""Bumped whenever the pictures change, so that caches made by an older generator are remade."""

CLASSES = ("logo", "no_logo")
"""The class folders, in ``image_folder``'s (sorted) label order: ``logo`` is label 0."""

PHOTOS = (
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
    ("matplotlib", "grace_hopper.jpg"),
)
"""The background photographs: (package, file name)."""

MANIFEST = "manifest.json"
_DRAWN = 200  # shapes are drawn this tall, then scaled

Box = tuple[int, int, int, int]
"""``(left, top, right, bottom)`` in pixels, right and bottom exclusive."""

_RED = (214, 40, 40)
_OTHER_COLOURS = (
    (40, 90, 200),
    (40, 150, 70),
    (230, 190, 40),
    (130, 60, 160),
    (235, 235, 235),
    (40, 40, 40),
)


@dataclasses.dataclass(frozen=True)
class Style:
    """How the photos are made: every knob of the task, in one place.

    The field defaults are the first style, ``STYLES["anywhere"]`` (the logo anywhere, at
    40-65 % of the photo's height); ``STYLES`` names every style the project has measured, so
    that earlier figures stay reproducible (``docs/experiments.md`` tells their history).

    Attributes:
        scale: a shape's height as a fraction of the photo's, drawn uniformly from this range.
        rotation: the largest rotation, in degrees, either way.
        opacity: the range a shape's opacity is drawn from.
        blur: the probability that a shape is blurred.
        occlusion: the probability that part of a shape is covered by a patch of another photo.
        distractors_with_logo: how many look-alikes a photo with the logo has (inclusive range).
        distractors_without: how many look-alikes a photo without the logo has (inclusive).
        kinds: the look-alikes to draw from (keys of ``DISTRACTORS``).
        gap: the white gap between two ribbons, as a fraction of a ribbon's thickness.
        slots: where the shapes go, as centres ``(x, y)`` in fractions of the photo's width
            and height: the screens, banners and slides of a conference, which recur from
            photo to photo. Each shape of a photo takes a different slot, the logo as often
            as a look-alike. Empty: anywhere in the photo.
        jitter: how far a shape's centre may stray from its slot, each way, as a fraction
            of the photo's size.
        shift: how far training may move a photo each way (``shift``'s ``fraction``), as
            the framing of the task's photos varies; 0: not at all (the slots are the prior).
    """

    scale: tuple[float, float] = (0.4, 0.65)
    rotation: float = 20.0
    opacity: tuple[float, float] = (0.8, 1.0)
    blur: float = 0.1
    occlusion: float = 0.1
    distractors_with_logo: tuple[int, int] = (0, 1)
    distractors_without: tuple[int, int] = (1, 2)
    kinds: tuple[str, ...] = (
        "band",
        "disc",
        "ring",
        "triangle",
        "blob",
        "sign",
        "target",
        "other_colour",
    )
    gap: tuple[float, float] = (0.4, 0.6)
    slots: tuple[tuple[float, float], ...] = ()
    jitter: float = 0.0
    shift: float = 0.125


STYLES: dict[str, Style] = {
    "anywhere": Style(),
    "conference": Style(
        scale=(0.3, 0.4),
        rotation=5.0,
        opacity=(0.85, 1.0),
        slots=((0.5, 0.35), (0.2, 0.6), (0.8, 0.6)),
        jitter=0.03,
        shift=0.0,
    ),
}
"""Every style measured, by name (``shapesafe demo --style NAME``)."""

STYLE = STYLES["anywhere"]
"""The default of ``sample`` and ``generate`` (the first style, which the drift, transfer
and monitoring stories were measured on)."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated photo and what was drawn on it.

    Attributes:
        image: the ``size`` x ``size`` RGB photo (before JPEG compression).
        label: ``"logo"`` or ``"no_logo"``.
        logo_box: where the logo was pasted (its rotated bounding box, clipped to the
            photo), or ``None``.
        logo_mask: per pixel, how much of the logo shows (0..255, after rotation, opacity,
            blur and occlusion; the logo is pasted after the distractors), or ``None``.
        shapes: the distractors as ``(kind, box)``.
    """

    image: Image.Image
    label: str
    logo_box: Box | None
    logo_mask: np.ndarray | None
    shapes: tuple[tuple[str, Box], ...]


# ----------------------------------------------------------------------------- the photos


@cache
def _photo(package: str, name: str) -> Image.Image:
    if package == "sklearn":
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
            raise ImportError(
                "the logo task's photos come with scikit-learn: pip install scikit-learn"
            ) from e
        return Image.fromarray(load_sample_image(name)).convert("RGB")
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data(name, asfileobj=False)) as im:
        return im.convert("RGB")


def photos() -> list[Image.Image]:
    """The background photographs (``PHOTOS``), as RGB images."""
    return [_photo(p, n) for p, n in PHOTOS]


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A random square crop of a random photo (10-100% of its short side), resized, maybe
    mirrored, with random brightness, contrast, saturation and per-channel colour gains."""
    pics = photos()
    photo = pics[int(rng.integers(len(pics)))]
    w, h = photo.size
    side = int(min(w, h) * rng.uniform(0.1, 1.0))
    left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    im = photo.resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.7, 1.3))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.5, 1.5))
    return _gains(im, rng.uniform(0.85, 1.15, 3))


def _gains(im: Image.Image, gains: np.ndarray) -> Image.Image:
    a = np.asarray(im, np.float32) * gains.astype(np.float32).reshape(1, 1, 3)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------- the shapes
# Each shape is drawn upright on its own transparent canvas, about `height` pixels tall; the
# paste step scales, rotates, fades, blurs and occludes all of them in the same way.


def _red(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = _RED
    return (
        int(r + rng.integers(-25, 26)),
        int(g + rng.integers(-20, 21)),
        int(b + rng.integers(-20, 21)),
    )


def _darker(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    r, g, b = colour
    return (int(r * factor), int(g * factor), int(b * factor))


def _ribbon(
    draw: ImageDraw.ImageDraw,
    top: float,
    width: float,
    thick: float,
    drop: float,
    colour: tuple[int, int, int],
    shade: float,
) -> None:
    """One slanted ribbon: a parallelogram rising to the right, its left end shaded darker."""
    draw.polygon(
        [(0, top + drop), (width, top), (width, top + thick), (0, top + drop + thick)], fill=colour
    )
    cut = width * 0.35
    rise = drop * cut / width
    draw.polygon(
        [
            (0, top + drop),
            (cut, top + drop - rise),
            (cut, top + drop - rise + thick),
            (0, top + drop + thick),
        ],
        fill=_darker(colour, shade),
    )


def draw_logo(
    height: int,
    rng: np.random.Generator,
    *,
    colour: tuple[int, int, int] | None = None,
    gap: tuple[float, float] = STYLE.gap,
) -> Image.Image:
    """The logo: three slanted ribbons stacked vertically (red unless ``colour`` is given),
    separated by white gaps ``gap`` times as thick as a ribbon, on a transparent ``RGBA``
    canvas about ``height`` pixels tall."""
    colour = _red(rng) if colour is None else colour
    ribbons = 3
    width = height * rng.uniform(0.75, 0.95)
    drop = height * rng.uniform(0.2, 0.3)
    thick = (height - drop) / (ribbons + (ribbons - 1) * rng.uniform(*gap))
    space = (height - drop - ribbons * thick) / (ribbons - 1)
    im = Image.new("RGBA", (math.ceil(width), math.ceil(height)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    shade = rng.uniform(0.55, 0.75)
    white = int(rng.integers(225, 256))
    for k in range(1, ribbons):
        below = k * (thick + space)  # the top of ribbon k, at the right edge
        draw.polygon(
            [(0, below - space + drop), (width, below - space), (width, below), (0, below + drop)],
            fill=(white, white, white),
        )
    for k in range(ribbons):
        _ribbon(draw, k * (thick + space), width, thick, drop, colour, shade)
    return im


def _band(height: int, rng: np.random.Generator) -> Image.Image:
    """One ribbon as thick as a third to a half of the logo, in the logo's red; half of the
    time with a white strip along its lower edge."""
    width = height * rng.uniform(0.75, 0.95)
    drop = height * rng.uniform(0.2, 0.3)
    thick = height * rng.uniform(0.3, 0.5)
    strip = thick * rng.uniform(0.3, 0.5) if rng.random() < 0.5 else 0.0
    im = Image.new("RGBA", (math.ceil(width), math.ceil(drop + thick + strip)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    if strip:
        white = int(rng.integers(225, 256))
        draw.polygon(
            [(0, thick + drop), (width, thick), (width, thick + strip), (0, thick + strip + drop)],
            fill=(white, white, white),
        )
    _ribbon(draw, 0.0, width, thick, drop, _red(rng), rng.uniform(0.55, 0.75))
    return im


def _shaded(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Darken the red of the left 25-45% of a shape, as the logo's ribbons are, so that the
    logo's two reds are not a colour cue."""
    a = np.array(im)
    cut = int(a.shape[1] * rng.uniform(0.25, 0.45))
    left = a[:, :cut, :3].astype(np.float32)
    red = (left[..., 0] > left[..., 1] + 40)[..., None]
    factor = np.float32(rng.uniform(0.55, 0.75))
    a[:, :cut, :3] = np.where(red, np.rint(left * factor), left).astype(np.uint8)
    return Image.fromarray(a, "RGBA")


def _disc(height: int, rng: np.random.Generator) -> Image.Image:
    w = height * rng.uniform(0.7, 1.0)
    im = Image.new("RGBA", (math.ceil(w), height), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((0, 0, w - 1, height - 1), fill=_red(rng))
    return im


def _ring(height: int, rng: np.random.Generator) -> Image.Image:
    im = Image.new("RGBA", (height, height), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse(
        (0, 0, height - 1, height - 1),
        outline=_red(rng),
        width=max(1, int(height * rng.uniform(0.15, 0.25))),
    )
    return im


def _triangle(height: int, rng: np.random.Generator) -> Image.Image:
    w = height * rng.uniform(0.8, 1.0)
    im = Image.new("RGBA", (math.ceil(w), height), (0, 0, 0, 0))
    ImageDraw.Draw(im).polygon([(0, height - 1), (w / 2, 0), (w - 1, height - 1)], fill=_red(rng))
    return im


def _blob(height: int, rng: np.random.Generator) -> Image.Image:
    """A smooth irregular red blob: a star-shaped polygon with random radii, blurred and cut."""
    big = height * 2
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = big / 2 * rng.uniform(0.55, 1.0, 9)
    pts = [
        (big / 2 + r * np.cos(a), big / 2 + r * np.sin(a))
        for a, r in zip(angles, radii, strict=True)
    ]
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).polygon(pts, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(big / 12)).point(
        [255 if v > 127 else 0 for v in range(256)]
    )
    im = Image.new("RGBA", (big, big), (*_red(rng), 0))
    im.putalpha(mask)
    return im.resize((height, height), Image.Resampling.BILINEAR)


def _sign(height: int, rng: np.random.Generator) -> Image.Image:
    """A no-entry sign: a red disc crossed by a white bar (red and white, but not stacked ribbons)."""
    im = Image.new("RGBA", (height, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.ellipse((0, 0, height - 1, height - 1), fill=_red(rng))
    bar = height * rng.uniform(0.2, 0.3)
    white = int(rng.integers(225, 256))
    draw.rectangle(
        (height * 0.18, (height - bar) / 2, height * 0.82, (height + bar) / 2),
        fill=(white, white, white),
    )
    return im


def _target(height: int, rng: np.random.Generator) -> Image.Image:
    """A red ring, a white ring and a red centre."""
    im = Image.new("RGBA", (height, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    red, white = _red(rng), int(rng.integers(225, 256))
    for k in range(3):
        inset = k * height / 6
        draw.ellipse(
            (inset, inset, height - 1 - inset, height - 1 - inset),
            fill=red if k % 2 == 0 else (white, white, white),
        )
    return im


def _other_colour(height: int, rng: np.random.Generator) -> Image.Image:
    """The logo's own shape in a colour far from red."""
    colour = _OTHER_COLOURS[int(rng.integers(len(_OTHER_COLOURS)))]
    return draw_logo(height, rng, colour=colour)


def _half_shaded(
    draw: Callable[[int, np.random.Generator], Image.Image],
) -> Callable[[int, np.random.Generator], Image.Image]:
    """``draw``, with its left part shaded darker half of the time."""

    def shape(height: int, rng: np.random.Generator) -> Image.Image:
        im = draw(height, rng)
        return _shaded(im, rng) if rng.random() < 0.5 else im

    return shape


DISTRACTORS: dict[str, Callable[[int, np.random.Generator], Image.Image]] = {
    "band": _band,
    "disc": _half_shaded(_disc),
    "ring": _half_shaded(_ring),
    "triangle": _half_shaded(_triangle),
    "blob": _half_shaded(_blob),
    "sign": _half_shaded(_sign),
    "target": _half_shaded(_target),
    "other_colour": _other_colour,
}
"""Shapes that are not the logo: red ones, red and white ones (``sign``, ``target``), and the
logo's shape in other colours (``other_colour``)."""


# -------------------------------------------------------------------------------- pasting


def _place(
    photo: Image.Image,
    shape: Image.Image,
    rng: np.random.Generator,
    *,
    style: Style,
    taken: list[Box],
    slot: tuple[float, float] | None = None,
) -> tuple[Box, np.ndarray]:
    """Scale ``shape`` to a random fraction of the photo, rotate it, fade it, sometimes blur
    it, paste it centred near ``slot`` (``style.jitter``) or, without one, at a random place
    (avoiding ``taken`` boxes where it can), and return its box and per-pixel visible alpha
    (photo-sized, uint8)."""
    size = photo.size[0]
    factor = (
        size * rng.uniform(*style.scale) / _DRAWN
    )  # relative to the logo's height, so areas compare
    shape = shape.convert("RGBa")  # premultiplied, so that resampling and blur leave no dark fringe
    shape = shape.resize(
        (max(2, round(shape.size[0] * factor)), max(2, round(shape.size[1] * factor))),
        Image.Resampling.LANCZOS,
    )
    shape = shape.rotate(
        float(rng.uniform(-style.rotation, style.rotation)),
        resample=Image.Resampling.BICUBIC,
        expand=True,
    )
    if rng.random() < 0.5:
        shape = shape.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < style.blur:
        shape = shape.filter(ImageFilter.GaussianBlur(size / 250 * rng.uniform(0.8, 2.0)))
    shape = shape.convert("RGBA")
    opacity = rng.uniform(*style.opacity)
    alpha = shape.getchannel("A").point([round(v * opacity) for v in range(256)])
    w, h = shape.size
    left = top = 0
    if slot is not None:
        cx, cy = (slot[k] + rng.uniform(-style.jitter, style.jitter) for k in (0, 1))
        left, top = round(cx * size - w / 2), round(cy * size - h / 2)
    for _ in range(
        0 if slot is not None else 20
    ):  # a free spot if there is one; overlapping otherwise
        left = int(
            rng.integers(-w // 8, max(size - w + w // 8, -w // 8 + 1))
        )  # at most an eighth outside
        top = int(rng.integers(-h // 8, max(size - h + h // 8, -h // 8 + 1)))
        box = (left, top, left + w, top + h)
        if not any(_overlap(box, t) for t in taken):
            break
    full = Image.new("L", photo.size, 0)
    full.paste(alpha, (left, top))
    layer = Image.new("RGB", photo.size, 0)
    layer.paste(shape.convert("RGB"), (left, top))
    photo.paste(layer, (0, 0), full)
    clipped = (max(0, left), max(0, top), min(size, left + w), min(size, top + h))
    taken.append(clipped)
    return clipped, np.asarray(full)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _occlude(
    photo: Image.Image, box: Box, rng: np.random.Generator, mask: np.ndarray
) -> np.ndarray:
    """Cover a random part (20-45% of the width or height) of ``box`` with a patch of another
    background, from one side; return the mask of what still shows."""
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    patch = _background(rng, photo.size[0])
    side = int(rng.integers(4))
    frac = rng.uniform(0.2, 0.45)
    if side == 0:
        cover = (left, top, left + max(1, round(w * frac)), bottom)
    elif side == 1:
        cover = (right - max(1, round(w * frac)), top, right, bottom)
    elif side == 2:
        cover = (left, top, right, top + max(1, round(h * frac)))
    else:
        cover = (left, bottom - max(1, round(h * frac)), right, bottom)
    photo.paste(patch.crop(cover), cover[:2])
    shown = mask.copy()
    shown[cover[1] : cover[3], cover[0] : cover[2]] = 0
    return shown


def sample(index: int, *, seed: int = 0, size: int = 250, style: Style = STYLE) -> Sample:
    """Photo ``index`` of the set made with ``seed``: even indices show the logo, odd ones not.

    Example:
        >>> s = sample(0, seed=0, size=64)
        >>> s.label, s.image.size, s.logo_box is not None
        ('logo', (64, 64), True)
        >>> sample(1, seed=0, size=64).label
        'no_logo'
    """
    rng = np.random.default_rng([VERSION, seed, index])
    has_logo = index % 2 == 0
    photo = _background(rng, size)
    taken: list[Box] = []
    shapes: list[tuple[str, Box]] = []
    lo, hi = style.distractors_with_logo if has_logo else style.distractors_without
    n_distractors = int(rng.integers(lo, hi + 1))
    kinds = list(style.kinds)
    slots: list[tuple[float, float] | None] = [None] * (n_distractors + 1)
    if style.slots:  # each shape in its own slot while there are enough, the logo's as often
        order = rng.permutation(len(style.slots))
        slots = [style.slots[order[k % len(order)]] for k in range(n_distractors + 1)]
    for k in range(n_distractors):
        kind = kinds[int(rng.integers(len(kinds)))]
        if not has_logo and k == 0 and kind == "other_colour" and "band" in kinds:
            kind = "band"  # every photo without the logo has at least one red shape
        box, mask = _place(
            photo, DISTRACTORS[kind](_DRAWN, rng), rng, style=style, taken=taken, slot=slots[k]
        )
        if rng.random() < style.occlusion:  # as often as the logo, so a covering patch is no cue
            _occlude(photo, box, rng, mask)
        shapes.append((kind, box))
    logo_box: Box | None = None
    logo_mask: np.ndarray | None = None
    if has_logo:  # last, so that only the deliberate occlusion hides part of it
        logo_box, logo_mask = _place(
            photo,
            draw_logo(_DRAWN, rng, gap=style.gap),
            rng,
            style=style,
            taken=taken,
            slot=slots[n_distractors],
        )
        if rng.random() < style.occlusion:
            logo_mask = _occlude(photo, logo_box, rng, logo_mask)
    photo = ImageEnhance.Brightness(photo).enhance(rng.uniform(0.85, 1.15))
    photo = _gains(photo, rng.uniform(0.92, 1.08, 3))
    return Sample(photo, CLASSES[0] if has_logo else CLASSES[1], logo_box, logo_mask, tuple(shapes))


# ------------------------------------------------------------------------------ generate


def _params(n: int, seed: int, size: int, quality: int, style: Style) -> dict[str, Any]:
    return {
        "task": "logo-in-the-wild",
        "version": VERSION,
        "n": n,
        "seed": seed,
        "size": size,
        "quality": quality,
        "photos": [f"{p}:{f}" for p, f in PHOTOS],
        "style": json.loads(json.dumps(dataclasses.asdict(style))),
    }


def _name(index: int, n: int) -> str:
    return f"{CLASSES[index % 2]}/{index:0{max(4, len(str(n - 1)))}d}.jpg"


def generate(
    root: str | os.PathLike[str],
    *,
    n: int = 1000,
    seed: int = 0,
    size: int = 250,
    quality: int = 90,
    style: Style = STYLE,
    workers: int | None = None,
) -> Path:
    """Write the logo-in-the-wild set: ``n`` JPEG photos, half in ``root/logo``, half in ``root/no_logo``.

    Photo ``i`` depends only on ``(seed, i)`` (see ``sample``), so the same arguments always
    give the same files. ``root/manifest.json`` records the parameters and every file's
    SHA-256; when it matches and the files are there, nothing is redone. A set made with
    other parameters in ``root`` is replaced; a ``root`` holding class folders that this
    function did not make is refused.

    Args:
        root: the folder to fill (created if needed).
        n: how many photos, an even number >= 2.
        seed: which photos.
        size: their height and width in pixels (the talk's are 250).
        quality: JPEG quality, 1..95.
        style: how hard the photos are (``STYLE``, the tuned task, by default).
        workers: drawing threads (default: up to 4, the CPUs this process may use).

    Returns:
        ``root``, ready for ``shapesafe.data.image_folder(root, size=...)``.

    Raises:
        ValueError: a bad ``n``, ``size`` or ``quality``.
        FileExistsError: ``root`` has a ``logo``/``no_logo`` folder but no manifest.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
        raise ValueError(
            f"generate: n must be an even integer >= 2 (half of the photos show the logo), got {n!r}."
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"generate: size must be an integer >= 16 pixels, got {size!r}.")
    if not 1 <= quality <= 95:
        raise ValueError(f"generate: quality must be in 1..95, got {quality!r}.")
    root = Path(root)
    if is_generated(root, n=n, seed=seed, size=size, quality=quality, style=style):
        return root
    params = _params(n, seed, size, quality, style)
    manifest = root / MANIFEST
    old = _read_manifest(manifest)
    if old is None and any((root / c).exists() for c in CLASSES):
        raise FileExistsError(
            f"generate: {root} already has a {'/'.join(CLASSES)} folder that generate() did not "
            f"make (no {MANIFEST}); choose an empty or new folder."
        )
    manifest.unlink(missing_ok=True)
    for c in CLASSES:
        shutil.rmtree(root / c, ignore_errors=True)
        (root / c).mkdir(parents=True)
    workers = workers or min(
        4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    )

    def write(i: int) -> tuple[str, str]:
        name = _name(i, n)
        path = root / name
        sample(i, seed=seed, size=size, style=style).image.save(path, "JPEG", quality=quality)
        return name, hashlib.sha256(path.read_bytes()).hexdigest()

    photos()  # load the photos once, before the threads start
    with ThreadPoolExecutor(max(1, workers)) as pool:
        files = dict(pool.map(write, range(n)))
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"params": params, "files": files}, indent=1, sort_keys=True))
    tmp.replace(manifest)  # last: an interrupted run leaves no manifest and is redone
    return root


def is_generated(
    root: str | os.PathLike[str],
    *,
    n: int = 1000,
    seed: int = 0,
    size: int = 250,
    quality: int = 90,
    style: Style = STYLE,
) -> bool:
    """Whether ``root`` holds the set ``generate`` would make with these arguments (its
    manifest matches and every file it lists is there)."""
    root = Path(root)
    old = _read_manifest(root / MANIFEST)
    return (
        old is not None
        and old.get("params") == _params(n, seed, size, quality, style)
        and all((root / f).is_file() for f in old.get("files", {}))
    )


def shift(
    image: UInt8[np.ndarray, "h w c"], *, rng: np.random.Generator, fraction: float = 0.125
) -> UInt8[np.ndarray, "h w c"]:
    """Training augmentation: move the photo by up to ``fraction`` of its size each way,
    mirroring what comes in at the edges (use with ``ds.map(shift, seed=...)``).

    Example:
        >>> import numpy as np
        >>> x = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
        >>> shift(x, rng=np.random.default_rng(0)).shape
        (32, 32, 3)
    """
    h, w = image.shape[0], image.shape[1]
    ph, pw = max(1, round(h * fraction)), max(1, round(w * fraction))
    padded = np.pad(image, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    top, left = int(rng.integers(0, 2 * ph + 1)), int(rng.integers(0, 2 * pw + 1))
    return padded[top : top + h, left : left + w]


def colour_statistics(image: UInt8[np.ndarray, "h w 3"]) -> np.ndarray:
    """Global colour statistics of a photo, blind to where anything is: the probe for a
    colour shortcut (a classifier on these should do much worse than one that sees shapes).

    Per channel its mean and spread; the mean and spread of saturation; the shares of red,
    dark red and white pixels (as the logo's ribbons, their shaded ends and its gaps); and
    an 8-bin histogram of each channel and of hue: 43 numbers.

    Example:
        >>> import numpy as np
        >>> colour_statistics(np.zeros((8, 8, 3), np.uint8)).shape
        (43,)
    """
    p = np.asarray(image, np.float32).reshape(-1, 3)
    hi, lo = p.max(1), p.min(1)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0)
    hue = np.asarray(Image.fromarray(np.asarray(image, np.uint8)).convert("HSV"))[..., 0]
    r, g, b = p[:, 0], p[:, 1], p[:, 2]
    red = (r > g + 50) & (r > b + 50)
    shares = [red.mean(), (red & (r < 150)).mean(), (lo > 170).mean()]
    hists = [np.histogram(p[:, c], bins=8, range=(0, 256))[0] / len(p) for c in range(3)]
    hists.append(np.histogram(hue, bins=8, range=(0, 256))[0] / hue.size)
    return np.concatenate(
        [p.mean(0), p.std(0), [saturation.mean(), saturation.std()], shares, *hists]
    ).astype(np.float32)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
