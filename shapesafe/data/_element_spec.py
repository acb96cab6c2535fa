"""Element specs: a PyTree of jaxtyping annotations, how it prints, how it is compared and checked.

A dataset's element spec is written the way a model's input spec is, e.g.
``{"image": UInt8[np.ndarray, "250 250 3"], "label": Int32[np.ndarray, ""]}``. Host-side
elements are NumPy arrays, so their annotations say ``np.ndarray``; after
``prefetch(sharding=...)`` they say ``jax.Array``. Comparisons between a dataset and a
model (``compatible``/``check_compatible``) look at dtype and shape only, never at the array
type. Run-time checks (``check_element``) look at all three.
"""

import typing
from collections.abc import Mapping
from typing import Any

import jax
import jax.tree_util as jtu
import numpy as np

from .._errors import ShapeError
from .._specs import (
    Mismatch,
    annotation_of,
    compare_spec_trees,
    compare_tree,
    describe_object,
    format_annotation,
    is_annotation,
    leaves_with_paths,
    make,
    parse,
)

__all__ = [
    "ElementSpec",
    "annotation_of",
    "check_compatible",
    "compatible",
    "element_mismatch",
    "format_annotation",
    "is_annotation",
    "leaves_with_paths",
    "make",
    "resolve",
    "retype",
    "tree_from_annotation",
    "with_leading",
]


def retype(annotation: Any, array_type: Any) -> Any:
    """The same dtype and dims over another array type (``np.ndarray`` -> ``jax.Array``)."""
    return make(annotation.dtype, array_type, annotation.dim_str)


def with_leading(annotation: Any, dim: str) -> Any:
    """``UInt8[np.ndarray, "h w"]`` -> ``UInt8[np.ndarray, "batch h w"]``."""
    return make(annotation.dtype, annotation.array_type, f"{dim} {annotation.dim_str}".strip())


