"""Specs that static checkers can read: jaxtyping's dtype names, typed for pyright and mypy.

``from shapesafe.typing import UInt8`` instead of ``from jaxtyping import UInt8``, and
``UInt8[Array, "batch 250 250 3"]`` is the same jaxtyping annotation at run time, but pyright
and mypy now see its dtype (``Spec[UInt8, Any]``); ``UInt8[Array, "batch", 250, 250, 3]`` (one
item per axis) shows them its rank too (``Spec[UInt8, Rank4]``). ``ss.build`` then returns a
``Model[UInt8, Rank4, Float32, Rank2]`` and the checker flags a blueprint that cannot take it,
such as ``L.Flatten() >> L.Linear(64)`` without a ``Cast`` or ``Rescale``. Use these for
specs; annotate functions with jaxtyping's own. See ``shapesafe.layers._typing``.
"""

from .layers import _typing as _t
from .layers._typing import AnyDType as AnyDType
from .layers._typing import AnyRank as AnyRank
from .layers._typing import AsInput as AsInput
from .layers._typing import Floating as Floating
from .layers._typing import Integer as Integer
from .layers._typing import Rank0 as Rank0
from .layers._typing import Rank1 as Rank1
from .layers._typing import Rank1Plus as Rank1Plus
from .layers._typing import Rank2 as Rank2
from .layers._typing import Rank2Plus as Rank2Plus
from .layers._typing import Rank3 as Rank3
from .layers._typing import Rank3Plus as Rank3Plus
from .layers._typing import Rank4 as Rank4
from .layers._typing import Rank4Plus as Rank4Plus
from .layers._typing import Rank5 as Rank5
from .layers._typing import Spec as Spec
from .layers._typing import SpecMaker as SpecMaker

Bool = _t.SpecMaker(_t.Bool)
UInt8 = _t.SpecMaker(_t.UInt8)
UInt16 = _t.SpecMaker(_t.UInt16)
UInt32 = _t.SpecMaker(_t.UInt32)
UInt64 = _t.SpecMaker(_t.UInt64)
Int8 = _t.SpecMaker(_t.Int8)
Int16 = _t.SpecMaker(_t.Int16)
Int32 = _t.SpecMaker(_t.Int32)
Int64 = _t.SpecMaker(_t.Int64)
BFloat16 = _t.SpecMaker(_t.BFloat16)
Float16 = _t.SpecMaker(_t.Float16)
Float32 = _t.SpecMaker(_t.Float32)
Float64 = _t.SpecMaker(_t.Float64)
Complex64 = _t.SpecMaker(_t.Complex64)
Complex128 = _t.SpecMaker(_t.Complex128)
