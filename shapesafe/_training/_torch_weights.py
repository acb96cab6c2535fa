"""``load_state_dict``: PyTorch weights (a ``state_dict``, a ``.pt`` or ``.safetensors`` file)
into a built model.

A PyTorch ``state_dict`` names tensors ``<module>.<parameter>`` (``layer1.0.conv1.weight``).
The caller maps each PyTorch module name to a layer of the built model, written as the path
``ss.summary`` shows with ``.`` between steps, where a layer name may replace an index
(``"layer1.0.block.conv1"``); which tensors a layer takes, and how their layouts differ, is
known per layer type:

- ``Conv1D``, ``Conv2D``: ``weight -> kernel``, from PyTorch's ``(out, in, *kernel)`` to
  ``(*kernel, in, out)``; ``bias -> bias``.
- ``Linear``: ``weight -> kernel``, from ``(out, in)`` to ``(in, out)``; ``bias -> bias``.
- ``BatchNorm``: ``weight -> scale``, ``bias -> bias``, ``running_mean -> mean``,
  ``running_var -> var``.
- ``LayerNorm``: ``weight -> scale``, ``bias -> bias``. ``Embedding``: ``weight -> table``.

BatchNorm's ``num_batches_tracked`` counter has no counterpart and is ignored. Everything is
checked before anything is written: keys the model expects but the ``state_dict`` lacks,
keys it has that the mapping does not place, and tensors whose shapes differ are reported
together in one error, and the model is left unchanged.

One layout difference is not a tensor's: a ``Linear`` after ``Flatten`` of a convolution's
output sees the features in channels-last order (``h, w, c``), PyTorch's in channels-first
order (``c, h, w``), so such a weight needs its input axis permuted as well (ResNets pool
globally before their head and need nothing).

Files. ``.safetensors`` files are read with ``safetensors.numpy`` (no PyTorch needed);
``.pt``/``.pth``/``.bin`` files with ``torch.load(path, weights_only=True)``, which never
runs code from the file, where PyTorch is installed.
"""

import os
import pathlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._errors import ShapesafeError
from ..layers import Model
from ..layers._combinators import BranchesLayer
from ..layers._conv import ConvLayer
from ..layers._embedding import EmbeddingLayer
from ..layers._linear import LinearLayer
from ..layers._norm import BatchNormLayer, LayerNormLayer


