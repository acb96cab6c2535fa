"""shapesafe: typed-shape deep learning on JAX.

Blueprints (``shapesafe.layers``) compose with ``>>``; ``build`` infers every size from a
jaxtyping input spec and returns a Flax NNX module whose layers check their dtypes and
shapes while JAX traces; ``summary`` prints it; ``fit``, ``evaluate`` and ``predict`` train and
use it on a fast jitted step. Shape and dtype mistakes are ``ShapeError``s.
"""

from . import callbacks as callbacks
from . import data as data
from . import decoders as decoders
from . import encoders as encoders
from . import layers as layers
from . import losses as losses
from . import metrics as metrics
from . import monitor as monitor
from ._artifact import load as load
from ._artifact import save as save
from ._decoders import Prediction as Prediction
from ._errors import ArtifactError as ArtifactError
from ._errors import InputError as InputError
from ._errors import ShapeError as ShapeError
from ._errors import ShapesafeError as ShapesafeError
from ._export import export as export
from ._export import load_exported as load_exported
from ._fit import Run as Run
from ._fit import evaluate as evaluate
from ._fit import fit as fit
from ._fit import predict as predict
from ._freeze import Frozen as Frozen
from ._freeze import freeze as freeze
from ._freeze import unfreeze as unfreeze
from ._history import History as History
from ._predictor import Predictor as Predictor
from ._summary import summary as summary
from ._torch_weights import load_state_dict as load_state_dict
from ._transfer import copy_weights as copy_weights
from ._transfer import param_labels as param_labels
from ._version import __version__ as __version__
from .layers import Model as Model
from .layers._build import build as build

