"""Specs: the internal form of a jaxtyping annotation, and conversions both ways.

A user writes specs as jaxtyping annotations (``UInt8[Array, "batch 250 250 3"]``). Inside
``build`` an annotation becomes a ``TensorSpec``: a shape whose named dimensions are
``jax.export`` symbolic dimensions (so inference holds for every batch size at once), one
NumPy dtype, and, for each dimension, the place it came from (for error messages).
"""

import ast
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np

from ._errors import ShapeError

Dim = Any  # int, or a jax.export symbolic dimension expression

# Dimension vocabulary shared by the layers' annotations (see STYLE.md).
DIM_NAMES = ("batch", "time", "height", "width", "channels", "in_features", "out_features", "classes")

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


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """An abstract tensor: shape (ints and symbolic dims), dtype, and each dim's origin."""

    shape: tuple[Dim, ...]
    dtype: np.dtype
    origins: tuple[str, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    def abstract(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(self.shape, self.dtype)

    def annotation(self) -> Any:
        """The jaxtyping annotation of this spec, e.g. ``Float32[Array, "batch 64"]``."""
        cls = DTYPE_TO_JAXTYPING.get(self.dtype.name, jaxtyping.Shaped)
        return cls[jax.Array, dim_string(self.shape)]

    def __str__(self) -> str:
        return format_spec(self.shape, self.dtype)


def is_annotation(obj: object) -> bool:
    """Whether ``obj`` is a jaxtyping array annotation such as ``Float[Array, "b 3"]``."""
    return isinstance(obj, type) and all(
        hasattr(obj, a) for a in ("dtypes", "dims", "dim_str", "array_type")
    )


def dim_string(shape: tuple[Dim, ...]) -> str:
    """Space-separated jaxtyping dimension string: ``(batch, 3) -> "batch 3"``.

    A derived symbolic dimension becomes a Python expression that jaxtyping evaluates
    against the bound names (``floordiv(h - 3, 2) + 1 -> (h-3)//2+1``), or ``_`` (any size)
    where it needs ``max``/``min``.
    """
    return " ".join(_python_dim(str(d)).replace(" ", "") for d in shape)


class _InfixOps(ast.NodeTransformer):
    """``floordiv(a, b) -> a // b`` and ``mod(a, b) -> a % b`` (jax.export's spelling)."""

    def visit_Call(self, node: ast.Call) -> Any:
        self.generic_visit(node)
        ops = {"floordiv": ast.FloorDiv, "mod": ast.Mod}
        if isinstance(node.func, ast.Name) and node.func.id in ops and len(node.args) == 2:
            return ast.BinOp(node.args[0], ops[node.func.id](), node.args[1])
        return node


def _python_dim(text: str) -> str:
    if text.isidentifier() or text.isdigit():
        return text
    tree = _InfixOps().visit(ast.parse(text, mode="eval"))
    if any(isinstance(node, ast.Call) for node in ast.walk(tree)):
        return "_"  # max/min cannot be decided on symbolic sizes; the layers check these dims
    return ast.unparse(tree)


def format_shape(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_spec(shape: tuple[Dim, ...], dtype: Any) -> str:
    """``UInt8[batch, 250, 250, 3]``: the short form used in tables and messages."""
    name = np.dtype(dtype).name
    cls = DTYPE_TO_JAXTYPING.get(name)
    prefix = cls.__name__ if cls is not None else name
    return prefix + format_shape(shape)


def format_value(x: Any) -> str:
    """Describe a concrete array, tracer or abstract value in the same short form."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        return f"{type(x).__name__} (not an array)"
    return format_spec(tuple(shape), dtype)


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
    dtypes = tuple(annotation.dtypes) if isinstance(annotation.dtypes, tuple | list) else ()  # Shaped: any
    try:
        distinct = {np.dtype(jnp.dtype(d)) for d in dtypes}  # Bool names both 'bool' and 'bool_'
    except TypeError:  # Key's 'prng_key'
        distinct = set()
    if len(distinct) != 1:
        name = annotation.dtype.__name__
        names = f"names {len(dtypes)} dtypes" if len(dtypes) > 1 else "names no concrete array dtype"
        raise ShapeError(
            f"{what} {annotation.__name__} {names}; a model's input "
            f"must have exactly one. Use a concrete dtype such as Float32 or UInt8 instead of {name}."
        )
    dims: list[str] = []
    for d in annotation.dims:
        kind = type(d).__name__
        if kind == "_FixedDim" and not d.broadcastable:
            dims.append(str(d.size))
        elif kind == "_NamedDim" and not d.broadcastable and d.name.isidentifier():
            dims.append(d.name)
        else:
            raise ShapeError(
                f"{what} {annotation.__name__}: dimension {_dim_source(d)!r} is not allowed here; "
                "a model's input spec has a fixed rank, so each dimension is a name (e.g. 'batch') "
                "or a size (e.g. 250). Write 'batch' instead of '*batch', '...', '_' or '#batch'."
            )
    shape = jax.export.symbolic_shape(", ".join(dims)) if dims else ()
    dtype = distinct.pop()
    return TensorSpec(tuple(shape), dtype, ("the input",) * len(shape))


def _dim_source(d: Any) -> str:
    for attr in ("name", "size", "elem"):
        if hasattr(d, attr):
            return str(getattr(d, attr))
    return repr(d)


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
