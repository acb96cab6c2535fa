"""``TensorSpec``: a model's input spec with ``jax.export`` symbolic dimensions, for ``build``.

Inside ``build`` an annotation becomes a ``TensorSpec``: a shape whose named dimensions are
symbolic (so inference holds for every batch size at once), one NumPy dtype, and for each
dimension the place it came from (for error messages).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np

from .._errors import ShapeError
from ._format import dim_string, format_annotation, format_spec
from ._parse import DTYPE_TO_JAXTYPING, default_dtype, is_annotation, parse

Dim = Any  # int, or a jax.export symbolic dimension expression


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An abstract tensor: shape (ints and symbolic dims), dtype, and each dim's origin."""

    shape: tuple[Dim, ...]
    dtype: np.dtype
    origins: tuple[str, ...]
    category: str = ""  # "Float" where the spec named a kind: any dtype of it is accepted

    @property
    def rank(self) -> int:
        return len(self.shape)

    def abstract(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(self.shape, self.dtype)

    def annotation(self) -> Any:
        """The jaxtyping annotation of this spec, e.g. ``Float32[Array, "batch 64"]``."""
        cls = DTYPE_TO_JAXTYPING.get(self.dtype.name, jaxtyping.Shaped)
        return cls[jax.Array, dim_string(self.shape)]

    def accepted(self) -> Any:
        """What a model built for this spec takes: ``Float[Array, "batch 64"]`` where the spec
        named a kind (any dtype of it, converted to ``dtype``), else ``annotation()``."""
        if not self.category:
            return self.annotation()
        return getattr(jaxtyping, self.category)[jax.Array, dim_string(self.shape)]

    def __str__(self) -> str:
        return format_spec(self.shape, self.dtype)


def spec_from_annotation(annotation: Any, *, what: str = "input spec") -> TensorSpec:
    """Turn ``UInt8[Array, "batch 250 250 3"]`` into a ``TensorSpec`` with symbolic dims.

    Raises:
        ShapeError: if ``annotation`` is not a jaxtyping array annotation with exactly one
            dtype and only named or fixed dimensions.
    """
    if not is_annotation(annotation):
        raise ShapeError(
            f"{what}: expected a jaxtyping annotation such as "
            f'UInt8[Array, "batch 250 250 3"], got {annotation!r}.'
        )
    spec = parse(annotation)
    dtypes = sorted(spec.dtypes or ())
    try:
        distinct = {np.dtype(jnp.dtype(d)) for d in dtypes}  # Bool names both 'bool' and 'bool_'
    except TypeError:  # Key's 'prng_key'
        distinct = set()
    category = ""
    if len(distinct) != 1:
        default = default_dtype(spec)
        if default is None:
            raise ShapeError(
                f"{what} {format_annotation(annotation)} names no array dtype a model can take. "
                "Use a dtype such as Float, Float32 or UInt8."
            )
        # a kind (Float, Integer, Shaped): built for JAX's default dtype of it; the model
        # converts any dtype of the kind at its boundary
        distinct, category = {default}, spec.category
    dtype = distinct.pop()
    x64 = needs_x64(dtype)
    if x64:
        raise ShapeError(f"{what} {format_annotation(annotation)}: {x64}")
    dims: list[str] = []
    for d in spec.dims:
        if d.kind == "fixed" and not d.broadcastable:
            dims.append(str(d.size))
        elif d.kind == "named" and not d.broadcastable:
            dims.append(d.name)
        else:
            raise ShapeError(
                f"{what} {format_annotation(annotation)}: dimension {_source(d.token)!r} is not allowed here; "
                "a model's input spec has a fixed rank, so each dimension is a name (e.g. 'batch') "
                "or a size (e.g. 250). Write 'batch' instead of '*batch', '...', '_' or '#batch'."
            )
    shape = jax.export.symbolic_shape(", ".join(dims)) if dims else ()
    return TensorSpec(tuple(shape), dtype, ("the input",) * len(shape), category)


_X64 = {"float64": "float32", "int64": "int32", "uint64": "uint32", "complex128": "complex64"}


def needs_x64(dtype: Any) -> str | None:
    """Why ``dtype`` cannot be computed in (a 64-bit dtype while JAX's 64-bit mode is off), or None."""
    name = np.dtype(dtype).name
    if name not in _X64 or jax.config.read("jax_enable_x64"):
        return None
    return (
        f"{name} needs JAX's 64-bit mode, which is off, so JAX would compute in {_X64[name]}. "
        f"Use {_X64[name]} instead, or turn 64-bit mode on first: "
        'jax.config.update("jax_enable_x64", True). Or set the environment variable '
        "JAX_ENABLE_X64=1 before the first array is made."
    )


def _source(token: str) -> str:
    """The dimension as jaxtyping names it: ``*batch`` -> ``batch``, ``...`` stays."""
    return token if token == "..." else token.lstrip("#*?_") or token


def trace_origins(in_spec: TensorSpec, out_shape: tuple[Dim, ...], here: str) -> tuple[str, ...]:
    """Which input dims an output dim inherits, by position from either end; new ones are ``here``."""
    origins = [here] * len(out_shape)
    ins = in_spec.shape
    for j in range(min(len(ins), len(out_shape))):  # leading dims (batch-like)
        if not _same(ins[j], out_shape[j]):
            break
        origins[j] = in_spec.origins[j]
    for j in range(1, min(len(ins), len(out_shape)) + 1):  # trailing dims
        if not _same(ins[-j], out_shape[-j]):
            break
        origins[-j] = in_spec.origins[-j]
    return tuple(origins)


def _same(a: Dim, b: Dim) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # symbolic dims from different scopes
        return False
