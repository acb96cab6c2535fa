"""``Model``: a built ``Sequential``, the Flax NNX module ``ss.build`` returns."""

from typing import TYPE_CHECKING, Any, Generic

import jax.numpy as jnp
import jaxtyping
import numpy as np
from flax import nnx
from flax.errors import TraceContextError
from jaxtyping import Array, Shaped

from .._errors import LayerShapeError, ShapesafeError
from .._specs import (
    TensorSpec,
    compare,
    format_annotation,
    format_spec,
    format_value,
    input_advice,
    parse,
)
from ._blueprint import GiveDType_co, GiveRank_co, NeedDType_contra, NeedRank_contra
from ._forward import Forward, cast_floating, own_paths, placed, taken

if TYPE_CHECKING:
    from ._sequential import Sequential


class Model(nnx.Module, Generic[NeedDType_contra, NeedRank_contra, GiveDType_co, GiveRank_co]):
    """A built ``Sequential``: a Flax NNX module that knows its input and output specs.

    Statically ``Model[InDType, InRank, OutDType, OutRank]`` (e.g. ``Model[UInt8, Rank4,
    Float32, Rank2]``) where ``ss.build`` could see them, see ``shapesafe.typing``.

    Calling it checks the input against ``input_spec`` and the output against
    ``output_spec`` with one shared set of dimension bindings (``batch`` must agree), and
    each layer checks its own annotations. All checks run while JAX traces, so a jitted
    call pays nothing for them.
    """

    def __init__(
        self, layers: list[nnx.Module], *, blueprint: "Sequential", specs: list[TensorSpec]
    ):
        self.layers = nnx.List(layers)
        self.blueprint = blueprint
        self.names = tuple(b.name for b in blueprint.layers)
        self.input_spec = specs[0].annotation()
        # what the model takes at its boundary: the input spec, or where it was built from a
        # kind (Float[...]) any dtype of that kind, converted to the input spec's dtype
        self.accepted_spec = specs[0].accepted()
        self.converts = specs[0].dtype.name if specs[0].category else ""
        self.output_spec = specs[-1].annotation()
        self.rows = tuple(
            (repr(b), format_spec(s_in.shape, s_in.dtype), format_spec(s_out.shape, s_out.dtype))
            for b, s_in, s_out in zip(blueprint.layers, specs[:-1], specs[1:], strict=True)
        )

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: int | str) -> nnx.Module:
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(
                    f"no layer named {key!r}; named layers: {[n for n in self.names if n]}"
                )
            key = self.names.index(key)
        return self.layers[key]

    def __call__(self, x: Shaped[Array | np.ndarray, "..."]) -> Shaped[Array, "..."]:
        allowed = parse(self.accepted_spec).dtypes
        if isinstance(x, np.ndarray) and allowed is not None and x.dtype.name not in allowed:
            raise _boundary_error(self, "input", self.accepted_spec, x)  # before a silent downcast
        y: Any = jnp.asarray(x) if isinstance(x, np.ndarray) else x
        with jaxtyping.jaxtyped("context"), taken(self) as (policy, prefix):  # type: ignore[arg-type]
            mixed = policy is not None and policy.compute is not None
            nested = mixed and policy is not None and not policy.outer  # input in compute dtype
            seen = cast_floating(y, _dtype(self.input_spec)) if nested else y
            if not isinstance(seen, self.accepted_spec):  # the specs as built
                raise _boundary_error(self, "input", self.accepted_spec, y)
            if 0 in tuple(y.shape):
                raise _empty_error(y)
            if not nested and self.converts and np.dtype(y.dtype).name != self.converts:
                y = y.astype(self.converts)  # a kind of dtype (Float): converted at the input
            if policy is None:
                y = self._run(range(len(self.layers)), y, None)
            else:
                y = self._run_by(policy, prefix, y)
            seen = cast_floating(y, _dtype(self.output_spec)) if mixed else y
            if not isinstance(seen, self.output_spec):
                raise _boundary_error(self, "output", self.output_spec, y)
        return y if nested else seen

    def _run_by(self, policy: Forward, prefix: str | None, y: Any) -> Any:
        """The layers run by a forward policy (``_forward``): checkpointed runs (where this
        model's place, ``prefix``, is known), compute dtype."""
        dtype = policy.dtype
        y = cast_floating(y, dtype)
        n = len(self.layers)
        runs = [(range(n), False)] if prefix is None else policy.runs(own_paths(self, prefix))
        for run, checkpointed in runs:
            if checkpointed:
                y = nnx.remat(_runner(run, dtype, prefix))(self, y)
            else:
                y = self._run(run, y, dtype, prefix)
        return y

    def _run(self, run: range, y: Any, dtype: Any, prefix: str | None = None) -> Any:
        """Layers ``run`` on ``y``, each failure named by its layer; floating outputs cast to
        ``dtype`` where given; the models nested in a layer told their paths behind ``prefix``."""
        n = len(self.layers)
        for i in run:
            bp, layer = self.blueprint.layers[i], self.layers[i]
            where = None if prefix is None else f"{prefix}{i}.{type(bp).__name__}"
            try:
                with placed(layer, where):
                    y = cast_floating(layer(y), dtype)
            except LayerShapeError as e:
                raise e.within(f"layer {i + 1} of {n}, {bp!r}") from e.__cause__
            except TraceContextError as e:
                raise ShapesafeError(
                    f"layer {i + 1} of {n}, {bp!r}, updates its own state while training (a "
                    "random stream, batch statistics), which a plain jax.jit of the model "
                    "cannot carry out.\n  For inference call model.eval() first; to train, "
                    "use ss.fit, nnx.jit, or nnx.split/nnx.merge returning the new state."
                ) from e
        return y


def _dtype(spec: Any) -> np.dtype:
    """The (first) dtype a spec annotation names."""
    return np.dtype(next(iter(spec.dtypes)))


def _runner(run: range, dtype: Any, prefix: str | None) -> Any:
    """``(model, y) -> model._run(run, y, dtype, prefix)``, for ``nnx.remat`` (which binds no
    defaults)."""

    def call(model: Model, y: Any) -> Any:
        return model._run(run, y, dtype, prefix)

    return call


def _empty_error(x: Any) -> LayerShapeError:
    axes = [i for i, d in enumerate(x.shape) if d == 0]
    what = (
        "the batch holds no examples"
        if axes == [0]
        else f"dimension {', '.join(map(str, axes))} is 0, an empty axis"
    )
    lines = [
        "  expected  every dimension at least 1",
        f"  got       {format_value(x)}",
        f"  {what}: there is nothing to compute.",
        "  Skip empty batches before calling the model (a dataset's batch(n) never makes one).",
    ]
    return LayerShapeError((), "\n".join(lines), subject="The model's input", boundary=" is empty")


def _boundary_error(model: Model, side: str, spec: Any, x: Any) -> LayerShapeError:
    expected = format_annotation(spec, array="Array")
    lines = [f"  expected  {expected}", f"  got       {format_value(x)}"]
    if side == "input":
        advice = input_advice(spec, tuple(x.shape), x.dtype, built_for=model.converts)
        lines += advice or [
            f"  The model was built for {expected}; build it again for this input, or reshape the input."
        ]
        boundary = " does not match the spec the model was built for"
    else:
        mismatch = compare(spec, x)
        lines += mismatch.lines()[2:] if mismatch is not None else []
        boundary = " is not what the model declared"
    return LayerShapeError((), "\n".join(lines), subject=f"The model's {side}", boundary=boundary)
