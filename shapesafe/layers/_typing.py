# mypy: disable-error-code="overload-overlap"
# (mypy's overlap check ignores that ``self`` is contravariant in the rank it needs, so it sees
# overlaps between the overloads below that cannot happen; pyright checks them and agrees.)
"""Edit-time types: the dtype and rank that pyright and mypy see flowing through ``>>``.

Design. Nothing here runs: these are the types a static checker reads, so that a user's own
editor flags ``L.Flatten() >> L.Linear(64)`` built on uint8 photos, or ``L.Conv2D`` after
``L.Flatten``, before anything is built. Three pieces:

- Phantom classes, never instantiated. Dtypes: ``UInt8 <: Integer <: AnyDType``,
  ``Float32 <: Floating <: AnyDType``, ``Bool <: AnyDType``. Ranks: ``Rank4 <: Rank4Plus <:
  Rank3Plus <: ... <: AnyRank`` ("at least 4 axes" is a supertype of "exactly 4"). ``AsInput``
  is not a dtype: it marks an output whose dtype is the input's.
- Every blueprint is ``Blueprint[InDType, InRank, OutDType, OutRank]``: what it needs of its
  input (contravariant: a layer that takes any dtype is a layer that takes floats) and what it
  gives (covariant). A bare layer needs its own requirement and gives ``AsInput`` and
  ``Any`` (the rank it keeps is not known before its input is). A composition is a
  ``Sequential`` of the same four: ``Flatten() >> Linear(64)`` is
  ``Sequential[Floating, Rank1Plus, AsInput, Rank2]``: it needs a floating input of rank >= 1
  and gives that dtype at rank 2.
- Each layer's ``__rrshift__`` is typed by the mixin of its kind below (``FloatingKeep``,
  ``FloatingTo``, ``AnyDTypeTo``, ``CastTo``, ``RescaleTo``, ``Embeds``): method-scoped type
  variables bounded by ``Floating`` or ``Integer`` check the dtype that reaches the layer, and
  a rank class in the output position checks its rank. Where the left side still gives
  ``AsInput`` (no dtype known yet), the layer's need moves to the composition's input instead,
  and ``ss.build`` checks it against the spec.

A checker sees a spec's dtype only through ``shapesafe.typing`` (``UInt8[Array, "batch 250 250
3"]`` there is the same jaxtyping annotation at run time, with a static type ``Spec[UInt8,
Any]``; ``UInt8[Array, "batch", 250, 250, 3]`` gives the rank too). A jaxtyping annotation is
opaque to checkers, so a model built from one checks nothing statically (gradual typing: what
is unknown is ``Any`` and never flagged). Overloads that a partially known (``Any``) argument
matches are ordered so that the first match is the one that claims least: pyright picks it.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar, overload

import jaxtyping
from flax import nnx

if TYPE_CHECKING:
    from typing_extensions import TypeForm

    from ._blueprint import Blueprint
    from ._sequential import Sequential

# -- dtypes -----------------------------------------------------------------------------------


class AnyDType:
    """Any dtype: what a layer that takes every dtype needs of its input (phantom: a type only)."""


class Floating(AnyDType):
    """A floating dtype; what ``Linear``, convolutions, norms, activations and RNNs need."""


class BFloat16(Floating):
    """bfloat16."""


class Float16(Floating):
    """float16."""


class Float32(Floating):
    """float32."""


class Float64(Floating):
    """float64."""


class Integer(AnyDType):
    """A signed or unsigned integer dtype; what ``Embedding`` needs."""


class Int8(Integer):
    """int8."""


class Int16(Integer):
    """int16."""


class Int32(Integer):
    """int32."""


class Int64(Integer):
    """int64."""


class UInt8(Integer):
    """uint8."""


class UInt16(Integer):
    """uint16."""


class UInt32(Integer):
    """uint32."""


class UInt64(Integer):
    """uint64."""


class Bool(AnyDType):
    """bool."""


class Complex(AnyDType):
    """A complex dtype."""


class Complex64(Complex):
    """complex64."""


class Complex128(Complex):
    """complex128."""


class AsInput:
    """Not a dtype: the output's dtype is the composition's input's (``Flatten``, ``ReLU`` ...)."""


