"""The blueprint base class, argument validation, and per-layer shape inference.

A blueprint is a frozen dataclass of configuration only. ``_build(spec, rngs)`` makes the
built Flax NNX module for one input spec; ``infer`` then traces that module once on a
symbolic ``jax.ShapeDtypeStruct`` to learn the output spec, so no real-size data is touched.
"""

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

import jax
from flax import nnx

from .._errors import LayerShapeError
from .._specs import TensorSpec, format_value, got_with_origins, trace_origins
from ._typing import InDType, InRank, UserLayer

if TYPE_CHECKING:
    from ._sequential import Sequential


class Refusal(Exception):
    """Raised by a blueprint's ``_build`` when the input spec cannot be built on."""

    def __init__(self, expected: str, reason: str, fix: str | None = None):
        super().__init__(reason)
        self.expected, self.reason, self.fix = expected, reason, fix


# What a blueprint needs of its input and what it gives: ``Blueprint[InDType, InRank, OutDType,
# OutRank]``, for static checkers only (see ``_typing``).
NeedDType_contra = TypeVar("NeedDType_contra", contravariant=True)
NeedRank_contra = TypeVar("NeedRank_contra", contravariant=True)
GiveDType_co = TypeVar("GiveDType_co", covariant=True)
GiveRank_co = TypeVar("GiveRank_co", covariant=True)
Named = TypeVar(
    "Named", bound="Blueprint[Any, Any, Any, Any]"
)  # (not Self: beartype refuses it here)


