"""shapesafe: typed-shape deep learning on JAX.

Blueprints (``shapesafe.layers``) compose with ``>>``; ``build`` infers every size from a
jaxtyping input spec and returns a Flax NNX module whose layers check their dtypes and
shapes while JAX traces; ``summary`` prints it. Shape and dtype mistakes are ``ShapeError``s.
"""

from . import layers as layers
from ._build import build as build
from ._errors import ShapeError as ShapeError
from ._errors import ShapesafeError as ShapesafeError
from ._summary import summary as summary
from .layers._sequential import Model as Model

__version__ = "0.1.0"