# -- ranks ------------------------------------------------------------------------------------


class AnyRank:
    """Any number of axes."""


class Rank1Plus(AnyRank):
    """At least one axis."""


class Rank2Plus(Rank1Plus):
    """At least two axes."""


class Rank3Plus(Rank2Plus):
    """At least three axes (``batch time features``, ``batch width channels``)."""


class Rank4Plus(Rank3Plus):
    """At least four axes (``batch height width channels``)."""


class Rank0(AnyRank):
    """A scalar."""


class Rank1(Rank1Plus):
    """Exactly one axis."""


class Rank2(Rank2Plus):
    """Exactly two axes."""


class Rank3(Rank3Plus):
    """Exactly three axes."""


class Rank4(Rank4Plus):
    """Exactly four axes."""


class Rank5(Rank4Plus):
    """Exactly five axes."""


# -- type variables ---------------------------------------------------------------------------
# Method-scoped ones are named for what they stand for: mypy prints these names.

InDType = TypeVar("InDType")  # what the composition on the left needs, passed on unchanged
InRank = TypeVar("InRank")
Rank = TypeVar("Rank")  # the rank that reaches a layer and leaves it unchanged
AtLeast1 = TypeVar("AtLeast1", bound=Rank1Plus)  # ... where the layer needs that many axes
AtLeast2 = TypeVar("AtLeast2", bound=Rank2Plus)
AtLeast3 = TypeVar("AtLeast3", bound=Rank3Plus)
AtLeast4 = TypeVar("AtLeast4", bound=Rank4Plus)
Given = TypeVar("Given")  # a layer's own output rank (or dtype), read from the layer alone
FloatDType = TypeVar("FloatDType", bound=Floating)  # the floating dtype that reaches a layer
IntDType = TypeVar("IntDType", bound=Integer)
OutDType = TypeVar("OutDType", bound=AnyDType)  # a known dtype (never AsInput)
Carried = TypeVar("Carried")  # a dtype (or AsInput) that a layer passes on
Need = TypeVar("Need")  # a dtype need, matched against what reaches it (see Sequential)
SpecDType = TypeVar("SpecDType")  # the dtype of the spec given to ``ss.build``
SpecRank = TypeVar("SpecRank")
D_co = TypeVar("D_co", covariant=True)
R_co = TypeVar("R_co", covariant=True)
NeedRank_contra = TypeVar("NeedRank_contra", contravariant=True)
OutRank_co = TypeVar("OutRank_co", covariant=True)
Out_co = TypeVar("Out_co", covariant=True)


class Opaque:
    """Never passed. The first overload of a constructor whose type depends on an argument
    takes it, so that an argument typed ``Any`` (``jnp.float32`` is, to checkers) matches it
    and claims nothing (pyright picks the first overload an ``Any`` matches)."""


UserLayer: TypeAlias = Callable[..., Any] | nnx.Module
"""An annotated function or NNX module, which ``>>`` wraps as ``Function``/``Custom``."""

if TYPE_CHECKING:
    SpecLike: TypeAlias = TypeForm[Any]
else:
    SpecLike = Any  # run-time checkers see no TypeForm; build checks its spec itself


class Spec(Generic[D_co, R_co]):
    """The static type of a spec from ``shapesafe.typing``: ``Spec[UInt8, Rank4]``.

    Only checkers see it: at run time the spec is the jaxtyping annotation itself.
    """


Dim: TypeAlias = str | int


