"""Sharding plans: where every parameter, optimizer slot and batch lives on a device mesh.

A plan is data (``ShardingPlan``): ``"replicate"`` (data parallelism: every device holds every
parameter), ``"fsdp"`` (every parameter of at least ``min_size`` elements is split along its
largest axis that the mesh's ``data`` axis divides; optimizer state follows its parameter),
or explicit rules by parameter path, like Keras' ``LayoutMap``
(``{r".*Linear.*kernel": (None, "model")}`` on a ``data`` x ``model`` mesh). Rules and FSDP
combine: a parameter no rule matches falls back to FSDP when ``fsdp=True``.

The plan is resolved against every parameter's shape (known at build time, no data read)
before anything compiles, and a plan that cannot hold is a ``ShardingError`` naming the
parameter, its shape, the mesh axis and its size, and the fix. The resolved placements are
``jax.sharding.NamedSharding`` objects: JAX's own ``jax.jit`` with those shardings does the
partitioning and the communication (GSPMD); there is no home-made communication layer.

A parameter's path reads like the summary's layer paths with the blueprint's class name:
``"0.Linear.kernel"``, ``"2.Residual.block.0.Conv2D.kernel"``.
"""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from ._errors import ShardingError

Axis = str | tuple[str, ...] | None
DATA = "data"  # the mesh axis that batches (and FSDP) are split over
_SHOWN = 6  # parameter paths listed in a refusal


def _axes(entry: Axis) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _fmt_spec(spec: Sequence[Axis]) -> str:
    return "(" + ", ".join(repr(e) for e in spec) + ("," if len(spec) == 1 else "") + ")"


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one parameter lives: its path, shape, dtype, ``PartitionSpec`` and why.

    Attributes:
        path: the parameter's path (``"0.Linear.kernel"``).
        shape: its global shape. dtype: its dtype's name.
        spec: the ``jax.sharding.PartitionSpec`` (one entry per axis; ``None`` keeps it whole).
        reason: ``"rule '<regex>'"``, ``"fsdp"``, or why it stays replicated.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str
    spec: PartitionSpec
    reason: str

    def shard_shape(self, mesh: Mesh | AbstractMesh | Mapping[str, int]) -> tuple[int, ...]:
        """The shape of the piece each device holds on ``mesh`` (or on axes ``{name: size}``)."""
        sizes = mesh if isinstance(mesh, Mapping) else mesh.shape
        return tuple(
            n // math.prod(sizes[a] for a in _axes(e))
            for n, e in zip(self.shape, _padded(self.spec, len(self.shape)), strict=True)
        )

    def device_bytes(self, mesh: Mesh | AbstractMesh) -> int:
        """Bytes of this parameter on one device of ``mesh``."""
        return math.prod(self.shard_shape(mesh)) * np.dtype(self.dtype).itemsize


def _padded(spec: PartitionSpec, ndim: int) -> tuple[Axis, ...]:
    entries = tuple(spec)
    return entries + (None,) * (ndim - len(entries))


