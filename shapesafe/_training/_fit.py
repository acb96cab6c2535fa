"""``fit``, ``evaluate`` and ``predict``: a readable loop around the jitted steps of ``_engine``."""

import inspect
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .._errors import ShapesafeError
from ._arguments import prepare_evaluate, prepare_fit, prepare_predict
from ._batches import pick_keys, split_batch
from ._callbacks import Callback
from ._data_checks import check_batch, check_data_spec, check_labels
from ._engine import Engine
from ._history import History
from ._progress import Progress


class Run:
    """What callbacks see of a training run in progress.

    Attributes:
        step: optimizer steps done so far. epoch: the current epoch (from 1).
        position: batches of the current epoch consumed so far.
        history: the ``History`` so far. model: the model being trained (its weights are
            written back at the end of ``fit``; use ``weights()`` for the live state).
    """

    def __init__(self, engine: Engine, model: nnx.Module, history: History, bar: Progress):
        self.engine, self.model, self.history, self._bar = engine, model, history, bar
        self.step = 0
        self.epoch = 1
        self.position = 0
        self.epoch_done = False
        self.consistent = True  # the engine state matches `step` (false inside a multi-step call)
        self.stop_reason: str | None = None
        self.mstates: Any = engine.init_metrics()
        self.epoch_losses: list[float] = []
        self.epoch_counts: list[float] = []
        self.pending_losses: list[Any] = []  # device arrays, read back lazily (no sync per step)

    def flush(self) -> None:
        """Read the pending step losses back from the device."""
        for v in self.pending_losses:
            self.epoch_losses.extend(float(x) for x in np.ravel(np.asarray(v)))
        self.pending_losses = []

    def stop(self, reason: str = "stopped by a callback") -> None:
        """Ask ``fit`` to stop after the current step."""
        self.stop_reason = reason

    def note(self, text: str) -> None:
        self._bar.note(text)

    def weights(self) -> Any:
        """A copy of the trained state (parameters and other variables), safe from donation."""
        return jax.tree.map(jnp.copy, (self.engine.params, self.engine.rest))

    def restore(self, weights: Any) -> None:
        """Put a copy made by ``weights()`` back."""
        self.engine.params, self.engine.rest = jax.tree.map(jnp.copy, weights)

    def trees(self) -> dict[str, Any]:
        """Every array of the training state, for checkpoints."""
        e = self.engine
        return {
            "params": e.params,
            "rest": e.rest,
            "opt_state": e.opt_state,
            "metrics": self.mstates,
        }

    def meta(self) -> dict[str, Any]:
        """Everything else of the training state, JSON-serialisable."""
        self.flush()
        return {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "epoch_done": self.epoch_done,
            "epoch_losses": self.epoch_losses,
            "epoch_counts": self.epoch_counts,
            "history": self.history.to_dict(),
        }

    def load(self, trees: dict[str, Any], meta: dict[str, Any]) -> None:
        """Restore a state saved by ``trees()`` and ``meta()``."""
        e = self.engine
        e.params, e.rest, e.opt_state, self.mstates = (
            trees["params"],
            trees["rest"],
            trees["opt_state"],
            trees["metrics"],
        )
        self.step, self.epoch, self.position = (
            int(meta["step"]),
            int(meta["epoch"]),
            int(meta["position"]),
        )
        self.epoch_losses, self.pending_losses = [float(v) for v in meta["epoch_losses"]], []
        self.epoch_counts = [float(v) for v in meta["epoch_counts"]]
        h = History.from_dict(meta["history"])
        self.history.epochs, self.history.steps = h.epochs, h.steps
        if meta["epoch_done"]:
            self.epoch, self.position = self.epoch + 1, 0
            self.epoch_losses, self.epoch_counts = [], []
            self.mstates = e.init_metrics()


def _epoch_iter(data: Any, epoch: int, start: int) -> Iterator[Any]:
    """The batches of ``epoch`` from batch ``start``.

    A ``shapesafe.data.Dataset`` (anything with ``epoch(e, start=k)``) reshuffles per epoch,
    deterministically, and skips cheaply; with ``epoch(e)`` alone, or a plain iterable, the
    skipped batches are read and dropped.
    """
    per_epoch: Any = getattr(data, "epoch", None)
    source: Any = data
    if callable(per_epoch):
        if "start" in inspect.signature(per_epoch).parameters:
            source = per_epoch(epoch, start=start)
            return iter(source)
        source = per_epoch(epoch)
    it = iter(source)
    for _ in range(start):  # resume: skip what the checkpoint already trained on
        next(it, None)
    return it