class SpecMaker(Generic[D_co]):
    """``shapesafe.typing.UInt8``: subscript it as jaxtyping's ``UInt8`` to get the same annotation.

    ``UInt8[Array, "batch 250 250 3"]`` is ``jaxtyping.UInt8[Array, "batch 250 250 3"]`` at run
    time and ``Spec[UInt8, Any]`` to pyright and mypy (the dtype is known, the rank is not);
    with one item per axis, ``UInt8[Array, "batch", 250, 250, 3]``, the same annotation is
    ``Spec[UInt8, Rank4]``.

    Example:
        >>> import jaxtyping
        >>> from jaxtyping import Array
        >>> from shapesafe.typing import UInt8
        >>> spec = UInt8[Array, "batch", 250, 250, 3]
        >>> spec.dtype is jaxtyping.UInt8, spec.dim_str
        (True, 'batch 250 250 3')
    """

    def __init__(self, dtype: "type[D_co]"):
        self.name = dtype.__name__
        self.annotation: Any = getattr(jaxtyping, self.name)

    @overload
    def __getitem__(self, item: tuple[Any, str]) -> "Spec[D_co, Any]": ...
    @overload
    def __getitem__(self, item: tuple[Any, int]) -> "Spec[D_co, Rank1]": ...
    @overload
    def __getitem__(self, item: tuple[Any, Dim, Dim]) -> "Spec[D_co, Rank2]": ...
    @overload
    def __getitem__(self, item: tuple[Any, Dim, Dim, Dim]) -> "Spec[D_co, Rank3]": ...
    @overload
    def __getitem__(self, item: tuple[Any, Dim, Dim, Dim, Dim]) -> "Spec[D_co, Rank4]": ...
    @overload
    def __getitem__(self, item: tuple[Any, Dim, Dim, Dim, Dim, Dim]) -> "Spec[D_co, Rank5]": ...
    @overload
    def __getitem__(self, item: tuple[Any, ...]) -> "Spec[D_co, Any]": ...
    def __getitem__(self, item: Any) -> Any:
        if not isinstance(item, tuple) or len(item) < 2:
            raise TypeError(
                f'{self.name}[...] takes an array type and dimensions, e.g. {self.name}[Array, "batch 3"].'
            )
        array, *dims = item
        if len(dims) == 1 and isinstance(dims[0], str):
            return self.annotation[array, dims[0]]
        for d in dims:
            one_axis = (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or (
                isinstance(d, str)
                and d.strip() == d
                and " " not in d
                and d not in ("", "...")
                and not d.startswith("*")
            )
            if not one_axis:
                raise TypeError(
                    f"{self.name}[{array.__name__}, ...]: with one item per axis, each item is one axis, a name or a "
                    f'size (e.g. "batch", 250); got {d!r}. Write {self.name}[Array, "batch 250"] for a dimension string.'
                )
        return self.annotation[array, " ".join(str(d) for d in dims)]

    def __repr__(self) -> str:
        return f"shapesafe.typing.{self.name}"


# -- the kinds of layer: how each one's ``__rrshift__`` reads (``left >> layer``) --------------


def _compose(left: Any, right: Any) -> Any:
    from ._sequential import Sequential

    return Sequential((left, right))


class FloatingKeep(Generic[NeedRank_contra]):
    """A layer that needs a floating input of at least ``NeedRank_contra`` axes and keeps its
    dtype and rank: ``Linear`` (``Rank1Plus``), ``Conv2D`` (``Rank4Plus``), norms, activations.

    One pair of overloads per rank it may need (the rank that reaches it is bounded by the
    need, and leaves unchanged): first the left side gives a floating dtype, then it gives
    ``AsInput`` and the need for floats moves to the composition's input.
    """

    @overload
    def __rrshift__(
        self: "FloatingKeep[AnyRank]", other: "Blueprint[InDType, InRank, FloatDType, Rank]"
    ) -> "Sequential[InDType, InRank, FloatDType, Rank]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[AnyRank]", other: "Blueprint[Floating, InRank, AsInput, Rank]"
    ) -> "Sequential[Floating, InRank, AsInput, Rank]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank1Plus]", other: "Blueprint[InDType, InRank, FloatDType, AtLeast1]"
    ) -> "Sequential[InDType, InRank, FloatDType, AtLeast1]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank1Plus]", other: "Blueprint[Floating, InRank, AsInput, AtLeast1]"
    ) -> "Sequential[Floating, InRank, AsInput, AtLeast1]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank2Plus]", other: "Blueprint[InDType, InRank, FloatDType, AtLeast2]"
    ) -> "Sequential[InDType, InRank, FloatDType, AtLeast2]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank2Plus]", other: "Blueprint[Floating, InRank, AsInput, AtLeast2]"
    ) -> "Sequential[Floating, InRank, AsInput, AtLeast2]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank3Plus]", other: "Blueprint[InDType, InRank, FloatDType, AtLeast3]"
    ) -> "Sequential[InDType, InRank, FloatDType, AtLeast3]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank3Plus]", other: "Blueprint[Floating, InRank, AsInput, AtLeast3]"
    ) -> "Sequential[Floating, InRank, AsInput, AtLeast3]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank4Plus]", other: "Blueprint[InDType, InRank, FloatDType, AtLeast4]"
    ) -> "Sequential[InDType, InRank, FloatDType, AtLeast4]": ...
    @overload
    def __rrshift__(
        self: "FloatingKeep[Rank4Plus]", other: "Blueprint[Floating, InRank, AsInput, AtLeast4]"
    ) -> "Sequential[Floating, InRank, AsInput, AtLeast4]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return _compose(other, self)


