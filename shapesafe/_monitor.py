"""Monitoring a deployed predictor: input drift, prediction drift, and accuracy on fresh labels.

``DriftMonitor.from_data(predictor, training_inputs)`` records, on the training data:

- input statistics per example, then their mean and standard deviation over the data: for
  images (``[batch, height, width, channels]``), each channel's mean (brightness), each
  channel's standard deviation (contrast) and the mean absolute difference of neighbouring
  pixels (sharpness: blur lowers it); for flat inputs, each feature;
- the distribution of the predicted classes.

``monitor.check(batch)`` computes the same statistics on a new batch and flags drift when

- the batch mean of a statistic is significantly off (a z-test: ``|z| > z_threshold``, with
  ``z = (batch mean - training mean) / (training std / sqrt(n))``) *and* practically off
  (by more than ``min_shift`` training standard deviations, so a large batch does not flag a
  negligible difference), or
- the predicted-class distribution moved: the population stability index
  ``PSI = sum((q - p) * ln(q / p))`` over classes (with add-one-half smoothing) exceeds
  ``psi_threshold`` (0.25 is the customary "significant shift").

``check_accuracy(predictor, inputs, labels)`` measures accuracy on fresh labelled data and
compares it with the accuracy recorded in the artifact (``predictor.metrics``).
"""

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ArtifactError, InputError
from ._serving._predictor import Predictor

_FORMAT = "shapesafe.monitor"


