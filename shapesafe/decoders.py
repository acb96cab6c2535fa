"""Decoders: a batch of model outputs to one value per example.

``Labels`` reads class scores as ``Prediction(label, confidence)`` (top-k on request);
``MultiLabel`` and ``Regression`` show how little another kind of output needs.
"""

from ._serving._decoders import Decoder as Decoder
from ._serving._decoders import Labels as Labels
from ._serving._decoders import MultiLabel as MultiLabel
from ._serving._decoders import Prediction as Prediction
from ._serving._decoders import Regression as Regression
