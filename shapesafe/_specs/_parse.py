"""Reading a jaxtyping annotation through its public attributes only.

jaxtyping's public surface of an annotation such as ``Float32[Array, "batch 3"]`` is
``AbstractArray`` with ``dtype`` (the dtype class, e.g. ``Float32``), ``dtypes`` (the dtype
names it allows; not a list for ``Shaped``), ``array_type`` and ``dim_str``. The dimension
string is parsed here with jaxtyping's documented grammar, so nothing depends on the classes
jaxtyping keeps private.
"""

import dataclasses
import functools
from typing import Any, Literal

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np

DimKind = Literal["fixed", "named", "any", "variadic", "symbolic"]


@dataclasses.dataclass(frozen=True)
class Dim:
    """One token of a dimension string.

    ``fixed`` (``3``, ``rows=3``), ``named`` (``batch``), ``any`` (``_`` or ``_name``),
    ``variadic`` (``*batch``, ``...``, ``*_``; ``name`` is empty where anonymous), ``symbolic``
    (``h-2``, ``{self.in_features}``: an expression over the bound names).
    """

    kind: DimKind
    token: str
    name: str = ""
    size: int | None = None
    broadcastable: bool = False


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """A parsed annotation: which dtypes (``None``: any), which dimensions, which array type."""

    category: str  # the dtype class's name as written: "Float32", "Float", "Shaped"
    dtypes: frozenset[str] | None
    dims: tuple[Dim, ...]
    array_type: Any
    dim_str: str

    @property
    def variadic(self) -> int | None:
        """The position of the variadic dimension, if there is one."""
        return next((i for i, d in enumerate(self.dims) if d.kind == "variadic"), None)

    @property
    def fixed_rank(self) -> int:
        """How many dimensions are not variadic."""
        return sum(d.kind != "variadic" for d in self.dims)


def is_annotation(obj: object) -> bool:
    """Whether ``obj`` is a jaxtyping array annotation such as ``Float[Array, "b 3"]``."""
    return (
        isinstance(obj, type)
        and issubclass(obj, jaxtyping.AbstractArray)
        and hasattr(obj, "dim_str")
    )


def dtype_names(annotation: Any) -> frozenset[str] | None:
    """The dtype names an annotation allows; ``None`` means any (``Shaped``)."""
    d = annotation.dtypes
    return frozenset(d) if isinstance(d, tuple | list) else None


def parse(annotation: Any, *, self_: Any = None) -> ArraySpec:
    """Parse ``annotation``; ``{self.x}`` sizes are filled in from ``self_`` where given."""
    dim_str = str(annotation.dim_str)
    if self_ is not None and "{" in dim_str:
        try:
            dim_str = dim_str.format(self=self_)
        except (AttributeError, KeyError, IndexError, ValueError):
            pass
    return _parse(annotation, dim_str)


@functools.lru_cache(maxsize=4096)
def _parse(annotation: Any, dim_str: str) -> ArraySpec:
    dims = tuple(parse_dim(t) for t in dim_str.split())
    return ArraySpec(
        annotation.dtype.__name__, dtype_names(annotation), dims, annotation.array_type, dim_str
    )


def parse_dim(token: str) -> Dim:
    """One dimension token, in jaxtyping's grammar (``#`` broadcastable, ``*`` variadic,
    ``_`` anonymous, ``?`` tree-path dependent, ``name=3`` a documented size)."""
    if token == "...":
        return Dim("variadic", token)
    elem, broadcastable, variadic, anonymous = token, False, False, False
    while elem:
        if elem[0] == "#":
            broadcastable, elem = True, elem[1:]
        elif elem[0] == "*":
            variadic, elem = True, elem[1:]
        elif elem[0] == "_":
            anonymous, elem = True, elem[1:]
        elif elem[0] == "?":
            elem = elem[1:]
        elif elem.count("=") == 1 and "(" not in elem:
            elem = elem.split("=")[1]
        else:
            break
    if variadic:
        return Dim("variadic", token, "" if anonymous else elem, broadcastable=broadcastable)
    if not elem or elem.isidentifier():
        if anonymous:
            return Dim("any", token)
        return Dim("named", token, elem, broadcastable=broadcastable)
    try:
        return Dim("fixed", token, size=int(elem), broadcastable=broadcastable)
    except ValueError:
        return Dim("symbolic", token, elem, broadcastable=broadcastable)


