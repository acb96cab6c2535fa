"""image_folder: every Pillow mode, EXIF orientation, resize modes, and a folder of bad files."""

import io

import numpy as np
import pytest
from PIL import Image

import shapesafe as ss
from shapesafe.data import DataError, ImageFileError, image_folder, load_image


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


@pytest.fixture
def messy(tmp_path):
    """Two classes of good images in every mode, plus every kind of bad file."""
    good, bad = [], {}
    cat, dog = tmp_path / "cat", tmp_path / "dog"
    cat.mkdir()
    dog.mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(cat / "rgb.jpg")
    Image.new("L", (30, 30), 77).save(cat / "grey.png")
    Image.new("P", (20, 20), 3).save(cat / "palette.png")
    Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(cat / "deep.png")  # I;16
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cat / "cmyk.jpg")
    Image.new("RGBA", (16, 16), (0, 0, 255, 255)).save(dog / "rgba.png")
    Image.new("LA", (16, 16), (90, 255)).save(dog / "la.png")
    Image.new("RGB", (16, 16), (0, 128, 0)).save(dog / "anim.gif")
    Image.new("RGB", (16, 16), (0, 128, 0)).save(dog / "pic.bmp")
    Image.new("RGB", (16, 16), (0, 128, 0)).save(dog / "pic.webp")
    Image.new("RGB", (16, 16), (0, 128, 0)).save(dog / "pic.tiff")
    good = sorted(str(p) for p in [*cat.iterdir(), *dog.iterdir()])
    (cat / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty file"
    (cat / "notes.jpg").write_text("this is not a picture\n")
    bad["notes.jpg"] = "not an image (it is text)"
    full = _jpeg_bytes(Image.effect_noise((64, 64), 50).convert("RGB"))
    (dog / "truncated.jpg").write_bytes(full[: len(full) // 2])
    bad["truncated.jpg"] = "truncated"
    Image.new("L", (120, 120)).save(dog / "bomb.png")
    bad["bomb.png"] = "decompression bomb"
    (cat / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (dog / "labels.csv").write_text("a,b\n")
    return tmp_path, good, bad


def test_skip_yields_every_good_image_once_and_reports_each_bad_file(messy, monkeypatch):
    root, good, bad = messy
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 120x120 = 14400 > 2 * 5000
    ds = image_folder(root, size=(8, 8), on_error="skip", workers=2)
    assert ds.class_names == ["cat", "dog"]
    elements = list(ds)
    assert len(elements) == len(good)
    assert all(e["image"].shape == (8, 8, 3) and e["image"].dtype == np.uint8 for e in elements)
    skipped = {p.split("/")[-1]: r for p, r in ds.report.skipped}
    assert sorted(skipped) == sorted(bad)
    for name, why in bad.items():
        assert why in skipped[name], (name, skipped[name])
    ignored = sorted(p.split("/")[-1] for p, _ in ds.report.ignored)
    assert ignored == [".DS_Store", "labels.csv"]
    list(ds)  # a second pass reports nothing twice
    assert len(ds.report.skipped) == len(bad)


def test_skipped_image_in_a_batch_is_a_masked_slot(messy, monkeypatch):
    root, good, _ = messy
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    batches = list(image_folder(root, size=(8, 8), on_error="skip", workers=0).batch(4))
    assert sum(int(b["mask"].sum()) for b in batches) == len(good)


def test_raise_stops_at_first_bad_file_with_path_and_reason(messy):
    root, _, _ = messy
    with pytest.raises(
        ImageFileError, match=r"cat/empty\.jpg: empty file \(0 bytes\).*on_error='skip'"
    ):
        image_folder(root, size=(8, 8))


def test_truncated_jpeg_raises_when_read(tmp_path):
    (tmp_path / "a").mkdir()
    full = _jpeg_bytes(Image.effect_noise((64, 64), 50).convert("RGB"))
    (tmp_path / "a" / "t.jpg").write_bytes(full[: len(full) // 2])
    ds = image_folder(tmp_path, size=(8, 8), workers=0)
    with pytest.raises(ImageFileError, match=r"stage 1, image_folder.*a/t\.jpg: truncated"):
        list(ds)


def test_folder_structure_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "missing", size=(8, 8))
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match=r"has no class folders.*loose\.png"):
        image_folder(tmp_path, size=(8, 8))
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "cat" / "a.png")
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match=r"class folder .*dog has no image files"):
        image_folder(tmp_path, size=(8, 8))
    with pytest.raises(ValueError, match=r"resize must be one of \['stretch', 'crop', 'pad'\]"):
        image_folder(tmp_path, size=(8, 8), resize="squash")


@pytest.mark.parametrize(
    ("mode", "make", "expected"),
    [
        ("RGB", lambda: Image.new("L", (4, 4), 77), [77, 77, 77]),
        (
            "RGB",
            lambda: Image.fromarray(np.full((4, 4), 40000, np.uint16)),
            [156, 156, 156],
        ),  # 40000/257
        (
            "RGB",
            lambda: Image.new("RGBA", (4, 4), (0, 0, 255, 0)),
            [255, 255, 255],
        ),  # transparent: white
        ("RGB", lambda: Image.new("LA", (4, 4), (90, 255)), [90, 90, 90]),
        ("L", lambda: Image.new("RGB", (4, 4), (255, 0, 0)), [76]),  # ITU-R 601: 0.299 * 255
        ("RGBA", lambda: Image.new("RGB", (4, 4), (1, 2, 3)), [1, 2, 3, 255]),
    ],
    ids=["L-to-RGB", "I16-to-RGB", "transparent-RGBA", "LA", "RGB-to-L", "RGB-to-RGBA"],
)
def test_modes_convert_like_pillow(tmp_path, mode, make, expected):
    make().save(tmp_path / "x.png")
    out = load_image(tmp_path / "x.png", (4, 4), mode=mode)
    assert out.shape == (4, 4, len(expected))
    assert out[0, 0].tolist() == expected


def test_palette_png_and_cmyk_jpeg(tmp_path):
    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", (4, 4))[0, 0].tolist() == [10, 20, 30]
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    red = load_image(tmp_path / "c.jpg", (8, 8))[4, 4]
    assert red[0] > 240 and red[1] < 15 and red[2] < 15


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 clockwise
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    expected = np.asarray(
        img.transpose(Image.Transpose.ROTATE_270)
    )  # Pillow's own reading of tag 6
    out = load_image(tmp_path / "o.jpg", (40, 20))  # (height, width) of the displayed image
    assert out.shape == (40, 20, 3)
    assert np.abs(out.astype(int) - expected.astype(int)).mean() < 8


def test_resize_crop_and_pad_against_pillow(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 6, 20))  # red left strip, outside the centre
    img.save(tmp_path / "w.png")
    crop = load_image(tmp_path / "w.png", (10, 10), resize="crop")
    assert crop[:, 0].tolist() == [[0, 0, 255]] * 10  # the centre was kept: no red
    pad = load_image(tmp_path / "w.png", (20, 20), resize="pad", background=(1, 2, 3))
    assert pad[0, 10].tolist() == [1, 2, 3] and pad[10, 15].tolist() == [0, 0, 255]
    stretch = load_image(tmp_path / "w.png", (5, 20))
    expected = np.asarray(img.resize((20, 5), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(stretch, expected)


def test_jpeg_draft_mode_decodes_large_photo_at_reduced_scale(tmp_path):
    big = Image.effect_noise((800, 600), 20).convert("RGB")
    big.save(tmp_path / "big.jpg", quality=90)
    with Image.open(tmp_path / "big.jpg") as im:
        im.draft("RGB", (100, 75))
        assert im.size == (100, 75)  # Pillow's JPEG scaling by 1/8
        expected = np.asarray(im.convert("RGB").resize((100, 75), Image.Resampling.BILINEAR))
    out = load_image(tmp_path / "big.jpg", (75, 100))
    np.testing.assert_array_equal(out, expected)


def test_odd_size_from_a_map_names_file_and_stage(tmp_path):
    from jaxtyping import UInt8

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "x.png")

    def shrink(image: UInt8[np.ndarray, "8 8 3"]) -> UInt8[np.ndarray, "8 8 3"]:
        return image[:7]

    ds = image_folder(tmp_path, size=(8, 8), workers=0).map(shrink)
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)stage 2, map\(shrink\): element from .*a/x\.png does not match.*dimension 0 is 7",
    ):
        list(ds)


def test_walkthrough_data_lines(tmp_path):
    for c, colour in (("logo", "red"), ("photo", "blue")):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.new("RGB", (30 + i, 20), colour).save(tmp_path / c / f"{i}.jpg")
    ds = image_folder(tmp_path, size=(25, 25))
    train, test = ds.split(0.8, seed=0)
    train = train.shuffle(seed=0).batch(4)
    test = test.batch(4)
    assert repr(train.spec["image"]) and train.spec["image"].dim_str == "batch 25 25 3"
    assert len(train) == 4 and len(test) == 1
    labels = np.concatenate([b["label"][b["mask"]] for b in test])
    assert sorted(labels.tolist()) == [0, 0, 1, 1]


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (250, 250), (400, 301)], ids=str)
def test_pixels_packed_in_one_piece_equal_numpys_conversion(mode: str, size: tuple[int, int]):
    from shapesafe.data._image_folder import _pixels

    rng = np.random.default_rng(0)
    img = Image.fromarray(
        rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA"
    ).convert(mode)
    got, want = _pixels(img), np.asarray(img)
    assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
