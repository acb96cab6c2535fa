"""Blueprints and specs to JSON and back: the architecture of a saved model is data, never code.

A blueprint becomes ``{"layer": "Linear", "features": 64, "use_bias": true, "name": null}``:
its class name (looked up in ``shapesafe.layers``, the only classes that can be rebuilt) and
every dataclass field. Field values are JSON scalars; tuples become lists (and lists become
tuples again on the way back: no blueprint field holds a list); NumPy dtypes become
``{"dtype": "float32"}``; nested blueprints (``Sequential``, ``Residual``, ``Concat``,
``Add``) nest. ``Custom`` and ``Function`` layers hold user code, which an artifact never
stores: saving one is refused with the reason. Decoding only ever calls the constructor of
a class found in the registry, with keyword arguments read from the JSON.
"""

import dataclasses
from typing import Any

import numpy as np

from .._errors import ArtifactError
from .._specs import dtype_from_name
from ..layers._blueprint import Blueprint

_USER_CODE = ("Custom", "Function")


def registry() -> dict[str, type[Blueprint]]:
    """Every blueprint class ``shapesafe.layers`` exports, by name (user-code layers excluded)."""
    from .. import layers

    found: dict[str, type[Blueprint]] = {}
    for name in dir(layers):
        obj = getattr(layers, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, Blueprint)
            and obj is not Blueprint
            and name not in _USER_CODE
            and not name.startswith("_")
        ):
            found[name] = obj
    return found


def blueprint_to_json(bp: Blueprint, where: str = "the model") -> dict[str, Any]:
    """The JSON form of a blueprint (see the module docstring).

    Raises:
        ArtifactError: the blueprint holds user code (``Custom``, ``Function``) or a value
            that is not plain configuration.

    Example:
        >>> from shapesafe import layers as L
        >>> blueprint_to_json(L.Linear(2))
        {'layer': 'Linear', 'features': 2, 'use_bias': True, 'name': None}
    """
    name = type(bp).__name__
    if name in _USER_CODE or registry().get(name) is not type(bp):
        what = repr(bp)
        raise ArtifactError(
            f"cannot save {where}: it contains {what}, a layer made from user code ({name}), and an "
            "artifact stores the architecture as JSON configuration, never code. Rewrite that layer with "
            "shapesafe.layers blueprints, or save only the weights (nnx.state) with your own code."
        )
    out: dict[str, Any] = {"layer": name}
    for f in sorted(dataclasses.fields(bp), key=lambda f: f.name == "name"):  # the name last
        out[f.name] = _value_to_json(getattr(bp, f.name), f"{where}: {bp!r}.{f.name}")
    return out


def _value_to_json(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Blueprint):
        return blueprint_to_json(value, where)
    if isinstance(value, tuple | list):
        return [_value_to_json(v, where) for v in value]
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return {"dtype": np.dtype(value).name}
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    raise ArtifactError(
        f"cannot save {where}: its value {value!r} ({type(value).__name__}) is not plain "
        "configuration (numbers, strings, tuples, dtypes, blueprints)."
    )


MAX_DEPTH = 64  # containers within containers; a real architecture is a few deep
_MAX_INT = 2**31


def blueprint_from_json(
    data: Any, file: str = "architecture.json", where: str = "architecture", depth: int = 0
) -> Blueprint:
    """Rebuild a blueprint from ``blueprint_to_json``'s output, calling only registered constructors.

    Raises:
        ArtifactError: an unknown layer name, an unknown or invalid field; the message names
            ``file`` and the place in it.

    Example:
        >>> from shapesafe import layers as L
        >>> net = L.Flatten() >> L.Linear(2)
        >>> blueprint_from_json(blueprint_to_json(net)) == net
        True
    """
    if not isinstance(data, dict) or not isinstance(data.get("layer"), str):
        raise ArtifactError(
            f'{file}: {where} is not a layer (an object with a "layer" name): {_short(data)}.'
        )
    if depth > MAX_DEPTH:
        raise ArtifactError(
            f"{file}: {where} nests layers more than {MAX_DEPTH} deep, which shapesafe never "
            "writes; the file was edited or is damaged."
        )
    known = registry()
    name = data["layer"]
    cls = known.get(name)
    if cls is None:
        extra = " It holds user code, which artifacts never store." if name in _USER_CODE else ""
        raise ArtifactError(
            f"{file}: {where} names an unknown layer {name!r}.{extra} Known layers: "
            f"{', '.join(sorted(known))}. The artifact may come from a newer shapesafe "
            "or from a library with its own layers."
        )
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields - {"layer"})
    if unknown:
        raise ArtifactError(
            f"{file}: {where} ({name}) has unknown fields {unknown}; {name} has {sorted(fields)}."
        )
    kwargs = {
        k: _value_from_json(v, file, f"{where}.{k}", depth) for k, v in data.items() if k != "layer"
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, OverflowError) as e:
        raise ArtifactError(f"{file}: {where} ({name}) cannot be rebuilt: {e}") from None


def _value_from_json(value: Any, file: str, where: str, depth: int) -> Any:
    if isinstance(value, list):
        if depth > MAX_DEPTH:
            raise ArtifactError(f"{file}: {where} nests lists more than {MAX_DEPTH} deep.")
        return tuple(  # a list of layers is as deep as its container; a list in a list deeper
            _value_from_json(v, file, f"{where}[{i}]", depth + isinstance(v, list))
            for i, v in enumerate(value)
        )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INT:
        raise ArtifactError(
            f"{file}: {where} is {_short(value)}, outside the sizes a layer takes "
            f"(|value| <= 2**31)."
        )
    if isinstance(value, dict):
        if "layer" in value:
            return blueprint_from_json(value, file, where, depth + 1)
        if set(value) == {"dtype"}:
            return dtype_from_name(value["dtype"], file, where)
        raise ArtifactError(
            f"{file}: {where} is an object that is neither a layer nor a dtype: {_short(value)}."
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
