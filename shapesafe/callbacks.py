"""Callbacks for ``ss.fit``: early stopping, checkpoints, stop on NaN, and the base class."""

from ._callbacks import Callback as Callback
from ._callbacks import Checkpoint as Checkpoint
from ._callbacks import EarlyStopping as EarlyStopping
from ._callbacks import StopOnNaN as StopOnNaN
