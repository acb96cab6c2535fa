"""Encoders: one input of some type (a photo, ...) to one example tensor for a model.

``Image`` applies exactly the preprocessing of ``shapesafe.data.image_folder`` (one shared
code path), so a ``Predictor`` sees in serving what the model saw in training.
"""

from ._serving._encoders import Encoder as Encoder
from ._serving._encoders import Image as Image
from ._serving._encoders import ImageInput as ImageInput
