"""Metrics aggregated exactly over a whole dataset, one batch at a time.

A metric is a small immutable object with a ``name`` and three pure functions:

- ``init() -> state``: the empty state (a PyTree of arrays: counts, never means);
- ``update(state, outputs, targets, mask=None) -> state``: add one batch (jittable; a
  masked, i.e. padded, example adds nothing);
- ``compute(state) -> array``: the figure for everything added so far.

Because states hold sums and counts, a dataset split into batches of 4, 4 and 2 (the last
padded to 4 and masked) gives exactly the figure of all 10 examples at once, not the mean of
per-batch means. Any object with these four members works as a metric in ``ss.fit`` and
``ss.evaluate`` (see ``Metric``).

Outputs and targets:
- multi-class: outputs ``(batch, classes)`` scores (logits or probabilities) and targets
  ``(batch,)`` integer class ids, or ``(batch, classes)`` one-hot / soft targets;
- binary: outputs ``(batch,)`` or ``(batch, 1)`` logits, predicted positive above
  ``threshold`` (0 for logits; use 0.5 for probabilities), targets of the same shape (0/1).

Labels outside ``0..classes-1`` count as wrong for accuracy and are not counted by the
confusion-matrix metrics; ``ss.fit`` checks labels on the host before they get here.
"""

import dataclasses
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, Shaped

from .._errors import ShapeError
from .._specs import checked_function, format_shape

Mask = Bool[Array, " batch"] | None


class Metric(Protocol):
    """What ``ss.fit`` and ``ss.evaluate`` need of a metric (write your own the same way)."""

    @property
    def name(self) -> str: ...

    def init(self) -> Any:
        """The state before any batch (a PyTree of arrays)."""
        ...

    def update(self, state: Any, outputs: Any, targets: Any, mask: Any = None) -> Any:
        """The state after one batch; ``mask`` is true for real (not padded) examples."""
        ...

    def compute(self, state: Any) -> Any:
        """The metric's value from the state."""
        ...


class Counts(NamedTuple):
    """The state of a counting metric: how many examples hit, out of how many."""

    hits: Int[Array, ""]
    total: Int[Array, ""]


# -- reading outputs and targets ------------------------------------------------------------


def _weights(mask: Mask, n: int) -> Bool[Array, " batch"]:
    return jnp.ones((n,), bool) if mask is None else mask


def _mixup(outputs: Any, targets: Any) -> str:
    o, t = tuple(outputs.shape), tuple(targets.shape)
    if len(o) == 2 and o[1] > 1 and t == (o[0], 1):  # class ids with a trailing 1
        return f" Use targets[:, 0] to make them {format_shape(o[:1])}."
    if t == (*o, 1):
        return f" Use targets[:, 0] to make them {format_shape(o)}."
    if o == (*t, 1):
        return f" Use targets[:, None] to make them {format_shape(o)}."
    return ""


def _batch_hint(bound: dict[str, Any]) -> list[str]:
    """The fix when a metric's arguments disagree on the number of examples."""
    sizes = {
        k: tuple(v.shape)
        for k in ("outputs", "targets", "mask")
        if (v := bound.get(k)) is not None and hasattr(v, "shape")
    }
    n = {k: s[0] if s else None for k, s in sizes.items()}
    if len(set(n.values())) > 1:
        listed = ", ".join(f"{k} {format_shape(s)}" for k, s in sizes.items())
        return [
            f"outputs, targets and mask must hold the same examples (dimension 0); got {listed}."
        ]
    return []


