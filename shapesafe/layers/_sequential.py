"""``Sequential``, the blueprint ``a >> b`` makes, and ``Model``, the module it builds."""

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, overload

import jax.numpy as jnp
import jaxtyping
import numpy as np
from flax import nnx
from jaxtyping import Array, Shaped

from .._checking import LayerShapeError, describe
from .._spec import TensorSpec, format_spec, format_value
from ._blueprint import (
    Blueprint,
    GiveDType_co,
    GiveRank_co,
    NeedDType_contra,
    NeedRank_contra,
    infer,
    set_field,
)
from ._typing import (
    AnyDType,
    AsInput,
    Carried,
    FloatDType,
    Floating,
    Given,
    InDType,
    InRank,
    IntDType,
    Integer,
    Need,
    OutDType,
    Rank,
    UserLayer,
)


@dataclasses.dataclass(frozen=True, repr=False)
class Sequential(Blueprint[NeedDType_contra, NeedRank_contra, GiveDType_co, GiveRank_co]):
    """Blueprints applied one after another; ``a >> b >> c`` builds one.

    Nested unnamed sequences flatten. A sequence supports ``len``, iteration, indexing by
    position or by name, and slicing (``net[:-1]`` drops the head).

    Example:
        >>> from shapesafe import layers as L
        >>> net = L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(2).named("head")
        >>> len(net), net[-1], net["head"]
        (4, Linear(2, name='head'), Linear(2, name='head'))
        >>> net[:-1]
        Flatten() >> Linear(64) >> ReLU()
    """

    layers: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        from ._custom import as_blueprint

        flat: list[Blueprint] = []
        for layer in self.layers:
            bp = as_blueprint(layer)
            if isinstance(bp, Sequential) and bp.name is None:
                flat.extend(bp.layers)
            else:
                flat.append(bp)
        names = [b.name for b in flat if b.name is not None]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Sequential: layer names must be unique, {dupes} appear more than once.")
        set_field(self, "layers", tuple(flat))

    if TYPE_CHECKING:  # built directly, a composition's types are not known
        def __init__(self: "Sequential[Any, Any, Any, Any]", layers: tuple[Any, ...] = (), *,
                     name: str | None = None) -> None: ...

    # ``left >> self`` where ``self`` is a composition: what the left gives must be what ``self``
    # needs (``Need`` and ``Rank``); where the left gives ``AsInput``, the two needs meet. Overloads
    # an ``Any`` argument matches come in the order that claims least (see ``_typing``).
    @overload
    def __rrshift__(self: "Sequential[Need, Rank, OutDType, Given]", other: "Blueprint[InDType, InRank, Need, Rank]"
                    ) -> "Sequential[InDType, InRank, OutDType, Given]": ...
    @overload
    def __rrshift__(self: "Sequential[Need, Rank, OutDType, Given]", other: "Blueprint[Need, InRank, AsInput, Rank]"
                    ) -> "Sequential[Need, InRank, OutDType, Given]": ...
    @overload
    def __rrshift__(self: "Sequential[AnyDType, Rank, AsInput, Given]", other: "Blueprint[InDType, InRank, Carried, Rank]"  # type: ignore[overload-overlap]
                    ) -> "Sequential[InDType, InRank, Carried, Given]": ...
    @overload
    def __rrshift__(self: "Sequential[Floating, Rank, AsInput, Given]", other: "Blueprint[InDType, InRank, FloatDType, Rank]"
                    ) -> "Sequential[InDType, InRank, FloatDType, Given]": ...
    @overload
    def __rrshift__(self: "Sequential[Integer, Rank, AsInput, Given]", other: "Blueprint[InDType, InRank, IntDType, Rank]"
                    ) -> "Sequential[InDType, InRank, IntDType, Given]": ...
    @overload
    def __rrshift__(self: "Sequential[Need, Rank, AsInput, Given]", other: "Blueprint[Need, InRank, AsInput, Rank]"
                    ) -> "Sequential[Need, InRank, AsInput, Given]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return Sequential((other, self))

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Blueprint]:
        return iter(self.layers)

    @overload
    def __getitem__(self, key: slice) -> "Sequential": ...
    @overload
    def __getitem__(self, key: int | str) -> Blueprint: ...
    def __getitem__(self, key: int | str | slice) -> "Blueprint":
        if isinstance(key, slice):
            return Sequential(self.layers[key])
        if isinstance(key, str):
            for layer in self.layers:
                if layer.name == key:
                    return layer
            known = [b.name for b in self.layers if b.name is not None]
            raise KeyError(f"no layer named {key!r}; named layers: {known}")
        return self.layers[key]

    def __repr__(self) -> str:
        inner = " >> ".join(repr(b) for b in self.layers) or "Sequential(())"
        return f"({inner}).named({self.name!r})" if self.name is not None else inner

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> "Model":
        n = len(self.layers)
        modules, specs = [], [spec]
        for i, bp in enumerate(self.layers, start=1):
            module, spec = infer(bp, spec, rngs, f"layer {i} of {n}, {bp!r}")
            modules.append(module)
            specs.append(spec)
        return Model(modules, blueprint=self, specs=specs)


