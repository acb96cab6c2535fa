"""Element specs: a PyTree of jaxtyping annotations, how it prints, how it is compared and checked.

A dataset's element spec is written the way a model's input spec is, e.g.
``{"image": UInt8[np.ndarray, "250 250 3"], "label": Int32[np.ndarray, ""]}``. Host-side
elements are NumPy arrays, so their annotations say ``np.ndarray``; after
``prefetch(sharding=...)`` they say ``jax.Array``. Comparisons between a dataset and a
model (``compatible``/``check_compatible``) look at dtype and shape only, never at the array
type. Run-time checks (``check_element``) look at all three.
"""

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

import jax
import jax.tree_util as jtu
import jaxtyping
import numpy as np

from .._errors import ShapeError
from .._spec import DTYPE_TO_JAXTYPING, is_annotation


def make(dtype_cls: Any, array_type: Any, dims: str) -> Any:
    """``make(UInt8, np.ndarray, "h w 3")`` is ``UInt8[np.ndarray, "h w 3"]``."""
    return dtype_cls[array_type, dims]


def annotation_of(x: Any) -> Any:
    """The annotation that describes one concrete array exactly, e.g. ``UInt8[np.ndarray, "2 3"]``."""
    dtype = np.dtype(x.dtype)
    cls = DTYPE_TO_JAXTYPING.get(dtype.name, jaxtyping.Shaped)
    kind = jax.Array if isinstance(x, jax.Array) else np.ndarray
    return make(cls, kind, " ".join(str(int(d)) for d in np.shape(x)))


def retype(annotation: Any, array_type: Any) -> Any:
    """The same dtype and dims over another array type (``np.ndarray`` -> ``jax.Array``)."""
    return make(annotation.dtype, array_type, annotation.dim_str)


def with_leading(annotation: Any, dim: str) -> Any:
    """``UInt8[np.ndarray, "h w"]`` -> ``UInt8[np.ndarray, "batch h w"]``."""
    return make(annotation.dtype, annotation.array_type, f"{dim} {annotation.dim_str}".strip())


def dim_names(annotation: Any) -> list[str]:
    return [getattr(d, "name", "") for d in annotation.dims]


def format_annotation(annotation: Any) -> str:
    """``UInt8[np.ndarray, "250 250 3"]``: the way a user writes it."""
    if not is_annotation(annotation):
        return getattr(annotation, "__name__", repr(annotation))
    kind = annotation.array_type
    names = {np.ndarray: "np.ndarray", jax.Array: "Array"}
    array = names.get(kind, getattr(kind, "__name__", repr(kind)))
    return f'{annotation.dtype.__name__}[{array}, "{annotation.dim_str}"]'


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    """``[("image", ann), ("label", ann)]``; a bare annotation has the path ``""``."""
    flat, _ = jtu.tree_flatten_with_path(tree)
    return [(jtu.keystr(path, simple=True, separator="/"), leaf) for path, leaf in flat]


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
        dims = list(ann.dims)
        if any(_kind(d) != "_FixedDim" or d.broadcastable for d in dims):
            return None, []
        names = _dtypes(ann)
        plan.append((ann.array_type, None if names is None else {"names": frozenset(names)},
                     tuple(int(d.size) for d in dims)))
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
        return ("(" if isinstance(tree, tuple) else "[") + ", ".join(parts) + (close if isinstance(tree, tuple) else "]")
    return repr(tree)


# ----------------------------------------------------------------------------------------
# Static comparison: spec against spec, dtype and dims only.


def _dtypes(annotation: Any) -> set[str] | None:
    """The dtype names an annotation allows; ``None`` means any (``Shaped``)."""
    d = annotation.dtypes
    return set(d) if isinstance(d, tuple | list) else None


def _words(annotation: Any) -> str:
    name: str = annotation.dtype.__name__
    words: dict[str, str] = {"Float": "a floating dtype", "Int": "a signed integer dtype", "Integer": "an integer dtype",
             "UInt": "an unsigned integer dtype", "Num": "a numeric dtype", "Bool": "bool",
             "Real": "a real dtype", "Inexact": "an inexact dtype"}
    return words.get(name, name.lower())


