"""Progress reporting for ``fit``: a tqdm bar on a terminal, plain lines otherwise, or nothing."""

import sys
import time
from typing import Any


class Progress:
    def __init__(self, *, enabled: bool | None, every: int):
        self.quiet = enabled is False
        self.tty = bool(enabled) or (enabled is None and sys.stderr.isatty())
        self.every = max(1, every)
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._steps0 = 0
        self._last_loss: float | None = None

    def start(self, epoch: int, epochs: int, total: int | None) -> None:
        self._t0, self._epoch, self._epochs = time.perf_counter(), epoch, epochs
        self._steps_in_epoch = 0
        if self.quiet:
            return
        if self.tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                desc=f"epoch {epoch}/{epochs}",
                unit="step",
                leave=True,
                dynamic_ncols=True,
            )

    def update(self, step: int, loss: float | None) -> None:
        self._steps_in_epoch += 1
        if loss is not None:
            self._last_loss = loss
        if self.quiet:
            return
        rate = self._steps_in_epoch / max(time.perf_counter() - self._t0, 1e-9)
        if self._bar is not None:
            self._bar.update(1)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", steps_s=f"{rate:.1f}", refresh=False)
        elif step % self.every == 0:
            shown = "" if self._last_loss is None else f" loss={self._last_loss:.4f}"
            print(
                f"epoch {self._epoch}/{self._epochs} step {step}{shown} ({rate:.1f} steps/s)",
                flush=True,
            )

    def end(self, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self.quiet:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in logs.items() if k not in ("epoch",))
            print(f"epoch {self._epoch}/{self._epochs}  {shown}", flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
