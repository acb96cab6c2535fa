"""Blocks made of blocks: ``Residual`` (``block(x) + shortcut(x)``), ``Concat`` and ``Add``
(parallel branches joined).

Each inner block is a blueprint or a composition, kept as a ``Sequential`` and built with
``Sequential._build`` through ``infer``, so its sizes are inferred and its failures reported
as at the top level, behind the container's path (``layer 2 of 4, Residual(...) > block >
layer 3 of 3, Conv2D(...)``). Whether the pieces can be joined is checked at build time.
A built container holds the built inner ``Model``s and lists them in ``named_children()``,
which ``ss.summary`` follows to show nested rows (``2.block.0``).
"""

import dataclasses
import functools
import operator
from typing import Any, cast

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Shaped

from .._errors import LayerShapeError
from .._specs import TensorSpec, checked, format_spec
from ._blueprint import Blueprint, Refusal, infer, set_field
from ._custom import as_blueprint
from ._model import Model
from ._sequential import Sequential


def _sequence(obj: Any) -> Sequential:
    bp = as_blueprint(obj)
    return bp if isinstance(bp, Sequential) else Sequential((bp,))


def _built(
    seq: Sequential, spec: TensorSpec, rngs: nnx.Rngs, where: str
) -> tuple[Model, TensorSpec]:
    """Build an inner sequence (``Sequential._build``, through ``infer``) and learn its output spec."""
    model, out = infer(seq, spec, rngs, where)
    return cast(Model, model), out


def _show(spec: TensorSpec) -> str:
    return format_spec(spec.shape, spec.dtype)


def _run(model: Model, x: Any, where: str) -> Any:
    """Call an inner model; a failure keeps its path, behind ``where``."""
    try:
        return model(x)
    except LayerShapeError as e:
        raise e.within(where if e.path else f"{where}: {e.subject}") from e.__cause__


@dataclasses.dataclass(frozen=True, repr=False)
class Residual(Blueprint[Any, Any, Any, Any]):
    """``block(x) + shortcut(x)``, where the shortcut is the input itself unless given.

    Args:
        block: a blueprint or a composition (``a >> b``) whose output is added to the shortcut.
        shortcut: a blueprint or composition that maps the input to the block's output spec,
            such as ResNet's projection ``L.Conv2D(64, (1, 1), strides=2)``; ``None`` (default)
            adds the input itself, which needs a block that keeps the input's shape and dtype.

    Raises:
        ShapeError: at build time, if the block's and the shortcut's outputs differ.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> block = L.Conv2D(8, 3, padding="same") >> L.ReLU() >> L.Conv2D(8, 3, padding="same")
        >>> L.Residual(block)
        Residual(Conv2D(8, (3, 3), padding='same') >> ReLU() >> Conv2D(8, (3, 3), padding='same'))
        >>> model = ss.build(L.Residual(block), Float32[Array, "batch 16 16 8"])
        >>> ss.summary(model).output_spec
        'Float32[batch, 16, 16, 8]'
    """

    block: Any
    shortcut: Any = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        set_field(self, "block", _sequence(self.block))
        if self.shortcut is not None:
            set_field(self, "shortcut", _sequence(self.shortcut))

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        block, out = _built(self.block, spec, rngs, "block")
        if self.shortcut is None:
            if _show(out) != _show(spec):
                raise Refusal(
                    f"a block that keeps its input's shape and dtype, {_show(spec)}, so the input can be added to its output",
                    f"the block returns {_show(out)}; the identity shortcut (the input, {_show(spec)}) cannot be added to it.",
                    f"Give the residual a shortcut that maps {_show(spec)} to {_show(out)}: "
                    f"L.Residual(block, shortcut={_projection(spec, out)}).",
                )
            return ResidualLayer(self, block, None)
        shortcut, side = _built(self.shortcut, spec, rngs, "shortcut")
        if _show(out) != _show(side):
            raise Refusal(
                "a block and a shortcut with the same output spec",
                f"the block returns {_show(out)} but the shortcut, {self.shortcut!r}, returns {_show(side)}.",
                f"Change the shortcut to map {_show(spec)} to {_show(out)}, e.g. shortcut={_projection(spec, out)}.",
            )
        return ResidualLayer(self, block, shortcut)


