"""How ``map``/``filter``/``flat_map`` call a user function on an element, and what spec results.

For dict elements the function's parameters name the keys it takes; for tuple elements the
parts are its positional arguments; otherwise it takes the element. Its jaxtyping annotations
are compared with the element spec when the stage is built, so a wrong dtype, rank, size or
key fails then, naming the stage. A parameter named ``rng`` gets a seeded NumPy generator.
"""

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._errors import ShapeError
from .._specs import compare_specs, parse
from ._element_spec import (
    ElementSpec,
    format_annotation,
    is_annotation,
    make,
    resolve,
    tree_from_annotation,
)

RNG = "rng"


def fn_name(fn: Callable[..., Any]) -> str:
    inner = fn.func if isinstance(fn, functools.partial) else fn
    return getattr(inner, "__name__", type(inner).__name__)


class Call:
    """A user function bound to an element spec: how to call it, and its output spec."""

    def __init__(self, fn: Callable[..., Any], spec: ElementSpec, stage: str):
        self.fn, self.stage = fn, stage
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None
        self.params = (
            []
            if sig is None
            else [
                p
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name != RNG
                and (p.default is p.empty or p.name in spec.keys())
            ]
        )
        self.wants_rng = sig is not None and RNG in sig.parameters
        self.returns = None if sig is None else sig.return_annotation
        bound = dict(fn.keywords) if isinstance(fn, functools.partial) else {}
        if sig is not None:
            bound.update(
                {p.name: p.default for p in sig.parameters.values() if p.default is not p.empty}
            )
        self.arguments = bound
        self.bindings: dict[str, Any] = {}
        self.in_dtypes: list[Any] = []
        tree = spec.tree
        required = [p for p in self.params if p.default is p.empty and p.name not in bound]
        if isinstance(tree, Mapping) and self._keyed(required, tree):
            self.mode = "keyed"
            self.keys = [p.name for p in required]
            for p in required:
                self._check_param(p, tree[p.name], f"the elements' {p.name!r}")
        elif isinstance(tree, tuple) and len(required) == len(tree) > 1:
            self.mode = "tuple"
            self.keys = []
            for p, part in zip(required, tree, strict=True):
                self._check_param(p, part, f"part {required.index(p)} of the elements")
        else:
            self.mode = "whole"
            self.keys = []
            if required:
                self._check_param(required[0], tree, "the elements")
        # how to call fn on an element, as a small picklable object (for worker processes)
        self.invoke = Invoke(fn, self.mode, tuple(self.keys), self.wants_rng)

    def _keyed(self, required: list[inspect.Parameter], tree: Mapping[str, Any]) -> bool:
        if not required:
            return False
        unknown = [p.name for p in required if p.name not in tree]
        if not unknown:
            return True
        annotated = [p.name for p in required if tree_from_annotation(p.annotation) is not None]
        if len(required) == 1 and not annotated:
            return False  # one unannotated parameter: the whole element
        if len(required) == 1 and typing_dict(required[0].annotation):
            return False
        raise ShapeError(
            f"{self.stage}: parameter {unknown[0]!r} is not a key of the elements; their keys are "
            f"{sorted(tree)}. Name the parameter after the key it takes (def f(image: ...)), or "
            "take the whole element with one parameter annotated as a TypedDict."
        )

    def _check_param(self, p: inspect.Parameter, got: Any, what: str) -> None:
        want = tree_from_annotation(p.annotation)
        if want is None:
            return
        if is_annotation(want) and is_annotation(got):
            if isinstance(got.dtypes, tuple | list) and len(got.dtypes) == 1:
                self.in_dtypes.append(got.dtype)
            m = compare_specs(got, want, self.bindings)
            reasons = m.reasons() if m else []
            if reasons:
                raise ShapeError(
                    f"{self.stage}: parameter {p.name!r} cannot take {what}.\n"
                    f"  expected  {format_annotation(want)}\n  got       {format_annotation(got)}\n"
                    + "\n".join(f"  {r}" for r in reasons)
                    + _fix(want, got)
                )
        elif is_annotation(want) and not is_annotation(got):  # one array, but a tuple or dict
            parts = (
                f"a dict with keys {sorted(got)}"
                if isinstance(got, Mapping)
                else f"a tuple of {len(got)} parts"
            )
            raise ShapeError(
                f"{self.stage}: parameter {p.name!r} takes one array ({format_annotation(want)}), "
                f"but {what} are {parts}.\n  Take each part as its own parameter "
                f"(def {fn_name(self.fn)}(x, mask): ...), or name the key it takes."
            )
        elif isinstance(want, Mapping) and isinstance(got, Mapping):
            missing = sorted(set(want) - set(got))
            if missing:
                raise ShapeError(
                    f"{self.stage}: parameter {p.name!r} expects the key {missing[0]!r}, "
                    f"which the elements do not have; their keys are {sorted(got)}."
                )
            for k in want:
                self._check_param(
                    inspect.Parameter(k, p.kind, annotation=want[k]), got[k], f"the elements' {k!r}"
                )

    # -- output spec ----------------------------------------------------------------------
    def out_tree(self, spec: ElementSpec) -> Any | None:
        """The output spec tree from the return annotation, or ``None`` if it says nothing."""
        ret = tree_from_annotation(self.returns)
        if ret is None:
            return None
        ret = _resolve_tree(ret, self.bindings, self.arguments)
        if is_annotation(ret) and not isinstance(ret.dtypes, tuple | list) and self.in_dtypes:
            if len(set(self.in_dtypes)) == 1:  # Shaped in, Shaped out: the dtype is kept
                ret = make(self.in_dtypes[0], ret.array_type, ret.dim_str)
        if self.mode == "keyed":
            tree = dict(spec.tree)
            if len(self.keys) == 1 and is_annotation(ret):
                tree[self.keys[0]] = ret
                return tree
            if isinstance(ret, Mapping):
                for k in self.keys:
                    tree.pop(k)
                tree.update(ret)
                return tree
            return None
        return ret

    # -- calling ---------------------------------------------------------------------------
    def raw(self, value: Any, rng_seed: tuple[int, ...]) -> Any:
        """What ``fn`` returns for ``value``."""
        return self.invoke.raw(value, rng_seed)

    def __call__(self, value: Any, rng_seed: tuple[int, ...]) -> Any:
        """The new element: ``fn``'s result merged into ``value`` for keyed calls."""
        return self.invoke(value, rng_seed)


