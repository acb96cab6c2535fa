"""The memory plan of a training run on a mesh: what each device holds, before anything runs.

Parameters are measured from the model's own arrays' shapes; the optimizer state from
``jax.eval_shape(optimizer.init, params)`` (nothing allocated); both are placed by the sharding
plan (``shapesafe._sharding``), and each leaf's per-device bytes are its ``NamedSharding``'s
shard shape times its item size. Gradients are placed like their parameters (the step
constrains them so). The compiled step's temporaries come from XLA itself:
``jax.jit(...).lower(...).compile().memory_analysis()`` on abstract inputs, where the backend
reports it; it needs a loss and one example batch.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._sharding import Placement, ShardingPlan, auto_mesh, follow_params, param_placements
from ..layers._forward import Forward, layer_paths
from ._engine import Engine, Programs, TrainState, compiler_options


def _bytes(leaves: Sequence[Any], shardings: Sequence[Any]) -> tuple[int, int]:
    """(bytes on one device, bytes of the whole arrays)."""
    one = whole = 0
    for leaf, sharding in zip(leaves, shardings, strict=True):
        size = np.dtype(leaf.dtype).itemsize
        one += math.prod(sharding.shard_shape(tuple(leaf.shape))) * size
        whole += math.prod(leaf.shape) * size
    return one, whole


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.2f} MiB"


class MemoryPlan:
    """Per-device memory of training ``model`` on ``mesh`` by a sharding plan.

    Attributes:
        mesh: ``{axis: size}``. placements: one ``Placement`` per parameter.
        rows: ``{"parameters" | "optimizer state" | "gradients" | "temporaries":
            (bytes per device, bytes of the whole arrays)}``; temporaries are XLA's
            ``temp_size_in_bytes`` of the compiled step (``None`` where not measured).
    """

    def __init__(
        self,
        mesh: dict[str, int],
        placements: list[Placement],
        rows: dict[str, tuple[int | None, int | None]],
        forward: Forward | None = None,
    ):
        self.mesh, self.placements, self.rows = mesh, placements, rows
        self.forward = forward  # the training forward's remat and compute dtype, or None

    @property
    def per_device(self) -> int:
        """Bytes per device of every row that was measured."""
        return sum(one for one, _ in self.rows.values() if one is not None)

    def __str__(self) -> str:
        mesh = " x ".join(f"{a}={n}" for a, n in self.mesh.items())
        head = ("parameter", "shape", "placement", "per device", "why")
        body = [
            (
                p.path,
                str(p.shape),
                str(tuple(p.spec)) if tuple(p.spec) else "replicated",
                str(p.shard_shape(self.mesh)),
                p.reason,
            )
            for p in self.placements
        ]
        widths = [max(len(r[k]) for r in [head, *body]) for k in range(5)]
        lines = [f"mesh {mesh}"]
        if self.forward is not None:
            f = self.forward
            lines[0] += f"   remat {f.remat!r}   compute {f.compute or 'as built'}"
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *body]
        ]
        lines.append("")
        lines.append(f"{'memory':<16}  {'per device':>14}  {'on one device':>14}")
        for name, (one, whole) in self.rows.items():
            lines.append(f"{name:<16}  {_mib(one):>14}  {_mib(whole):>14}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def memory_plan(
    model: nnx.Module,
    *,
    mesh: Mesh | None,
    sharding: Any,
    optimizer: optax.GradientTransformation | None,
    loss: Callable[..., Any] | None = None,
    batch: tuple[Any, Any] | None = None,
    forward: Forward | None = None,
) -> MemoryPlan:
    """The ``MemoryPlan`` of ``model`` (see the module's docstring); ``mesh=None`` is one device.
    ``forward`` (remat, compute dtype) is the training forward whose temporaries are measured."""
    if forward is not None:
        forward.check(layer_paths(model))  # a remat regex that matches nothing fails here
    mesh = auto_mesh(mesh if mesh is not None else Mesh(np.array(jax.devices()[:1]), ("data",)))
    params = nnx.state(model, nnx.Param)
    placements, p_sh = param_placements(ShardingPlan.of(sharding), mesh, model, params)
    p_leaves, p_shs = jax.tree.leaves(params), jax.tree.leaves(p_sh)
    rows: dict[str, tuple[int | None, int | None]] = {"parameters": _bytes(p_leaves, p_shs)}
    o_sh: Any = None
    opt_state: Any = None
    if optimizer is not None:
        opt_state = jax.eval_shape(optimizer.init, params)
        o_sh = follow_params(opt_state, params, p_sh, mesh)
        rows["optimizer state"] = _bytes(jax.tree.leaves(opt_state), jax.tree.leaves(o_sh))
        rows["gradients"] = rows["parameters"]
    if optimizer is not None and loss is not None and batch is not None:
        rows["temporaries"] = (
            _temporaries(model, mesh, p_sh, o_sh, opt_state, optimizer, loss, batch, forward),
            None,
        )
    return MemoryPlan(dict(mesh.shape), placements, rows, forward)


def _temporaries(
    model: nnx.Module,
    mesh: Mesh,
    p_sh: Any,
    o_sh: Any,
    opt_state: Any,
    optimizer: optax.GradientTransformation,
    loss: Callable[..., Any],
    batch: tuple[Any, Any],
    forward: Forward | None,
) -> int | None:
    """XLA's temporary bytes per device of the training step (the engine's own step), compiled
    for abstract inputs with the plan's shardings."""
    engine = Engine(model, loss=None, optimizer=None, metrics=())  # graphs and state trees
    replicated = NamedSharding(mesh, PartitionSpec())
    r_sh = jax.tree.map(lambda _: replicated, engine.rest)
    program = Programs(  # the engine's own step, with the plan; no optimizer state is made
        engine._train_graph,
        engine._eval_graph,
        engine.defs._replace(opt_state=jax.tree.structure(opt_state)),
        loss,
        optimizer,
        (),
        TrainState(*(tuple(jax.tree.leaves(t)) for t in (p_sh, r_sh, o_sh))),
        forward,
    )
    data = NamedSharding(mesh, PartitionSpec("data"))

    def abstract(tree: Any, shardings: Any) -> Any:
        return jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
        )

    x, y = (jax.ShapeDtypeStruct(np.shape(a), np.dtype(a.dtype), sharding=data) for a in batch)
    mask = jax.ShapeDtypeStruct((x.shape[0],), np.dtype(bool), sharding=data)

    def step(params: Any, rest: Any, opt: Any, x: Any, y: Any, mask: Any) -> Any:
        return program._train_step(params, rest, opt, (), x, y, mask)[:3]

    lowered = jax.jit(
        step, donate_argnums=(0, 2), compiler_options=compiler_options(forward)
    ).lower(
        abstract(engine.params, p_sh),
        abstract(engine.rest, r_sh),
        abstract(opt_state, o_sh),
        x,
        y,
        mask,
    )
    analysis = lowered.compile().memory_analysis()
    temp = getattr(analysis, "temp_size_in_bytes", None)
    return None if temp is None else int(temp)
