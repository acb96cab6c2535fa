"""Specs as JSON: ``UInt8[Array, "batch 4 4 3"]`` <-> ``{"dtype": "uint8", "dims": "batch 4 4 3"}``,
as artifacts, exports and predictors store them."""

import ast
import re
from typing import Any

import jax
import numpy as np

from .._errors import ArtifactError
from ._parse import DTYPE_TO_JAXTYPING


def dtype_from_name(name: Any, file: str, where: str) -> np.dtype:
    if not isinstance(name, str) or name not in DTYPE_TO_JAXTYPING:
        raise ArtifactError(
            f"{file}: {where} names an unknown dtype {name!r}; known: {sorted(DTYPE_TO_JAXTYPING)}."
        )
    import jax.numpy as jnp

    return np.dtype(jnp.dtype(name))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def spec_to_json(annotation: Any) -> dict[str, str]:
    """``UInt8[Array, "batch 4 4 3"]`` as ``{"dtype": "uint8", "dims": "batch 4 4 3"}``.

    Example:
        >>> from jaxtyping import Array, UInt8
        >>> spec_to_json(UInt8[Array, "batch 4 4 3"])
        {'dtype': 'uint8', 'dims': 'batch 4 4 3'}
    """
    import jax.numpy as jnp

    return {
        "dtype": np.dtype(jnp.dtype(annotation.dtypes[0])).name,
        "dims": str(annotation.dim_str),
    }


_MAX_DIMS = 64
_TOKEN = re.compile(r"[*#]?(?:_|[A-Za-z][A-Za-z0-9_]*|[0-9]{1,12}|\.\.\.)")
_SAFE = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Constant)
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.USub)


def _safe_dim(token: str) -> bool:
    """A dimension token ``spec_to_json`` can write: a name, a size, or arithmetic over names
    and sizes (jaxtyping evaluates the latter, so nothing else may pass)."""
    if _TOKEN.fullmatch(token):
        return not token.lstrip("*#").startswith("__")
    if len(token) > 200:
        return False
    try:
        tree = ast.parse(token, mode="eval")
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.operator | ast.unaryop):
            if not isinstance(node, _OPS):
                return False
        elif not isinstance(node, _SAFE):
            return False
        elif isinstance(node, ast.Name) and (
            node.id.startswith("_") or not _TOKEN.fullmatch(node.id)
        ):
            return False
        elif isinstance(node, ast.Constant) and (type(node.value) is not int or node.value > 2**40):
            return False
    return True


def spec_from_json(data: Any, file: str, where: str) -> Any:
    """The jaxtyping annotation ``spec_to_json`` describes.

    Every field is checked before use: ``dims`` must be at most 64 names, sizes or
    arithmetic over them (jaxtyping evaluates such expressions, so nothing else passes).

    Raises:
        ArtifactError: naming ``file`` and the field (``where``) that is not a valid spec.
    """
    if not isinstance(data, dict) or not isinstance(data.get("dims"), str):
        raise ArtifactError(
            f'{file}: {where} is not a spec ({{"dtype": ..., "dims": ...}}): {_short(data)}.'
        )
    dtype = dtype_from_name(data.get("dtype"), file, f"{where}.dtype")
    tokens = data["dims"].split()
    bad = next((t for t in tokens if not _safe_dim(t)), None)
    if bad is not None or len(tokens) > _MAX_DIMS:
        what = f"dimension {_short(bad)}" if bad is not None else f"{len(tokens)} dimensions"
        raise ArtifactError(
            f"{file}: {where}.dims {_short(data['dims'])} is not a spec shapesafe writes: {what} "
            f"(each dimension is a name such as batch, a size such as 3, or arithmetic over "
            f"them; at most {_MAX_DIMS}). The file was edited or is damaged."
        )
    try:
        return DTYPE_TO_JAXTYPING[dtype.name][jax.Array, data["dims"]]
    except (TypeError, ValueError) as e:
        raise ArtifactError(
            f"{file}: {where}.dims {_short(data['dims'])} is not a valid spec: {e}"
        ) from None


def spec_text(data: Any) -> str:
    """``{"dtype": "uint8", "dims": "batch 4 4 3"}`` as ``UInt8[batch, 4, 4, 3]``."""
    if not isinstance(data, dict):
        return _short(data)
    cls = DTYPE_TO_JAXTYPING.get(str(data.get("dtype", "")))
    prefix = cls.__name__ if cls is not None else str(data.get("dtype"))
    return f"{prefix}[{', '.join(str(data.get('dims', '')).split())}]"