class ShardingPlan:
    """How parameters (and their optimizer state) are placed on a ``jax.sharding.Mesh``.

    Args:
        rules: ``{path regex: layout}``; a layout has one entry per parameter axis: a mesh
            axis name, a tuple of names, or ``None`` (the axis stays whole). The first rule
            whose regex matches the whole path (``re.fullmatch``) wins.
        fsdp: parameters no rule matches, of at least ``min_size`` elements, are split over
            the mesh axis ``"data"`` along their largest axis that the axis size divides.
        min_size: the smallest parameter (in elements) that FSDP splits.

    Batches are split over the mesh axis ``"data"``, and so is FSDP.

    Raises:
        ValueError: a regex that does not compile, a layout that is not axis names.

    Example:
        >>> import shapesafe as ss
        >>> plan = ss.ShardingPlan({r".*Linear.*kernel": (None, "model")}, fsdp=True)
        >>> plan
        ShardingPlan({'.*Linear.*kernel': (None, 'model')}, fsdp=True, min_size=4096)
        >>> ss.ShardingPlan.of("fsdp") == ss.ShardingPlan(fsdp=True)
        True
    """

    def __init__(
        self,
        rules: Mapping[str, Sequence[Axis]] | None = None,
        *,
        fsdp: bool = False,
        min_size: int = 4096,
    ):
        checked: list[tuple[str, tuple[Axis, ...]]] = []
        for pattern, layout in (rules or {}).items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"ShardingPlan: the rule {pattern!r} is not a regex: {e}.") from e
            if isinstance(layout, str) or not all(
                e is None or isinstance(e, str) or (isinstance(e, tuple) and e) for e in layout
            ):
                raise ValueError(
                    f"ShardingPlan: the rule {pattern!r} maps to {layout!r}; a layout is a tuple "
                    "with one entry per parameter axis: a mesh axis name, a tuple of names, or "
                    'None (e.g. (None, "model")).'
                )
            checked.append((pattern, tuple(layout)))
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"ShardingPlan: min_size must be an int >= 0, got {min_size!r}.")
        self.rules = tuple(checked)
        self.fsdp, self.min_size = bool(fsdp), min_size

    @staticmethod
    def of(plan: "ShardingPlan | str | Mapping[str, Sequence[Axis]] | None") -> "ShardingPlan":
        """A plan from ``"replicate"``, ``"fsdp"``, a rules mapping, or a plan (as is).

        Args:
            plan: what ``fit``/``build``/``summary`` accept as ``sharding=``; ``None`` replicates.

        Returns:
            The ``ShardingPlan``.

        Raises:
            ValueError: anything else.
        """
        if isinstance(plan, ShardingPlan):
            return plan
        if plan is None or plan == "replicate":
            return ShardingPlan()
        if plan == "fsdp":
            return ShardingPlan(fsdp=True)
        if isinstance(plan, Mapping):
            return ShardingPlan(plan)
        raise ValueError(
            f'sharding must be "replicate", "fsdp", a mapping of path regexes to layouts or a '
            f"ShardingPlan; got {plan!r}."
        )

    def _key(self) -> tuple[Any, ...]:
        return (self.rules, self.fsdp, self.min_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardingPlan) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = [repr(dict(self.rules))] if self.rules else []
        if self.fsdp:
            parts.append("fsdp=True")
        if self.fsdp or self.min_size != 4096:
            parts.append(f"min_size={self.min_size}")
        return f"ShardingPlan({', '.join(parts)})"

    # -- resolution: every check happens here, before anything compiles --------------------
    def resolve(
        self, params: Sequence[tuple[str, Any]], mesh: Mesh | AbstractMesh
    ) -> list[Placement]:
        """The placement of each ``(path, array or ShapeDtypeStruct)`` on ``mesh``.

        Args:
            params: every parameter's path and something with ``shape`` and ``dtype``.
            mesh: the device mesh (or a ``jax.sharding.AbstractMesh``: only its axis sizes count).

        Returns:
            One ``Placement`` per parameter, in order.

        Raises:
            ShardingError: a rule matches no parameter, names an axis the mesh lacks, has the
                wrong number of entries, or splits an axis the mesh axis size does not divide;
                FSDP on a mesh without the data axis.
        """
        sizes = dict(mesh.shape)
        names = [p for p, _ in params]
        matched: dict[int, tuple[str, tuple[Axis, ...]]] = {}
        for pattern, layout in self.rules:
            hits = [i for i, n in enumerate(names) if re.fullmatch(pattern, n)]
            if not hits:
                shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
                raise ShardingError(
                    f"the sharding rule {pattern!r} -> {_fmt_spec(layout)} matches no parameter "
                    f"(the regex must match a whole path). The parameters are: {shown}. Fix the "
                    "regex (e.g. start it with '.*') or remove the rule."
                )
            for i in hits:
                matched.setdefault(i, (pattern, layout))
        if self.fsdp and DATA not in sizes:
            raise ShardingError(
                f"FSDP splits parameters over the mesh axis {DATA!r}, but the mesh has axes "
                f"{_fmt_mesh(sizes)}. Name one axis {DATA!r}: "
                f"jax.make_mesh((n, ...), ({DATA!r}, ...))."
            )
        out = []
        for i, (path, leaf) in enumerate(params):
            shape, dtype = tuple(int(n) for n in leaf.shape), str(np.dtype(leaf.dtype))
            if i in matched:
                pattern, layout = matched[i]
                _check_layout(path, shape, pattern, layout, sizes)
                spec, reason = PartitionSpec(*layout), f"rule {pattern!r}"
            elif self.fsdp:
                spec, reason = self._fsdp(shape, sizes[DATA])
            else:
                spec, reason = PartitionSpec(), "replicated"
            out.append(Placement(path, shape, dtype, spec, reason))
        return out

    def _fsdp(self, shape: tuple[int, ...], n: int) -> tuple[PartitionSpec, str]:
        if math.prod(shape) < self.min_size:
            return PartitionSpec(), f"replicated (under min_size={self.min_size})"
        axes = [k for k, d in enumerate(shape) if d % n == 0]
        if not axes:
            return PartitionSpec(), f"replicated (no axis divisible by {DATA}={n})"
        k = max(axes, key=lambda k: (shape[k], -k))
        return PartitionSpec(*[DATA if j == k else None for j in range(len(shape))]), ("fsdp")


def _fmt_mesh(sizes: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{a!r}: {n}" for a, n in sizes.items()) + "}"


