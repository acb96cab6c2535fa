"""Freezing for transfer learning: frozen parameters get no gradient and no optimizer state.

A frozen parameter is the same array held in a ``Frozen`` variable instead of an
``nnx.Param``; training splits the model on ``nnx.Param``, so frozen arrays are neither
differentiated nor given optimizer state. A layer with a ``frozen`` attribute
(``BatchNorm``) is told, so it keeps using its running statistics even in train mode.
"""

from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx


class Frozen(nnx.Variable):  # type: ignore[type-arg]
    """A parameter that training leaves alone (see ``freeze``)."""


Which = str | int | Callable[[str, nnx.Variable], bool] | Sequence[str | int]  # type: ignore[type-arg]


def _matcher(model: nnx.Module, which: Any) -> Callable[[str, Any], bool]:
    if callable(which) and not isinstance(which, str):
        return lambda path, var: bool(which(path, var))
    items = [which] if isinstance(which, str | int) else list(which)
    prefixes: list[str] = []
    names = getattr(model, "names", ())
    for item in items:
        if isinstance(item, int):
            n = len(model) if hasattr(model, "__len__") else 0  # type: ignore[arg-type]
            if not -n <= item < n:
                raise IndexError(
                    f"freeze: layer index {item} is out of range for a model of {n} layers."
                )
            prefixes.append(f"layers/{item % n}")
        elif isinstance(item, str) and item in names:
            prefixes.append(f"layers/{names.index(item)}")
        elif isinstance(item, str):
            prefixes.append(item.strip("/"))
        else:
            raise TypeError(
                f"freeze: cannot select layers with {item!r}; pass a path such as 'layers/0', a layer "
                "index, a layer name, a predicate (path, variable) -> bool, or a list of these."
            )

    def match(path: str, var: Any) -> bool:
        return any(path == p or path.startswith(p + "/") for p in prefixes)

    return match


def _swap(model: nnx.Module, which: Any, src: type, dst: type, verb: str) -> list[str]:
    match = _matcher(model, which)
    changed: list[str] = []
    modules: dict[tuple[Any, ...], Any] = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module):
            modules[path] = node
    for path, node in list(nnx.iter_graph(model)):
        if type(node) is src and isinstance(node, nnx.Variable):
            text = "/".join(map(str, path))
            if match(text, node):
                setattr(modules[path[:-1]], str(path[-1]), dst(node.get_value()))
                changed.append(text)
    if not changed:
        raise ValueError(
            f"{verb}: {which!r} matches no {'trainable' if src is nnx.Param else 'frozen'} parameter. "
            f"Parameter paths look like 'layers/0/kernel'."
        )
    frozen_layers = {"/".join(map(str, p)) for p in modules if p}
    for path, module in modules.items():
        text = "/".join(map(str, path))
        if (
            text in frozen_layers
            and hasattr(module, "frozen")
            and any(c.startswith(text + "/") for c in changed)
        ):
            module.frozen = dst is Frozen
    return changed


def freeze(model: nnx.Module, which: Any) -> list[str]:
    """Freeze the parameters selected by ``which``; return their paths.

    Args:
        model: a built model (changed in place).
        which: a path prefix (``"layers/0"``), a layer index or name of a ``Model``, a
            predicate ``(path, variable) -> bool``, or a list of these.

    Returns:
        The paths of the parameters frozen (``nnx.Param`` -> ``ss.Frozen``).

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(8) >> L.ReLU() >> L.Linear(2), Float32[Array, "batch 4"])
        >>> ss.freeze(model, 0)
        ['layers/0/bias', 'layers/0/kernel']
        >>> ss.summary(model).trainable_params
        18
    """
    return _swap(model, which, nnx.Param, Frozen, "freeze")


def unfreeze(model: nnx.Module, which: Any = "") -> list[str]:
    """Make frozen parameters trainable again (all of them by default); return their paths.

    Args:
        model: a built model, changed in place.
        which: the parameters to unfreeze, chosen as ``freeze`` chooses them (a path prefix, a
            layer index or name, a predicate ``(path, variable) -> bool``, or a list of these);
            ``""`` (the default) means all.

    Returns:
        The paths of the parameters made trainable.
    """
    return _swap(
        model, which if which != "" else (lambda p, v: True), Frozen, nnx.Param, "unfreeze"
    )
