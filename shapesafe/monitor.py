"""Monitoring a deployed model for concept drift and lost accuracy.

``DriftMonitor.from_data(predictor, training_inputs)`` records input statistics (brightness,
contrast and sharpness per channel for images) and the predicted-class distribution;
``monitor.check(batch)`` flags a batch whose statistics moved (a z-test with a minimum effect
size) or whose predicted classes moved (population stability index). ``check_accuracy``
compares accuracy on fresh labelled data with the accuracy recorded in the artifact.
"""

from ._monitor import AccuracyReport as AccuracyReport
from ._monitor import DriftMonitor as DriftMonitor
from ._monitor import DriftReport as DriftReport
from ._monitor import check_accuracy as check_accuracy
from ._monitor import input_statistics as input_statistics
