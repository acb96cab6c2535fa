"""Layer blueprints: small immutable configuration, composed with ``>>`` and built by ``ss.build``.

Design. A blueprint (``Linear(64)``) knows nothing of its input; it is a frozen, hashable
dataclass. ``ss.build(blueprint, spec)`` walks a composition once, asking each blueprint to
build a Flax NNX module for the spec that reaches it and tracing that module on a symbolic
``jax.ShapeDtypeStruct`` to learn the next spec. So every size is inferred for every batch
size at once, and no real data is read. Each built module's ``__call__`` carries jaxtyping
annotations with its concrete sizes (``Float[Array, "*batch 187500"]``), which beartype
checks while JAX traces.

Dimension names used in annotations: ``batch`` (examples), ``time`` (sequence steps),
``height``/``width`` (image axes), ``channels`` (last axis of an image or sequence),
``in_features``/``out_features`` (a dense layer's sizes), ``classes`` (logits).
"""

from ._activation import GELU as GELU
from ._activation import LeakyReLU as LeakyReLU
from ._activation import ReLU as ReLU
from ._activation import Sigmoid as Sigmoid
from ._activation import Softmax as Softmax
from ._activation import Tanh as Tanh
from ._blueprint import Blueprint as Blueprint
from ._combinators import Add as Add
from ._combinators import Concat as Concat
from ._combinators import Residual as Residual
from ._conv import Conv1D as Conv1D
from ._conv import Conv2D as Conv2D
from ._custom import Custom as Custom
from ._custom import Function as Function
from ._embedding import Embedding as Embedding
from ._linear import Linear as Linear
from ._model import Model as Model
from ._norm import BatchNorm as BatchNorm
from ._norm import Dropout as Dropout
from ._norm import LayerNorm as LayerNorm
from ._pool import AvgPool as AvgPool
from ._pool import GlobalAvgPool as GlobalAvgPool
from ._pool import MaxPool as MaxPool
from ._recurrent import GRU as GRU
from ._recurrent import LSTM as LSTM
from ._reshape import Cast as Cast
from ._reshape import Flatten as Flatten
from ._reshape import Rescale as Rescale
from ._reshape import Reshape as Reshape
from ._sequential import Sequential as Sequential
