"""Every public function documents itself: a summary, ``Args:`` when it takes arguments and
``Returns:`` when it returns something (Google style, rendered by the docs site)."""

import importlib
import inspect

import pytest
from conftest import PUBLIC_MODULES


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [
        (n, getattr(module, n))
        for n in dir(module)
        if not n.startswith("_") and not inspect.ismodule(getattr(module, n))
    ]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_are_documented(module_name: str) -> None:
    missing = []
    for name, obj in _public(module_name):
        if getattr(obj, "__module__", "").split(".")[0] != "shapesafe":
            continue  # re-exported from another library
        doc = inspect.getdoc(obj) or ""
        if not doc.strip():
            missing.append(f"{name}: no docstring")
            continue
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            if [p for p in sig.parameters if p != "self"] and "Args:" not in doc:
                missing.append(f"{name}: no Args")
            if (
                sig.return_annotation not in (None, "None", inspect.Signature.empty)
                and "Returns:" not in doc
            ):
                missing.append(f"{name}: no Returns")
    assert not missing, f"{module_name}: {missing}"