# -- dtypes ---------------------------------------------------------------------------------

DTYPE_TO_JAXTYPING: dict[str, Any] = {
    "bool": jaxtyping.Bool,
    "uint8": jaxtyping.UInt8,
    "uint16": jaxtyping.UInt16,
    "uint32": jaxtyping.UInt32,
    "uint64": jaxtyping.UInt64,
    "int8": jaxtyping.Int8,
    "int16": jaxtyping.Int16,
    "int32": jaxtyping.Int32,
    "int64": jaxtyping.Int64,
    "bfloat16": jaxtyping.BFloat16,
    "float16": jaxtyping.Float16,
    "float32": jaxtyping.Float32,
    "float64": jaxtyping.Float64,
    "complex64": jaxtyping.Complex64,
    "complex128": jaxtyping.Complex128,
}

_CATEGORY_WORDS = {
    "Float": "a floating dtype",
    "Int": "a signed integer dtype",
    "Integer": "an integer dtype",
    "UInt": "an unsigned integer dtype",
    "Num": "a numeric dtype",
    "Bool": "bool",
    "Real": "a real dtype",
    "Inexact": "an inexact dtype",
}


def dtype_words(category: str) -> str:
    """``"Float"`` -> ``"a floating dtype"``; a concrete class names its dtype (``"float32"``)."""
    return _CATEGORY_WORDS.get(category, category.lower())


def make(dtype_cls: Any, array_type: Any, dims: str) -> Any:
    """``make(UInt8, np.ndarray, "h w 3")`` is ``UInt8[np.ndarray, "h w 3"]``."""
    return dtype_cls[array_type, dims]


def annotation_for(dtype: Any, array_type: Any, dims: str) -> Any:
    """The annotation of one concrete dtype: ``annotation_for("uint8", np.ndarray, "2 3")``."""
    cls = DTYPE_TO_JAXTYPING.get(np.dtype(dtype).name, jaxtyping.Shaped)
    return make(cls, array_type, dims)


def annotation_of(x: Any) -> Any:
    """The annotation that describes one concrete array exactly, e.g. ``UInt8[np.ndarray, "2 3"]``."""
    kind = jax.Array if isinstance(x, jax.Array) else np.ndarray
    return annotation_for(x.dtype, kind, " ".join(str(int(d)) for d in np.shape(x)))


def dtype_kind(dtype: Any) -> str:
    """``"floating"``, ``"integer"``, ``"bool"`` or ``"complex"``."""
    dt = jnp.dtype(dtype)
    if jnp.issubdtype(dt, jnp.floating):
        return "floating"
    if jnp.issubdtype(dt, jnp.complexfloating):
        return "complex"
    if jnp.issubdtype(dt, jnp.bool_):
        return "bool"
    return "integer"


def default_dtype(spec: ArraySpec) -> np.dtype | None:
    """The dtype a category annotation builds for: JAX's default dtype of its kind.

    ``Float`` -> float32 (float64 under ``jax_enable_x64``), ``Integer``/``Int`` -> int32,
    ``UInt`` -> uint32, ``Complex`` -> complex64, ``Bool`` -> bool, ``Shaped``/``Num``/``Real``
    -> float32; ``None`` for an annotation that names no array dtype (``Key``).
    """
    canon = jax.dtypes.canonicalize_dtype
    defaults = [
        canon(np.float64),
        canon(np.int64),
        canon(np.uint64),
        canon(np.complex128),
        np.dtype(bool),
    ]
    if spec.dtypes is None:
        return np.dtype(defaults[0])
    return next((np.dtype(d) for d in defaults if np.dtype(d).name in spec.dtypes), None)