def classes_of(
    outputs: Float[Array, "batch ..."],
    targets: Shaped[Array, "batch ..."],
    *,
    threshold: float = 0.0,
    name: str = "metric",
) -> tuple[Int[Array, " batch"], Int[Array, " batch"], int]:
    """``(predicted class, true class, number of classes)`` for each example.

    Raises:
        ShapeError: outputs and targets do not form one of the accepted pairs.
    """
    o, t = tuple(outputs.shape), tuple(targets.shape)
    if outputs.ndim == 2 and o[1] > 1:  # multi-class scores
        predicted = jnp.argmax(outputs, axis=-1).astype(jnp.int32)
        if t == o[:1] and jnp.issubdtype(targets.dtype, jnp.integer):
            return predicted, targets.astype(jnp.int32), o[1]
        if t == o:
            return predicted, jnp.argmax(targets, axis=-1).astype(jnp.int32), o[1]
        raise ShapeError(
            f"{name}: outputs {format_shape(o)} are scores for {o[1]} classes, so targets must be integer class "
            f"ids {format_shape(o[:1])} or one-hot {format_shape(o)}; got {targets.dtype}{format_shape(t)}."
            + _mixup(outputs, targets)
        )
    if outputs.ndim == 1 or (outputs.ndim == 2 and o[1] == 1):  # one binary logit
        if t != o:
            raise ShapeError(
                f"{name}: binary outputs {format_shape(o)} need targets of the same shape, got {format_shape(t)}."
                + _mixup(outputs, targets)
            )
        flat_o, flat_t = outputs.reshape(o[:1]), targets.reshape(o[:1])
        truth = flat_t > 0.5 if jnp.issubdtype(targets.dtype, jnp.floating) else flat_t != 0
        return (flat_o > threshold).astype(jnp.int32), truth.astype(jnp.int32), 2
    raise ShapeError(
        f"{name}: classification metrics take outputs (batch, classes) or (batch,)/(batch, 1) binary logits; "
        f"got {format_shape(o)}."
    )


# -- accuracy -------------------------------------------------------------------------------


