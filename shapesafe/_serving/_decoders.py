"""Decoders: turn a batch of model outputs into one value of some type ``B`` per example.

A decoder is a small frozen dataclass with ``check(output_dims)`` (refuse a model whose
output it cannot read, at ``Predictor`` construction), ``__call__(outputs) -> list[B]`` on a
batch of outputs, and ``config()`` (its JSON form, stored in artifacts). ``Labels`` reads
class scores as a ``Prediction(label, confidence)``; ``MultiLabel`` and ``Regression`` show
how little another kind of output needs.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from jaxtyping import Float

from .._errors import ArtifactError, ShapeError

B_co = TypeVar("B_co", covariant=True)


@runtime_checkable
class Decoder(Protocol[B_co]):
    """What a ``Predictor`` needs of a decoder of outputs into values of type ``B_co``."""

    def check(self, output_dims: tuple[str, ...], /) -> None: ...

    def __call__(self, outputs: np.ndarray, /) -> Sequence[B_co]: ...

    def config(self) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A predicted class: its ``label``, the model's ``confidence`` in it, and, when asked
    for, the ``top`` k ``(label, probability)`` pairs, most likely first."""

    label: str
    confidence: float
    top: tuple[tuple[str, float], ...] = ()

    def __repr__(self) -> str:
        top = f", top={self.top!r}" if self.top else ""
        return f"Prediction(label={self.label!r}, confidence={self.confidence:.4g}{top})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: ``{"label": ..., "confidence": ..., "top": [[label, p], ...]}``."""
        out: dict[str, Any] = {"label": self.label, "confidence": self.confidence}
        if self.top:
            out["top"] = [[name, p] for name, p in self.top]
        return out


def _names(what: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or len(names) < 1:
        raise ValueError(f"{what}: names must be a non-empty sequence of strings, got {names!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: names must be distinct, got {list(names)}.")
    return tuple(names)


def _check_classes(what: str, dims: tuple[str, ...], n: int) -> None:
    if len(dims) != 2 or dims[-1] != str(n):
        shown = f"[{', '.join(dims)}]"
        raise ShapeError(
            f"{what} reads outputs of shape [batch, {n}] (one score per name), but the model "
            f"returns {shown}. Give one name per class, or end the model with L.Linear({n})."
        )


def softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class Labels:
    """Class scores ``[batch, classes]`` to ``Prediction(label, confidence)``.

    Args:
        names: one name per class, in the order of the model's outputs (``ds.class_names``).
        top_k: also report the ``top_k`` most likely classes (``Prediction.top``).
        from_logits: the outputs are logits (softmax is applied); ``False`` if the model
            already ends with ``L.Softmax()``.

    Example:
        >>> import numpy as np
        >>> Labels(["cat", "dog"])(np.array([[0.0, 2.0]], np.float32))
        [Prediction(label='dog', confidence=0.8808)]
    """

    names: Sequence[str]
    top_k: int | None = dataclasses.field(default=None, kw_only=True)
    from_logits: bool = dataclasses.field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _names("decoders.Labels", self.names))
        k = self.top_k
        if k is not None and (
            isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.names)
        ):
            raise ValueError(
                f"decoders.Labels: top_k must be None or an int in 1..{len(self.names)}, got {k!r}."
            )

    def check(self, output_dims: tuple[str, ...], /) -> None:
        _check_classes("decoders.Labels", output_dims, len(self.names))

    def __call__(self, outputs: Float[np.ndarray, "batch classes"], /) -> list[Prediction]:
        probs = softmax(outputs) if self.from_logits else np.asarray(outputs, np.float64)
        found = []
        for p in probs:
            order = np.argsort(-p, kind="stable")
            top = (
                tuple((self.names[int(i)], float(p[i])) for i in order[: self.top_k])
                if self.top_k
                else ()
            )
            found.append(Prediction(self.names[int(order[0])], float(p[order[0]]), top))
        return found

    def config(self) -> dict[str, Any]:
        return {
            "kind": "Labels",
            "names": list(self.names),
            "top_k": self.top_k,
            "from_logits": self.from_logits,
        }


@dataclasses.dataclass(frozen=True)
class MultiLabel:
    """Independent scores ``[batch, labels]`` (one sigmoid each) to the labels past ``threshold``.

    Example:
        >>> import numpy as np
        >>> MultiLabel(["sky", "sea", "logo"])(np.array([[3.0, -3.0, 0.5]], np.float32))
        [(Prediction(label='sky', confidence=0.9526), Prediction(label='logo', confidence=0.6225))]
    """

    names: Sequence[str]
    threshold: float = dataclasses.field(default=0.5, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _names("decoders.MultiLabel", self.names))
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not 0 < self.threshold < 1
        ):
            raise ValueError(
                f"decoders.MultiLabel: threshold must be in (0, 1), got {self.threshold!r}."
            )

    def check(self, output_dims: tuple[str, ...], /) -> None:
        _check_classes("decoders.MultiLabel", output_dims, len(self.names))

    def __call__(
        self, outputs: Float[np.ndarray, "batch labels"], /
    ) -> list[tuple[Prediction, ...]]:
        probs = 1.0 / (1.0 + np.exp(-np.asarray(outputs, np.float64)))
        return [
            tuple(
                Prediction(n, float(q))
                for n, q in zip(self.names, p, strict=True)
                if q >= self.threshold
            )
            for p in probs
        ]

    def config(self) -> dict[str, Any]:
        return {"kind": "MultiLabel", "names": list(self.names), "threshold": self.threshold}


@dataclasses.dataclass(frozen=True)
class Regression:
    """Outputs ``[batch, targets]`` to a dict ``{name: value}`` per example.

    Example:
        >>> import numpy as np
        >>> Regression(["price"])(np.array([[1.5]], np.float32))
        [{'price': 1.5}]
    """

    names: Sequence[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", _names("decoders.Regression", self.names))

    def check(self, output_dims: tuple[str, ...], /) -> None:
        _check_classes("decoders.Regression", output_dims, len(self.names))

    def __call__(self, outputs: Float[np.ndarray, "batch targets"], /) -> list[dict[str, float]]:
        return [
            {n: float(v) for n, v in zip(self.names, row, strict=True)}
            for row in np.asarray(outputs)
        ]

    def config(self) -> dict[str, Any]:
        return {"kind": "Regression", "names": list(self.names)}


def decoder_from_config(data: Any, file: str) -> Any:
    """The decoder a ``config()`` describes (only known kinds; nothing is executed)."""
    if data is None:
        return None
    kinds: dict[str, Any] = {"Labels": Labels, "MultiLabel": MultiLabel, "Regression": Regression}
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        raise ArtifactError(f"{file}: unknown decoder {data!r}; known: {', '.join(kinds)}.")
    kwargs = {k: v for k, v in data.items() if k != "kind"}
    if "names" in kwargs and isinstance(kwargs["names"], list):
        kwargs["names"] = tuple(kwargs["names"])
    try:
        return kinds[data["kind"]](**kwargs)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{file}: the decoder {data!r} cannot be rebuilt: {e}") from None
