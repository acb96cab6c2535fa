"""How a built model's forward runs inside a step: rematerialisation and compute dtype.

``ss.fit(..., remat=..., precision=...)`` (and ``ss.summary``, to measure them) trace the
training step's forward inside ``running(policy)``; the evaluation and prediction steps (``fit``'s
own evaluation, ``ss.evaluate``/``ss.predict(..., precision=...)``) trace theirs inside
``running`` of the compute dtype alone. The outermost ``Model.__call__`` takes the policy; the
models nested in it get what concerns them (``Forward.inner``: the compute dtype and a remat
regex, not ``remat=True``). So the blueprints, the built modules and their checked annotations
stay what ``ss.build`` made; only the traced step changes, and a different policy is a
different compiled program (it is part of the engine's program key).

- Rematerialisation (``jax.checkpoint``, through ``nnx.remat`` so layers that update state, such
  as ``BatchNorm`` and ``Dropout``, still do): a checkpointed run of layers keeps only its input
  for the backward pass and computes its inner activations again there. ``remat=True`` cuts the
  model's ``n`` top-level layers into about ``sqrt(n)`` consecutive runs, each checkpointed
  (Chen et al. 2016, "Training deep nets with sublinear memory cost"); a regex checkpoints each
  layer, at any depth, whose path it matches whole. Paths are those of ``ShardingPlan``
  without the parameter name: ``"3.Residual"`` at the top, ``"3.Residual.block.0.Conv2D"``
  inside a ``Residual``'s block (``shortcut``, ``branches.1`` for the other containers),
  ``"4.Sequential.0.Residual"`` inside a nested named sequence (a ResNet's stage).
  A nested model learns its own path from the model that calls it: around each layer's call,
  the caller maps the nested models in that layer (by identity, as they are at that trace
  level, so inside ``nnx.remat``'s copies too) to their path prefixes (``placed``).
- Compute dtype (``precision="mixed_bfloat16"``): the engine casts the floating parameters and
  state to bfloat16; the model checks its input against its input spec as built, casts
  floating activations to bfloat16 after the input check and after every layer (a
  ``Cast(jnp.float32)`` inside the model is overridden), and checks its floating input and output as
  cast to its specs' dtypes, so every model checks its specs as built. The outermost model
  returns that cast output (float32 logits, a float32 loss); a nested one (a ``Residual``'s
  block) passes on its bfloat16 output.
"""

import contextlib
import contextvars
import dataclasses
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax.numpy as jnp
import numpy as np

