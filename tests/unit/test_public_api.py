"""Every public name is documented; private modules stay private; no future-annotations import."""

import importlib
import inspect
import pathlib

import pytest

import shapesafe

PUBLIC_MODULES = [
    "shapesafe",
    "shapesafe.layers",
    "shapesafe.callbacks",
    "shapesafe.losses",
    "shapesafe.metrics",
    "shapesafe.data",
    "shapesafe.encoders",
    "shapesafe.decoders",
    "shapesafe.monitor",
    "shapesafe.typing",
]


def _public(module_name: str) -> list[tuple[str, object]]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pytest.skip(f"{module_name} is not there yet")
    return [
        (n, getattr(module, n))
        for n in dir(module)
        if not n.startswith("_")
        and not inspect.ismodule(getattr(module, n))
        and getattr(getattr(module, n), "__module__", "").startswith("shapesafe")
    ]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    missing = [n for n, obj in _public(module_name) if not (inspect.getdoc(obj) or "").strip()]
    assert not missing, f"undocumented public names in {module_name}: {missing}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_come_from_private_modules(module_name: str) -> None:
    for name, obj in _public(module_name):
        home = getattr(obj, "__module__", "")
        if isinstance(obj, type) and issubclass(obj, BaseException) and home == "shapesafe":
            continue  # exceptions are re-homed so tracebacks read shapesafe.ShapeError
        assert any(part.startswith("_") for part in home.split(".")[1:]), (
            f"{module_name}.{name} lives in {home}"
        )


def test_no_future_annotations_in_the_library() -> None:
    """``from __future__ import annotations`` would silently turn jaxtyping's runtime checks off."""
    root = pathlib.Path(shapesafe.__file__).parent.parent
    offenders = [
        str(p)
        for d in ("shapesafe", "models")
        for p in (root / d).rglob("*.py")
        if "from __future__ import annotations" in p.read_text()
    ]
    assert not offenders


def test_package_ships_py_typed() -> None:
    assert (pathlib.Path(shapesafe.__file__).parent / "py.typed").exists()