def _check_layout(
    path: str,
    shape: tuple[int, ...],
    pattern: str,
    layout: tuple[Axis, ...],
    sizes: Mapping[str, int],
) -> None:
    where = f"parameter {path} of shape {shape}: the rule {pattern!r} -> {_fmt_spec(layout)}"
    if len(layout) != len(shape):
        raise ShardingError(
            f"{where} has {len(layout)} entries for {len(shape)} axes. Give one entry per "
            "axis (None keeps an axis whole), or narrow the regex so it does not match "
            "this parameter."
        )
    seen: set[str] = set()
    for k, (dim, entry) in enumerate(zip(shape, layout, strict=True)):
        for a in _axes(entry):
            if a not in sizes:
                raise ShardingError(
                    f"{where} names the mesh axis {a!r}, but the mesh has axes "
                    f"{_fmt_mesh(sizes)}. Use one of those, or make the mesh with an axis "
                    f"named {a!r}."
                )
            if a in seen:
                raise ShardingError(
                    f"{where} uses the mesh axis {a!r} twice; an array can be split over a "
                    "mesh axis along one of its axes only."
                )
            seen.add(a)
        parts = math.prod(sizes[a] for a in _axes(entry))
        if dim % parts:
            names = _axes(entry)
            over = (
                f"the mesh axis {names[0]!r} of size {parts}"
                if len(names) == 1
                else f"the mesh axes {' x '.join(map(repr, names))} of size {parts} "
                f"({' x '.join(str(sizes[a]) for a in names)})"
            )
            fits = [d for d in range(2, dim + 1) if dim % d == 0][:4]
            hint = f" ({', '.join(map(str, fits))})" if fits else ""
            raise ShardingError(
                f"{where} splits axis {k} ({dim}) over {over}, which does not divide {dim}. "
                f"Use a mesh size that divides {dim}{hint}, or keep axis {k} whole (None) "
                "in the rule."
            )


# -- trees: the paths of a model's parameters, and shardings for whole state trees ---------------
def _key(entry: Any) -> Any:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return str(entry)


def leaf_path(model: Any, keypath: Sequence[Any]) -> str:
    """The readable path of a parameter leaf at ``keypath`` (a JAX key path) of ``model``'s state.

    A built model's layers show as ``<index>.<blueprint class>`` (``"2.Linear"``); other keys
    as they are; the final ``.value`` of an NNX variable is dropped.
    """
    keys = [_key(e) for e in keypath]
    if keys and keys[-1] == "value":
        keys = keys[:-1]
    parts: list[str] = []
    obj: Any = model
    i = 0
    while i < len(keys):
        key = keys[i]
        blueprint = getattr(obj, "blueprint", None)
        layers = getattr(blueprint, "layers", None)
        if key == "layers" and layers is not None and i + 1 < len(keys):
            k = keys[i + 1]
            parts += [str(k), type(layers[k]).__name__]
            obj = obj.layers[k]
            i += 2
            continue
        parts.append(str(key))
        try:
            obj = obj[key] if isinstance(key, int) else getattr(obj, str(key))
        except (AttributeError, IndexError, KeyError, TypeError):
            obj = None
        i += 1
    return ".".join(parts)


def param_placements(
    plan: ShardingPlan, mesh: Mesh, model: Any, params: Any
) -> tuple[list[Placement], Any]:
    """Resolve ``plan`` for the parameter tree ``params`` of ``model``.

    Returns:
        The placements (in leaf order) and a tree like ``params`` of ``NamedSharding``s.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    placements = plan.resolve([(leaf_path(model, kp), leaf) for kp, leaf in flat], mesh)
    shardings = [NamedSharding(mesh, p.spec) for p in placements]
    return placements, jax.tree.unflatten(treedef, shardings)


def follow_params(tree: Any, params: Any, param_shardings: Any, mesh: Mesh) -> Any:
    """Shardings for an optimizer state ``tree``: a leaf whose key path ends with a parameter's
    key path and has its shape (Adam's ``mu``/``nu``, momentum) is placed like that parameter;
    everything else (step counts, schedules' state) is replicated."""
    by_path: dict[tuple[Any, ...], tuple[tuple[int, ...], Any]] = {}
    p_flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for (kp, leaf), sharding in zip(p_flat, jax.tree.leaves(param_shardings), strict=True):
        by_path[tuple(_key(e) for e in kp)] = (tuple(leaf.shape), sharding)
    lengths = sorted({len(k) for k in by_path}, reverse=True)
    replicated = NamedSharding(mesh, PartitionSpec())

    def pick(kp: Any, leaf: Any) -> Any:
        keys = tuple(_key(e) for e in kp)
        for n in lengths:
            hit = by_path.get(keys[-n:]) if n <= len(keys) else None
            if hit is not None and hit[0] == tuple(getattr(leaf, "shape", ())):
                return hit[1]
        return replicated

    return jax.tree_util.tree_map_with_path(pick, tree)


def device_bytes(tree: Any) -> dict[Any, int]:
    """Bytes each device holds of the arrays in ``tree`` (summed over ``addressable_shards``)."""
    out: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            out[shard.device] = out.get(shard.device, 0) + int(shard.data.nbytes)
    return out


def state_shardings(
    plan: ShardingPlan, mesh: Mesh, model: Any, params: Any, opt_state: Any
) -> tuple[Any, Any]:
    """Trees of ``NamedSharding``s for a model's parameters and its optimizer state."""
    _, p_sh = param_placements(plan, mesh, model, params)
    return p_sh, follow_params(opt_state, params, p_sh, mesh)


def auto_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis in ``Auto`` mode: the plan's shardings are placed on the state,
    and XLA (GSPMD) propagates them through the step. ``jax.make_mesh`` makes ``Explicit`` axes
    by default, under which a model's ``x @ kernel`` would have to say how its output is split.
    """
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
