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
from ._artifacts._artifact import load as load
from ._artifacts._artifact import save as save
from ._artifacts._export import export as export
from ._artifacts._export import load_exported as load_exported
from ._errors import ArtifactError as ArtifactError
from ._errors import InputError as InputError
from ._errors import ShapeError as ShapeError
from ._errors import ShapesafeError as ShapesafeError
from ._errors import ShardingError as ShardingError
from ._serving._decoders import Prediction as Prediction
from ._serving._predictor import Predictor as Predictor
from ._sharding import ShardingPlan as ShardingPlan
from ._training._compile_cache import compilation_cache as compilation_cache
from ._training._fit import evaluate as evaluate
from ._training._fit import fit as fit
from ._training._fit import predict as predict
from ._training._freeze import Frozen as Frozen
from ._training._freeze import freeze as freeze
from ._training._freeze import unfreeze as unfreeze
from ._training._history import History as History
from ._training._run import Run as Run
from ._training._summary import summary as summary
from ._training._torch_weights import load_state_dict as load_state_dict
from ._training._transfer import copy_weights as copy_weights
from ._training._transfer import param_labels as param_labels
from ._version import __version__ as __version__
from .data import DataError as DataError
from .data import ImageFileError as ImageFileError
from .layers import Model as Model
from .layers._build import build as build
