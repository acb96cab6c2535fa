"""``Run``: what callbacks see of a training run, and its checkpoint form.

``fit`` owns the loop; a ``Run`` is the few facts and actions a callback needs (the step, the
epoch, the history, ``stop``, ``weights``/``restore``). ``snapshot`` and ``resume`` turn the
run's whole state into a checkpoint's arrays and JSON and back, so that nothing else knows
which fields a checkpoint holds.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._data_checks import raise_for_flags
from ._engine import Engine, Slices
from ._history import History
from ._progress import Progress
from ._step_log import StepLog, losses


class Run:
    """What callbacks see of a training run in progress.

    Attributes:
        step: optimizer steps done so far.
        epoch: the current epoch (from 1).
        position: batches of the current epoch consumed so far.
        history: the ``History`` so far.
        model: the model being trained (its weights are written back at the end of ``fit``;
            use ``weights()`` for the live state).
        consistent: the state matches ``step`` (false between the steps of one
            ``steps_per_call`` group, where a checkpoint would not be exact).
        stop_reason: why the run stops, once a callback (or ``fit``) asked it to.
    """

    def __init__(
        self,
        engine: Engine,
        model: nnx.Module,
        history: History,
        bar: Progress,
        steps_per_call: int = 1,
    ):
        self.engine, self.model, self.history, self._bar = engine, model, history, bar
        self.step, self.epoch, self.position = 0, 1, 0
        self.epoch_done = False
        self.consistent = True
        self.stop_reason: str | None = None
        self.mstates: Any = engine.init_metrics()
        self.epoch_losses: list[float] = []
        self.epoch_counts: list[float] = []
        # the steps' losses and value-check flags, written on the device, read back lazily
        self.log = StepLog(steps_per_call)

    def train(self, batch: Any, steps: int) -> None:
        """One call of the engine's step over ``steps`` batches (``Engine.train``'s ``batch``);
        their losses and value checks stay on the device until a buffer of them is due
        (``StepLog``).

        Raises:
            ShapesafeError: a batch read back had NaN inputs or targets, or labels out of
                range (the step applied no update for it).
        """
        log = self.log
        number, restart = (batch.number, batch.restart) if isinstance(batch, Slices) else (0, False)
        buffer = log.buffer(steps, number, restart)
        self.mstates, buffer = self.engine.train(self.mstates, buffer, batch)
        table = log.put(buffer, steps)
        if table is not None:
            self._record(table)

    def flush(self) -> None:
        """Read the pending step losses back from the device (one transfer for all of them).

        A step whose loss was not finite (it applied no update) stops the run.

        Raises:
            ShapesafeError: a batch had NaN inputs or targets, or labels out of range (the
                step applied no update for it).
        """
        self._record(self.log.read())

    def _record(self, table: np.ndarray) -> None:
        """Add read-back rows to the epoch's figures, then raise for the first bad batch."""
        if not len(table):
            return
        first = len(self.epoch_losses)  # this epoch's index of the first step read here
        values = losses(table)
        self.epoch_losses.extend(values.tolist())
        self.epoch_counts.extend(table[:, 4].astype(float).tolist())
        bad = np.flatnonzero(table[:, 1])
        if bad.size:
            where = f"batch {first + int(bad[0])} of epoch {self.epoch}"
            raise_for_flags(table[bad[0], 1:], where, self.engine.classes)
        finite = np.isfinite(values)
        if not self.stop_reason and not finite.all():
            step = len(self.history.steps) + first + int(np.argmin(finite)) + 1
            self.stop(
                f"the loss was not finite at step {step}; no update was applied at such steps, "
                "so the weights are those of the last good step"
            )

    def stop(self, reason: str = "stopped by a callback") -> None:
        """Ask ``fit`` to stop after the current step."""
        self.stop_reason = reason

    def note(self, text: str) -> None:
        """Print ``text`` above the progress bar (or as a line where there is none)."""
        self._bar.note(text)

    def weights(self) -> Any:
        """A copy of the trained state (parameters and other variables), safe from donation."""
        return jax.tree.map(jnp.copy, (self.engine.params, self.engine.rest))

    def restore(self, weights: Any) -> None:
        """Put a copy made by ``weights()`` back."""
        self.engine.params, self.engine.rest = jax.tree.map(jnp.copy, weights)

    def next_epoch(self) -> None:
        """Move on to the first batch of the next epoch, with fresh epoch figures."""
        self.epoch, self.position, self.epoch_done = self.epoch + 1, 0, False
        self.epoch_losses, self.epoch_counts = [], []
        self.mstates = self.engine.init_metrics()


def snapshot(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's state as a checkpoint holds it: every array (``trees``) and the rest as JSON.

    Returns:
        ``(trees, meta)``: trees ``{"params", "rest", "opt_state", "metrics"}``; meta the step,
        epoch, position in the data, the epoch's losses so far and the history.
    """
    run.flush()
    e = run.engine
    trees = {"params": e.params, "rest": e.rest, "opt_state": e.opt_state, "metrics": run.mstates}
    meta = {
        "step": run.step,
        "epoch": run.epoch,
        "position": run.position,
        "epoch_done": run.epoch_done,
        "epoch_losses": run.epoch_losses,
        "epoch_counts": run.epoch_counts,
        "history": run.history.to_dict(),
    }
    return trees, meta


def resume(run: Run, trees: dict[str, Any], meta: dict[str, Any]) -> None:
    """Put a state made by ``snapshot`` (and read back from a checkpoint) into ``run``."""
    e = run.engine
    e.params, e.rest, e.opt_state = trees["params"], trees["rest"], trees["opt_state"]
    run.mstates = trees["metrics"]
    run.step, run.epoch, run.position = int(meta["step"]), int(meta["epoch"]), int(meta["position"])
    run.epoch_losses = [float(v) for v in meta["epoch_losses"]]
    run.log = StepLog(run.log.rows)
    run.epoch_counts = [float(v) for v in meta["epoch_counts"]]
    h = History.from_dict(meta["history"])
    run.history.epochs, run.history.steps = h.epochs, h.steps
    if meta["epoch_done"]:
        run.next_epoch()
