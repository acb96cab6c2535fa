"""Errors and outputs as new users meet them (issue 13): every exception a traceback shows is
importable from ``shapesafe`` under the name it prints, and ``ss.save`` asks before it
replaces a version and says that an artifact is a directory."""

import importlib
import inspect
import pkgutil
import traceback
from pathlib import Path

import numpy as np
import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L


def _shapesafe_exceptions() -> list[type[BaseException]]:
    found: dict[int, type[BaseException]] = {}
    for info in pkgutil.walk_packages(ss.__path__, "shapesafe."):
        if info.name.endswith(("_cli", "__main__")):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, ss.ShapesafeError):
                found[id(obj)] = obj
    return list(found.values())


def test_every_shapesafe_exception_prints_under_an_importable_name() -> None:
    classes = _shapesafe_exceptions()
    assert len(classes) >= 7  # ShapesafeError, ShapeError, LayerShapeError, DataError, ...
    for cls in classes:
        assert cls.__module__ == "shapesafe", cls
        public = getattr(ss, cls.__qualname__)  # what the traceback prints, imported
        assert issubclass(cls, public), (cls, public)


def test_a_layer_error_in_a_traceback_can_be_caught_by_the_name_it_shows() -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"])
    with pytest.raises(ss.ShapeError) as info:
        model(np.ones((4, 5), np.float32))
    shown = traceback.format_exception_only(info.value)[0].split(":")[0]
    assert shown == "shapesafe.ShapeError"
    module, _, name = shown.rpartition(".")
    assert isinstance(info.value, getattr(importlib.import_module(module), name))


def test_save_onto_an_existing_version_asks_for_overwrite(tmp_path: Path) -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    other = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=1)
    path = tmp_path / "model" / "1"
    ss.save(model, path)
    with pytest.raises(ss.ArtifactError) as info:
        ss.save(other, path)
    assert str(info.value) == (
        f"cannot save to {path}: an artifact is already saved there. Pass overwrite=True to "
        f"replace it, or save a new version beside it (e.g. '{tmp_path / 'model' / '2'}')."
    )
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(ss.load(path)(x)), np.asarray(model(x)))  # untouched
    ss.save(other, path, overwrite=True)
    np.testing.assert_array_equal(np.asarray(ss.load(path)(x)), np.asarray(other(x)))


def test_save_to_a_file_name_says_an_artifact_is_a_directory(tmp_path: Path) -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    with pytest.raises(ss.ArtifactError) as info:
        ss.save(model, tmp_path / "w.safetensors")
    assert str(info.value) == (
        f"cannot save to {tmp_path / 'w.safetensors'}: an artifact is a directory (architecture, "
        "weights, specs and a manifest), not a .safetensors file. Pass a directory, one per "
        f"version, e.g. '{tmp_path / 'w' / '1'}'."
    )
    assert not (tmp_path / "w.safetensors").exists()