def _projection(spec: TensorSpec, out: TensorSpec) -> str:
    """A blueprint mapping ``spec`` to ``out``: a cast, a dense or a strided 1x1 convolution."""
    if spec.shape == out.shape:
        return f"L.Cast(jnp.{out.dtype.name})"
    same_rank = spec.rank == out.rank >= 1 and isinstance(out.shape[-1], int)
    nd = spec.rank - 2
    if same_rank and nd not in (1, 2) and spec.shape[:-1] == out.shape[:-1]:
        return f"L.Linear({out.shape[-1]})"
    sizes = list(zip(spec.shape[1:-1], out.shape[1:-1], strict=False))
    if (
        same_rank
        and nd in (1, 2)
        and all((isinstance(a, int) and isinstance(b, int)) or str(a) == str(b) for a, b in sizes)
    ):
        strides = tuple(1 if str(a) == str(b) else -(-a // b) for a, b in sizes)
        if all(-(-a // s) == b for (a, b), s in zip(sizes, strides, strict=True)):
            stride = strides[0] if len(set(strides)) == 1 else strides
            layer, kernel = ("Conv1D", "1") if nd == 1 else ("Conv2D", "(1, 1)")
            extra = "" if stride == 1 else f", strides={stride}"
            return f"L.{layer}({out.shape[-1]}, {kernel}{extra})"
    return "<blueprint>"


class ResidualLayer(nnx.Module):
    """Built ``Residual``: the built inner models ``block`` and ``shortcut`` (``None``: identity)."""

    def __init__(self, blueprint: Residual, block: Model, shortcut: Model | None):
        self.blueprint = blueprint
        self.block = block
        self.shortcut = shortcut

    def named_children(self) -> list[tuple[str, Model]]:
        """The inner models, for ``ss.summary``."""
        return [("block", self.block)] + (
            [("shortcut", self.shortcut)] if self.shortcut is not None else []
        )

    @checked
    def __call__(self, x: Shaped[Array, "..."]) -> Shaped[Array, "..."]:
        y = _run(self.block, x, "block")
        s = x if self.shortcut is None else _run(self.shortcut, x, "shortcut")
        return y + s


@dataclasses.dataclass(frozen=True, repr=False)
class _Branches(Blueprint[Any, Any, Any, Any]):
    branches: Any  # a tuple or list of blueprints, stored as a tuple of ``Sequential``s

    def __post_init__(self) -> None:
        if not isinstance(self.branches, tuple | list) or not self.branches:
            raise ValueError(
                f"{type(self).__name__}: branches must be a non-empty tuple of blueprints or compositions, "
                f"e.g. (L.Conv2D(8, 1), L.Conv2D(8, 3, padding='same')); got {self.branches!r}."
            )
        set_field(self, "branches", tuple(_sequence(b) for b in self.branches))

    def check(self, outs: list[TensorSpec]) -> Refusal | None:
        raise NotImplementedError

    def join(self, ys: list[Any]) -> Any:
        raise NotImplementedError

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        n = len(self.branches)
        built, outs = [], []
        for i, branch in enumerate(self.branches, start=1):
            model, out = _built(branch, spec, rngs, f"branch {i} of {n}")
            built.append(model)
            outs.append(out)
        refusal = self.check(outs)
        if refusal is not None:
            raise refusal
        return BranchesLayer(self, built)

    def listing(self, outs: list[TensorSpec]) -> str:
        """One line per branch: its blueprint and its output spec."""
        return "\n".join(
            f"    branch {i}, {b!r}: {_show(o)}"
            for i, (b, o) in enumerate(zip(self.branches, outs, strict=True), start=1)
        )


@dataclasses.dataclass(frozen=True, repr=False)
class Concat(_Branches):
    """Parallel branches on the same input, outputs concatenated along ``axis`` (Inception-style).

    Every branch's output must have the same rank and dtype, and the same size on every
    axis but ``axis``.

    Args:
        branches: a tuple of blueprints or compositions.
        axis: the axis to concatenate along (default the last, channels).

    Raises:
        ShapeError: at build time, if the branches' outputs cannot be concatenated.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> net = L.Concat((L.Conv2D(8, 1), L.Conv2D(4, 3, padding="same") >> L.ReLU()))
        >>> ss.summary(ss.build(net, Float32[Array, "batch 16 16 3"])).output_spec
        'Float32[batch, 16, 16, 12]'
    """

    axis: int = dataclasses.field(default=-1, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise ValueError(f"Concat: axis must be an int, got {self.axis!r}.")

    def check(self, outs: list[TensorSpec]) -> Refusal | None:
        expected = f"branch outputs with one rank and dtype, equal on every axis but {self.axis}"
        ranks = {o.rank for o in outs}
        if len(ranks) > 1 or not -outs[0].rank <= self.axis < outs[0].rank:
            why = "different ranks" if len(ranks) > 1 else f"no axis {self.axis}"
            return Refusal(
                expected,
                f"the branches' outputs have {why}:\n{self.listing(outs)}",
                "Make every branch return the same rank (e.g. with L.Reshape or L.Flatten).",
            )
        axis = self.axis % outs[0].rank
        if len({o.dtype for o in outs}) > 1:
            return Refusal(
                expected,
                f"the branches' outputs have different dtypes:\n{self.listing(outs)}",
                "Make every branch return one dtype (e.g. with L.Cast).",
            )
        for k in range(outs[0].rank):
            if k != axis and len({str(o.shape[k]) for o in outs}) > 1:
                return Refusal(
                    expected,
                    f"the branches' outputs differ on axis {k}, not only on axis {axis}:\n{self.listing(outs)}",
                    "Make the branches agree there, e.g. padding='same' on convolutions that keep height and width.",
                )
        return None

    def join(self, ys: list[Any]) -> Any:
        return jnp.concatenate(ys, axis=self.axis)


@dataclasses.dataclass(frozen=True, repr=False)
class Add(_Branches):
    """Parallel branches on the same input, outputs summed; every output must have one spec.

    Args:
        branches: a tuple of blueprints or compositions.

    Raises:
        ShapeError: at build time, if the branches' outputs differ in shape or dtype.

    Example:
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> net = L.Add((L.Linear(4), L.Linear(8) >> L.ReLU() >> L.Linear(4)))
        >>> ss.summary(ss.build(net, Float32[Array, "batch 3"])).output_spec
        'Float32[batch, 4]'
    """

    def check(self, outs: list[TensorSpec]) -> Refusal | None:
        if len({_show(o) for o in outs}) > 1:
            return Refusal(
                "branch outputs with one shape and dtype",
                f"the branches' outputs differ:\n{self.listing(outs)}",
                "Make every branch return the same shape and dtype.",
            )
        return None

    def join(self, ys: list[Any]) -> Any:
        return functools.reduce(operator.add, ys)


class BranchesLayer(nnx.Module):
    """Built ``Concat`` or ``Add``: the built inner models in ``branches``."""

    def __init__(self, blueprint: _Branches, branches: list[Model]):
        self.blueprint = blueprint
        self.branches = nnx.List(branches)

    def named_children(self) -> list[tuple[str, Model]]:
        """The inner models, for ``ss.summary``."""
        return [(f"branches.{i}", m) for i, m in enumerate(self.branches)]

    @checked
    def __call__(self, x: Shaped[Array, "..."]) -> Shaped[Array, "..."]:
        n = len(self.branches)
        ys = [_run(b, x, f"branch {i} of {n}") for i, b in enumerate(self.branches, start=1)]
        return self.blueprint.join(ys)
