"""Transfer learning helpers: copy weights between models by layer path, and label parameters
for partitioned optimizers.

A variable's path is where it sits in the module tree, ``/``-joined: ``layers/4/kernel`` is
the kernel of layer 4 of a ``Model``, ``layers/5/layers/0/block/layers/0/kernel`` one inside a
nested stage. A model ``ss.build(net[:-1] >> L.Linear(n), ...)`` keeps every path of
``ss.build(net, ...)`` but the head's, so ``copy_weights`` carries a backbone over, and
``param_labels`` gives ``optax.multi_transform`` one label per parameter, by path, in the
form ``ss.fit`` passes parameters to the optimizer.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .._errors import ShapesafeError
from ._freeze import _matcher

_SHOWN = 8


def _variables(model: nnx.Module) -> dict[str, nnx.Variable]:  # type: ignore[type-arg]
    """Every array variable of ``model`` (parameters, frozen parameters, batch statistics) by path."""
    out: dict[str, nnx.Variable] = {}  # type: ignore[type-arg]
    for path, var in nnx.to_flat_state(nnx.state(model)):
        if isinstance(var, nnx.RngState):
            continue  # RNG keys and counters belong to the model they were made for
        out["/".join(str(k) for k in path)] = var
    return out


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def copy_weights(
    src: nnx.Module, dst: nnx.Module, *, skip: Any = (), strict: bool = False
) -> list[str]:
    """Copy every variable of ``src`` into ``dst`` whose path and shape match; return their paths.

    Parameters, frozen parameters and BatchNorm statistics are copied (as values: a parameter
    frozen in ``dst`` stays frozen); RNG state is not.

    Args:
        src: the model to copy from (e.g. a pretrained backbone with its old head).
        dst: the model to copy into (changed in place).
        skip: what to leave alone in ``dst``, as ``ss.freeze`` selects it: a layer name or
            index of a ``Model``, a path prefix, a predicate ``(path, variable) -> bool``, or a
            list of these.
        strict: raise unless every variable of ``dst`` (but those skipped) was copied and
            every variable of ``src`` was used.

    Returns:
        The paths copied, sorted.

    Raises:
        ShapesafeError: with ``strict``, naming the variables missing from ``src``, those whose
            shapes differ and those of ``src`` left over (nothing is copied then); without it,
            when nothing at all matches.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> net = L.Linear(8) >> L.ReLU() >> L.Linear(10).named("fc")
        >>> old = ss.build(net, Float32[Array, "batch 4"], seed=0)
        >>> new = ss.build(net[:-1] >> L.Linear(2).named("fc"), Float32[Array, "batch 4"], seed=1)
        >>> ss.copy_weights(old, new)  # the head's shapes differ: left as built
        ['layers/0/bias', 'layers/0/kernel']
        >>> ss.copy_weights(old, new, strict=True)
        Traceback (most recent call last):
        ...
        shapesafe.ShapesafeError: copy_weights: 2 variables differ in shape: layers/2/bias (src (10,), dst (2,)), layers/2/kernel (src (8, 10), dst (8, 2)). Pass skip=... (e.g. the new head's layer name) to leave them out.
    """
    skipped = _matcher(dst, skip) if skip != () else (lambda path, var: False)
    theirs, ours = _variables(src), _variables(dst)
    pairs: list[tuple[str, Any, Any]] = []
    missing: list[str] = []
    differ: list[str] = []
    for path, var in ours.items():
        if skipped(path, var):
            continue
        if path not in theirs:
            missing.append(path)
            continue
        value, want = theirs[path].get_value(), var.get_value()
        if jnp.shape(value) != jnp.shape(want) or jnp.result_type(value) != jnp.result_type(want):
            differ.append(f"{path} (src {_shape(value)}, dst {_shape(want)})")
            continue
        pairs.append((path, var, value))
    if strict:
        unused = sorted(p for p in theirs if p not in ours)
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} variables of dst are not in src: {_listing(sorted(missing))}"
            )
        if differ:
            problems.append(f"{len(differ)} variables differ in shape: {_listing(sorted(differ))}")
        if unused:
            problems.append(
                f"{len(unused)} variables of src have no place in dst: {_listing(unused)}"
            )
        if problems:
            raise ShapesafeError(
                "copy_weights: "
                + "; ".join(problems)
                + ". Pass skip=... (e.g. the new head's layer name) to leave them out."
            )
    if not pairs:
        raise ShapesafeError(
            f"copy_weights: no variable of dst has a counterpart of the same path and shape in src "
            f"(dst has {_listing(sorted(ours))}; src has {_listing(sorted(theirs))})."
        )
    for _, var, value in pairs:
        var.set_value(jnp.array(value, copy=True))
    return sorted(p for p, _, _ in pairs)


def _shape(value: Any) -> str:
    shape = tuple(jnp.shape(value))
    dtype = jnp.result_type(value)
    return str(shape) if dtype == jnp.float32 else f"{shape} {dtype}"


def _path(keys: tuple[Any, ...]) -> str:
    parts = []
    for k in keys:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        # GetAttrKey("value") is the Variable's own array: not part of the module path
    return "/".join(parts)


def param_labels(
    model: nnx.Module,
    labels: Mapping[Any, str] | Callable[[str], str],
    *,
    default: str | None = None,
) -> Callable[[Any], Any]:
    """Label every trainable parameter by its layer, for ``optax.multi_transform``.

    ``ss.fit`` hands the optimizer the model's trainable parameters as one tree (an
    ``nnx.State``); the function returned maps that tree to a tree of the same structure
    holding each parameter's label, which is what ``optax.multi_transform(transforms,
    param_labels)`` takes. Frozen parameters are not in the tree and need no label.

    Args:
        model: the model to be trained (used to resolve layer names and to check the labels).
        labels: a mapping from a layer name or index of a ``Model``, or a path prefix
            (``"layers/9"``), to a label, the first match winning; or a function of the path
            (``"layers/9/kernel"``) returning the label.
        default: the label of parameters that no key of ``labels`` matches; without it, such
            a parameter is an error.

    Returns:
        ``fn(params) -> labels tree``, for ``optax.multi_transform(..., fn)``.

    Raises:
        ValueError: a parameter without a label (and no ``default``), or a key that matches no
            parameter.

    Example:
        >>> import optax, shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(8) >> L.ReLU() >> L.Linear(2).named("fc"), Float32[Array, "batch 4"])
        >>> labels = ss.param_labels(model, {"fc": "head"}, default="backbone")
        >>> optimizer = optax.multi_transform({"head": optax.sgd(1e-2), "backbone": optax.sgd(1e-3)}, labels)
        >>> sorted(set(jax.tree.leaves(labels(nnx.state(model, nnx.Param)))))
        ['backbone', 'head']
    """
    fn: Callable[[str], str]
    if not isinstance(labels, Mapping):
        fn = labels
    else:
        rules = [(_matcher(model, key), label, key) for key, label in labels.items()]

        def by_layer(path: str) -> str:
            for match, label, _ in rules:
                if match(path, None):
                    return label
            if default is None:
                raise ValueError(
                    f"param_labels: no label for parameter {path!r}; add its layer to the labels "
                    f"or pass default=..."
                )
            return default

        fn = by_layer
        paths = [path for path, var in _variables(model).items() if isinstance(var, nnx.Param)]
        unused = [key for match, _, key in rules if not any(match(p, None) for p in paths)]
        if unused:
            raise ValueError(
                f"param_labels: {unused!r} match no trainable parameter of the model "
                f"(paths look like {paths[0]!r})."
            )
    for path, var in _variables(model).items():  # fail here, not inside the optimizer
        if isinstance(var, nnx.Param):
            fn(path)

    def label_tree(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(lambda keys, _: fn(_path(keys)), params)

    return label_tree
