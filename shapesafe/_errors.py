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


class LayerShapeError(ShapeError):
    """A ``ShapeError`` that knows the layer path it happened at, so containers can add to it."""

    def __init__(
        self,
        path: tuple[str, ...],
        body: str,
        *,
        subject: str,
        boundary: str = ", cannot take its input",
    ):
        self.path, self.body, self.subject, self.boundary = path, body, subject, boundary
        where = " > ".join(path) if path else subject
        super().__init__(f"{where}{boundary}.\n{body}")

    def within(self, where: str) -> "LayerShapeError":
        """The same failure seen from a container: ``where`` is prepended to the path."""
        return LayerShapeError(
            (where, *self.path), self.body, subject=self.subject, boundary=self.boundary
        )


class ShardingError(ShapeError):
    """A sharding plan does not fit the model's parameters or the mesh.

    Raised before anything compiles: the message names the parameter path, its shape, the
    mesh axis and its size, and the fix.
    """


# Users see this class in tracebacks as what it is to them: ``shapesafe.ShapeError``.
LayerShapeError.__module__ = "shapesafe"
# tracebacks name it by its qualname (Python) or its name (IPython, notebooks): both as caught
LayerShapeError.__qualname__ = LayerShapeError.__name__ = "ShapeError"

# Tracebacks name them by their public home (``shapesafe.ShapeError``).
for _cls in (ShapesafeError, ShapeError, ArtifactError, InputError, ShardingError):
    _cls.__module__ = "shapesafe"
del _cls
