"""``compare``: why a value (or a spec) does not fit an annotation, as structured data.

Every check in shapesafe asks this module: a built layer's trace-time check, the model's
boundary, a dataset stage's element check, ``fit``'s data check, the losses. The result is a
``Mismatch`` (which leaf, what was expected, what arrived, each ``Problem`` with its axis,
and the dimension bindings so far), rendered to text by ``Mismatch.lines``/``Problem.reason``;
nothing here reads another library's messages.
"""

import dataclasses
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import jax
import jax.tree_util as jtu
import numpy as np

from ._format import describe_object, format_annotation, format_shape, format_value
from ._parse import ArraySpec, Dim, dtype_words, is_annotation, parse

Kind = Literal["structure", "type", "dtype", "rank", "size", "binding"]
Bindings = MutableMapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One way a value breaks an annotation.

    ``axis`` is the value's axis (``size``/``binding``); ``want``/``have`` are the expected and
    actual size, rank or dtype; ``name`` and ``earlier`` say which binding a ``binding``
    problem contradicts.
    """

    kind: Kind
    want: Any = None
    have: Any = None
    axis: int | None = None
    name: str = ""
    earlier: Any = None
    at_least: bool = False
    dims: str = ""  # the expected dimensions, for ``rank``
    got_dims: str = ""  # what arrived, for ``rank``
    hint: str = ""

    def reason(self) -> str:
        """The problem as one sentence: ``dimension 1 is 5, expected 3.``"""
        if self.kind == "dtype":
            return f"{self.have} is not {self.want}."
        if self.kind == "rank":
            least = "at least " if self.at_least else ""
            plural = "s" * (self.want != 1)
            return f"it needs {least}{self.want} dimension{plural} ({self.dims}), got {self.have} {self.got_dims}.".replace(
                " .", "."
            )
        if self.kind == "size":
            return f"dimension {self.axis} is {self.have}, expected {self.want}."
        if self.kind == "binding" and self.axis is None:  # a variadic binding: several dimensions
            return f"its dimensions *{self.name} are {self.have}, but {self.name} is {self.earlier} elsewhere."
        if self.kind == "binding":
            return f"dimension {self.axis} is {self.have}, but {self.name} is {self.earlier} elsewhere."
        if self.kind == "type":
            return f"it is {_a(self.have)} {self.have}{self.hint}, not {_a(self.want)} {self.want}."
        return "the structure differs (keys or parts)."

    def clause(self) -> str:
        """The problem as a clause inside a sentence: ``rank 3 where 4 dimensions are expected``."""
        if self.kind == "rank":
            least = "at least " if self.at_least else ""
            return f"rank {self.have} where {least}{self.want} dimensions are expected"
        if self.kind == "dtype":
            return f"dtype {self.have}, expected {self.want}"
        return self.reason().rstrip(".")


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Why a value does not fit a spec: the leaf, expected and got as text, and the problems."""

    expected: str
    got: str
    problems: tuple[Problem, ...]
    path: str = ""
    bindings: tuple[tuple[str, Any], ...] = ()

    @property
    def first(self) -> Problem:
        return self.problems[0]

    def reasons(self) -> list[str]:
        """One sentence per problem."""
        return [p.reason() for p in self.problems]

    def lines(self, *, indent: str = "  ") -> list[str]:
        """``expected ... / got ... / reasons``, as the messages print them."""
        at = f" at {self.path!r}" if self.path else ""
        return [
            f"{indent}expected  {self.expected}{at}",
            f"{indent}got       {self.got}",
            *(indent + r for r in self.reasons()),
        ]


# -- one array against one annotation --------------------------------------------------------


