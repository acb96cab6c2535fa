"""``History``: what ``fit`` measured, per epoch and per step, and a plot of it."""

import json
from pathlib import Path
from typing import Any


class History:
    """Per-epoch logs (``epochs``: a list of dicts) and per-step training loss (``steps``).

    ``history["eval_accuracy"]`` is that column over epochs. ``plot(path)`` draws loss and
    metrics, train and eval side by side, with matplotlib.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.steps: list[float] = []

    def __getitem__(self, key: str) -> list[float]:
        if not any(key in e for e in self.epochs):
            known = sorted({k for e in self.epochs for k in e})
            raise KeyError(f"no figure named {key!r} in this history; it has {known}")
        return [e[key] for e in self.epochs if key in e]

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "epoch")
        return f"History({len(self.epochs)} epochs, {len(self.steps)} steps; last: {shown})"

    def to_dict(self) -> dict[str, Any]:
        """``{"epochs": [per-epoch logs], "steps": [per-step losses]}``, JSON-serialisable."""
        return {"epochs": self.epochs, "steps": self.steps}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        """The history ``to_dict`` wrote (checkpoints store it this way)."""
        h = cls()
        h.epochs = [dict(e) for e in d.get("epochs", [])]
        h.steps = [float(s) for s in d.get("steps", [])]
        return h

    def plot(self, path: str | Path | None = None) -> Any:
        """Loss and every metric over epochs, train and eval side by side; per-step loss faint.

        Writes a PNG when ``path`` is given. Returns the matplotlib ``Figure`` (which a
        notebook displays inline).
        """
        import matplotlib as mpl

        if path is not None:
            mpl.use("Agg", force=False)
        import matplotlib.pyplot as plt

        names = sorted(
            {k.removeprefix("eval_") for e in self.epochs for k in e} - {"epoch", "lr", "time"}
        )
        names = ["loss", *[n for n in names if n != "loss"]]
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        epochs = [e["epoch"] for e in self.epochs]
        for ax, name in zip(axes[0], names, strict=True):
            if name == "loss" and self.steps and epochs:
                per_epoch = len(self.steps) / max(epochs[-1], 1)
                xs = [(i + 1) / per_epoch for i in range(len(self.steps))]
                ax.plot(xs, self.steps, color="tab:blue", alpha=0.25, lw=0.8, label="train (step)")
            for prefix, style in (("", "-o"), ("eval_", "-s")):
                key = prefix + name
                pts = [(e["epoch"], e[key]) for e in self.epochs if key in e]
                if pts:
                    ax.plot(
                        *zip(*pts, strict=True), style, ms=3, label="eval" if prefix else "train"
                    )
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig

    def write_jsonl(self, path: str | Path) -> None:
        """Write one JSON line of logs per epoch to ``path`` (overwritten)."""
        with open(path, "w") as f:
            for e in self.epochs:
                f.write(json.dumps(e) + "\n")
