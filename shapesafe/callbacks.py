"""Callbacks for ``ss.fit``: early stopping, checkpoints, stop on NaN, and the base class."""

from ._training._callbacks import Callback as Callback
from ._training._callbacks import Checkpoint as Checkpoint
from ._training._callbacks import EarlyStopping as EarlyStopping
from ._training._callbacks import StopOnNaN as StopOnNaN
