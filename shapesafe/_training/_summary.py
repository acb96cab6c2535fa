"""``summary``: a Keras-style table of a built model, with dimension names."""

import re
from collections.abc import Callable, Mapping
from typing import Any, overload

import jax
import jax.tree_util as jtu
import optax
from flax import nnx

from .._sharding import ShardingPlan
from .._specs import dtype_words, format_annotation
from ..layers import Blueprint, Custom, Model
from ..layers._build import build_abstract
from ..layers._forward import Forward, layer_paths
from ._memory import MemoryPlan, memory_plan


def _params(module: Any, kind: Any = nnx.Param) -> int:
    return sum(int(leaf.size) for leaf in jtu.tree_leaves(nnx.state(module, kind)))


class Summary:
    """A printable table of a built model: ``str(summary)`` or ``print(summary)``.

    Attributes:
        rows: ``(path, layer, input, output, params)`` per layer.
        total_params: all parameters; ``trainable_params`` those of kind ``nnx.Param``.
        memory: the ``MemoryPlan`` (per-parameter placement and per-device memory) when
            ``summary`` was given a mesh, a sharding plan or an optimizer; else ``None``.
    """

    def __init__(
        self,
        rows: list[tuple[str, str, str, str, int]],
        total: int,
        trainable: int,
        input_spec: str,
        output_spec: str,
        memory: MemoryPlan | None = None,
        notes: tuple[str, ...] = (),
    ):
        self.rows, self.total_params, self.trainable_params = rows, total, trainable
        self.input_spec, self.output_spec = input_spec, output_spec
        self.memory, self.notes = memory, notes

    def __str__(self) -> str:
        head = ("path", "layer", "input", "output", "params")
        body = [(p, layer, i, o, f"{n:,}") for p, layer, i, o, n in self.rows]
        widths = [max(len(r[k]) for r in [head, *body]) for k in range(5)]

        def line(r: tuple[str, ...]) -> str:
            cells = [r[k].ljust(widths[k]) if k < 4 else r[k].rjust(widths[k]) for k in range(5)]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(head))
        out = [f"input  {self.input_spec}", *self.notes, rule, line(head), rule]
        out += [*map(line, body), rule]
        out.append(f"output {self.output_spec}")
        out.append(
            f"total params: {self.total_params:,}   trainable: {self.trainable_params:,}"
            f"   non-trainable: {self.total_params - self.trainable_params:,}"
        )
        if self.memory is not None:
            out += ["", str(self.memory)]
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython / notebooks
        p.text(str(self))


@overload
def summary(
    model: Model,
    spec: None = None,
    *,
    mesh: jax.sharding.Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
    optimizer: optax.GradientTransformation | None = None,
    loss: Callable[..., Any] | None = None,
    batch: tuple[Any, Any] | None = None,
    remat: bool | str = False,
    precision: str = "float32",
) -> Summary: ...


@overload
def summary(  # a blueprint has sizes only for an input: its spec is required
    model: "Blueprint[Any, Any, Any, Any] | Custom",
    spec: Any,
    *,
    mesh: jax.sharding.Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
    optimizer: optax.GradientTransformation | None = None,
    loss: Callable[..., Any] | None = None,
    batch: tuple[Any, Any] | None = None,
    remat: bool | str = False,
    precision: str = "float32",
) -> Summary: ...


