"""The exception hierarchy: small on purpose.

``ShapesafeError`` is the root of every error shapesafe raises on its own account.
``ShapeError`` is also a ``TypeError``, so code that already catches jaxtyping's or
beartype's ``TypeError`` keeps working.
"""


class ShapesafeError(Exception):
    """Base class of every error raised by shapesafe itself."""


class ShapeError(ShapesafeError, TypeError):
    """A tensor's dtype or shape breaks a contract: a layer's, a model's, a dataset's.

    The message says what failed, where (the layer by position and repr), what was
    expected, what arrived (with where each dimension came from) and, where one is
    obvious, how to fix it.
    """


class ArtifactError(ShapesafeError, ValueError):
    """A saved artifact cannot be written or loaded: the message names the file and what is wrong."""


class InputError(ShapesafeError, ValueError):
    """A predictor's input cannot be turned into a tensor: the message names the input and why."""


# Tracebacks name them by their public home (``shapesafe.ShapeError``).
for _cls in (ShapesafeError, ShapeError, ArtifactError, InputError):
    _cls.__module__ = "shapesafe"
del _cls