def compare(
    annotation: Any,
    value: Any,
    bindings: Bindings | None = None,
    *,
    self_: Any = None,
    array_type: bool = False,
    path: str = "",
) -> Mismatch | None:
    """Why ``value`` (an array, tracer or ``ShapeDtypeStruct``) does not fit ``annotation``.

    Args:
        annotation: a jaxtyping annotation; ``{self.x}`` sizes are filled in from ``self_``.
        value: what arrived.
        bindings: the dimension bindings shared with earlier checks; updated in place.
        array_type: also require the annotation's array type (dataset elements).
        path: the leaf's path in its tree, for the message.

    Returns:
        ``None`` if it fits, else the ``Mismatch``.
    """
    bindings = {} if bindings is None else bindings
    spec = parse(annotation, self_=self_)
    expected = format_annotation(annotation, array="Array" if not array_type else None, self_=self_)
    if array_type and not isinstance(value, annotation.array_type):
        hint = " (a NumPy scalar: return np.asarray(x))" if isinstance(value, np.generic) else ""
        want = getattr(annotation.array_type, "__name__", str(annotation.array_type))
        got = _describe(value)
        return Mismatch(
            expected, got, (Problem("type", want, type(value).__name__, hint=hint),), path
        )
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is None or dtype is None:
        got = f"{type(value).__name__} (not an array)"
        return Mismatch(expected, got, (Problem("type", "array", type(value).__name__),), path)
    problems = _problems(
        spec,
        frozenset({np.dtype(dtype).name}),
        np.dtype(dtype).name,
        tuple(shape),
        format_shape(tuple(shape)),
        bindings,
    )
    if not problems:
        return None
    got = _describe(value) if array_type else format_value(value)
    return Mismatch(expected, got, tuple(problems), path, _frozen(bindings))


def compare_specs(
    actual: Any, expected: Any, bindings: Bindings | None = None, *, path: str = ""
) -> Mismatch | None:
    """Why values of spec ``actual`` cannot be taken where ``expected`` is declared.

    Dtype and dimensions only (any array type). A dimension that cannot be decided (a name
    against a size) passes; ``bindings`` collects ``expected``'s names bound to ``actual``'s.
    """
    bindings = {} if bindings is None else bindings
    a, e = parse(actual), parse(expected)
    shown = next(iter(a.dtypes)) if a.dtypes is not None and len(a.dtypes) == 1 else a.category
    shape: tuple[Any, ...] | None = None
    if a.variadic is None:
        shape = tuple(_static_size(d) for d in a.dims)
    problems = _problems(e, a.dtypes, shown, shape, f"({a.dim_str})", bindings, static=True)
    if not problems:
        return None
    return Mismatch(
        format_annotation(expected),
        format_annotation(actual),
        tuple(problems),
        path,
        _frozen(bindings),
    )


def _static_size(d: Dim) -> Any:
    if d.kind == "fixed":
        return d.size
    if d.kind == "named":
        return d.name
    return None


def _problems(
    spec: ArraySpec,
    got_dtypes: frozenset[str] | None,
    shown: str,
    shape: tuple[Any, ...] | None,
    got_dims: str,
    bindings: Bindings,
    *,
    static: bool = False,
) -> list[Problem]:
    problems: list[Problem] = []
    want = spec.dtypes
    if want is not None and got_dtypes is not None and not got_dtypes <= want:
        problems.append(Problem("dtype", dtype_words(spec.category), shown))
    if shape is None:  # the actual rank is unknown: nothing more to decide
        return problems
    var = spec.variadic
    fixed = [d for d in spec.dims if d.kind != "variadic"]
    rank = len(shape)
    if rank < len(fixed) or (var is None and rank != len(fixed)):
        problems.append(
            Problem(
                "rank",
                len(fixed),
                rank,
                at_least=var is not None,
                dims=" ".join(d.token for d in fixed),
                got_dims=got_dims,
            )
        )
        return problems
    tail = 0 if var is None else len(spec.dims) - var - 1
    for i, d in enumerate(spec.dims):
        if var is not None and i == var:
            problem = (
                _bind(bindings, d.name, tuple(shape[var : rank - tail]), None, static)
                if d.name
                else None
            )
        else:
            axis = i if var is None or i < var else rank - (len(spec.dims) - i)
            problem = _check_dim(d, shape[axis], axis, bindings, static)
        if problem:
            problems.append(problem)
            break
    return problems