def summary(
    model: Any,
    spec: Any = None,
    *,
    mesh: jax.sharding.Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
    optimizer: optax.GradientTransformation | None = None,
    loss: Callable[..., Any] | None = None,
    batch: tuple[Any, Any] | None = None,
    remat: bool | str = False,
    precision: str = "float32",
) -> Summary:
    """A table of ``model``: layer path, blueprint, input and output spec, parameter count.

    Symbolic dimensions keep their names (``batch``), so the table holds for every batch size.
    A blueprint with an input spec is summarised without building it: shapes are inferred and
    parameters counted abstractly (``jax.eval_shape``), nothing is allocated. Given a ``mesh``, a ``sharding`` plan or an ``optimizer``, it adds the memory plan: where
    each parameter lives and a per-device memory table (parameters, optimizer state from
    ``jax.eval_shape`` of ``optimizer.init``, gradients and, given a ``loss`` and an example
    ``batch``, the compiled training step's temporaries as XLA reports them). Nothing is
    trained; the plan is checked as ``fit`` checks it.

    Args:
        model: a built model (``ss.build``), or a blueprint (then ``spec`` is needed).
        spec: the input spec, for a blueprint: e.g. ``Float32[Array, "batch 784"]``.
        mesh: the ``jax.sharding.Mesh`` to plan for (one device when omitted).
        sharding: the plan, as ``fit`` takes it (``"replicate"``, ``"fsdp"``, rules, a
            ``ShardingPlan``).
        optimizer: the optax transform whose state to count.
        loss: with ``batch``, compiles one training step to read its temporary memory.
        batch: one global batch ``(x, y)``: arrays or ``jax.ShapeDtypeStruct``s.
        remat: the training forward's rematerialisation, as ``fit`` takes it (``True``, or
            a regex of layer paths at any depth, ``"4.Sequential.0.Residual"``); the
            temporaries are those of the step with it, and a regex's note lists the layers it
            checkpoints.
        precision: ``"float32"`` or ``"mixed_bfloat16"``, as ``fit`` takes it.

    Returns:
        A ``Summary``: prints as the table; ``rows``, ``input_spec``, ``output_spec``, the
        parameter counts (``trainable_params``, ...) and ``memory`` as attributes.

    Raises:
        ShardingError: the sharding plan does not fit the parameters or the mesh.
        ValueError: an unknown precision, or a remat regex that matches no layer path.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, UInt8
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(4), UInt8[Array, "batch 2 3"])
        >>> print(ss.summary(model))
        input  UInt8[batch, 2, 3]
        ----------------------------------------------------------------------
        path  layer              input               output             params
        ----------------------------------------------------------------------
        0     Flatten()          UInt8[batch, 2, 3]  UInt8[batch, 6]         0
        1     Cast(jnp.float32)  UInt8[batch, 6]     Float32[batch, 6]       0
        2     Linear(4)          Float32[batch, 6]   Float32[batch, 4]      28
        ----------------------------------------------------------------------
        output Float32[batch, 4]
        total params: 28   trainable: 28   non-trainable: 0
    """
    notes: list[str] = []
    if isinstance(model, Blueprint | Custom) and not isinstance(model, Model):
        if spec is None:
            raise TypeError(
                f"summary: {model!r} is a blueprint, whose sizes are known only for an input. "
                'Pass its input spec: ss.summary(blueprint, Float32[Array, "batch 784"]) (nothing '
                "is allocated), or summarise the model ss.build returns."
            )
        model = build_abstract(model, spec)
        notes.append("       (not built: shapes and parameter counts inferred, nothing allocated)")
    elif not isinstance(model, Model):
        raise TypeError(
            f"summary: expected a model made by ss.build (or a blueprint and its input spec), "
            f"got {type(model).__name__}."
        )
    elif spec is not None:
        raise TypeError(
            "summary: a built model knows its input spec; pass spec= only with a blueprint."
        )
    if getattr(model, "converts", ""):
        notes.insert(
            0,
            f"       (built from {format_annotation(model.accepted_spec, array='Array')}: takes "
            f"{_kind(model.accepted_spec)}, converted to {model.converts} at its input)",
        )
    rows = _rows(model, "", 0)
    total = _params(model, nnx.Not(nnx.RngState))  # parameters and statistics, not RNG counters
    trainable = _params(model)
    forward = Forward.of(remat, precision, where="summary")
    if forward is not None and isinstance(forward.remat, str):
        notes.append(_checkpointed(forward, layer_paths(model)))
    planned = mesh is not None or sharding is not None or optimizer is not None
    memory = (
        memory_plan(
            model,
            mesh=mesh,
            sharding=sharding,
            optimizer=optimizer,
            loss=loss,
            batch=batch,
            forward=forward,
        )
        if planned
        else None
    )
    return Summary(
        rows,
        total,
        trainable,
        model.rows[0][1] if model.rows else "?",
        model.rows[-1][2] if model.rows else "?",
        memory,
        tuple(notes),
    )


_NAMED = 4  # checkpointed layers named in the summary's note


def _checkpointed(forward: Forward, paths: list[str]) -> str:
    """The note of a remat regex: how many layers it checkpoints, and the first few
    (``Forward.check`` refuses a regex that matches none)."""
    forward.check(paths)
    pattern = re.compile(str(forward.remat))
    hits = [p for p in paths if pattern.fullmatch(p)]
    more = f", ... ({len(hits) - _NAMED} more)" if len(hits) > _NAMED else ""
    layers = "layer" if len(hits) == 1 else "layers"
    return f"       (remat checkpoints {len(hits)} {layers}: {', '.join(hits[:_NAMED])}{more})"


def _kind(annotation: Any) -> str:
    """``Float[...]`` -> ``any floating dtype``."""
    words = dtype_words(annotation.dtype.__name__)
    return (
        "any dtype"
        if annotation.dtypes is None or not isinstance(annotation.dtypes, tuple | list)
        else "any " + words.split(" ", 1)[1]
    )


def _rows(model: Model, prefix: str, depth: int) -> list[tuple[str, str, str, str, int]]:
    """One row per layer; a container (a layer with ``named_children()``, such as a built
    ``Residual``) is followed by its inner models' rows, at paths like ``3.block.0``, and a
    nested named sequence (``(a >> b).named("stage1")``) by its layers' rows (``3.0``)."""
    rows = []
    for i, (layer, (bp, spec_in, spec_out)) in enumerate(
        zip(model.layers, model.rows, strict=True)
    ):
        name = model.names[i]
        children: list[tuple[str, Model]] = getattr(layer, "named_children", list)()
        label = (
            f"{type(model.blueprint.layers[i]).__name__}(...)"
            if children or isinstance(layer, Model)
            else bp
        )
        path = f"{prefix}{i}" if name is None else f"{prefix}{i} ({name})"
        rows.append((path, "  " * depth + label, spec_in, spec_out, _params(layer)))
        for key, child in children:
            rows += _rows(child, f"{prefix}{i}.{key}.", depth + 1)
        if isinstance(layer, Model):
            rows += _rows(layer, f"{prefix}{i}.", depth + 1)
    return rows
