"""Metrics aggregated exactly over a whole dataset (sums and counts, never per-batch means).

See ``shapesafe._metrics`` for the design: a metric is an object with ``name``, ``init()``,
``update(state, outputs, targets, mask)`` and ``compute(state)``; a masked (padded)
example counts zero, so a short last batch counts each example once.
"""

from ._training._metrics import Accuracy as Accuracy
from ._training._metrics import ClassScore as ClassScore
from ._training._metrics import ConfusionMatrix as ConfusionMatrix
from ._training._metrics import Counts as Counts
from ._training._metrics import Metric as Metric
from ._training._metrics import TopKAccuracy as TopKAccuracy
from ._training._metrics import accuracy as accuracy
from ._training._metrics import confusion_matrix as confusion_matrix
from ._training._metrics import f1 as f1
from ._training._metrics import precision as precision
from ._training._metrics import recall as recall
from ._training._metrics import top_k_accuracy as top_k_accuracy