def _check_dim(d: Dim, have: Any, axis: int, bindings: Bindings, static: bool) -> Problem | None:
    if have is None or d.kind == "any":
        return None
    if d.broadcastable and _is_int(have) and int(have) == 1:
        return None
    if d.kind == "fixed":
        if isinstance(have, str):  # a name on the actual side: cannot be decided statically
            return None
        if _is_int(have):
            return None if int(have) == d.size else Problem("size", d.size, int(have), axis)
        return None if str(have) == str(d.size) else Problem("size", d.size, have, axis)
    if d.kind == "named":
        return _bind(bindings, d.name, have, axis, static)
    if d.kind == "symbolic":
        want = _evaluate(d.name, bindings)
        if want is not None and _is_int(have) and int(have) != want:
            return Problem("size", want, int(have), axis)
    return None


def _bind(
    bindings: Bindings, name: str, have: Any, axis: int | None, static: bool
) -> Problem | None:
    if name not in bindings:
        bindings[name] = have
        return None
    old = bindings[name]
    if static and not (_is_int(old) and _is_int(have)):
        return None  # a name against a size: undecidable before the data arrives
    if _same(old, have):
        return None
    shown = format_shape(old) if isinstance(old, tuple) else old
    return Problem(
        "binding",
        have=format_shape(have) if isinstance(have, tuple) else have,
        axis=axis,
        name=name,
        earlier=shown,
    )


def _evaluate(expr: str, bindings: Mapping[str, Any]) -> int | None:
    names = {k: int(v) for k, v in bindings.items() if _is_int(v)}
    try:
        value = eval(expr, {"__builtins__": {}}, names)  # an arithmetic expression over sizes
    except Exception:
        return None
    return int(value) if _is_int(value) else None


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # symbolic dimensions that cannot be compared
        return str(a) == str(b)


def _frozen(bindings: Bindings) -> tuple[tuple[str, Any], ...]:
    return tuple(bindings.items())


def _a(word: object) -> str:
    return "an" if str(word)[:1] in "aeiou" else "a"


def format_bindings(bindings: tuple[tuple[str, Any], ...] | Mapping[str, Any]) -> str:
    """``batch=4, rest=(1,)``."""
    items = bindings.items() if isinstance(bindings, Mapping) else bindings
    return ", ".join(f"{k}={v}" for k, v in items)


def _describe(x: Any) -> str:
    from ._parse import annotation_of

    if isinstance(x, np.ndarray | jax.Array):
        return format_annotation(annotation_of(x))
    return describe_object(x)


# -- trees ----------------------------------------------------------------------------------


def leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    """``[("image", ann), ("label", ann)]``; a bare annotation has the path ``""``."""
    flat, _ = jtu.tree_flatten_with_path(tree)
    return [(jtu.keystr(path, simple=True, separator="/"), leaf) for path, leaf in flat]


def compare_tree(spec_tree: Any, value: Any, *, describe_tree: Any) -> Mismatch | None:
    """The first leaf of ``value`` that breaks ``spec_tree`` (structure, array type, dtype, dims)."""
    s_leaves, s_def = jtu.tree_flatten(spec_tree)
    v_leaves, v_def = jtu.tree_flatten(value)
    if s_def != v_def:  # type: ignore[operator]
        return Mismatch(describe_tree(spec_tree), describe_tree(value), (Problem("structure"),))
    bindings: dict[str, Any] = {}
    paths = [p for p, _ in leaves_with_paths(spec_tree)]
    for path, ann, leaf in zip(paths, s_leaves, v_leaves, strict=True):
        m = compare(ann, leaf, bindings, array_type=True, path=path)
        if m:
            return m
    return None


def compare_spec_trees(actual: Any, expected: Any, *, describe_tree: Any) -> list[Mismatch]:
    """Every leaf of spec tree ``actual`` that cannot be taken where ``expected`` is declared."""
    _a_leaves, a_def = jtu.tree_flatten(actual)
    e_leaves, e_def = jtu.tree_flatten(expected)
    if a_def != e_def:  # type: ignore[operator]
        return [Mismatch(describe_tree(expected), describe_tree(actual), (Problem("structure"),))]
    bindings: dict[str, Any] = {}
    out = []
    for (path, a), e in zip(leaves_with_paths(actual), e_leaves, strict=True):
        m = compare_specs(a, e, bindings, path=path)
        if m:
            out.append(m)
    return out


__all__ = [
    "Mismatch",
    "Problem",
    "compare",
    "compare_spec_trees",
    "compare_specs",
    "compare_tree",
    "format_bindings",
    "is_annotation",
    "leaves_with_paths",
]
