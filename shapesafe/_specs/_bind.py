"""Dimension names bound across annotations: what one annotation's names mean for another.

A loss says ``outputs: Float[Array, "batch classes"]``, ``targets: Integer[Array, "batch"]``;
given the model's output ``Float32[Array, "batch 10"]``, binding the first pattern to that
output (``{"batch": ["batch"], "classes": ["10"]}``) and substituting into the second gives
the targets' spec, ``Integer[Array, "batch"]``, before any array exists. Dimensions are
tokens as ``dim_str`` writes them; a variadic ``*rest`` binds to a run of them.
"""

import re
from typing import Any

import numpy as np
from jaxtyping import Array

from ._format import dim_string, format_short, format_spec
from ._parse import is_annotation, parse

_VARIADIC = re.compile(r"^\*(\w+)$")


def tokens(spec: Any) -> tuple[tuple[str, ...], list[str]] | None:
    """``(dtype names, dimension tokens)`` of an annotation or of anything with shape/dtype."""
    if is_annotation(spec):
        return tuple(spec.dtypes), [d.token for d in parse(spec).dims]
    shape, dtype = getattr(spec, "shape", None), getattr(spec, "dtype", None)
    if shape is None or dtype is None:
        return None
    return (np.dtype(dtype).name,), dim_string(tuple(shape)).split()


def show(spec: Any) -> str:
    """``Int32[batch]``: the short form of an annotation or of anything with shape/dtype."""
    if is_annotation(spec):
        return format_short(spec)
    return format_spec(tuple(spec.shape), spec.dtype)


def bind(pattern: list[str], dims: list[str]) -> dict[str, list[str]] | None:
    """Bind the names of ``pattern`` (dimension tokens) to ``dims``; ``None`` if they misfit
    (another rank, a fixed size that differs, one name bound to two sizes)."""
    variadic = [i for i, t in enumerate(pattern) if _VARIADIC.match(t) or t == "..."]
    n_fixed = len(pattern) - len(variadic)
    if len(variadic) > 1 or len(dims) < n_fixed or (not variadic and len(dims) != n_fixed):
        return None
    cut = variadic[0] if variadic else len(pattern)
    tail = len(pattern) - cut - (1 if variadic else 0)
    pairs = list(zip(pattern[:cut], dims[:cut], strict=True))
    pairs += list(zip(pattern[len(pattern) - tail :], dims[len(dims) - tail :], strict=True))
    binding: dict[str, list[str]] = {}
    for token, dim in pairs:
        name = token.lstrip("#")
        if token.isdigit() and dim != token:
            return None
        if name.isidentifier() and name != "_" and binding.setdefault(name, [dim]) != [dim]:
            return None
    if variadic:
        m = _VARIADIC.match(pattern[cut])
        if m:
            binding[m.group(1)] = dims[cut : len(dims) - tail]
    return binding


def substitute(annotation: Any, binding: dict[str, list[str]]) -> Any:
    """``annotation`` with the bound names filled in (``Integer[Array, "batch"]``)."""
    rendered: list[str] = []
    for token in annotation.dim_str.split():
        m = _VARIADIC.match(token)
        name = m.group(1) if m else token.lstrip("#")
        rendered += binding.get(name, [token])
    return annotation.dtype[Array, " ".join(rendered)]


def token_fits(want: str, got: str) -> bool:
    """A dimension token ``got`` satisfies ``want`` (the same, ``_``, or a free symbol)."""
    return want == got or want == "_" or not (want.isdigit() or want.isidentifier())
