"""Specs as JSON: ``UInt8[Array, "batch 4 4 3"]`` <-> ``{"dtype": "uint8", "dims": "batch 4 4 3"}``,
as artifacts, exports and predictors store them."""

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


def spec_from_json(data: Any, file: str, where: str) -> Any:
    """The jaxtyping annotation ``spec_to_json`` describes."""
    if not isinstance(data, dict) or not isinstance(data.get("dims"), str):
        raise ArtifactError(
            f'{file}: {where} is not a spec ({{"dtype": ..., "dims": ...}}): {_short(data)}.'
        )
    dtype = dtype_from_name(data.get("dtype"), file, f"{where}.dtype")
    return DTYPE_TO_JAXTYPING[dtype.name][jax.Array, data["dims"]]


def spec_text(data: dict[str, str]) -> str:
    """``{"dtype": "uint8", "dims": "batch 4 4 3"}`` as ``UInt8[batch, 4, 4, 3]``."""
    cls = DTYPE_TO_JAXTYPING.get(data.get("dtype", ""))
    prefix = cls.__name__ if cls is not None else str(data.get("dtype"))
    return f"{prefix}[{', '.join(str(data.get('dims', '')).split())}]"
