"""Callbacks: small objects that ``fit`` calls at a few moments of training.

Write one by subclassing ``Callback`` and overriding the moments you need. Each gets the
``Run``: the step and epoch, the history so far, ``run.stop()``, and ``run.weights()`` /
``run.restore(weights)`` to snapshot and restore the trained state.
"""

import math
from typing import Any

from .._errors import ShapesafeError
from ._run import Run, resume, snapshot


class Callback:
    """Base class: every moment is a no-op. Override the ones you need."""

    def on_train_begin(self, run: Run) -> None:
        """Before the first step (a resumed run: after its state was restored)."""

    def on_epoch_begin(self, run: Run, epoch: int) -> None:
        """Before the first step of ``epoch`` (counted from 1)."""

    def on_step_end(self, run: Run, step: int, loss: float | None) -> None:
        """After step ``step``; ``loss`` is its value when some callback sets
        ``wants_step_loss = True`` (reading it back costs a device sync), else ``None``."""

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
        """After ``epoch``'s evaluation; ``logs`` holds its figures (``loss``, metrics, ``eval_*``)."""

    def on_train_end(self, run: Run) -> None:
        """After the last step, or once a callback stopped the run (``run.stop(reason)``)."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; restore the best weights.

    Args:
        monitor: a key of the epoch logs, e.g. ``"eval_loss"`` or ``"eval_accuracy"``.
        mode: ``"min"`` or ``"max"``; by default ``"max"`` for accuracy-like names, else ``"min"``.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        restore_best: put the best epoch's weights back into the model at the end.
    """

    def __init__(
        self,
        monitor: str = "eval_loss",
        *,
        mode: str | None = None,
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        if mode is None:
            mode = (
                "max" if any(w in monitor for w in ("acc", "precision", "recall", "f1")) else "min"
            )
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}.")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}.")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = abs(min_delta), restore_best
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._best_weights: Any = None
        self._wait = 0

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise ShapesafeError(
                f"EarlyStopping monitors {self.monitor!r}, but the epoch logs have {sorted(logs)}. "
                "Pass eval_data to fit, or monitor one of those."
            )
        value = logs[self.monitor]
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (value - self.best) < -self.min_delta:
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best:
                self._best_weights = run.weights()
        else:
            self._wait += 1
            if self._wait > self.patience:
                run.stop(
                    f"early stopping: {self.monitor} has not improved for {self._wait} epochs "
                    f"(best {self.best:.4g} at epoch {self.best_epoch})"
                )

    def on_train_end(self, run: Run) -> None:
        if self.restore_best and self._best_weights is not None:
            run.restore(self._best_weights)


class StopOnNaN(Callback):
    """Stop at the first step whose loss is NaN or infinite, naming it.

    The jitted step never applies an update whose loss is not finite, so the weights
    stay those of the last good step. Without this callback ``fit`` finds a bad loss when it
    reads losses back (within 128 steps, and at each epoch's end) and stops there; with it,
    every step is read back, which costs one device synchronisation per step.
    """

    wants_step_loss = True

    def __init__(self) -> None:
        self.bad_step: int | None = None

    def on_step_end(self, run: Run, step: int, loss: float | None) -> None:
        if loss is not None and not math.isfinite(loss):
            self.bad_step = step
            run.stop(
                f"the loss became {loss} at step {step}; the weights of the last good step are kept"
            )


class Checkpoint(Callback):
    """Save the whole training state every ``every_steps`` steps and at each epoch's end, and
    resume from the newest good checkpoint in ``directory`` when training starts.

    A checkpoint holds parameters, optimizer state, other variables (batch statistics,
    RNG state), the step, the position in the data and the history so far, as safetensors
    and JSON (never pickle), written atomically. ``fit(..., checkpoint_dir=d)`` adds one.

    Args:
        directory: where checkpoints go (``step_00000100/`` folders).
        every_steps: also save every this many steps (``None``: only at epoch ends).
        keep: how many recent checkpoints to keep.
        resume: resume from ``directory`` if it holds a checkpoint.
    """

    def __init__(
        self, directory: Any, *, every_steps: int | None = None, keep: int = 3, resume: bool = True
    ):
        if every_steps is not None and every_steps < 1:
            raise ValueError(
                f"Checkpoint: every_steps must be a positive integer or None, got {every_steps}."
            )
        self.directory, self.every_steps, self.keep, self.resume = (
            directory,
            every_steps,
            keep,
            resume,
        )
        self.resumed_from: int | None = None

    def on_train_begin(self, run: Run) -> None:
        if not self.resume:
            return
        from .._persist import load_latest

        found = load_latest(self.directory, like=snapshot(run)[0])
        if found is not None:
            trees, meta = found
            resume(run, trees, meta)
            self.resumed_from = run.step
            run.note(
                f"resumed from {self.directory} at step {run.step} (epoch {run.epoch}, batch {run.position})"
            )

    def _save(self, run: Run) -> None:
        from .._persist import save_checkpoint

        trees, meta = snapshot(run)
        save_checkpoint(self.directory, step=run.step, trees=trees, meta=meta, keep=self.keep)

    def on_step_end(self, run: Run, step: int, loss: float | None) -> None:
        if self.every_steps and step % self.every_steps == 0 and run.consistent:
            self._save(run)

    def on_epoch_end(self, run: Run, epoch: int, logs: dict[str, Any]) -> None:
        self._save(run)
