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
from ._engine import Engine
from ._history import History
from ._progress import Progress

_CHUNK = 64


@jax.jit
def _stack(chunk: list[tuple[Any, Any]]) -> tuple[Any, Any]:
    """A chunk of one-step ``(loss, flags)`` stacked into one pair, in one dispatch."""
    return jnp.stack([v for v, _ in chunk]), jnp.stack([f for _, f in chunk])


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

    def __init__(self, engine: Engine, model: nnx.Module, history: History, bar: Progress):
        self.engine, self.model, self.history, self._bar = engine, model, history, bar
        self.step, self.epoch, self.position = 0, 1, 0
        self.epoch_done = False
        self.consistent = True
        self.stop_reason: str | None = None
        self.mstates: Any = engine.init_metrics()
        self.epoch_losses: list[float] = []
        self.epoch_counts: list[float] = []
        # the steps' (losses, value-check flags), on the device, read back lazily (no sync per step)
        self.pending_losses: list[tuple[Any, Any]] = []
        self._loose = 0  # trailing one-step (0-d) losses in pending_losses, not yet stacked
        self._pending_steps = 0

    def add_loss(self, value: Any, flags: Any) -> None:
        """Keep a call's loss and value-check flags (device arrays, ``value_flags``: they
        also count the batch's real examples) to read back later.

        Every ``_CHUNK`` one-step losses are stacked on the device into one array, so reading
        them back is one transfer per chunk instead of one per step (about 8 us a step on
        CPU). Once ``2 * _CHUNK`` steps are pending, all but the newest call are read back:
        they are computed by then (the device works on the newest), so this does not wait,
        and a batch that failed the value checks in the step is reported within that many
        steps rather than at the epoch's end.
        """
        self.pending_losses.append((value, flags))
        one = value.ndim == 0
        self._pending_steps += 1 if one else value.shape[0]
        self._loose = self._loose + 1 if one else 0
        if self._loose == _CHUNK:
            chunk = self.pending_losses[-_CHUNK:]
            self.pending_losses[-_CHUNK:] = [_stack(chunk)]
            self._loose = 0
        if self._pending_steps >= 2 * _CHUNK and len(self.pending_losses) > 1:
            self._read(len(self.pending_losses) - 1 - self._loose)

    def flush(self) -> None:
        """Read the pending step losses back from the device (one transfer for all of them).

        A step whose loss was not finite (it applied no update) stops the run.

        Raises:
            ShapesafeError: a batch had NaN inputs or targets, or labels out of range (the
                step applied no update for it).
        """
        self._read(len(self.pending_losses))

    def _read(self, n: int) -> None:
        """Read back the first ``n`` pending calls, then raise for the first bad batch among them."""
        done, self.pending_losses = self.pending_losses[:n], self.pending_losses[n:]
        self._pending_steps = sum(int(np.size(v)) for v, _ in self.pending_losses)
        if not done:
            return
        first = len(self.epoch_losses)  # this epoch's index of the first step read here
        read = jax.device_get(done)
        table = np.concatenate([np.reshape(f, (-1, 4)) for _, f in read])
        self.epoch_losses.extend(float(x) for v, _ in read for x in np.ravel(v))
        self.epoch_counts.extend(float(n) for n in table[:, 3])
        bad = np.flatnonzero(table[:, 0])
        if bad.size:
            where = f"batch {first + int(bad[0])} of epoch {self.epoch}"
            raise_for_flags(table[bad[0]], where, self.engine.classes)
        losses = np.asarray(self.epoch_losses[first:])
        if not self.stop_reason and not np.isfinite(losses).all():
            step = len(self.history.steps) + first + int(np.argmin(np.isfinite(losses))) + 1
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
    run.epoch_losses, run.pending_losses, run._loose, run._pending_steps = (
        [float(v) for v in meta["epoch_losses"]],
        [],
        0,
        0,
    )
    run.epoch_counts = [float(v) for v in meta["epoch_counts"]]
    h = History.from_dict(meta["history"])
    run.history.epochs, run.history.steps = h.epochs, h.steps
    if meta["epoch_done"]:
        run.next_epoch()