def _pad(x: Any, n: int) -> Any:
    """Pad the leading axis to ``n`` by repeating the first row (valid values, masked out)."""
    x = np.asarray(x)
    short = n - x.shape[0]
    if short <= 0:
        return x
    return np.concatenate([x, np.repeat(x[:1], short, axis=0)], axis=0)


class _Batcher:
    """Turns a dataset's batches into padded ``(x, y, mask)`` of one fixed size (host arrays);
    ``place`` puts one batch, or several stacked for ``lax.scan``, on the device(s)."""

    def __init__(self, model: Any, inputs: str | None, targets: str | None, sharding: Any):
        self.model, self.inputs, self.targets, self.sharding = model, inputs, targets, sharding
        self.keys: tuple[Any, Any] | None = None
        self.size: int | None = None

    def __call__(self, batch: Any, where: str) -> tuple[Any, Any, Any]:
        if self.keys is None:
            self.keys = pick_keys(batch, self.inputs, self.targets)
        x, y, mask = split_batch(batch, self.keys)
        n = int(np.shape(x)[0])
        if self.size is None:
            self.size = n
            if self.sharding is not None:
                # each process feeds its own part of the global batch to its own devices
                devices = max(1, self.sharding.mesh.shape["data"] // jax.process_count())
                if n % devices:
                    raise ShapesafeError(
                        f"a batch of {n} cannot be split over {devices} devices; use a batch size that is a multiple "
                        f"of {devices} (e.g. {devices * max(1, round(n / devices))})."
                    )
        if n > self.size:
            raise ShapesafeError(
                f"{where} has {n} examples, more than the first batch's {self.size}; "
                "batches must not grow."
            )
        check_batch(self.model, x, where)
        check_labels(self.model, y, mask, where)
        if n < self.size:
            x, y, mask = (
                _pad(x, self.size),
                _pad(y, self.size),
                np.concatenate([mask, np.zeros(self.size - n, bool)]),
            )
        return x, y, mask

    def place(self, group: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
        """One batch as is, or ``len(group) > 1`` batches stacked on a new leading (step) axis;
        with a mesh, sharded along the batch axis over the mesh's ``data`` axis."""
        x, y, mask = (
            group[0]
            if len(group) == 1
            else (np.stack([np.asarray(g[k]) for g in group]) for k in range(3))
        )
        if self.sharding is None:
            return x, y, mask
        from jax.sharding import NamedSharding, PartitionSpec

        spec = PartitionSpec("data") if len(group) == 1 else PartitionSpec(None, "data")
        sharding = NamedSharding(self.sharding.mesh, spec)

        def put(
            a: Any,
        ) -> Any:  # this process's examples; with several processes, its part of the global batch
            return jax.make_array_from_process_local_data(sharding, np.asarray(a))

        return put(x), put(y), put(mask)


def fit(
    model: nnx.Module,
    data: Iterable[Any] | tuple[Any, Any] | Mapping[str, Any],
    *,
    loss: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    epochs: int,
    eval_data: Iterable[Any] | None = None,
    metrics: Sequence[Any] = (),
    callbacks: Sequence[Callback] = (),
    inputs: str | None = None,
    targets: str | None = None,
    eval_every: int | None = None,
    steps_per_call: int = 1,
    progress: bool | None = None,
    log_every: int = 50,
    log_file: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    validation_data: Any = None,
    validation_split: float | None = None,
) -> History:
    """Train ``model`` in place on ``data`` and return the ``History``.

    Before the first step the dataset's element spec (``data.spec``, where it has one) and
    the first batch are checked against the model's input spec, so a mismatch is a
    ``ShapeError`` in well under a second. Each step is one jitted, donated call over the
    model's split state; ``steps_per_call > 1`` runs several under ``lax.scan``.

    Args:
        model: a model from ``ss.build`` (or any NNX module whose ``__call__`` maps inputs to outputs).
        data: re-iterable batches: dicts (``{"image", "label"[, "mask"]}``) or tuples ``(x, y[, mask])``.
            A dataset with an ``epoch(e)`` method is asked for each epoch's batches.
        loss: ``loss(outputs, targets, *, mask)`` to a scalar, e.g. ``ss.losses.cross_entropy``.
        optimizer: any optax ``GradientTransformation``; wrap it with ``optax.inject_hyperparams``
            to have its learning rate logged.
        epochs: passes over ``data``.
        eval_data: evaluated at each epoch's end (and every ``eval_every`` steps when given).
        metrics: metric objects (``ss.metrics.accuracy``), computed exactly over whole datasets.
        callbacks: ``Callback`` objects (``ss.callbacks.EarlyStopping(...)``, ...).
        inputs, targets: the keys of a dict batch; by default ``"image"``/``"label"`` and friends.
        steps_per_call: steps per jitted call.
        progress: a progress bar on a terminal, plain lines otherwise; ``False`` is quiet.
        log_every: steps between plain progress lines and loss read-backs.
        log_file: a JSONL file that receives each epoch's logs.
        checkpoint_dir: save checkpoints here (at each epoch's end, and every ``checkpoint_every``
            steps) and resume from the newest good one found there.
        mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis: batches are split over it and
            parameters replicated.
        batch_size: for arrays: examples per batch (default 32).
        shuffle: for arrays: a new order every epoch (seeded, so runs repeat).
        validation_data: ``(x_val, y_val)`` (or a dict, or batches): evaluated at each epoch's
            end, as ``eval_data`` is.
        validation_split: for arrays: the fraction, taken from the end before shuffling (as
            Keras does), evaluated instead of trained on.

    ``data`` may also be arrays, as Keras takes them: ``(x, y)`` or ``{"image": x, "label": y}``
    (NumPy or JAX arrays); they become a ``shapesafe.data`` dataset of their rows, shuffled
    (``shuffle``) and batched (``batch_size``). The model trains in training mode (Dropout on,
    BatchNorm on batch statistics) and is left in inference mode.

    Returns:
        The ``History`` of per-epoch logs and per-step losses.

    Raises:
        ShapeError: the data does not fit the model.
        ShapesafeError: an empty dataset, an unusable batch, a non-finite input.

    Example:
        >>> import numpy as np, optax
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> from shapesafe.data import from_arrays
        >>> x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int32)  # the class is the sign of the first feature
        >>> model = ss.build(L.Linear(2), Float32[Array, "batch 2"], seed=0)
        >>> history = ss.fit(model, from_arrays({"x": x, "label": y}).shuffle(seed=0).batch(16),
        ...                  loss=ss.losses.cross_entropy, optimizer=optax.adam(0.1), epochs=20,
        ...                  metrics=[ss.metrics.accuracy], progress=False)
        >>> history["accuracy"][-1] > 0.9
        True
    """
    data, eval_data, loss = prepare_fit(
        model,
        data,
        loss=loss,
        optimizer=optimizer,
        steps_per_call=steps_per_call,
        eval_data=eval_data,
        batch_size=batch_size,
        shuffle=shuffle,
        validation_data=validation_data,
        validation_split=validation_split,
    )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive integer, got {epochs!r}.")
    if steps_per_call < 1:
        raise ValueError(f"fit: steps_per_call must be >= 1, got {steps_per_call}.")
    check_data_spec(model, data, inputs, targets, loss, what="data")
    if eval_data is not None:
        check_data_spec(model, eval_data, inputs, targets, loss, what="eval_data")
    engine = Engine(model, loss=loss, optimizer=optimizer, metrics=metrics)
    sharding = _data_sharding(mesh, engine)
    history = History()
    bar = Progress(enabled=progress, every=log_every)
    run = Run(engine, model, history, bar)
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        from ._callbacks import Checkpoint

        callbacks.append(Checkpoint(checkpoint_dir, every_steps=checkpoint_every))
    step_losses = any(getattr(c, "wants_step_loss", False) for c in callbacks)
    batcher = _Batcher(model, inputs, targets, sharding)
    eval_batcher = _Batcher(model, inputs, targets, sharding)
    log = open(log_file, "a") if log_file is not None else None
    try:
        for c in callbacks:
            c.on_train_begin(run)
        while run.epoch <= epochs and not run.stop_reason:
            epoch = run.epoch
            run.epoch_done = False
            for c in callbacks:
                c.on_epoch_begin(run, epoch)
            t0 = time.perf_counter()
            bar.start(epoch, epochs, _len(data))
            pending: list[tuple[Any, Any, Any]] = []
            for batch in _epoch_iter(data, epoch, run.position):
                pending.append(
                    batcher(batch, f"batch {run.position + len(pending)} of epoch {epoch}")
                )
                if len(pending) == steps_per_call:
                    _train(
                        run,
                        pending,
                        callbacks,
                        step_losses,
                        bar,
                        eval_data,
                        eval_every,
                        eval_batcher,
                    )
                    pending = []
                    if run.stop_reason:
                        break
            for p in pending:  # a last group shorter than steps_per_call, one step at a time
                if run.stop_reason:
                    break
                _train(run, [p], callbacks, step_losses, bar, eval_data, eval_every, eval_batcher)
            if not run.pending_losses and not run.epoch_losses and not history.steps:
                raise ShapesafeError(
                    "fit: the training data yielded no batches. Check the dataset is not empty "
                    "(and that batch(..., drop_remainder=True) left at least one batch)."
                )
            logs = _epoch_logs(run, epoch)
            if eval_data is not None:
                logs |= _evaluate(engine, eval_data, eval_batcher, prefix="eval_")
            logs["time"] = time.perf_counter() - t0
            history.epochs.append(logs)
            bar.end(logs)
            if log is not None:
                log.write(json.dumps(logs) + "\n")
                log.flush()
            run.epoch_done = True
            for c in callbacks:
                c.on_epoch_end(run, epoch, logs)
            run.epoch, run.position, run.epoch_done = epoch + 1, 0, False
            run.epoch_losses, run.epoch_counts, run.mstates = [], [], engine.init_metrics()
    finally:
        for c in callbacks:
            c.on_train_end(run)
        engine.write_back(model)
        if log is not None:
            log.close()
        bar.close()
    if run.stop_reason:
        bar.note(f"stopped: {run.stop_reason}")
    return history


def _epoch_logs(run: Run, epoch: int) -> dict[str, Any]:
    """The epoch's mean training loss over real examples (steps with a non-finite loss excluded:
    they applied no update), its training metrics and learning rate."""
    run.flush()
    run.history.steps.extend(run.epoch_losses)
    values, counts = (
        np.asarray(run.epoch_losses, np.float64),
        np.asarray(run.epoch_counts, np.float64),
    )
    finite = np.isfinite(values)
    logs: dict[str, Any] = {"epoch": epoch}
    total = float(counts[finite].sum())
    logs["loss"] = float(values[finite] @ counts[finite] / total) if total else math.nan
    logs |= run.engine.compute_metrics(run.mstates)
    lr = run.engine.learning_rate()
    if lr is not None:
        logs["lr"] = lr
    if not finite.all() and not run.stop_reason:
        first = run.step - len(values) + int(np.argmin(finite)) + 1
        run.stop(
            f"the loss was not finite at step {first}; no update was applied at such steps, "
            "so the weights are those of the last good step"
        )
    return logs


def _train(
    run: Run,
    group: list[tuple[Any, Any, Any]],
    callbacks: Sequence[Callback],
    step_losses: bool,
    bar: Progress,
    eval_data: Any,
    eval_every: int | None,
    batcher: _Batcher,
) -> None:
    """One jitted call: one step, or ``len(group)`` steps under ``lax.scan``."""
    x, y, mask = batcher.place(group)
    run.mstates, value = run.engine.train(run.mstates, x, y, mask)
    values = [float(v) for v in np.ravel(np.asarray(value))] if step_losses else None
    counts = [float(np.sum(np.asarray(g[2]))) for g in group]
    run.pending_losses.append(value)  # before the callbacks: a checkpoint at this step includes it
    run.epoch_counts.extend(counts)
    for k in range(len(group)):
        run.step += 1
        run.position += 1
        run.consistent = k == len(group) - 1
        loss = values[k] if values is not None else None
        bar.update(run.step, loss)
        for c in callbacks:
            c.on_step_end(run, run.step, loss)
        if eval_every and run.step % eval_every == 0 and eval_data is not None and run.consistent:
            scores = _evaluate(run.engine, eval_data, batcher, prefix="eval_")
            bar.note(f"step {run.step}: " + ", ".join(f"{n}={v:.4g}" for n, v in scores.items()))


def _evaluate(
    engine: Engine, data: Iterable[Any], batcher: _Batcher, prefix: str = ""
) -> dict[str, Any]:
    mstates = engine.init_metrics()
    total, count = jnp.zeros(()), jnp.zeros(())
    for i, batch in enumerate(iter(data)):
        x, y, mask = batcher.place([batcher(batch, f"evaluation batch {i}")])
        mstates, loss_sum, n = engine.evaluate(mstates, x, y, mask)
        total, count = total + loss_sum, count + n
    if float(count) == 0:
        raise ShapesafeError("the evaluation data yielded no examples.")
    logs = {f"{prefix}loss": float(total / count)} if engine.loss is not None else {}
    return logs | engine.compute_metrics(mstates, prefix)


def evaluate(
    model: nnx.Module,
    data: Iterable[Any] | tuple[Any, Any] | Mapping[str, Any],
    *,
    metrics: Sequence[Any] = (),
    loss: Callable[..., Any] | None = None,
    inputs: str | None = None,
    targets: str | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Metrics (and the mean loss, if given) of ``model`` over all of ``data``, in eval mode.

    Every real example counts once: padded examples of a short last batch are masked out.

    Args:
        model: a built model (``ss.build``).
        data: batches, as ``fit`` takes them: a ``shapesafe.data`` dataset after ``.batch(n)``,
            or an iterable of ``(x, y)`` tuples or dicts.
        metrics: metric objects (``ss.metrics.accuracy``, ...).
        loss: if given, its mean over the examples is reported as ``"loss"``.
        inputs: the dict key of the inputs (default: ``"image"``, ``"x"`` or ``"inputs"``).
        targets: the dict key of the targets (default: ``"label"``, ``"y"`` or ``"targets"``).
        batch_size: for arrays (``(x, y)`` or a dict of them): examples per batch (default 32).

    Returns:
        ``{metric name: value}`` (and ``"loss"``), as Python floats.

    Raises:
        ShapeError: the data's spec or a batch does not fit the model (or the loss).

    Example:
        >>> import numpy as np
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> from shapesafe.data import from_arrays
        >>> model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
        >>> x = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
        >>> ds = from_arrays({"x": x, "label": np.array([0, 1, 1, 0], np.int32)}).batch(3)
        >>> logs = ss.evaluate(model, ds, metrics=[ss.metrics.accuracy], loss=ss.losses.cross_entropy)
        >>> sorted(logs), 0.0 <= logs["accuracy"] <= 1.0
        (['accuracy', 'loss'], True)
    """
    data, loss = prepare_evaluate(model, data, loss=loss, batch_size=batch_size)
    check_data_spec(model, data, inputs, targets, loss, what="data")
    engine = Engine(model, loss=loss, optimizer=None, metrics=metrics)
    return _evaluate(engine, data, _Batcher(model, inputs, targets, None))


def predict(
    model: nnx.Module,
    data: Any,
    *,
    inputs: str | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """The model's outputs (eval mode) for every example of ``data``, stacked, padding removed.

    Args:
        model: a built model (``ss.build``).
        data: one array of examples (``x``, batched by ``batch_size``), or batches: arrays,
            dicts (the ``inputs`` key, ``"image"`` by default) or tuples whose first item is
            the input.
        inputs: the dict key of the inputs.
        batch_size: for one array: examples per batch (default 32).

    Returns:
        A NumPy array ``(examples, *output)``: one row per real example, in order.

    Raises:
        ShapeError: a batch does not fit the model.

    Example:
        >>> import numpy as np
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
        >>> batches = [np.ones((4, 3), np.float32), np.ones((1, 3), np.float32)]
        >>> ss.predict(model, batches).shape
        (5, 2)
    """
    data = prepare_predict(model, data, batch_size=batch_size, inputs=inputs)
    engine = Engine(model, loss=None, optimizer=None, metrics=())
    outs: list[np.ndarray] = []
    size: int | None = None
    for i, batch in enumerate(iter(data)):
        if isinstance(batch, dict):
            key = inputs if inputs is not None else pick_keys(batch, None, None)[0]
            x, mask = batch[key], batch.get("mask")
        elif isinstance(batch, tuple | list):
            x, mask = batch[0], None
        else:
            x, mask = batch, None
        n = int(np.shape(x)[0])
        size = n if size is None else size
        check_batch(model, x, f"batch {i}")
        y = np.asarray(engine.predict(_pad(x, size)))[:n]
        outs.append(y if mask is None else y[np.asarray(mask, bool)])
    if not outs:
        raise ShapesafeError("predict: the data yielded no batches.")
    return np.concatenate(outs)


def _len(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def _data_sharding(mesh: jax.sharding.Mesh | None, engine: Engine) -> Any:
    if mesh is None:
        return None
    if "data" not in mesh.axis_names:
        raise ValueError(f"fit: the mesh needs an axis named 'data'; it has {mesh.axis_names}.")
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(mesh, PartitionSpec())
    engine.params, engine.rest, engine.opt_state = jax.device_put(
        (engine.params, engine.rest, engine.opt_state), replicated
    )
    return NamedSharding(mesh, PartitionSpec("data"))