PRECISIONS = {"float32": None, "mixed_bfloat16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class Forward:
    """A forward policy: ``remat`` (``False``, ``True`` or a layer-path regex) and ``compute``,
    the dtype name floating activations run in (``None``: as built)."""

    remat: bool | str = False
    compute: str | None = None
    outer: bool = True  # the outermost model: its output leaves in its output spec's dtype

    @staticmethod
    def of(remat: bool | str, precision: str, *, where: str) -> "Forward | None":
        """The policy of ``fit``'s/``summary``'s arguments; ``None`` when it changes nothing.

        Raises:
            ValueError: an unknown precision, a remat that is not a bool or a valid regex.
        """
        if precision not in PRECISIONS:
            raise ValueError(
                f"{where}: precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                f"got {precision!r}."
            )
        if not isinstance(remat, bool | str):
            raise ValueError(
                f"{where}: remat must be True, False or a regex of layer paths "
                f'(e.g. r"\\d+\\.Residual"), got {remat!r}.'
            )
        if isinstance(remat, str):
            try:
                re.compile(remat)
            except re.error as e:
                raise ValueError(f"{where}: remat={remat!r} is not a valid regex: {e}.") from e
        policy = Forward(remat, PRECISIONS[precision])
        return None if policy == Forward() else policy

    def inner(self) -> "Forward | None":
        """The policy of a model nested in one run by this policy: the compute dtype and a remat
        regex (``remat=True`` cuts the outermost model only); ``None`` when nothing is left."""
        remat = self.remat if isinstance(self.remat, str) else False
        if remat is False and self.compute is None:
            return None
        return dataclasses.replace(self, remat=remat, outer=False)

    def check(self, paths: Sequence[str]) -> None:
        """Refuse a remat regex that matches none of a model's layer ``paths`` (``layer_paths``).

        Raises:
            ValueError: naming the regex and listing the paths (their forms, for a deep model).
        """
        if not isinstance(self.remat, str):
            return
        pattern = re.compile(self.remat)
        if any(pattern.fullmatch(p) for p in paths):
            return
        raise ValueError(
            f"remat={self.remat!r} matches no layer path (the regex must match a whole path, "
            f"at any depth). {_listing(paths)} Fix the regex, or use remat=True to checkpoint "
            "the whole model in about sqrt(n) runs."
        )

    @property
    def dtype(self) -> np.dtype | None:
        """The compute dtype, or ``None``."""
        if self.compute is None:
            return None
        return np.dtype(getattr(jnp, self.compute))

    def runs(self, paths: Sequence[str]) -> list[tuple[range, bool]]:
        """One model's own layers (by their full paths) as consecutive runs
        ``(indices, checkpointed)``: with a regex, each layer it matches alone (none may match
        here: ``check`` refuses a regex that matches nothing in the whole model)."""
        n = len(paths)
        if self.remat is False or n == 0:
            return [(range(n), False)]
        if self.remat is True:
            size = math.ceil(n / math.ceil(math.sqrt(n)))
            return [(range(i, min(i + size, n)), True) for i in range(0, n, size)]
        pattern = re.compile(self.remat)
        hits = [pattern.fullmatch(p) is not None for p in paths]
        out: list[tuple[range, bool]] = []
        for i, hit in enumerate(hits):
            if hit:
                out.append((range(i, i + 1), True))
            elif out and not out[-1][1]:
                out[-1] = (range(out[-1][0].start, i + 1), False)
            else:
                out.append((range(i, i + 1), False))
        return out


def own_paths(model: Any, prefix: str = "") -> list[str]:
    """The paths of a built model's own layers behind ``prefix`` (``"3.Residual"``); none for
    another module."""
    layers = getattr(getattr(model, "blueprint", None), "layers", None)
    return [f"{prefix}{i}.{type(bp).__name__}" for i, bp in enumerate(layers or ())]


def nested(layer: Any, path: str) -> list[tuple[str, Any]]:
    """The models inside a built layer at ``path``, each with its path prefix: a nested
    sequence is a model itself (``"4.Sequential."``); a container lists its inner models in
    ``named_children()`` (``"3.Residual.block."``, ``"1.Concat.branches.0."``)."""
    if isinstance(getattr(getattr(layer, "blueprint", None), "layers", None), tuple):
        return [(f"{path}.", layer)]  # a built Sequential (``Model``): its blueprint has layers
    children: list[tuple[str, Any]] = getattr(layer, "named_children", list)()
    return [(f"{path}.{key}.", m) for key, m in children]


def layer_paths(model: Any, prefix: str = "") -> list[str]:
    """Every layer path of a built model, depth first (``"3.Residual"``, then
    ``"3.Residual.block.0.Conv2D"``, ...); none for another module."""
    out: list[str] = []
    for i, path in enumerate(own_paths(model, prefix)):
        out.append(path)
        for inner, child in nested(model.layers[i], path):
            out += layer_paths(child, inner)
    return out


_LISTED = 12  # layer paths listed one by one in a refusal; a deeper model shows their forms


def _listing(paths: Sequence[str]) -> str:
    """The paths for a refusal: all of a small model's; a deep one's forms (each index as
    ``N``) with an example of each, and the regex of a nested form."""
    if len(paths) <= _LISTED:
        return f"The model's layer paths are: {', '.join(paths)}."
    forms: dict[str, list[str]] = {}
    for p in paths:
        parts = p.split(".")
        forms.setdefault(".".join("N" if s.isdigit() else s for s in parts), parts)
    width = max(map(len, forms))
    lines = "".join(f"\n    {form.ljust(width)}  e.g. {'.'.join(p)}" for form, p in forms.items())
    deep = next((f for f, p in forms.items() if sum(s.isdigit() for s in p) > 1), next(iter(forms)))
    regex = r"\.".join(r"\d+" if s.isdigit() else re.escape(s) for s in forms[deep])
    return (
        f"The model has {len(paths)} layer paths, of {len(forms)} forms (N is any index, "
        f'r"\\d+" in a regex):{lines}\n  remat=r"{regex}", for one, checkpoints every {deep}.\n '
    )


_POLICY: contextvars.ContextVar[Forward | None] = contextvars.ContextVar(
    "shapesafe_forward", default=None
)


@contextlib.contextmanager
def running(policy: Forward | None) -> Iterator[None]:
    """Run the forwards traced in this scope by ``policy`` (the outermost model takes it)."""
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


_PLACES: contextvars.ContextVar[Mapping[int, str]] = contextvars.ContextVar(
    "shapesafe_places", default=MappingProxyType({})
)


@contextlib.contextmanager
def taken(model: Any) -> Iterator[tuple[Forward | None, str | None]]:
    """The policy in force for ``model`` and its path prefix (``""`` for the outermost model,
    ``None`` where its caller did not place it: no remat there); what runs inside (a nested
    model) keeps the compute dtype and a remat regex (``Forward.inner``)."""
    policy = _POLICY.get()
    if policy is None:
        yield None, None
        return
    prefix = "" if policy.outer else _PLACES.get().get(id(model))
    token = _POLICY.set(policy.inner())
    try:
        yield policy, prefix
    finally:
        _POLICY.reset(token)


@contextlib.contextmanager
def placed(layer: Any, path: str | None) -> Iterator[None]:
    """Around a layer's call: the models nested in it learn their paths (``nested``), where the
    layer's own ``path`` is known and a remat regex is in force for them."""
    policy = _POLICY.get()
    if path is None or policy is None or not isinstance(policy.remat, str):
        yield
        return
    token = _PLACES.set({id(m): inner for inner, m in nested(layer, path)})
    try:
        yield
    finally:
        _PLACES.reset(token)


def cast_floating(x: Any, dtype: Any) -> Any:
    """``x`` as ``dtype`` when both are floating (an integer or boolean array stays)."""
    if dtype is None or not hasattr(x, "dtype") or not jnp.issubdtype(dtype, jnp.floating):
        return x
    if jnp.issubdtype(x.dtype, jnp.floating) and np.dtype(x.dtype) != dtype:
        return x.astype(dtype)
    return x
