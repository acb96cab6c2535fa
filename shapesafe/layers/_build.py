"""``build``: a blueprint and an input spec in, a Flax NNX module with every size inferred out."""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, overload

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._sharding import ShardingPlan, auto_mesh, param_placements
from .._specs import spec_from_annotation
from ._blueprint import Blueprint
from ._custom import Custom, as_blueprint
from ._model import Model
from ._sequential import Sequential
from ._typing import Given, Rank, Spec, SpecDType, SpecLike, SpecRank, UserLayer


# Edit-time types (``layers/_typing``): a jaxtyping spec is opaque to checkers, so only its being
# an annotation is checked; a ``shapesafe.typing`` spec must satisfy what the blueprint needs
# (the model's output dtype is then the blueprint's, ``AsInput`` where it passes the input's on).
# pyright reports the last overload's mismatch: the typed one, which names the dtype.
@overload
def build(
    blueprint: Blueprint[Any, Any, Any, Any] | UserLayer,
    spec: SpecLike,
    *,
    seed: int = 0,
    mesh: Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
) -> Model[Any, Any, Any, Any]: ...
@overload
def build(
    blueprint: UserLayer,
    spec: Spec[SpecDType, SpecRank],
    *,
    seed: int = 0,
    mesh: Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
) -> Model[SpecDType, SpecRank, Any, Any]: ...
@overload
def build(
    blueprint: Blueprint[SpecDType, SpecRank, Given, Rank],
    spec: Spec[SpecDType, SpecRank],
    *,
    seed: int = 0,
    mesh: Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
) -> Model[SpecDType, SpecRank, Given, Rank]: ...
def build(
    blueprint: Any,
    spec: Any,
    *,
    seed: int = 0,
    mesh: Mesh | None = None,
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
) -> Model:
    """Infer every size of ``blueprint`` for inputs of ``spec`` and build its parameters.

    Shapes are propagated with ``jax.export`` symbolic dimensions, so named dimensions
    (``batch``) hold for every size at once; no data is read and no real-size array goes
    through a layer. Mismatches raise ``ShapeError`` naming the layer, what it expected,
    what it got (and where each dimension came from) and the fix.

    Args:
        blueprint: a layer blueprint or a composition (``a >> b``); an annotated function or
            NNX module is accepted too.
        spec: the input's jaxtyping annotation, e.g. ``UInt8[Array, "batch 250 250 3"]``.
        seed: seeds parameter initialisation and dropout.
        mesh: a ``jax.sharding.Mesh``: the parameters are created on it, already placed by
            ``sharding`` (one compiled program with output shardings; no parameter is ever
            whole on one device unless the plan replicates it).
        sharding: the plan (``"replicate"``, ``"fsdp"``, rules ``{path regex: layout}`` or a
            ``ShardingPlan``), checked against every parameter's shape before compiling.

    Returns:
        A ``Model`` (a ``flax.nnx.Module``) with ``input_spec`` and ``output_spec``, in
        inference mode (``model.train()`` switches Dropout and BatchNorm to training; ``fit``
        does so for its steps on its own). A spec that names a kind of dtype
        (``Float[Array, "batch 64"]``) builds for JAX's default dtype of it (float32) and the
        model converts any dtype of that kind at its input; a concrete one (``Float32``) is exact.

    Raises:
        ShapeError: the spec is not a usable annotation (or names a 64-bit dtype while JAX's
            64-bit mode is off), or a layer cannot take its input.
        ShardingError: the sharding plan does not fit a parameter or the mesh.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, UInt8
        >>> from shapesafe import layers as L
        >>> net = L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(64) >> L.ReLU() >> L.Linear(2)
        >>> model = ss.build(net, UInt8[Array, "batch 250 250 3"], seed=0)
        >>> ss.summary(model).output_spec
        'Float32[batch, 2]'
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"build: seed must be an int, got {seed!r}.")
    make, seq = _maker(blueprint, spec, seed, "build")
    if mesh is None and sharding is not None:
        raise ValueError("build: sharding= needs a mesh= to place the parameters on.")
    if _holds_user_modules(seq):  # keep a user's own module object as it is
        model = make()
        if mesh is not None:
            nnx.update(model, jax.device_put(nnx.state(model), _shardings(model, mesh, sharding)))
        return _for_inference(model)
    # One compiled program initialises every parameter: far faster than one small XLA
    # compilation per parameter shape. It runs once, so a small model's is compiled without
    # XLA's optimisation passes (``_init_options``); values agree with an eager
    # initialisation to float rounding (<1e-7) and are the same on every build.
    abstract = nnx.eval_shape(make)
    init = jax.jit(
        lambda: nnx.state(make()),
        compiler_options=_init_options(abstract),
        out_shardings=None if mesh is None else _shardings(abstract, mesh, sharding),
    )
    return _for_inference(nnx.merge(nnx.graphdef(abstract), init()))


_UNOPTIMISED_BELOW = 1 << 24  # parameters: above this, optimising the initialiser pays


def _init_options(abstract: Any) -> dict[str, Any] | None:
    """XLA options of the initialiser: without optimisation passes for a model of few
    parameters, where compiling dominates (ResNet-18, 11 M: 2.9 s to ready instead of 5.0 s);
    optimised above 16 M, where generating the random numbers dominates and runs ~3x faster
    optimised (the talk's CNN at 250 px, 252 M: 4.3 s instead of 13.0 s; see
    benchmarks/README.md, "Build cost")."""
    count = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(nnx.state(abstract)))
    return {"xla_backend_optimization_level": 0} if count < _UNOPTIMISED_BELOW else None


def _shardings(model: Any, mesh: Mesh, sharding: Any) -> Any:
    """A tree like ``nnx.state(model)`` of ``NamedSharding``s: parameters by the plan, every
    other variable (statistics, RNG state) replicated."""
    mesh = auto_mesh(mesh)
    _, by_param = param_placements(
        ShardingPlan.of(sharding), mesh, model, nnx.state(model, nnx.Param)
    )
    keyed = {
        jax.tree_util.keystr(kp): s
        for kp, s in jax.tree_util.tree_flatten_with_path(
            by_param, is_leaf=lambda x: isinstance(x, NamedSharding)
        )[0]
    }
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map_with_path(
        lambda kp, _: keyed.get(jax.tree_util.keystr(kp), replicated), nnx.state(model)
    )


def _for_inference(model: Model) -> Model:
    """A built model starts in inference mode (Dropout off, BatchNorm on its running
    statistics), as a Keras model called directly does; ``fit`` trains in training mode."""
    model.eval()
    return model


def _maker(blueprint: Any, spec: Any, seed: int, what: str) -> tuple[Callable[[], Model], Any]:
    in_spec = spec_from_annotation(spec, what=f"{what}: input spec")
    bp = as_blueprint(blueprint)
    seq = bp if isinstance(bp, Sequential) else Sequential((bp,))

    def make() -> Model:
        return seq.build_model(in_spec, nnx.Rngs(params=seed, dropout=seed + 1))

    return make, seq


def build_abstract(blueprint: Any, spec: Any, *, what: str = "summary") -> Model:
    """``build`` without allocating: every parameter is a ``jax.ShapeDtypeStruct``
    (``nnx.eval_shape``), for ``summary(blueprint, spec)``. Raises what ``build`` raises."""
    make, _ = _maker(blueprint, spec, 0, what)
    return nnx.eval_shape(make)


def _holds_user_modules(bp: Any) -> bool:
    """Whether a composition holds an already-built user module (``Custom``)."""
    if isinstance(bp, Custom):
        return True
    if isinstance(bp, Blueprint):
        return any(_holds_user_modules(getattr(bp, f.name)) for f in dataclasses.fields(bp))
    if isinstance(bp, tuple | list):
        return any(_holds_user_modules(b) for b in bp)
    return False