def compare(actual: Any, expected: Any, bindings: dict[str, Any] | None = None) -> list[str]:
    """Reasons why values of spec ``actual`` cannot be taken where ``expected`` is declared.

    Dtype and dims only. A dimension that cannot be decided (a name against a size) passes.
    ``bindings`` collects ``expected``'s named dims bound to ``actual``'s sizes or names.
    """
    bindings = {} if bindings is None else bindings
    reasons: list[str] = []
    got, want = _dtypes(actual), _dtypes(expected)
    if want is not None and got is not None and not (got & want):
        shown = next(iter(got)) if len(got) == 1 else actual.dtype.__name__
        reasons.append(f"{shown} is not {_words(expected)}.")
    elif want is not None and got is not None and len(got) == 1 and not got <= want:
        reasons.append(f"{next(iter(got))} is not {_words(expected)}.")
    a_dims, e_dims = list(actual.dims), list(expected.dims)
    if any(_variadic(d) for d in a_dims):
        return reasons  # rank unknown on the actual side: nothing more to decide
    var = [i for i, d in enumerate(e_dims) if _variadic(d)]
    if var:
        i = var[0]
        fixed = len(e_dims) - 1
        if len(a_dims) < fixed:
            reasons.append(f"it needs at least {fixed} dimensions, got {len(a_dims)} ({actual.dim_str}).")
            return reasons
        tail = len(e_dims) - i - 1
        pairs = list(zip(a_dims[:i], e_dims[:i], strict=True))
        pairs += list(zip(a_dims[len(a_dims) - tail:], e_dims[i + 1:], strict=True))
    else:
        if len(a_dims) != len(e_dims):
            reasons.append(
                f"it needs {len(e_dims)} dimensions ({expected.dim_str}), got {len(a_dims)} ({actual.dim_str})."
            )
            return reasons
        pairs = list(zip(a_dims, e_dims, strict=True))
    for k, (a, e) in enumerate(pairs):
        a_size = _size(a)
        if _kind(e) == "_FixedDim":
            if isinstance(a_size, int) and a_size != e.size and not (e.broadcastable and a_size == 1):
                reasons.append(f"dimension {k} is {a_size}, expected {e.size}.")
        elif _kind(e) == "_NamedDim":
            if a_size is None:
                continue
            old = bindings.setdefault(e.name, a_size)
            if isinstance(old, int) and isinstance(a_size, int) and old != a_size:
                reasons.append(f"dimension {k} is {a_size}, but {e.name} is {old} elsewhere.")
    return reasons


def _kind(d: Any) -> str:
    return type(d).__name__


def _variadic(d: Any) -> bool:
    return _kind(d) in ("_NamedVariadicDim", "_AnonymousVariadicDim")


def _size(d: Any) -> int | str | None:
    if _kind(d) == "_FixedDim":
        return int(d.size)
    if _kind(d) == "_NamedDim":
        return str(d.name)
    return None


def compatible(actual: Any, expected: Any) -> bool:
    """Whether elements of spec ``actual`` fit ``expected``: dtype and shape, any array type.

    Both may be single annotations or PyTrees (an ``ElementSpec``, a dict, a tuple).

    Example:
        >>> import numpy as np
        >>> from jaxtyping import Array, Float32, UInt8
        >>> compatible(UInt8[np.ndarray, "batch 250 250 3"], UInt8[Array, "batch 250 250 3"])
        True
        >>> compatible(UInt8[np.ndarray, "batch 250 250 3"], Float32[Array, "batch 250 250 3"])
        False
    """
    return not _tree_reasons(actual, expected)


def check_compatible(actual: Any, expected: Any, *, where: str) -> None:
    """Raise ``ShapeError`` unless ``actual`` fits ``expected`` (see ``compatible``).

    Args:
        actual: a dataset's element spec, or one of its leaves.
        expected: what the consumer declares, e.g. a model's input spec.
        where: who is asking, for the message (``"fit: the model's input"``).

    Raises:
        ShapeError: naming ``where``, the key, what was expected and what arrived.
    """
    reasons = _tree_reasons(actual, expected)
    if reasons:
        raise ShapeError(f"{where} cannot take the data.\n" + "\n".join(reasons))


