"""The training steps' log: each step writes its loss and value checks into a device buffer,
which the host reads back a buffer at a time.

A buffer is an int32 array of ``rows + 1`` rows of 5: row ``i`` holds step ``i``'s loss (its
float32 bits) and its ``value_flags`` ``[what, first bad label, labels outside, real
examples]``; ``buffer[-1, 0]`` counts the rows written and ``buffer[-1, 1]`` is the number of the
next batch in the arrays that a step slicing its batch on the device reads (``_engine.Slices``:
an epoch's layout, or a list's chunk), so the host passes it no number. The buffer is donated to the step and
comes back written, so a step returns no small arrays of its own: per step the host passes
one buffer and gets it back (a loss and a flags array per step cost about 5 us of dispatch
and output handling on CPU, and one transfer each to read them back; see
``benchmarks/README.md``, "The step's log").
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ROWS = 64  # steps per buffer (more where one call runs more steps)


def write(log: Any, value: Any, flags: Any) -> Any:
    """``log`` with its next rows set to ``[loss bits, *flags]`` and its count advanced
    (traced): one step's scalar loss and flags ``(4,)``, or ``k`` steps' ``(k,)`` and ``(k, 4)``."""
    n = log[-1, 0]
    bits = jax.lax.bitcast_convert_type(value.astype(jnp.float32), jnp.int32)
    rows = jnp.concatenate([bits[..., None], flags.astype(jnp.int32)], axis=-1).reshape(-1, 5)
    return jax.lax.dynamic_update_slice(log, rows, (n, 0)).at[-1, :2].add(rows.shape[0])


def next_batch(log: Any, steps: int | None) -> Any:
    """The number of the next batch (``steps`` None), or of the next ``steps`` (traced)."""
    n = log[-1, 1]
    return n if steps is None else n + jnp.arange(steps, dtype=n.dtype)


class StepLog:
    """The host side: hands out buffers, keeps the written ones, reads them back in order.

    ``buffer(steps)`` is the buffer the next call of ``steps`` steps writes into (a fresh one
    when the current one lacks room); ``put`` keeps what the call returned. Once a buffer is
    full and an older one is still unread, ``put`` returns the older ones' rows (read back:
    they are computed by then, as the device works on the newest), so nothing waits and a bad
    batch surfaces within ``2 * rows`` steps.
    """

    def __init__(self, steps_per_call: int = 1):
        self.rows = max(ROWS, steps_per_call)
        self._current: Any = None  # the buffer being written (device), None: a fresh one next
        self._written = 0  # rows written into it
        self._full: list[tuple[Any, int]] = []  # (buffer, rows written), not yet read
        self.pending = 0  # steps written and not yet read

    def buffer(self, steps: int, number: int, restart: bool = False) -> Any:
        """The buffer for a call of ``steps`` steps from batch ``number`` (``Slices``): the
        current one, its batch number advanced by the calls before, or a fresh one that counts
        from ``number``: where the current one is full, was read back (a mid-epoch read, an
        epoch's end), or ``restart`` asks for it (the batches are in other arrays)."""
        if restart or self._current is None or self._written + steps > self.rows:
            self._retire()
            self._current = np.zeros((self.rows + 1, 5), np.int32)
            self._current[-1, 1] = number
        return self._current

    def put(self, buffer: Any, steps: int) -> np.ndarray | None:
        """Keep ``buffer`` (the call's output); the rows of older full buffers, if due."""
        self._current, self._written = buffer, self._written + steps
        self.pending += steps
        if self._written == self.rows:
            self._retire()
        if len(self._full) > 1:
            return self._take(len(self._full) - 1)
        return None

    def read(self) -> np.ndarray:
        """Every pending row, oldest first (waits for the newest step): ``(steps, 5)``."""
        self._retire()
        return self._take(len(self._full))

    def _retire(self) -> None:
        if self._current is not None and self._written:
            self._full.append((self._current, self._written))
        self._current, self._written = None, 0

    def _take(self, n: int) -> np.ndarray:
        done, self._full = self._full[:n], self._full[n:]
        # one buffer at a time: ``np.asarray`` costs about 5 us where ``jax.device_get`` costs 36
        rows = [np.asarray(b)[:k] for b, k in done]
        table = np.concatenate(rows) if rows else np.zeros((0, 5), np.int32)
        self.pending -= len(table)
        return table


def losses(table: np.ndarray) -> np.ndarray:
    """The float32 losses of a read table's rows."""
    return np.ascontiguousarray(table[:, 0]).view(np.float32)