def _from_torch_kernel(w: np.ndarray) -> np.ndarray:
    """PyTorch's ``(out, in, *kernel)`` weight as shapesafe's ``(*kernel, in, out)`` kernel."""
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def _to_torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch weight shape that ``_from_torch_kernel`` turns into ``shape``."""
    return (shape[-1], shape[-2], *shape[:-2])


_KERNEL = (_from_torch_kernel, _to_torch_shape)
# per built layer type: (PyTorch tensor name, our attribute, layout conversion or None)
_TENSORS: tuple[tuple[type, tuple[tuple[str, str, Any], ...]], ...] = (
    (ConvLayer, (("weight", "kernel", _KERNEL), ("bias", "bias", None))),
    (LinearLayer, (("weight", "kernel", _KERNEL), ("bias", "bias", None))),
    (
        BatchNormLayer,
        (
            ("weight", "scale", None),
            ("bias", "bias", None),
            ("running_mean", "mean", None),
            ("running_var", "var", None),
        ),
    ),
    (LayerNormLayer, (("weight", "scale", None), ("bias", "bias", None))),
    (EmbeddingLayer, (("weight", "table", None),)),
)
_IGNORED = ("num_batches_tracked",)
_SHOWN = 12  # items listed per kind of problem


def load_state_dict(
    model: nnx.Module,
    state_dict: Mapping[str, Any] | str | os.PathLike[str],
    modules: Mapping[str, str],
    *,
    skip: Collection[str] = (),
) -> list[str]:
    """Copy PyTorch tensors into a built model, converting layouts; return the keys loaded.

    Args:
        model: a built model (changed in place, only if every check passes).
        state_dict: a mapping of names to ``torch.Tensor``s or arrays, or the path of a
            ``.safetensors`` file (read without PyTorch) or a ``.pt``/``.pth``/``.bin`` file
            (read with ``torch.load(weights_only=True)``).
        modules: PyTorch module name -> the layer's path in ``model``: the path ``ss.summary``
            shows, with ``.`` between steps and a layer name allowed in place of an index,
            e.g. ``{"layer1.0.conv1": "layer1.0.block.conv1", "fc": "fc"}``.
        skip: PyTorch module names (or prefixes of them, ``"fc"`` for ``fc.weight`` and
            ``fc.bias``) to leave out on both sides, e.g. a head of another size.

    Returns:
        The ``state_dict`` keys that were loaded, in the order of ``modules``.

    Raises:
        ShapesafeError: a path names no layer; a layer type holds no PyTorch tensors; or keys
            are missing, unknown, or of the wrong shape (all listed, nothing loaded).

    Example:
        >>> import numpy as np
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(3).named("fc"), Float32[Array, "batch 2"])
        >>> weights = {"fc.weight": np.ones((3, 2), np.float32), "fc.bias": np.zeros(3, np.float32)}
        >>> ss.load_state_dict(model, weights, {"fc": "fc"})
        ['fc.weight', 'fc.bias']
        >>> model["fc"].kernel[...].shape  # PyTorch's (out, in) is our (in, out)
        (2, 3)
    """
    tensors = _read(state_dict) if isinstance(state_dict, str | os.PathLike) else dict(state_dict)
    skipped = tuple(skip)

    def is_skipped(key: str) -> bool:
        return any(key == s or key.startswith(s + ".") for s in skipped)

    plan: list[tuple[str, Any, Any, str]] = []  # (key, variable, conversion, our path)
    for prefix, path in modules.items():
        if is_skipped(prefix):
            continue
        layer = _resolve(model, path)
        for torch_name, attr, conversion in _tensors_of(layer, path):
            variable = getattr(layer, attr)
            if variable is not None:
                plan.append((f"{prefix}.{torch_name}", variable, conversion, f"{path}.{attr}"))

    expected = {key for key, *_ in plan}
    missing = [key for key, *_ in plan if key not in tensors]
    unknown = [
        key
        for key in tensors
        if key not in expected and not is_skipped(key) and key.rsplit(".", 1)[-1] not in _IGNORED
    ]
    values: dict[str, np.ndarray] = {}
    wrong: list[str] = []
    for key, variable, conversion, where in plan:
        if key not in tensors:
            continue
        value = _numpy(tensors[key], key)
        ours = tuple(variable[...].shape)
        want = conversion[1](ours) if conversion is not None else ours
        if tuple(value.shape) != want:
            wrong.append(
                f"{key}: expected {want} (for {where}, {ours} in shapesafe's layout), found {tuple(value.shape)}"
            )
            continue
        values[key] = conversion[0](value) if conversion is not None else value
    if missing or unknown or wrong:
        raise ShapesafeError(_report(missing, unknown, wrong, len(plan)))
    for key, variable, _, _ in plan:
        variable[...] = jnp.asarray(values[key], dtype=variable[...].dtype)
    return [key for key, *_ in plan]


def _report(missing: list[str], unknown: list[str], wrong: list[str], total: int) -> str:
    lines = ["load_state_dict: the state_dict does not fit the model; nothing was loaded."]
    for items, title in (
        (missing, "missing (the model expects them, the state_dict lacks them)"),
        (unknown, "unknown (in the state_dict, but no entry of `modules` places them)"),
        (wrong, "with the wrong shape (PyTorch's layout)"),
    ):
        if items:
            lines.append(f"  {len(items)} key{'s' * (len(items) != 1)} {title}:")
            lines += [f"    {item}" for item in items[:_SHOWN]]
            if len(items) > _SHOWN:
                lines.append(f"    ... and {len(items) - _SHOWN} more")
    lines.append(
        f"  ({total} keys expected in all.) Check that the state_dict is for this architecture and "
        "that `modules` maps each PyTorch module to its layer; pass skip=(...) to leave some out."
    )
    return "\n".join(lines)


def _tensors_of(layer: Any, path: str) -> tuple[tuple[str, str, Any], ...]:
    for kind, names in _TENSORS:
        if isinstance(layer, kind):
            return names
    known = "Conv1D, Conv2D, Linear, BatchNorm, LayerNorm, Embedding"
    raise ShapesafeError(
        f"load_state_dict: {path!r} is a {_describe(layer)}, which holds no PyTorch tensors; "
        f"map PyTorch modules to layers of these kinds: {known}."
    )


def _describe(layer: Any) -> str:
    blueprint = getattr(layer, "blueprint", None)
    return repr(blueprint) if blueprint is not None else type(layer).__name__


def _resolve(model: Any, path: str) -> Any:
    """The layer at a summary-style path (``"layer1.0.block.conv1"``)."""
    node, walked = model, list[str]()
    for step in path.split("."):
        node = _step(node, step, ".".join(walked) or "the model", path)
        walked.append(step)
    return node


def _step(node: Any, step: str, where: str, path: str) -> Any:
    if isinstance(node, Model):
        if step.isdigit() and int(step) < len(node):
            return node[int(step)]
        if step in node.names:
            return node[step]
        named = [n for n in node.names if n]
        choices = f"0 to {len(node) - 1}" + (f" or one of {named}" if named else "")
        raise ShapesafeError(
            f"load_state_dict: {path!r} names no layer: {where} has no layer {step!r} "
            f"(a step there is {choices})."
        )
    children: list[tuple[str, Any]] = getattr(node, "named_children", list)()
    if isinstance(node, BranchesLayer) and step == "branches":
        return node.branches
    for key, child in children:
        if key == step:
            return child
    if isinstance(node, nnx.List) and step.isdigit() and int(step) < len(node):
        return node[int(step)]
    keys = [k.split(".")[0] for k, _ in children]
    hint = f" (its parts are {sorted(set(keys))})" if keys else f" ({_describe(node)} has no parts)"
    raise ShapesafeError(
        f"load_state_dict: {path!r} names no layer: {where} has no {step!r}{hint}."
    )


def _numpy(value: Any, key: str) -> np.ndarray:
    """A ``torch.Tensor`` (without importing torch), a JAX or NumPy array, as NumPy."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()  # bfloat16 and float16 have no (exact) NumPy view
        return value.numpy()
    try:
        return np.asarray(value)
    except Exception as e:
        e.add_note(f"load_state_dict: the state_dict's {key!r} is not an array.")
        raise


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"load_state_dict: no file {str(p)!r}.")
    if p.suffix == ".safetensors":
        import safetensors.numpy

        return dict(safetensors.numpy.load_file(str(p)))
    if p.suffix in (".pt", ".pth", ".bin"):
        return _torch_load(p)
    raise ValueError(
        f"load_state_dict: cannot read {p.name!r}; use a .safetensors file, or a .pt/.pth/.bin "
        "file where PyTorch is installed."
    )


def _torch_load(p: pathlib.Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise ShapesafeError(
            f"load_state_dict: reading {p.name!r} needs PyTorch (pip install torch). Without it, "
            "convert the file once to .safetensors (safetensors.torch.save_file(state_dict, path)) "
            "where PyTorch is installed."
        ) from None
    load: Callable[..., Any] = torch.load
    obj = load(str(p), map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise ShapesafeError(
            f"load_state_dict: {p.name!r} holds a {type(obj).__name__}, not a state_dict "
            "(a mapping of names to tensors); save model.state_dict()."
        )
    return dict(obj)
