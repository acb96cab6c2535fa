"""The output spec of an unannotated ``map`` function, inferred where it is not declared.

``ds.map(lambda e: {...})`` declares nothing, so the spec is inferred, in this order:

1. abstractly, with ``jax.eval_shape`` on the input spec (no data read), where the function
   traces (it uses array methods, operators or ``jnp``) and every input size is fixed. It is
   traced with 64-bit types on, so the dtypes follow NumPy's rules for the host arrays the
   pipeline holds (``uint8 / 255.0`` is float64, ``int32 * 2`` stays int32);
2. else on the first element: the function is called on it and its result's arrays give the
   spec (a NumPy scalar counts as the 0-d array it stands for).

Either way every element is then checked against the spec, as for an annotated function.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.tree_util as jtu
import numpy as np

from .._specs import annotation_for, annotation_of, is_annotation, parse


def abstract_element(tree: Any) -> Any | None:
    """``jax.ShapeDtypeStruct`` leaves for a spec tree, or ``None`` where a size is not fixed."""
    leaves, treedef = jtu.tree_flatten(tree, is_leaf=is_annotation)
    out = []
    for ann in leaves:
        if not is_annotation(ann):
            return None
        spec = parse(ann)
        if spec.dtypes is None or len(spec.dtypes) != 1:
            return None
        if any(d.kind != "fixed" for d in spec.dims):
            return None
        shape = tuple(int(d.size or 0) for d in spec.dims)
        out.append(jax.ShapeDtypeStruct(shape, np.dtype(next(iter(spec.dtypes)))))
    return jtu.tree_unflatten(treedef, out)


def traced_spec(fn: Callable[[Any], Any], tree: Any) -> Any | None:
    """The spec tree of ``fn``'s output on elements of spec ``tree``, by ``jax.eval_shape``;
    ``None`` where the input has unfixed sizes or ``fn`` does not trace."""
    element = abstract_element(tree)
    if element is None:
        return None
    try:
        with jax.enable_x64(True):
            out = jax.eval_shape(fn, element)
    except Exception:  # NumPy-only code, Python control flow on values, ...: not traceable
        return None
    leaves = jtu.tree_leaves(out)
    if not leaves or not all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        return None
    return jtu.tree_map(
        lambda x: annotation_for(x.dtype, np.ndarray, " ".join(str(d) for d in x.shape)), out
    )


def value_spec(value: Any) -> Any | None:
    """The spec tree of one concrete element; ``None`` if a leaf is not an array."""
    leaves = jtu.tree_leaves(value)
    if not leaves:
        return None
    converted = jtu.tree_map(lambda x: np.asarray(x) if isinstance(x, np.generic) else x, value)
    if not all(isinstance(x, np.ndarray) for x in jtu.tree_leaves(converted)):
        return None
    return jtu.tree_map(annotation_of, converted)