class Invoke:
    """``fn`` bound to how elements are passed to it (``keyed``, ``tuple`` or ``whole``)."""

    def __init__(self, fn: Callable[..., Any], mode: str, keys: tuple[str, ...], wants_rng: bool):
        self.fn, self.mode, self.keys, self.wants_rng = fn, mode, keys, wants_rng

    def raw(self, value: Any, rng_seed: tuple[int, ...]) -> Any:
        extra = {RNG: np.random.default_rng(rng_seed)} if self.wants_rng else {}
        if self.mode == "keyed":
            return self.fn(**{k: value[k] for k in self.keys}, **extra)
        if self.mode == "tuple":
            return self.fn(*value, **extra)
        return self.fn(value, **extra)

    def __call__(self, value: Any, rng_seed: tuple[int, ...]) -> Any:
        out = self.raw(value, rng_seed)
        if self.mode == "keyed":
            if len(self.keys) == 1 and not isinstance(out, Mapping):
                return {**value, self.keys[0]: out}
            rest = {k: v for k, v in value.items() if k not in self.keys}
            return {**rest, **out}
        return out


def typing_dict(annotation: Any) -> bool:
    import typing

    return typing.is_typeddict(annotation)


def _resolve_tree(tree: Any, bindings: dict[str, Any], arguments: dict[str, Any]) -> Any:
    if is_annotation(tree):
        return resolve(tree, bindings, arguments)
    if isinstance(tree, Mapping):
        return {k: _resolve_tree(v, bindings, arguments) for k, v in tree.items()}
    return tuple(_resolve_tree(v, bindings, arguments) for v in tree)


def _fix(want: Any, got: Any) -> str:
    w, g = want.dtype.__name__, got.dtype.__name__
    if w.startswith("Float") and g.startswith(("UInt", "Int")):
        return (
            "\n  Map a conversion first, e.g. .map(normalise) (uint8 pixels to float32 in [0, 1]), "
            "or change the parameter's annotation."
        )
    if len(parse(want).dims) + 1 == len(parse(got).dims) and "batch" in got.dim_str.split()[:1]:
        return "\n  The elements are already batched: map before .batch(), or annotate a batch dimension."
    return ""