class FloatingTo(Generic[OutRank_co]):
    """A layer that needs a floating input of at least three axes, keeps its dtype and gives
    ``OutRank_co`` axes: ``GlobalAvgPool`` (``Rank2``), ``LSTM`` and ``GRU`` (not known)."""

    @overload
    def __rrshift__(
        self: "FloatingTo[Given]", other: "Blueprint[InDType, InRank, FloatDType, AtLeast3]"
    ) -> "Sequential[InDType, InRank, FloatDType, Given]": ...
    @overload
    def __rrshift__(
        self: "FloatingTo[Given]", other: "Blueprint[Floating, InRank, AsInput, AtLeast3]"
    ) -> "Sequential[Floating, InRank, AsInput, Given]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return _compose(other, self)


class AnyDTypeTo(Generic[OutRank_co]):
    """A layer that takes any dtype and keeps it, needs at least one axis and gives
    ``OutRank_co`` axes: ``Flatten`` (``Rank2``), ``Reshape`` (not known)."""

    @overload
    def __rrshift__(
        self: "AnyDTypeTo[Given]", other: "Blueprint[InDType, InRank, Carried, AtLeast1]"
    ) -> "Sequential[InDType, InRank, Carried, Given]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return _compose(other, self)


class CastTo(Generic[Out_co]):
    """A layer that takes any dtype, gives ``Out_co`` and keeps the rank: ``Cast``."""

    @overload
    def __rrshift__(
        self: "CastTo[OutDType]", other: "Blueprint[InDType, InRank, Any, Rank]"
    ) -> "Sequential[InDType, InRank, OutDType, Rank]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return _compose(other, self)


class RescaleTo(Generic[Out_co]):
    """A layer that takes a numeric dtype, gives ``Out_co`` and keeps the rank: ``Rescale``.
    (A bool input is flagged; an input not known yet is not.)"""

    @overload
    def __rrshift__(
        self: "RescaleTo[OutDType]",
        other: "Blueprint[InDType, InRank, Integer | Floating | Complex | AsInput, Rank]",
    ) -> "Sequential[InDType, InRank, OutDType, Rank]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return _compose(other, self)


class Embeds:
    """A layer that needs integer ids and gives float32 vectors (one more axis): ``Embedding``."""

    @overload
    def __rrshift__(
        self, other: "Blueprint[InDType, InRank, Integer, Any]"
    ) -> "Sequential[InDType, InRank, Float32, Any]": ...
    @overload
    def __rrshift__(
        self, other: "Blueprint[Integer, InRank, AsInput, Any]"
    ) -> "Sequential[Integer, InRank, Float32, Any]": ...
    @overload
    def __rrshift__(self, other: UserLayer) -> "Sequential[Any, Any, Any, Any]": ...
    def __rrshift__(self, other: Any) -> Any:
        return _compose(other, self)
