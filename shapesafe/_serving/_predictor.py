"""``Predictor``: a model as a function ``A => B``, an encoder before it and a decoder after it.

``Predictor(model, encoder, decoder)`` is ``Predictor[A, B]`` for static checkers, where
``A`` is what the encoder takes (``encoders.Image``: a path, bytes, a Pillow image or an
array) and ``B`` what the decoder makes (``decoders.Labels``: ``Prediction``). Calling it
on one input returns one ``B``; on a list, a list. The model runs in evaluation mode
(dropout off, BatchNorm on its running statistics) through one jitted function of the
model's current state, in batches padded to a power of two (so a few sizes compile, once).
The model itself is never switched between modes.
"""

from collections.abc import Sequence
from typing import Any, Generic, TypeVar, overload

import jax
import numpy as np
from flax import nnx

from .._errors import InputError, ShapeError
from .._specs import spec_text, spec_to_json
from ._decoders import Decoder
from ._encoders import Encoder, describe_input

A = TypeVar("A")
B = TypeVar("B")


class Predictor(Generic[A, B]):
    """A model as a function from inputs of type ``A`` to predictions of type ``B``.

    Args:
        model: a built model (``ss.build``), or one loaded with ``ss.load_exported``.
        encoder: turns one input into one example tensor, e.g.
            ``ss.encoders.Image(size=(250, 250))``. ``None``: inputs are arrays of one example.
        decoder: turns a batch of outputs into predictions, e.g.
            ``ss.decoders.Labels(ds.class_names)``. ``None``: one output array per input.
        batch_size: the most inputs sent to the model at once.

    Attributes:
        metrics: evaluation metrics recorded when the predictor was saved (``ss.save``).
        version: the artifact's version label, if it was loaded from one.

    Raises:
        ShapeError: the encoder's example spec is not the model's input spec without its
            batch axis, or the decoder cannot read the model's output.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, UInt8
        >>> from shapesafe import layers as L
        >>> net = L.Flatten() >> L.Rescale(1 / 255) >> L.Linear(2)
        >>> model = ss.build(net, UInt8[Array, "batch 8 8 3"], seed=0)
        >>> clf = ss.Predictor(model, ss.encoders.Image(size=(8, 8)), ss.decoders.Labels(["cat", "dog"]))
        >>> from PIL import Image
        >>> clf(Image.new("RGB", (20, 20), "white")).label in ("cat", "dog")
        True
    """

    def __init__(
        self,
        model: Any,
        encoder: Encoder[A] | None = None,
        decoder: Decoder[B] | None = None,
        *,
        batch_size: int = 32,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Predictor: batch_size must be a positive int, got {batch_size!r}.")
        if not hasattr(model, "input_spec") or not hasattr(model, "output_spec"):
            raise TypeError(
                f"Predictor: model must be a built model (ss.build) or an exported one "
                f"(ss.load_exported), got {type(model).__name__}."
            )
        self.model, self.encoder, self.decoder, self.batch_size = (
            model,
            encoder,
            decoder,
            batch_size,
        )
        self.input = spec_to_json(model.input_spec)
        self.output = spec_to_json(model.output_spec)
        dims = tuple(self.input["dims"].split())
        if not dims:
            raise ShapeError(
                f"Predictor: the model's input {spec_text(self.input)} has no batch axis."
            )
        self.example_dims = dims[1:]
        if encoder is not None:
            _check_encoder(encoder, self.input)
        if decoder is not None:
            decoder.check(tuple(self.output["dims"].split()))
        self.metrics: dict[str, Any] = {}
        self.version: str | None = None
        self._forward: Any = None

    def __repr__(self) -> str:
        return (
            f"Predictor({spec_text(self.input)} -> {spec_text(self.output)}, "
            f"encoder={self.encoder!r}, decoder={self.decoder!r})"
        )

    @overload
    def __call__(self, inputs: list[A], /) -> list[B]: ...
    @overload
    def __call__(self, inputs: A, /) -> B: ...
    def __call__(self, inputs: Any, /) -> Any:
        many = isinstance(inputs, list | tuple)
        items = list(inputs) if many else [inputs]
        outputs = self.outputs(items)
        decoded: list[Any] = (
            list(self.decoder(outputs)) if self.decoder is not None else list(outputs)
        )
        return decoded if many else decoded[0]

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        """The batch of example tensors for ``items``, as the model receives it.

        Raises:
            InputError: an input cannot be encoded; the message says which (its position
                and its path or type) and why.
        """
        n = len(items)
        if n == 0:
            raise InputError("Predictor: no inputs (an empty list).")
        examples = []
        for i, item in enumerate(items):
            where = f"Predictor: input {i + 1} of {n}" if n > 1 else "Predictor"
            try:
                x = self.encoder(item) if self.encoder is not None else self._raw(item)
            except InputError as e:
                raise InputError(f"{where}: {e}") from None
            examples.append(x)
        return np.stack(examples)

    def _raw(self, item: Any) -> np.ndarray:
        x = np.asarray(item)
        want = self.example_dims
        if tuple(str(d) for d in x.shape) != want or x.dtype.name != self.input["dtype"]:
            raise InputError(
                f"cannot use {describe_input(item)}: the model takes one example of "
                f"{self.input['dtype']}[{', '.join(want)}] per input (its input is {spec_text(self.input)})."
            )
        return x

    def outputs(self, items: Sequence[Any]) -> np.ndarray:
        """The model's raw outputs (evaluation mode) for ``items``, one row per input."""
        return self.run(self.encode(items))

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's raw outputs (evaluation mode) for a batch of encoded examples ``x``."""
        found = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start : start + self.batch_size]
            m = len(chunk)
            size = min(self.batch_size, 1 << (m - 1).bit_length())
            if size > m:
                chunk = np.concatenate([chunk, np.zeros((size - m, *chunk.shape[1:]), chunk.dtype)])
            found.append(np.asarray(self._apply(chunk))[:m])
        return np.concatenate(found)

    def _apply(self, x: np.ndarray) -> Any:
        if not isinstance(self.model, nnx.Module):
            return self.model(x)
        if self._forward is None:
            self._forward = eval_forward(self.model)
        return self._forward(nnx.state(self.model), x)


def eval_forward(model: nnx.Module) -> Any:
    """A jitted ``(state, x) -> model(x)`` in evaluation mode; ``model`` itself is left as it is."""
    copy = nnx.clone(model)
    copy.eval()
    graph = nnx.split(copy)[0]

    def forward(state: Any, x: Any) -> Any:
        return nnx.merge(graph, state)(x)

    return jax.jit(forward)


def _check_encoder(encoder: Any, model_input: dict[str, str]) -> None:
    spec = encoder.spec
    dims = tuple(str(spec.dim_str).split())
    dtype = str(spec.dtypes[0])
    want = tuple(model_input["dims"].split()[1:])
    if dims != want or dtype != model_input["dtype"]:
        hint = ""
        if len(want) == 3 and all(d.isdigit() for d in want) and hasattr(encoder, "size"):
            hint = f" Use encoders.Image(size=({want[0]}, {want[1]})) with a mode of {want[2]} channel(s)."
        raise ShapeError(
            f"Predictor: the encoder {encoder!r} makes examples of {dtype}[{', '.join(dims)}], but the "
            f"model takes {spec_text(model_input)}, examples of {model_input['dtype']}[{', '.join(want)}]."
            + hint
        )