def _fraction(state: Counts) -> Float[Array, ""]:
    return state.hits.astype(jnp.float32) / state.total.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """The fraction of examples whose predicted class is the true class.

    Use the ready-made ``ss.metrics.accuracy``; build your own for another ``threshold``
    (binary outputs that are probabilities: ``Accuracy(threshold=0.5)``).

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> m = ss.metrics.accuracy
        >>> s = m.update(m.init(), jnp.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), jnp.array([0, 1, 1]))
        >>> round(float(m.compute(s)), 4)
        0.6667
    """

    threshold: float = dataclasses.field(default=0.0, kw_only=True)
    name: str = dataclasses.field(default="accuracy", kw_only=True)

    def init(self) -> Counts:
        return Counts(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    @checked_function(name="ss.metrics.Accuracy.update", hint=_batch_hint)
    def update(
        self,
        state: Counts,
        outputs: Float[Array, "batch ..."],
        targets: Shaped[Array, "batch ..."],
        mask: Mask = None,
    ) -> Counts:
        predicted, truth, _ = classes_of(outputs, targets, threshold=self.threshold, name=self.name)
        hit = (predicted == truth) & _weights(mask, predicted.shape[0])
        return Counts(
            state.hits + jnp.sum(hit, dtype=jnp.int32),
            state.total + jnp.sum(_weights(mask, predicted.shape[0]), dtype=jnp.int32),
        )

    def compute(self, state: Counts) -> Float[Array, ""]:
        return _fraction(state)


accuracy = Accuracy()
"""The share of examples whose predicted class is the target (``Accuracy()``; argmax of
``(batch, classes)`` logits, or ``logit > 0`` for one output), masked examples left out."""


@dataclasses.dataclass(frozen=True)
class TopKAccuracy:
    """The fraction of examples whose true class is among the ``k`` highest scores.

    Ties between scores are broken towards the lower class index (``jax.lax.top_k``).
    """

    k: int
    name: str = dataclasses.field(default="", kw_only=True)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k <= 0:
            raise ValueError(f"top_k_accuracy: k must be a positive integer, got {self.k!r}.")
        if not self.name:
            object.__setattr__(self, "name", f"top_{self.k}_accuracy")

    def init(self) -> Counts:
        return Counts(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    @checked_function(name="ss.metrics.TopKAccuracy.update", hint=_batch_hint)
    def update(
        self,
        state: Counts,
        outputs: Float[Array, "batch classes"],
        targets: Shaped[Array, "batch ..."],
        mask: Mask = None,
    ) -> Counts:
        classes = outputs.shape[1]
        if self.k > classes:
            raise ShapeError(
                f"top_{self.k}_accuracy needs at least {self.k} classes; the outputs have {classes}."
            )
        _, truth, _ = classes_of(outputs, targets, name=self.name)
        _, top = jax.lax.top_k(outputs, self.k)
        w = _weights(mask, outputs.shape[0])
        hit = jnp.any(top == truth[:, None], axis=1) & w
        return Counts(
            state.hits + jnp.sum(hit, dtype=jnp.int32), state.total + jnp.sum(w, dtype=jnp.int32)
        )

    def compute(self, state: Counts) -> Float[Array, ""]:
        return _fraction(state)


def top_k_accuracy(k: int) -> TopKAccuracy:
    """Top-``k`` accuracy: the true class is among the ``k`` highest scores.

    Args:
        k: how many of the highest scores may hold the true class.

    Returns:
        A metric object for ``fit``/``evaluate`` (named ``top_{k}_accuracy``).

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> m = ss.metrics.top_k_accuracy(2)
        >>> s = m.update(m.init(), jnp.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]]), jnp.array([1, 2]))
        >>> m.name, float(m.compute(s))
        ('top_2_accuracy', 0.5)
    """
    return TopKAccuracy(k)


# -- confusion-matrix metrics ----------------------------------------------------------------


def _check_classes(name: str, num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}.")


def _confusion_update(
    name: str,
    num_classes: int,
    cm: Int[Array, "classes classes"],
    outputs: Float[Array, "batch ..."],
    targets: Shaped[Array, "batch ..."],
    mask: Mask,
    threshold: float,
) -> Int[Array, "classes classes"]:
    predicted, truth, classes = classes_of(outputs, targets, threshold=threshold, name=name)
    if classes != num_classes:
        raise ShapeError(
            f"{name} was made for num_classes={num_classes}, but the outputs "
            f"{format_shape(tuple(outputs.shape))} have {classes} classes."
        )
    valid = _weights(mask, truth.shape[0]) & (truth >= 0) & (truth < num_classes)
    return cm.at[truth, predicted].add(valid.astype(jnp.int32), mode="drop")


def _ratio(num: Array, den: Array) -> Array:
    """``num / den``, 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    num, den = num.astype(jnp.float32), den.astype(jnp.float32)
    return jnp.where(den > 0, num / jnp.maximum(den, 1.0), 0.0)


_AVERAGES = ("macro", "micro", "binary")
_SCORES = ("precision", "recall", "f1")


@dataclasses.dataclass(frozen=True)
class ClassScore:
    """Precision, recall or F1 from a confusion matrix accumulated over the dataset.

    ``average``: ``"macro"`` is the unweighted mean of the per-class scores over the classes
    that occur in the targets or the predictions (as scikit-learn); ``"micro"`` pools every
    example (equal to accuracy for single-label data); ``"binary"`` is the score of class 1
    (``num_classes=2``). A class with no predictions (precision) or no examples (recall)
    scores 0.
    """

    num_classes: int
    score: str = dataclasses.field(kw_only=True)
    average: str = dataclasses.field(default="macro", kw_only=True)
    threshold: float = dataclasses.field(default=0.0, kw_only=True)
    name: str = dataclasses.field(default="", kw_only=True)

    def __post_init__(self) -> None:
        if self.score not in _SCORES:
            raise ValueError(f"ClassScore: score must be one of {_SCORES}, got {self.score!r}.")
        _check_classes(self.score, self.num_classes)
        if self.average not in _AVERAGES:
            raise ValueError(
                f"{self.score}: average must be one of {_AVERAGES}, got {self.average!r}."
            )
        if self.average == "binary" and self.num_classes != 2:
            raise ValueError(
                f"{self.score}: average='binary' needs num_classes=2, got {self.num_classes}; "
                "use 'macro' or 'micro'."
            )
        if not self.name:
            suffix = "" if self.average == "macro" else f"_{self.average}"
            object.__setattr__(self, "name", self.score + suffix)

    def init(self) -> Int[Array, "classes classes"]:
        return jnp.zeros((self.num_classes, self.num_classes), jnp.int32)

    @checked_function(name="ss.metrics.ClassScore.update", hint=_batch_hint)
    def update(
        self,
        state: Int[Array, "classes classes"],
        outputs: Float[Array, "batch ..."],
        targets: Shaped[Array, "batch ..."],
        mask: Mask = None,
    ) -> Int[Array, "classes classes"]:
        return _confusion_update(
            self.name, self.num_classes, state, outputs, targets, mask, self.threshold
        )

    def compute(self, state: Int[Array, "classes classes"]) -> Float[Array, ""]:
        tp = jnp.diagonal(state)
        predicted, actual = jnp.sum(state, axis=0), jnp.sum(state, axis=1)
        if self.average == "micro":
            tp, predicted, actual = jnp.sum(tp), jnp.sum(predicted), jnp.sum(actual)
        if self.score == "precision":
            per = _ratio(tp, predicted)
        elif self.score == "recall":
            per = _ratio(tp, actual)
        else:
            per = _ratio(2 * tp, predicted + actual)
        if self.average == "micro":
            return per
        if self.average == "binary":
            return per[1]
        present = (predicted + actual) > 0
        return _ratio(jnp.sum(jnp.where(present, per, 0.0)), jnp.sum(present, dtype=jnp.int32))


def precision(num_classes: int, *, average: str = "macro") -> ClassScore:
    """Precision: of the examples predicted as a class, the fraction that are that class.

    Args:
        num_classes: the number of classes (2 for binary outputs).
        average: ``"macro"`` (default), ``"micro"`` or ``"binary"``; see ``ClassScore``.

    Returns:
        A metric object (named ``precision``); ``compute`` gives the averaged score.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> m = ss.metrics.precision(2, average="binary")
        >>> s = m.update(m.init(), jnp.array([1.0, 1.0, -1.0, 1.0]), jnp.array([1, 0, 1, 1]))
        >>> round(float(m.compute(s)), 4)  # 2 of the 3 predicted positives are positive
        0.6667
    """
    return ClassScore(num_classes, score="precision", average=average)


def recall(num_classes: int, *, average: str = "macro") -> ClassScore:
    """Recall: of the examples of a class, the fraction predicted as that class.

    Args:
        num_classes: the number of classes (2 for binary outputs).
        average: ``"macro"`` (default), ``"micro"`` or ``"binary"``; see ``ClassScore``.

    Returns:
        A metric object (named ``recall``); ``compute`` gives the averaged score.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> m = ss.metrics.recall(2, average="binary")
        >>> s = m.update(m.init(), jnp.array([1.0, 1.0, -1.0, 1.0]), jnp.array([1, 0, 1, 1]))
        >>> round(float(m.compute(s)), 4)  # 2 of the 3 positives are found
        0.6667
    """
    return ClassScore(num_classes, score="recall", average=average)


def f1(num_classes: int, *, average: str = "macro") -> ClassScore:
    """F1: the harmonic mean of precision and recall, per class, then averaged.

    Args:
        num_classes: the number of classes (2 for binary outputs).
        average: ``"macro"`` (default), ``"micro"`` or ``"binary"``; see ``ClassScore``.

    Returns:
        A metric object (named ``f1``); ``compute`` gives the averaged score.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> m = ss.metrics.f1(3)
        >>> s = m.update(m.init(), jnp.eye(3), jnp.array([0, 1, 2]))
        >>> float(m.compute(s))
        1.0
    """
    return ClassScore(num_classes, score="f1", average=average)


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs: row = true class, column = predicted.

    ``compute`` returns the ``(classes, classes)`` integer matrix (scikit-learn's layout);
    ``ss.fit`` logs only scalar metrics, so read it from ``ss.evaluate``'s states or call
    it yourself.
    """

    num_classes: int
    threshold: float = dataclasses.field(default=0.0, kw_only=True)
    name: str = dataclasses.field(default="confusion_matrix", kw_only=True)

    def __post_init__(self) -> None:
        _check_classes("confusion_matrix", self.num_classes)

    def init(self) -> Int[Array, "classes classes"]:
        return jnp.zeros((self.num_classes, self.num_classes), jnp.int32)

    @checked_function(name="ss.metrics.ConfusionMatrix.update", hint=_batch_hint)
    def update(
        self,
        state: Int[Array, "classes classes"],
        outputs: Float[Array, "batch ..."],
        targets: Shaped[Array, "batch ..."],
        mask: Mask = None,
    ) -> Int[Array, "classes classes"]:
        return _confusion_update(
            self.name, self.num_classes, state, outputs, targets, mask, self.threshold
        )

    def compute(self, state: Int[Array, "classes classes"]) -> Int[Array, "classes classes"]:
        return state


def confusion_matrix(num_classes: int) -> ConfusionMatrix:
    """The confusion matrix over the dataset: ``m[true, predicted]`` counts examples.

    Args:
        num_classes: the number of classes (rows and columns).

    Returns:
        A metric object; ``evaluate`` reports it as an int array ``(classes, classes)``.

    Example:
        >>> import jax.numpy as jnp
        >>> import shapesafe as ss
        >>> m = ss.metrics.confusion_matrix(2)
        >>> s = m.update(m.init(), jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1, 1]))
        >>> m.compute(s).tolist()
        [[1, 0], [1, 1]]
    """
    return ConfusionMatrix(num_classes)
