"""``Sequential``, the blueprint ``a >> b`` makes, and ``Model``, the module it builds."""

import dataclasses
from collections.abc import Iterator
from typing import Any, overload

import jax.numpy as jnp
import jaxtyping
import numpy as np
from flax import nnx
from jaxtyping import Array, Shaped

from .._errors import LayerShapeError
from .._specs import (
    TensorSpec,
    compare,
    format_annotation,
    format_spec,
    format_value,
    parse,
)
from ._blueprint import Blueprint, infer, set_field


@dataclasses.dataclass(frozen=True, repr=False)
class Sequential(Blueprint):
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


class Model(nnx.Module):
    """A built ``Sequential``: a Flax NNX module that knows its input and output specs.

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
    mismatch = compare(spec, x)
    expected = format_annotation(spec, array="Array")
    lines = [f"  expected  {expected}", f"  got       {format_value(x)}"]
    if mismatch is not None:
        lines += [f"  {p.reason()}" for p in mismatch.problems if p.kind != "dtype"]
    want = [d.size for d in parse(spec).dims]
    shape: list[Any] = list(getattr(x, "shape", ()))
    channels_first = (side == "input" and len(shape) == len(want) >= 3 and shape[1:] != want[1:]
                      and shape[1] == want[-1] and shape[2:] == want[1:-1])
    if channels_first:
        perm = ", ".join(["0", *[str(i) for i in range(2, len(shape))], "1"])
        lines.append("  the input looks channels-first (batch, channels, ...) but the model is channels-last.")
        lines.append(f"  Transpose it first: jnp.transpose(x, ({perm})).")
    dtypes = list(spec.dtypes)
    if getattr(x, "dtype", None) is not None and np.dtype(x.dtype).name not in dtypes:
        lines.append(f"  its dtype is {np.dtype(x.dtype).name}; the model was built for {dtypes[0]}.")
        lines.append(f"  Convert the input (x.astype(jnp.{dtypes[0]})) or build the model for this dtype.")
    elif side == "input" and not channels_first:
        lines.append(f"  The model was built for {expected}; build it again for this input, or reshape the input.")
    boundary = " does not match the spec the model was built for" if side == "input" else " is not what the model declared"
    return LayerShapeError((), "\n".join(lines), subject=f"The model's {side}", boundary=boundary)
