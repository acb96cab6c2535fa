"""The one place an annotation, a shape or a value becomes text.

Two forms: the annotation as a user writes it (``UInt8[Array, "batch 250 250 3"]``) and the
short form of tables and messages (``UInt8[batch, 250, 250, 3]``).
"""

import ast
from typing import Any

import jax
import numpy as np

from ._parse import DTYPE_TO_JAXTYPING, is_annotation, parse

_ARRAY_NAMES = {np.ndarray: "np.ndarray", jax.Array: "Array"}


def format_annotation(annotation: Any, *, array: str | None = None, self_: Any = None) -> str:
    """``UInt8[np.ndarray, "250 250 3"]``: an annotation the way a user writes it.

    ``array`` overrides the array type's name (model specs always say ``Array``); ``self_``
    fills in a layer's ``{self.x}`` sizes.
    """
    if not is_annotation(annotation):
        return getattr(annotation, "__name__", repr(annotation))
    spec = parse(annotation, self_=self_)
    kind = annotation.array_type
    name = array or _ARRAY_NAMES.get(kind, getattr(kind, "__name__", repr(kind)))
    return f'{spec.category}[{name}, "{spec.dim_str}"]'


def format_short(annotation: Any) -> str:
    """``Int32[batch]``: the short form of an annotation."""
    spec = parse(annotation)
    return f"{spec.category}[{', '.join(d.token for d in spec.dims)}]"


def format_shape(shape: tuple[Any, ...]) -> str:
    """``[batch, 3]``."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_spec(shape: tuple[Any, ...], dtype: Any) -> str:
    """``UInt8[batch, 250, 250, 3]``: the short form of a shape and a dtype."""
    name = np.dtype(dtype).name
    cls = DTYPE_TO_JAXTYPING.get(name)
    prefix = cls.__name__ if cls is not None else name
    return prefix + format_shape(shape)


def format_value(x: Any) -> str:
    """Describe a concrete array, tracer or abstract value in the short form."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        return f"{type(x).__name__} (not an array)"
    return format_spec(tuple(shape), dtype)


def describe_object(x: Any) -> str:
    """A value that is not an array, shown by type (and by value where it is plain data):
    ``int 3``, ``str 'cat'``, ``object (not an array)``; never an object address."""
    if isinstance(x, bool | int | float | complex | str | bytes | type(None)):
        return f"{type(x).__name__} {x!r:.40}"
    if isinstance(x, tuple | list | dict):
        return f"{type(x).__name__} of {len(x)} (not an array)"
    return f"{type(x).__name__} (not an array)"


def dim_string(shape: tuple[Any, ...]) -> str:
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
