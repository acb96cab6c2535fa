"""``Sequential``: the blueprint ``a >> b`` makes (its built form is ``_model.Model``)."""

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from flax import nnx

from .._specs import TensorSpec
from ._blueprint import (
    Blueprint,
    GiveDType_co,
    GiveRank_co,
    NeedDType_contra,
    NeedRank_contra,
    infer,
    set_field,
)
from ._model import Model
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
            raise ValueError(
                f"Sequential: layer names must be unique, {dupes} appear more than once."
            )
        set_field(self, "layers", tuple(flat))

    if TYPE_CHECKING:  # built directly, a composition's types are not known

        def __init__(
            self: "Sequential[Any, Any, Any, Any]",
            layers: tuple[Any, ...] = (),
            *,
            name: str | None = None,
        ) -> None: ...

    # ``left >> self`` where ``self`` is a composition: what the left gives must be what ``self``
    # needs (``Need`` and ``Rank``); where the left gives ``AsInput``, the two needs meet. Overloads
    # an ``Any`` argument matches come in the order that claims least (see ``_typing``).
    @overload
    def __rrshift__(
        self: "Sequential[Need, Rank, OutDType, Given]",
        other: "Blueprint[InDType, InRank, Need, Rank]",
    ) -> "Sequential[InDType, InRank, OutDType, Given]": ...
    @overload
    def __rrshift__(
        self: "Sequential[Need, Rank, OutDType, Given]",
        other: "Blueprint[Need, InRank, AsInput, Rank]",
    ) -> "Sequential[Need, InRank, OutDType, Given]": ...
    @overload
    def __rrshift__(  # type: ignore[overload-overlap]
        self: "Sequential[AnyDType, Rank, AsInput, Given]",
        other: "Blueprint[InDType, InRank, Carried, Rank]",
    ) -> "Sequential[InDType, InRank, Carried, Given]": ...
    @overload
    def __rrshift__(
        self: "Sequential[Floating, Rank, AsInput, Given]",
        other: "Blueprint[InDType, InRank, FloatDType, Rank]",
    ) -> "Sequential[InDType, InRank, FloatDType, Given]": ...
    @overload
    def __rrshift__(
        self: "Sequential[Integer, Rank, AsInput, Given]",
        other: "Blueprint[InDType, InRank, IntDType, Rank]",
    ) -> "Sequential[InDType, InRank, IntDType, Given]": ...
    @overload
    def __rrshift__(
        self: "Sequential[Need, Rank, AsInput, Given]",
        other: "Blueprint[Need, InRank, AsInput, Rank]",
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
        return self.build_model(spec, rngs)

    def build_model(self, spec: TensorSpec, rngs: nnx.Rngs) -> "Model":
        """Build every layer in turn, each for the spec the one before it gives."""
        n = len(self.layers)
        modules, specs = [], [spec]
        for i, bp in enumerate(self.layers, start=1):
            module, spec = infer(bp, spec, rngs, f"layer {i} of {n}, {bp!r}")
            modules.append(module)
            specs.append(spec)
        return Model(modules, blueprint=self, specs=specs)