def input_statistics(x: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-example statistics of a batch of encoded examples: ``(names, values[batch, stats])``.

    Args:
        x: encoded examples ``(batch, ...)``, as the predictor's encoder makes them.

    Returns:
        ``(names, values)``: the statistics' names and a float array ``(batch, len(names))``.

    Example:
        >>> import numpy as np
        >>> names, v = input_statistics(np.zeros((2, 4, 4, 3), np.uint8))
        >>> names
        ['mean[0]', 'mean[1]', 'mean[2]', 'std[0]', 'std[1]', 'std[2]', 'sharpness']
        >>> v.shape
        (2, 7)
    """
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    if x.ndim == 1:
        return ["value"], x[:, None]
    if x.ndim == 2:
        return [f"feature[{i}]" for i in range(x.shape[1])], x
    channels = x.shape[-1]
    spatial = tuple(range(1, x.ndim - 1))
    means = x.mean(axis=spatial)
    stds = x.std(axis=spatial)
    diffs = [
        np.abs(np.diff(x, axis=a)).reshape(n, -1).mean(axis=1) for a in spatial if x.shape[a] > 1
    ]
    sharp = np.mean(diffs, axis=0) if diffs else np.zeros(n)
    names = (
        [f"mean[{c}]" for c in range(channels)]
        + [f"std[{c}]" for c in range(channels)]
        + ["sharpness"]
    )
    return names, np.concatenate([means, stds, sharp[:, None]], axis=1)


@dataclasses.dataclass(frozen=True)
class DriftReport:
    """The result of ``DriftMonitor.check``.

    Attributes:
        drift: whether any test passed its threshold.
        reasons: one sentence per flagged test.
        z: each input statistic's z-score. shift: its shift in training standard deviations.
        psi: the population stability index of the predicted classes.
        classes: the batch's predicted-class frequencies, by class name.
        n: the number of examples checked.
    """

    drift: bool
    reasons: tuple[str, ...]
    z: dict[str, float]
    shift: dict[str, float]
    psi: float
    classes: dict[str, float]
    n: int

    def __repr__(self) -> str:
        worst = max(self.z, key=lambda k: abs(self.z[k])) if self.z else None
        head = f"DriftReport(drift={self.drift}, n={self.n}, psi={self.psi:.3g}"
        if worst is not None:
            head += f", largest z={self.z[worst]:.3g} ({worst})"
        return head + (")" if not self.reasons else ", reasons=" + repr(list(self.reasons)) + ")")


class DriftMonitor:
    """Scores new batches against training-data statistics and flags drift (see the module docstring).

    Build one with ``DriftMonitor.from_data``; store it with ``ss.save(..., monitor=m)`` and read
    it back with ``DriftMonitor.load``.

    Args:
        predictor: the ``Predictor`` whose inputs and predictions are watched.
        reference: the recorded statistics (``to_dict()``'s form).
    """

    def __init__(
        self,
        predictor: Predictor[Any, Any],
        reference: dict[str, Any],
        *,
        z_threshold: float = 5.0,
        min_shift: float = 0.25,
        psi_threshold: float = 0.25,
    ):
        for name, v in (
            ("z_threshold", z_threshold),
            ("min_shift", min_shift),
            ("psi_threshold", psi_threshold),
        ):
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                raise ValueError(f"DriftMonitor: {name} must be a non-negative number, got {v!r}.")
        self.predictor, self.reference = predictor, reference
        self.z_threshold, self.min_shift, self.psi_threshold = (
            float(z_threshold),
            float(min_shift),
            float(psi_threshold),
        )

    @classmethod
    def from_data(
        cls,
        predictor: Predictor[Any, Any],
        inputs: Sequence[Any] | np.ndarray,
        *,
        z_threshold: float = 5.0,
        min_shift: float = 0.25,
        psi_threshold: float = 0.25,
    ) -> "DriftMonitor":
        """Record the statistics of ``inputs`` (the training data) and of the predictions on them.

        Args:
            predictor: the predictor to watch.
            inputs: raw inputs for the predictor's encoder (paths, images, ...), or an array of
                already encoded examples ``[batch, ...]`` (e.g. the training images).
            z_threshold, min_shift, psi_threshold: the flags' thresholds (module docstring).
        """
        x = _encoded(predictor, inputs)
        if len(x) < 2:
            raise ValueError(f"DriftMonitor.from_data: needs at least 2 examples, got {len(x)}.")
        names, stats = input_statistics(x)
        counts = _class_counts(predictor, x)
        reference = {
            "format": _FORMAT,
            "n": len(x),
            "statistics": names,
            "mean": stats.mean(axis=0).tolist(),
            "std": stats.std(axis=0, ddof=1).tolist(),
            "classes": _class_names(predictor, len(counts)),
            "class_counts": counts.tolist(),
        }
        return cls(
            predictor,
            reference,
            z_threshold=z_threshold,
            min_shift=min_shift,
            psi_threshold=psi_threshold,
        )

    def check(self, inputs: Sequence[Any] | np.ndarray) -> DriftReport:
        """Score a batch of new inputs (raw or encoded, as for ``from_data``) against the training data."""
        ref = self.reference
        x = _encoded(self.predictor, inputs)
        n = len(x)
        names, stats = input_statistics(x)
        if names != ref["statistics"]:
            raise ValueError(
                f"DriftMonitor.check: the inputs give statistics {names}, the monitor recorded "
                f"{ref['statistics']}; they are not inputs of the same model."
            )
        mean, std = np.asarray(ref["mean"]), np.maximum(np.asarray(ref["std"]), 1e-6)
        shift = (stats.mean(axis=0) - mean) / std
        z = shift * math.sqrt(n)
        reasons = [
            f"{name}: batch mean {m:.4g} vs training {mu:.4g} ({s:+.2f} std, z={zz:+.1f})"
            for name, m, mu, s, zz in zip(names, stats.mean(axis=0), mean, shift, z, strict=True)
            if abs(zz) > self.z_threshold and abs(s) > self.min_shift
        ]
        counts = _class_counts(self.predictor, x)
        p = _smoothed(np.asarray(ref["class_counts"], np.float64))
        q = _smoothed(counts.astype(np.float64))
        psi = float(np.sum((q - p) * np.log(q / p)))
        classes = ref["classes"]
        if psi > self.psi_threshold:
            was = ", ".join(f"{c} {v:.0%}" for c, v in zip(classes, p, strict=True))
            now = ", ".join(f"{c} {v:.0%}" for c, v in zip(classes, q, strict=True))
            reasons.append(
                f"predicted classes: {now} vs training {was} (PSI {psi:.2f} > {self.psi_threshold})"
            )
        return DriftReport(
            bool(reasons),
            tuple(reasons),
            dict(zip(names, map(float, z), strict=True)),
            dict(zip(names, map(float, shift), strict=True)),
            psi,
            {c: float(k) / n for c, k in zip(classes, counts, strict=True)},
            n,
        )

    def to_dict(self) -> dict[str, Any]:
        """The reference statistics and thresholds, JSON-ready (``ss.save(..., monitor=m)`` stores them)."""
        return {
            **self.reference,
            "z_threshold": self.z_threshold,
            "min_shift": self.min_shift,
            "psi_threshold": self.psi_threshold,
        }

    @classmethod
    def from_dict(cls, predictor: Predictor[Any, Any], data: dict[str, Any]) -> "DriftMonitor":
        """The monitor ``to_dict`` described, watching ``predictor``."""
        keys = ("n", "statistics", "mean", "std", "classes", "class_counts")
        if (
            not isinstance(data, dict)
            or data.get("format") != _FORMAT
            or any(k not in data for k in keys)
        ):
            raise ArtifactError(
                f"not a drift monitor record (expected format {_FORMAT!r} with {list(keys)})."
            )
        reference = {k: data[k] for k in ("format", *keys)}
        return cls(
            predictor,
            reference,
            z_threshold=data.get("z_threshold", 5.0),
            min_shift=data.get("min_shift", 0.25),
            psi_threshold=data.get("psi_threshold", 0.25),
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], predictor: Predictor[Any, Any] | None = None
    ) -> "DriftMonitor":
        """The monitor stored in an artifact (``ss.save(..., monitor=m)``), watching ``predictor``
        (default: the artifact's own predictor)."""
        import json

        from ._artifacts._artifact import MONITOR, load, read_verified

        _, files = read_verified(path)
        if MONITOR not in files:
            raise ArtifactError(
                f"{Path(path) / MONITOR} is missing: the artifact was saved without a monitor "
                "(ss.save(..., monitor=DriftMonitor.from_data(...)))."
            )
        return cls.from_dict(
            predictor if predictor is not None else load(path), json.loads(files[MONITOR])
        )


def _encoded(predictor: Predictor[Any, Any], inputs: Any) -> np.ndarray:
    """An array of encoded examples as it is (checked), or raw inputs through the encoder."""
    if isinstance(inputs, np.ndarray) and inputs.ndim == len(predictor.example_dims) + 1:
        got = tuple(str(d) for d in inputs.shape[1:])
        if got != predictor.example_dims or inputs.dtype.name != predictor.input["dtype"]:
            raise InputError(
                f"an array of encoded examples must be {predictor.input['dtype']}"
                f"[n, {', '.join(predictor.example_dims)}], got {inputs.dtype.name}{list(inputs.shape)}; "
                "pass raw inputs as a list to encode them."
            )
        return inputs
    return predictor.encode(list(inputs))


def _class_counts(predictor: Predictor[Any, Any], x: np.ndarray) -> np.ndarray:
    outputs = np.asarray(predictor.run(x))
    if outputs.ndim != 2:
        raise ValueError(
            f"DriftMonitor: the model's outputs have shape {outputs.shape}; class scores "
            "[batch, classes] are needed to track the predicted classes."
        )
    return np.bincount(outputs.argmax(axis=-1), minlength=outputs.shape[-1])


def _class_names(predictor: Predictor[Any, Any], k: int) -> list[str]:
    names = getattr(predictor.decoder, "names", None)
    return list(names) if names is not None and len(names) == k else [str(i) for i in range(k)]


def _smoothed(counts: np.ndarray) -> np.ndarray:
    return (counts + 0.5) / (counts.sum() + 0.5 * len(counts))


@dataclasses.dataclass(frozen=True)
class AccuracyReport:
    """The result of ``check_accuracy``: the fresh ``accuracy`` on ``n`` examples, the
    ``expected`` (recorded) one, and whether it ``degraded`` by more than the tolerance."""

    accuracy: float
    expected: float
    n: int
    degraded: bool

    def __repr__(self) -> str:
        return (
            f"AccuracyReport(accuracy={self.accuracy:.3f}, expected={self.expected:.3f}, n={self.n}, "
            f"degraded={self.degraded})"
        )


def check_accuracy(
    predictor: Predictor[Any, Any],
    inputs: Sequence[Any] | np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    *,
    expected: float | None = None,
    tolerance: float = 0.05,
) -> AccuracyReport:
    """Accuracy on fresh labelled data, against the accuracy recorded when the model was saved.

    Args:
        predictor: a predictor whose outputs are class scores (e.g. loaded with ``ss.load``).
        inputs: raw inputs, or an array of encoded examples ``[batch, ...]``.
        labels: class indices, or class names (with a ``Labels`` decoder).
        expected: the accuracy to compare with; default ``predictor.metrics["accuracy"]``
            (or ``"eval_accuracy"``), as recorded by ``ss.save(..., metrics=...)``.
        tolerance: how far below ``expected`` the fresh accuracy may fall before it counts as
            degraded.

    Returns:
        An ``AccuracyReport``: the fresh accuracy, the expected one and whether it degraded.

    Raises:
        ValueError: no expected accuracy is known, or ``labels`` does not match ``inputs``.
    """
    if expected is None:
        recorded = predictor.metrics
        expected = recorded.get("accuracy", recorded.get("eval_accuracy"))
        if expected is None:
            raise ValueError(
                "check_accuracy: the predictor has no recorded accuracy (its metrics are "
                f"{recorded}); save it with metrics={{'accuracy': ...}} or pass expected=."
            )
    x = _encoded(predictor, inputs)
    labels = list(labels)
    if len(labels) != len(x):
        raise ValueError(f"check_accuracy: {len(x)} inputs but {len(labels)} labels.")
    names = list(getattr(predictor.decoder, "names", None) or [])
    index = []
    for y in labels:
        if isinstance(y, str):
            if y not in names:
                raise ValueError(f"check_accuracy: unknown label {y!r}; the classes are {names}.")
            index.append(names.index(y))
        else:
            index.append(int(y))
    predicted = predictor.run(x).argmax(axis=-1)
    accuracy = float(np.mean(predicted == np.asarray(index)))
    return AccuracyReport(accuracy, float(expected), len(x), accuracy < float(expected) - tolerance)