class ElementSpec:
    """A dataset's element spec: a PyTree of jaxtyping annotations that prints like code.

    ``spec.tree`` is the PyTree itself (a dict, tuple or single annotation); ``spec["image"]``
    indexes it. Two specs are equal when their structure, dtypes, dims and array types are.
    """

    tree: Any

    def __init__(self, tree: Any):
        if isinstance(tree, ElementSpec):
            tree = tree.tree
        for path, leaf in leaves_with_paths(tree):
            if not is_annotation(leaf):
                where = f" at {path!r}" if path else ""
                raise TypeError(
                    f"an element spec is a PyTree of jaxtyping annotations such as "
                    f'UInt8[np.ndarray, "250 250 3"]; got {leaf!r}{where}.'
                )
        self.tree = tree

    def __getitem__(self, key: Any) -> Any:
        return self.tree[key]

    def keys(self) -> list[Any]:
        """The element's keys when it is a dict, else ``[]``."""
        return list(self.tree) if isinstance(self.tree, Mapping) else []

    def leaves(self) -> list[tuple[str, Any]]:
        return leaves_with_paths(self.tree)

    def _key(self) -> Any:
        leaves, treedef = jtu.tree_flatten(self.tree)
        return treedef, tuple(_leaf_key(a) for a in leaves)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ElementSpec):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return _format_tree(self.tree)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(repr(self))

    def fits(self, value: Any) -> bool:
        """A quick run-time check: ``True`` means ``value`` matches (structure, array type, dtype,
        fixed shape). ``False`` means "not decided here": ``element_mismatch`` then decides and
        explains. Every element a stage produces is checked, so this path costs a few µs."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self.__dict__["_plan"] = _fast_plan(self.tree)
        treedef, leaves = plan
        if treedef is None:
            return False
        flat, got = jtu.tree_flatten(value)
        if got != treedef or len(flat) != len(leaves):
            return False
        for x, (kind, dtypes, shape) in zip(flat, leaves, strict=True):
            if not isinstance(x, kind) or x.shape != shape:
                return False
            if dtypes is not None:
                num = x.dtype.num  # an int; ``dtype.name`` builds a string (µs)
                ok = dtypes.get(num)
                if ok is None:
                    ok = dtypes[num] = x.dtype.name in dtypes["names"]
                if not ok:
                    return False
        return True


def _fast_plan(tree: Any) -> tuple[Any, list[tuple[Any, dict[Any, Any] | None, tuple[int, ...]]]]:
    """What ``ElementSpec.fits`` compares: per leaf the array type, the allowed dtypes (their
    names, and a memo by dtype number) and the shape; ``(None, [])`` where a leaf has named,
    variadic or broadcastable dims (the full check decides those)."""
    leaves, treedef = jtu.tree_flatten(tree)
    plan = []
    for ann in leaves:
        spec = parse(ann)
        if any(d.kind != "fixed" or d.broadcastable for d in spec.dims):
            return None, []
        names = spec.dtypes
        plan.append(
            (
                ann.array_type,
                None if names is None else {"names": names},
                tuple(int(d.size or 0) for d in spec.dims),
            )
        )
    return treedef, plan


def _leaf_key(a: Any) -> tuple[Any, ...]:
    return (a.dtype.__name__, a.dim_str, a.array_type)


def _format_tree(tree: Any) -> str:
    if is_annotation(tree):
        return format_annotation(tree)
    if isinstance(tree, Mapping):
        parts = [f"{k!r}: {_format_tree(v)}".replace("'", '"', 2) for k, v in tree.items()]
        one = "{" + ", ".join(parts) + "}"
        return one if len(one) <= 88 else "{\n" + "".join(f"    {p},\n" for p in parts) + "}"
    if isinstance(tree, tuple | list):
        parts = [_format_tree(v) for v in tree]
        close = ",)" if isinstance(tree, tuple) and len(parts) == 1 else ")"
        return (
            ("(" if isinstance(tree, tuple) else "[")
            + ", ".join(parts)
            + (close if isinstance(tree, tuple) else "]")
        )
    return repr(tree)


# ----------------------------------------------------------------------------------------
# Comparisons, asked of the spec kernel.


def compatible(actual: Any, expected: Any) -> bool:
    """Whether elements of spec ``actual`` fit ``expected``: dtype and shape, any array type.

    Both may be single annotations or PyTrees (an ``ElementSpec``, a dict, a tuple).

    Args:
        actual: what a dataset declares (its ``spec``, or one leaf).
        expected: what a consumer declares, e.g. a model's ``input_spec``.

    Returns:
        ``True`` when dtype and shape fit; a dimension that cannot be decided (a name against a
        size) counts as fitting.

    Example:
        >>> import numpy as np
        >>> from jaxtyping import Array, Float32, UInt8
        >>> compatible(UInt8[np.ndarray, "batch 250 250 3"], UInt8[Array, "batch 250 250 3"])
        True
        >>> compatible(UInt8[np.ndarray, "batch 250 250 3"], Float32[Array, "batch 250 250 3"])
        False
    """
    return not _tree_mismatches(actual, expected)


def check_compatible(actual: Any, expected: Any, *, where: str) -> None:
    """Raise ``ShapeError`` unless ``actual`` fits ``expected`` (see ``compatible``).

    Args:
        actual: a dataset's element spec, or one of its leaves.
        expected: what the consumer declares, e.g. a model's input spec.
        where: who is asking, for the message (``"fit: the model's input"``).

    Raises:
        ShapeError: naming ``where``, the key, what was expected and what arrived.
    """
    lines = [line for m in _tree_mismatches(actual, expected) for line in m.lines()]
    if lines:
        raise ShapeError(f"{where} cannot take the data.\n" + "\n".join(lines))


def _tree_mismatches(actual: Any, expected: Any) -> list[Mismatch]:
    a_tree = actual.tree if isinstance(actual, ElementSpec) else actual
    e_tree = expected.tree if isinstance(expected, ElementSpec) else expected
    return compare_spec_trees(a_tree, e_tree, describe_tree=_format_tree)


def element_mismatch(value: Any, spec: ElementSpec) -> Mismatch | None:
    """The first way ``value`` breaks ``spec`` (structure, array type, dtype, dims), or ``None``."""
    return compare_tree(spec.tree, value, describe_tree=_describe_tree)


def _describe_tree(value: Any) -> str:
    if isinstance(value, ElementSpec):
        return repr(value)
    if all(is_annotation(x) for x in jtu.tree_leaves(value)):
        return _format_tree(value)
    return _format_tree(jtu.tree_map(lambda x: _Shown(_describe(x)), value))


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray | jax.Array):
        return format_annotation(annotation_of(x))
    return describe_object(x)


class _Shown:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


# ----------------------------------------------------------------------------------------
# Annotations of user functions -> spec trees.


def tree_from_annotation(annotation: Any) -> Any | None:
    """A spec tree from a function annotation, or ``None`` if it does not describe arrays.

    A jaxtyping annotation is itself; a ``TypedDict`` of annotations is a dict; a
    ``tuple[A, B]`` of annotations is a tuple.
    """
    if is_annotation(annotation):
        return annotation
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        parts = {k: tree_from_annotation(v) for k, v in hints.items()}
        return None if any(v is None for v in parts.values()) else parts
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if args and Ellipsis not in args:
            items = [tree_from_annotation(a) for a in args]
            return None if any(v is None for v in items) else tuple(items)
    return None


def resolve(annotation: Any, bindings: Mapping[str, Any], arguments: Mapping[str, Any]) -> Any:
    """``annotation`` with named dims replaced by the sizes they were bound to, and f-string
    dims (``"{height}"``) evaluated against a function's keyword ``arguments``."""
    out: list[str] = []
    for d in parse(annotation).dims:
        if d.kind == "named" and isinstance(bindings.get(d.name), int | str):
            out.append(str(bindings[d.name]))
        elif d.kind == "symbolic":
            out.append(_evaluate(d.name, bindings, arguments, d.token))
        else:
            out.append(d.token)
    return make(annotation.dtype, annotation.array_type, " ".join(out))


def _evaluate(
    elem: str, bindings: Mapping[str, Any], arguments: Mapping[str, Any], token: str
) -> str:
    try:
        text = elem.format(**arguments)
        names = {k: v for k, v in bindings.items() if isinstance(v, int)}
        value = eval(text, {"__builtins__": {}}, names)
    except Exception:
        return token
    return str(int(value)) if isinstance(value, int | np.integer) else token
