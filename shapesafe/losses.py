"""Losses: pure, shape-checked functions from a batch of outputs and targets to a scalar.

See ``shapesafe._losses`` for the design: one set of dimension bindings across a loss's
arguments (a ``(batch,)`` vs ``(batch, 1)`` mix-up is a ``ShapeError``), an optional
``mask`` for padded examples, and ``target_spec``/``check_targets`` to check a dataset's
targets before the first batch.
"""

from ._training._losses import binary_cross_entropy as binary_cross_entropy
from ._training._losses import check_targets as check_targets
from ._training._losses import cross_entropy as cross_entropy
from ._training._losses import mean_squared_error as mean_squared_error
from ._training._losses import soft_cross_entropy as soft_cross_entropy
from ._training._losses import target_spec as target_spec