def _tree_reasons(actual: Any, expected: Any) -> list[str]:
    a_tree = actual.tree if isinstance(actual, ElementSpec) else actual
    e_tree = expected.tree if isinstance(expected, ElementSpec) else expected
    a_leaves, a_def = jtu.tree_flatten(a_tree)
    e_leaves, e_def = jtu.tree_flatten(e_tree)
    if a_def != e_def:  # type: ignore[operator]
        return [f"  expected  {_format_tree(e_tree)}", f"  got       {_format_tree(a_tree)}",
                "  the structures differ (keys or number of parts)."]
    out: list[str] = []
    bindings: dict[str, Any] = {}
    paths = [p for p, _ in leaves_with_paths(a_tree)]
    for path, a, e in zip(paths, a_leaves, e_leaves, strict=True):
        why = compare(a, e, bindings)
        if why:
            at = f" at {path!r}" if path else ""
            out += [f"  expected  {format_annotation(e)}{at}", f"  got       {format_annotation(a)}"]
            out += [f"  {w}" for w in why]
    return out


# ----------------------------------------------------------------------------------------
# Run-time checks: one concrete element against its spec.


@dataclasses.dataclass
class Mismatch:
    path: str
    expected: str
    got: str
    why: str


def element_mismatch(value: Any, spec: ElementSpec) -> Mismatch | None:
    """The first way ``value`` breaks ``spec`` (structure, array type, dtype, dims), or ``None``."""
    s_leaves, s_def = jtu.tree_flatten(spec.tree)
    v_leaves, v_def = jtu.tree_flatten(value)
    if s_def != v_def:  # type: ignore[operator]
        return Mismatch("", repr(spec), _describe_tree(value), "the structure differs (keys or parts).")
    bindings: dict[str, int] = {}
    for path, ann, leaf in zip([p for p, _ in spec.leaves()], s_leaves, v_leaves, strict=True):
        why = _leaf_mismatch(leaf, ann, bindings)
        if why:
            return Mismatch(path, format_annotation(ann), _describe(leaf), why)
    return None


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray | jax.Array):
        return format_annotation(annotation_of(x))
    return f"{type(x).__name__} {x!r:.40}"


def _describe_tree(value: Any) -> str:
    return _format_tree(jtu.tree_map(lambda x: _Shown(_describe(x)), value))


class _Shown:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _leaf_mismatch(x: Any, ann: Any, bindings: dict[str, int]) -> str | None:
    if not isinstance(x, ann.array_type):
        hint = " (a NumPy scalar: return np.asarray(x))" if isinstance(x, np.generic) else ""
        return f"it is a {type(x).__name__}{hint}, not a {getattr(ann.array_type, '__name__', ann.array_type)}."
    allowed = _dtypes(ann)
    if allowed is not None and np.dtype(x.dtype).name not in allowed:
        return f"{np.dtype(x.dtype).name} is not {_words(ann)}."
    shape = tuple(int(d) for d in np.shape(x))
    dims = list(ann.dims)
    var = [i for i, d in enumerate(dims) if _variadic(d)]
    if var:
        i = var[0]
        tail = len(dims) - i - 1
        if len(shape) < len(dims) - 1:
            return f"it needs at least {len(dims) - 1} dimensions, got {len(shape)}."
        pairs = list(zip(shape[:i], dims[:i], strict=True)) + list(
            zip(shape[len(shape) - tail:], dims[i + 1:], strict=True))
    else:
        if len(shape) != len(dims):
            return f"it needs {len(dims)} dimensions ({ann.dim_str}), got {len(shape)}."
        pairs = list(zip(shape, dims, strict=True))
    for k, (n, d) in enumerate(pairs):
        kind = _kind(d)
        if d.broadcastable and n == 1:
            continue
        if kind == "_FixedDim" and n != d.size:
            return f"dimension {k} is {n}, expected {d.size}."
        if kind == "_NamedDim":
            old = bindings.setdefault(d.name, n)
            if old != n:
                return f"dimension {k} is {n}, but {d.name} is {old} elsewhere in the element."
    return None


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
    for d, token in zip(annotation.dims, annotation.dim_str.split(), strict=True):
        kind = _kind(d)
        if kind == "_NamedDim" and isinstance(bindings.get(d.name), int | str):
            out.append(str(bindings[d.name]))
        elif kind == "_SymbolicDim":
            out.append(_evaluate(d.elem, bindings, arguments, token))
        else:
            out.append(token)
    return make(annotation.dtype, annotation.array_type, " ".join(out))


def _evaluate(elem: str, bindings: Mapping[str, Any], arguments: Mapping[str, Any], token: str) -> str:
    try:
        text = elem.format(**arguments)
        names = {k: v for k, v in bindings.items() if isinstance(v, int)}
        value = eval(text, {"__builtins__": {}}, names)
    except Exception:
        return token
    return str(int(value)) if isinstance(value, int | np.integer) else token
