"""image_folder loses nothing silently: symlinked folders are followed and reported, loops and
re-counts are refused, float images are scaled by their range (real files, real symlinks)."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shapesafe.data import DataError, ImageFileError, image_folder


def _images(folder: Path, n: int, colour: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), colour).save(folder / f"{i}.png")


def _labels_by_colour(ds) -> dict[tuple[int, ...], set[int]]:  # type: ignore[no-untyped-def]
    out: dict[tuple[int, ...], set[int]] = {}
    for e in ds:
        out.setdefault(tuple(int(v) for v in e["image"][0, 0]), set()).add(int(e["label"]))
    return out


def test_a_symlinked_subfolder_of_a_class_is_followed_and_reported(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    _images(root / "cat", 2, (255, 0, 0))
    _images(root / "dog", 1, (0, 255, 0))
    _images(elsewhere, 3, (0, 0, 255))
    os.symlink(elsewhere, root / "cat" / "more")
    ds = image_folder(root, size=(4, 4))
    assert len(ds) == 2 + 1 + 3  # before: 3, the linked images dropped with "0 skipped, 0 ignored"
    assert _labels_by_colour(ds) == {(255, 0, 0): {0}, (0, 0, 255): {0}, (0, 255, 0): {1}}
    assert ds.report.followed == [(str(root / "cat" / "more"), str(elsewhere.resolve()))]
    assert repr(ds.report).splitlines() == [
        "Report: 0 skipped, 0 ignored, 1 followed",
        f"  followed {root / 'cat' / 'more'} -> {elsewhere.resolve()}",
    ]


def test_a_class_folder_that_is_a_symlink_is_followed_and_reported(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "photos", tmp_path / "dogs"
    _images(root / "cat", 2, (255, 0, 0))
    _images(elsewhere, 2, (0, 255, 0))
    os.symlink(elsewhere, root / "dog")
    ds = image_folder(root, size=(4, 4))
    assert ds.class_names == ["cat", "dog"] and len(ds) == 4
    assert _labels_by_colour(ds) == {(255, 0, 0): {0}, (0, 255, 0): {1}}
    assert ds.report.followed == [(str(root / "dog"), str(elsewhere.resolve()))]


def test_a_class_folder_symlinked_to_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _images(root / "cat", 2, (255, 0, 0))
    os.symlink(root, root / "dog")  # before: cat's images counted again as dogs
    with pytest.raises(
        DataError,
        match=rf"^image_folder: {root / 'dog'} is a symlink to {root.resolve()}, which contains "
        rf"the image folder itself \(a loop\)\. Remove the link, or point it at a folder outside "
        rf"{root} that no other link reaches\.$",
    ):
        image_folder(root, size=(4, 4))


def test_a_link_into_another_class_or_into_itself_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _images(root / "cat", 2, (255, 0, 0))
    _images(root / "dog", 1, (0, 255, 0))
    os.symlink(root / "cat", root / "dog" / "cats")
    with pytest.raises(
        DataError,
        match=rf"{root / 'dog' / 'cats'} is a symlink to {root.resolve() / 'cat'}, inside the "
        r"image folder \(in class 'cat'\), so its images would be counted again\.",
    ):
        image_folder(root, size=(4, 4))
    os.unlink(root / "dog" / "cats")
    os.symlink(root / "cat", root / "cat" / "loop")
    with pytest.raises(DataError, match=r"cat/loop is a symlink to .*in class 'cat'"):
        image_folder(root, size=(4, 4))


def test_two_links_to_one_folder_are_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    _images(root / "cat", 1, (255, 0, 0))
    _images(elsewhere, 2, (0, 0, 255))
    os.symlink(elsewhere, root / "cat" / "a")
    os.symlink(elsewhere, root / "cat" / "b")
    with pytest.raises(
        DataError,
        match=rf"{root / 'cat' / 'b'} is a symlink to {elsewhere.resolve()}, which "
        rf"{root / 'cat' / 'a'} already leads to \(a loop or a re-count\)",
    ):
        image_folder(root, size=(4, 4))


def test_a_float32_tiff_in_0_to_1_is_scaled_not_black(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _images(root / "cat", 1, (255, 0, 0))
    (root / "dog").mkdir()
    values = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(values, mode="F").save(root / "dog" / "float.tif")
    with Image.open(root / "dog" / "float.tif") as im:
        assert im.mode == "F"
    ds = image_folder(root, size=(8, 8), mode="L")
    image = next(e["image"] for e in ds if int(e["label"]) == 1)[..., 0]
    np.testing.assert_array_equal(image, np.rint(values * 255).astype(np.uint8))  # 0..1 -> 0..255
    # a float image in 0..255 is kept as it is; any other range is stretched min..max
    Image.fromarray(values * 200, mode="F").save(root / "dog" / "float.tif")
    image = next(e["image"] for e in image_folder(root, (8, 8), mode="L") if int(e["label"]) == 1)
    np.testing.assert_array_equal(image[..., 0], np.rint(values * 200).astype(np.uint8))
    Image.fromarray(values * 1000 - 500, mode="F").save(root / "dog" / "float.tif")
    image = next(e["image"] for e in image_folder(root, (8, 8), mode="L") if int(e["label"]) == 1)
    np.testing.assert_array_equal(image[..., 0], np.rint(values * 255).astype(np.uint8))


def test_a_float_tiff_with_nan_is_reported_not_dropped(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _images(root / "cat", 1, (255, 0, 0))
    (root / "dog").mkdir()
    values = np.zeros((8, 8), np.float32)
    values[0, 0] = np.nan
    Image.fromarray(values, mode="F").save(root / "dog" / "nan.tif")
    _images(root / "dog", 1, (0, 255, 0))
    with pytest.raises(
        ImageFileError, match=r"nan\.tif: ValueError: the float image has NaN or infinite pixels"
    ):
        list(image_folder(root, size=(4, 4)))
    ds = image_folder(root, size=(4, 4), on_error="skip")
    assert len(list(ds)) == 2
    assert ds.report.skipped == [
        (str(root / "dog" / "nan.tif"), "ValueError: the float image has NaN or infinite pixels")
    ]


def test_a_file_link_into_another_class_is_refused_and_one_from_outside_reported(
    tmp_path: Path,
) -> None:
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    _images(root / "cat", 1, (255, 0, 0))
    _images(root / "dog", 1, (0, 255, 0))
    _images(elsewhere, 1, (0, 0, 255))
    os.symlink(elsewhere / "0.png", root / "dog" / "outside.png")
    ds = image_folder(root, size=(4, 4))
    assert len(ds) == 3
    assert ds.report.followed == [
        (str(root / "dog" / "outside.png"), str((elsewhere / "0.png").resolve()))
    ]
    os.symlink(root / "cat" / "0.png", root / "dog" / "cat.png")
    with pytest.raises(
        DataError,
        match=rf"^image_folder: {root / 'dog' / 'cat.png'} is a symlink to "
        rf"{(root / 'cat' / '0.png').resolve()}, inside the image folder \(in class 'cat'\), so "
        r"that image would be counted twice\. Remove the link, or copy the file\.$",
    ):
        image_folder(root, size=(4, 4))