class Model(nnx.Module, Generic[NeedDType_contra, NeedRank_contra, GiveDType_co, GiveRank_co]):
    """A built ``Sequential``: a Flax NNX module that knows its input and output specs.

    Statically ``Model[InDType, InRank, OutDType, OutRank]`` (e.g. ``Model[UInt8, Rank4,
    Float32, Rank2]``) where ``ss.build`` could see them, see ``shapesafe.typing``.

    Calling it checks the input against ``input_spec`` and the output against
    ``output_spec`` with one shared set of dimension bindings (``batch`` must agree), and
    each layer checks its own annotations. All checks run while JAX traces, so a jitted
    call pays nothing for them.
    """

    def __init__(self, layers: list[nnx.Module], *, blueprint: Sequential, specs: list[TensorSpec]):
        self.layers = nnx.List(layers)
        self.blueprint = blueprint
        self.names = tuple(b.name for b in blueprint.layers)
        self.input_spec = specs[0].annotation()
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
                raise KeyError(f"no layer named {key!r}; named layers: {[n for n in self.names if n]}")
            key = self.names.index(key)
        return self.layers[key]

    def __call__(self, x: Shaped[Array | np.ndarray, "..."]) -> Shaped[Array, "..."]:
        y: Any = jnp.asarray(x) if isinstance(x, np.ndarray) else x
        n = len(self.layers)
        with jaxtyping.jaxtyped("context"):  # type: ignore[arg-type]
            if not isinstance(y, self.input_spec):
                raise _boundary_error(self, "input", self.input_spec, y)
            for i, (bp, layer) in enumerate(zip(self.blueprint.layers, self.layers, strict=True), start=1):
                try:
                    y = layer(y)
                except LayerShapeError as e:
                    raise e.within(f"layer {i} of {n}, {bp!r}") from None
            if not isinstance(y, self.output_spec):
                raise _boundary_error(self, "output", self.output_spec, y)
        return y


def _boundary_error(model: Model, side: str, spec: Any, x: Any) -> LayerShapeError:
    expected = f'{spec.dtype.__name__}[Array, "{spec.dim_str}"]'
    lines = [f"  expected  {expected}", f"  got       {format_value(x)}"]
    want: list[int | None] = [int(d.size) if hasattr(d, "size") else None for d in spec.dims]
    shape: list[Any] = list(getattr(x, "shape", ()))
    channels_first = (side == "input" and len(shape) == len(want) >= 3 and shape[1:] != want[1:]
                      and shape[1] == want[-1] and shape[2:] == want[1:-1])
    if channels_first:
        perm = ", ".join(["0", *[str(i) for i in range(2, len(shape))], "1"])
        lines.append("  the input looks channels-first (batch, channels, ...) but the model is channels-last.")
        lines.append(f"  Transpose it first: jnp.transpose(x, ({perm})).")
    if getattr(x, "dtype", None) is not None and np.dtype(x.dtype).name not in spec.dtypes:
        lines.append(f"  its dtype is {np.dtype(x.dtype).name}; the model was built for {spec.dtypes[0]}.")
        lines.append(f"  Convert the input (x.astype(jnp.{spec.dtypes[0]})) or build the model for this dtype.")
    elif side == "input" and len(lines) == 2:
        lines.append(f"  The model was built for {expected}; build it again for this input, or reshape the input.")
    boundary = " does not match the spec the model was built for" if side == "input" else " is not what the model declared"
    return LayerShapeError((), "\n".join(lines), subject=f"The model's {side}", boundary=boundary)


def model_rows(model: Any) -> tuple[tuple[str, str, str], ...]:
    """(layer repr, input spec, output spec) per layer of a built ``Model``."""
    return model.rows if isinstance(model, Model) else ((describe(model), "?", "?"),)