@dataclasses.dataclass(frozen=True, repr=False)
class Blueprint(Generic[NeedDType_contra, NeedRank_contra, GiveDType_co, GiveRank_co]):
    """Base class of every layer blueprint: immutable, hashable configuration.

    Subclasses are frozen dataclasses whose positional fields are sizes and whose keyword
    fields are everything else. ``a >> b`` composes two blueprints into a ``Sequential``.
    Statically a blueprint is ``Blueprint[InDType, InRank, OutDType, OutRank]``: what it
    needs of its input and what it gives (``shapesafe.layers._typing`` explains it).
    """

    name: str | None = dataclasses.field(default=None, kw_only=True)

    if TYPE_CHECKING:
        # ``left >> right`` is typed by the right side's ``__rrshift__`` (its kind in ``_typing``);
        # this one types a user's function or module on the right, and two sides of one type
        # (``Linear(64) >> Linear(2)``), where Python and mypy call only ``left.__rshift__``:
        # those compositions' types are not tracked.
        def __rshift__(self, other: Self | UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    else:

        def __rshift__(self, other: Any) -> "Sequential":
            from ._sequential import Sequential

            return Sequential((self, other))

    @overload
    def __rrshift__(
        self, other: "Blueprint[InDType, InRank, Any, Any]"
    ) -> "Sequential[InDType, InRank, Any, Any]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        from ._sequential import Sequential

        return Sequential((other, self))

    def named(self: "Named", name: str) -> "Named":
        """A copy of this blueprint with a name (``net["head"]`` finds it)."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(
                f"{self!r}.named(name={name!r}): a name must be a Python identifier, e.g. 'head'."
            )
        return dataclasses.replace(self, name=name)

    def __repr__(self) -> str:
        args: list[str] = []
        defaults = self._defaults()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "name" or not f.repr:
                continue
            if f.kw_only or f.default is not dataclasses.MISSING:
                if f.name in defaults and value == defaults[f.name]:
                    continue
                args.append(f"{f.name}={_show(value)}")
            else:
                args.append(_show(value))
        if self.name is not None:
            args.append(f"name={self.name!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def _defaults(self) -> dict[str, Any]:
        """Default field values after ``__post_init__`` normalised them (``1 -> (1, 1)``)."""
        fields = [f for f in dataclasses.fields(self) if f.default is not dataclasses.MISSING]
        try:
            plain = dataclasses.replace(self, **{f.name: f.default for f in fields})  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return {f.name: f.default for f in fields}
        return {f.name: getattr(plain, f.name) for f in fields}

    def _build(self, spec: TensorSpec, rngs: nnx.Rngs) -> nnx.Module:
        raise NotImplementedError(f"{type(self).__name__} does not define _build")


def _show(value: Any) -> str:
    dtype_name = getattr(value, "name", None)
    if hasattr(value, "itemsize") and isinstance(dtype_name, str):  # a NumPy dtype
        return f"jnp.{dtype_name}"
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    if (
        isinstance(value, float)
        and 0 < value < 1
        and len(repr(value)) > 8
        and 1 / round(1 / value) == value
    ):
        return f"1 / {round(1 / value)}"  # Rescale(1 / 255), not Rescale(0.00392156862745098)
    return repr(value)


def infer(
    blueprint: Blueprint, spec: TensorSpec, rngs: nnx.Rngs, where: str
) -> tuple[nnx.Module, TensorSpec]:
    """Build one blueprint for ``spec`` and trace it abstractly to get its output spec."""
    empty = [i for i, d in enumerate(spec.shape) if isinstance(d, int) and d == 0]
    if empty:  # nothing to compute, no fan-in to initialise by: refuse before any layer code
        axes = ", ".join(str(i) for i in empty)
        raise LayerShapeError(
            (where,),
            "\n".join(
                [
                    "  expected  every dimension at least 1",
                    f"  got       {got_with_origins(spec)}",
                    f"  dimension {axes} is 0: an empty axis leaves the layer nothing to compute.",
                    "  Give it a size of at least 1 in the input spec (or in the layer before).",
                ]
            ),
            subject=repr(blueprint),
        )
    try:
        module = blueprint._build(spec, rngs)
    except Refusal as r:
        lines = [
            f"  expected  {r.expected}",
            f"  got       {got_with_origins(spec)}",
            f"  {r.reason}",
        ]
        if r.fix:
            lines.append(f"  {r.fix}")
        raise LayerShapeError((where,), "\n".join(lines), subject=repr(blueprint)) from None
    except LayerShapeError as e:  # from a nested container
        raise e.within(where) from e.__cause__
    graphdef, state = nnx.split(module)

    def forward(state: Any, x: Any) -> Any:
        return nnx.merge(graphdef, state)(x)

    try:
        out = jax.eval_shape(forward, state, spec.abstract())
    except LayerShapeError as e:
        cause = e.__cause__  # a user module's own failure stays the cause
        if not e.path and e.boundary == ", cannot take its input":  # show where each dim came from
            e = LayerShapeError(
                (),
                e.body.replace(
                    f"got       {format_value(spec.abstract())}",
                    f"got       {got_with_origins(spec)}",
                    1,
                ),
                boundary=e.boundary,
                subject=e.subject,
            )
        raise e.within(where) from cause
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise LayerShapeError(
            (where,),
            f"  it returned {type(out).__name__}, not one array.",
            boundary=", returned a wrong output",
            subject=repr(blueprint),
        )
    shape = tuple(out.shape)
    return module, TensorSpec(
        shape, out.dtype, trace_origins(spec, shape, where.split(" of ")[0] + f", {blueprint!r}")
    )


# -- argument validation (ValueError at construction, listing what is allowed) --------------


def positive_int(layer: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{layer}: {arg} must be a positive integer, got {value!r}.")
    return value


def int_tuple(layer: str, arg: str, value: Any, n: int, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a length-``n`` sequence of ints, each ``>= minimum``, as a tuple."""
    items = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    ok = (
        isinstance(items, Sequence)
        and len(items) == n
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items)
    )
    if not ok:
        noun = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(
            f"{layer}: {arg} must be a {noun} int or a tuple of {n} such ints, got {value!r}."
        )
    return tuple(items)  # type: ignore[arg-type]  # checked above


def rate(layer: str, arg: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{layer}: {arg} must be a float in [0, 1), got {value!r}.")
    return float(value)


def set_field(obj: object, name: str, value: Any) -> None:
    """Normalise a field of a frozen dataclass in ``__post_init__``."""
    object.__setattr__(obj, name, value)
