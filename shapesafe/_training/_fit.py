"""``fit``, ``evaluate`` and ``predict``: a readable loop around the jitted steps of ``_engine``."""

import functools
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
from .._sharding import ShardingPlan, auto_mesh
from ..layers._forward import Forward, layer_paths
from ._arguments import prepare_evaluate, prepare_fit, prepare_predict
from ._callbacks import Callback
from ._data_checks import check_data_spec
from ._engine import Engine
from ._feed import Batcher, Resident
from ._history import History
from ._progress import Progress
from ._run import Run


def _epoch_iter(data: Any, epoch: int, start: int) -> Iterator[Any]:
    """The batches of ``epoch`` from batch ``start``.

    A ``shapesafe.data.Dataset`` (anything with ``epoch(e, start=k)``) reshuffles per epoch,
    deterministically, and skips cheaply; with ``epoch(e)`` alone, or a plain iterable, the
    skipped batches are read and dropped.
    """
    per_epoch: Any = getattr(data, "epoch", None)
    source: Any = data
    if callable(per_epoch):
        if _takes_start(per_epoch):
            source = per_epoch(epoch, start=start)
            return iter(source)
        source = per_epoch(epoch)
    it = iter(source)
    for _ in range(start):  # resume: skip what the checkpoint already trained on
        next(it, None)
    return it


def _takes_start(per_epoch: Callable[..., Any]) -> bool:
    """Whether a dataset's ``epoch`` takes ``start=``: read once per method, by its function."""
    fn = getattr(per_epoch, "__func__", per_epoch)
    try:
        return _has_start(fn)
    except TypeError:  # not hashable
        return _has_start.__wrapped__(fn)


@functools.lru_cache(maxsize=64)
def _has_start(fn: Callable[..., Any]) -> bool:
    return "start" in inspect.signature(fn).parameters


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
    sharding: "ShardingPlan | str | Mapping[str, Any] | None" = None,
    accumulate: int = 1,
    batch_size: int | None = None,
    shuffle: bool = True,
    validation_data: Any = None,
    validation_split: float | None = None,
    remat: bool | str = False,
    precision: str = "float32",
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
        log_every: steps between plain progress lines.
        log_file: a JSONL file that receives each epoch's logs.
        checkpoint_dir: save checkpoints here (at each epoch's end, and every ``checkpoint_every``
            steps) and resume from the newest good one found there.
        mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis: batches are split over it, and
            parameters and optimizer state placed by ``sharding``.
        sharding: the plan on ``mesh``: ``"replicate"`` (the default), ``"fsdp"``, rules
            ``{path regex: layout}`` or a ``ShardingPlan``; checked against every parameter's
            shape before anything compiles.
        accumulate: average the gradients of this many consecutive batches before each
            update (``optax.MultiSteps``): the update of one ``accumulate`` times larger batch
            in the memory of one batch. Steps (``history.steps``, callbacks) count batches.
        batch_size: for arrays: examples per batch (default 32).
        shuffle: for arrays: a new order every epoch (seeded, so runs repeat).
        validation_data: ``(x_val, y_val)`` (or a dict, or batches): evaluated at each epoch's
            end, as ``eval_data`` is.
        validation_split: for arrays: the fraction, taken from the end before shuffling (as
            Keras does), evaluated instead of trained on.
        remat: rematerialise the training forward (``jax.checkpoint``): ``True`` cuts the
            model's top-level layers into about sqrt(n) checkpointed runs; a regex
            checkpoints each layer, at any depth, whose whole path it matches: a parameter's
            ``ShardingPlan`` path without the parameter, ``"3.Residual"`` at the top,
            ``"3.Residual.block.0.Conv2D"`` inside a container, ``"4.Sequential.1.Residual"``
            inside a nested named sequence (so ``r"\\d+\\.Sequential\\.\\d+\\.Residual"`` is every
            block of a zoo ResNet's stages). A regex that matches nothing is refused with the
            model's paths. Less activation memory, about one more forward of compute; the
            same gradients.
        precision: ``"float32"`` (the default) or ``"mixed_bfloat16"``: parameters stay
            float32, the training forward computes in bfloat16 (integer inputs, such as token
            ids, stay integers), the outputs and the loss are float32. ``fit``'s own
            evaluation of ``eval_data`` runs in the same precision (as Keras's dtype policy
            does); the model keeps no policy, so ``ss.evaluate``, ``ss.predict`` and calling
            the model afterwards run as built (float32) unless given ``precision=``.

    ``data`` may also be arrays, as Keras takes them: ``(x, y)`` or ``{"image": x, "label": y}``
    (NumPy or JAX arrays); they become a ``shapesafe.data`` dataset of their rows, shuffled
    (``shuffle``) and batched (``batch_size``). Such an array pipeline (``from_arrays``, its
    ``shuffle``/``take``/``skip``/``split`` parts, then ``batch``) trains from one device copy
    of its arrays, and so does a list of NumPy batches of one shape, copied up to 64 batches
    (16 MiB) at a time as the steps reach them: each step slices its batch there by number, the same
    batches in the same order, without host work per step. The model trains in training
    mode (Dropout on, BatchNorm on batch statistics) and is left in inference mode.

    Returns:
        The ``History`` of per-epoch logs and per-step losses.

    Raises:
        ShapeError: the data does not fit the model.
        ShardingError: the sharding plan does not fit the parameters or the mesh.
        ShapesafeError: an empty dataset, an unusable batch, NaN or infinite inputs or targets,
            labels outside the model's classes, naming the batch. The first batch, and every
            batch read from the host one by one, is checked before it trains. Batches already
            on the device (JAX arrays) and those trained from a device copy (array pipelines,
            lists of NumPy batches) are checked inside the step, which skips a bad batch's
            update; the error comes once the step's results are read back (within 128 steps).

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
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"fit: accumulate must be a positive integer, got {accumulate!r}.")
    forward = Forward.of(remat, precision, where="fit")
    if forward is not None:
        forward.check(layer_paths(model))  # a remat regex that matches nothing fails here
    if accumulate > 1:
        optimizer = _accumulating(optimizer, accumulate)
    check_data_spec(model, data, inputs, targets, loss, what="data")
    if eval_data is not None:
        check_data_spec(model, eval_data, inputs, targets, loss, what="eval_data")
    callbacks = list(callbacks)
    if checkpoint_dir is not None:
        from ._callbacks import Checkpoint

        callbacks.append(Checkpoint(checkpoint_dir, every_steps=checkpoint_every))
    placement, on_mesh = _placement(mesh, sharding)
    engine = Engine(
        model,
        loss=loss,
        optimizer=optimizer,
        metrics=metrics,
        forward=forward,
        placement=placement,
    )
    batcher = Batcher(model, inputs, targets, on_mesh, step_checks_values=True)
    loop = _Loop(
        engine,
        model,
        batcher,
        Batcher(model, inputs, targets, on_mesh),
        callbacks,
        Progress(enabled=progress, every=log_every),
        eval_data=eval_data,
        eval_every=eval_every,
        steps_per_call=steps_per_call,
        resident=Resident.of(data, batcher, steps_per_call),
    )
    log = open(log_file, "a") if log_file is not None else None
    try:
        for c in callbacks:
            c.on_train_begin(loop.run)
        while loop.run.epoch <= epochs and not loop.run.stop_reason:
            logs = loop.epoch(data, epochs, steps_per_call)
            if log is not None:
                log.write(json.dumps(logs) + "\n")
                log.flush()
            loop.end_epoch(logs)
    finally:
        for c in callbacks:
            c.on_train_end(loop.run)
        engine.write_back(model)
        if log is not None:
            log.close()
        loop.bar.close()
    if loop.run.stop_reason:
        loop.bar.note(f"stopped: {loop.run.stop_reason}")
    return loop.run.history


class _Loop:
    """The training loop's moving parts: the engine, the ``Run`` callbacks see, the batchers
    for training and evaluation data, and the progress bar."""

    def __init__(
        self,
        engine: Engine,
        model: nnx.Module,
        batcher: Batcher,
        eval_batcher: Batcher,
        callbacks: Sequence[Callback],
        bar: Progress,
        *,
        eval_data: Iterable[Any] | None,
        eval_every: int | None,
        steps_per_call: int = 1,
        resident: Resident | None = None,
    ):
        self.engine, self.batcher, self.eval_batcher = engine, batcher, eval_batcher
        self.resident = resident
        self.callbacks, self.bar = callbacks, bar
        self.eval_data, self.eval_every = eval_data, eval_every
        self.run = Run(engine, model, History(), bar, steps_per_call)
        self.step_losses = any(getattr(c, "wants_step_loss", False) for c in callbacks)
        # the callbacks called after every step: those that override ``on_step_end``
        self.step_callbacks = [
            c for c in callbacks if type(c).on_step_end is not Callback.on_step_end
        ]
        # nothing to do between two steps: no step callbacks, losses or evaluation
        self.quiet = not (self.step_callbacks or self.step_losses or (eval_every and eval_data))

    def epoch(self, data: Iterable[Any], epochs: int, steps_per_call: int) -> dict[str, Any]:
        """Train one epoch (the rest of it, when resumed) and return its logs."""
        run = self.run
        epoch = run.epoch
        run.epoch_done = False
        for c in self.callbacks:
            c.on_epoch_begin(run, epoch)
        t0 = time.perf_counter()
        self.bar.start(epoch, epochs, _len(data))
        pending: list[Any] = []
        if steps_per_call == 1 and self.quiet:
            self.train_quietly(self.batches(data, epoch))
            return self.end_of_epoch(epoch, t0)
        for batch in self.batches(data, epoch):
            pending.append(batch)
            if len(pending) == steps_per_call:
                self.train(pending)
                pending = []
                if run.stop_reason:
                    break
        for p in pending:  # a last group shorter than steps_per_call, one step at a time
            if run.stop_reason:
                break
            self.train([p])
        return self.end_of_epoch(epoch, t0)

    def end_of_epoch(self, epoch: int, t0: float) -> dict[str, Any]:
        """The epoch's logs, its evaluation included, once its last step is done."""
        run = self.run
        if not run.log.pending and not run.epoch_losses and not run.history.steps:
            raise ShapesafeError(
                "fit: the training data yielded no batches. Check the dataset is not empty "
                "(and that batch(..., drop_remainder=True) left at least one batch)."
            )
        logs = _epoch_logs(run, epoch)
        if self.eval_data is not None:
            logs |= _evaluate(self.engine, self.eval_data, self.eval_batcher, prefix="eval_")
        logs["time"] = time.perf_counter() - t0
        return logs

    def batches(self, data: Iterable[Any], epoch: int) -> Iterator[Any]:
        """The rest of ``epoch``'s batches, read and checked (``Batcher``), or as rows of the
        arrays on the device (``Resident``; the first batch of a ``fit`` is still read and
        checked on the host, so that a wrong dataset fails before it trains)."""
        start = self.run.position
        if self.resident is None:
            for i, batch in enumerate(_epoch_iter(data, epoch, start), start):
                yield self.batcher(batch, f"batch {i} of epoch {epoch}")
            return
        if self.batcher.size is None:
            first = next(_epoch_iter(data, epoch, start), None)
            if first is not None:
                self.batcher(first, f"batch {start} of epoch {epoch}")
        yield from self.resident.epoch(epoch, start)

    def end_epoch(self, logs: dict[str, Any]) -> None:
        """Record the epoch's logs, tell the callbacks, and move on to the next epoch."""
        run = self.run
        run.history.epochs.append(logs)
        self.bar.end(logs)
        run.epoch_done = True
        for c in self.callbacks:
            c.on_epoch_end(run, run.epoch, logs)
        run.next_epoch()

    def train_quietly(self, batches: Iterator[Any]) -> None:
        """``train`` one batch at a time where nothing happens between steps (``quiet``): the
        same steps with the loop's own work kept to the least (it is a few us a step)."""
        run, bar = self.run, self.bar
        place = (self.batcher if self.resident is None else self.resident).place
        for batch in batches:
            run.train(place([batch]), 1)
            run.step += 1
            run.position += 1
            bar.update(run.step, None)
            if run.stop_reason:
                break

    def train(self, group: list[Any]) -> None:
        """One jitted call: one step, or ``len(group)`` steps under ``lax.scan``."""
        run = self.run
        feed = self.batcher if self.resident is None else self.resident
        # before the callbacks, so that a checkpoint one of them saves includes these steps
        run.train(feed.place(group), len(group))
        values = None
        if self.step_losses:  # read back now: the callbacks see each step's loss
            run.flush()
            values = run.epoch_losses[-len(group) :]
        for k in range(len(group)):
            run.step += 1
            run.position += 1
            run.consistent = k == len(group) - 1
            loss = values[k] if values is not None else None
            self.bar.update(run.step, loss)
            for c in self.step_callbacks:
                c.on_step_end(run, run.step, loss)
            every = self.eval_every
            if every and run.step % every == 0 and self.eval_data is not None and run.consistent:
                scores = _evaluate(run.engine, self.eval_data, self.eval_batcher, prefix="eval_")
                self.bar.note(
                    f"step {run.step}: " + ", ".join(f"{n}={v:.4g}" for n, v in scores.items())
                )


def _epoch_logs(run: Run, epoch: int) -> dict[str, Any]:
    """The epoch's mean training loss over real examples (steps with a non-finite loss excluded:
    they applied no update, and stopped the run), its training metrics and learning rate."""
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
    return logs


def _evaluate(
    engine: Engine, data: Iterable[Any], batcher: Batcher, prefix: str = ""
) -> dict[str, Any]:
    mstates = engine.init_metrics()
    total, count = jnp.zeros(()), jnp.zeros(())
    for i, batch in enumerate(iter(data)):
        x, y, mask, _ = batcher.place([batcher(batch, f"evaluation batch {i}")])
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
    precision: str = "float32",
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
        precision: ``"float32"`` (the default: as built, whatever precision the model was
            trained in) or ``"mixed_bfloat16"``: the forward computes in bfloat16 from the
            float32 parameters, as ``fit(..., precision=)``'s does, and the outputs, metrics
            and loss are float32.

    Returns:
        ``{metric name: value}`` (and ``"loss"``), as Python floats.

    Raises:
        ShapeError: the data's spec or a batch does not fit the model (or the loss).
        ValueError: an unknown precision.

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
    forward = Forward.of(False, precision, where="evaluate")
    data, loss = prepare_evaluate(model, data, loss=loss, batch_size=batch_size)
    check_data_spec(model, data, inputs, targets, loss, what="data")
    engine = Engine(model, loss=loss, optimizer=None, metrics=metrics, forward=forward)
    return _evaluate(engine, data, Batcher(model, inputs, targets, None))


def predict(
    model: nnx.Module,
    data: Any,
    *,
    inputs: str | None = None,
    batch_size: int | None = None,
    precision: str = "float32",
) -> np.ndarray:
    """The model's outputs (eval mode) for every example of ``data``, stacked, padding removed.

    Args:
        model: a built model (``ss.build``).
        data: one array of examples (``x``, batched by ``batch_size``), or batches: arrays,
            dicts (the ``inputs`` key, ``"image"`` by default) or tuples whose first item is
            the input.
        inputs: the dict key of the inputs.
        batch_size: for one array: examples per batch (default 32).
        precision: ``"float32"`` (the default: as built) or ``"mixed_bfloat16"``: computed in
            bfloat16 from the float32 parameters, the outputs float32 (see ``evaluate``).

    Returns:
        A NumPy array ``(examples, *output)``: one row per real example, in order.

    Raises:
        ShapeError: a batch does not fit the model.
        ValueError: an unknown precision.

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
    forward = Forward.of(False, precision, where="predict")
    data = prepare_predict(model, data, batch_size=batch_size, inputs=inputs)
    engine = Engine(model, loss=None, optimizer=None, metrics=(), forward=forward)
    batcher = Batcher(model, inputs, None, None)
    outs: list[np.ndarray] = []
    for i, batch in enumerate(iter(data)):
        x, mask, n = batcher.inputs_of(batch, f"batch {i}")
        y = np.asarray(engine.predict(x))[:n]
        outs.append(y if mask is None else y[np.asarray(mask, bool)[:n]])
    if not outs:
        raise ShapesafeError("predict: the data yielded no batches.")
    return np.concatenate(outs)


def _len(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


_ACCUMULATING: dict[tuple[int, int], tuple[Any, optax.GradientTransformation]] = {}


def _accumulating(optimizer: Any, k: int) -> optax.GradientTransformation:
    """``optax.MultiSteps(optimizer, k)``, the same object for the same optimizer and ``k`` so
    that a repeated ``fit(..., accumulate=k)`` reuses its compiled step."""
    key = (id(optimizer), k)
    found = _ACCUMULATING.get(key)
    if found is None or found[0] is not optimizer:
        if len(_ACCUMULATING) >= 16:
            _ACCUMULATING.pop(next(iter(_ACCUMULATING)))
        wrapped = optax.MultiSteps(optimizer, every_k_schedule=k).gradient_transformation()
        found = _ACCUMULATING[key] = (optimizer, wrapped)
    return found[1]


def _placement(
    mesh: jax.sharding.Mesh | None, plan: Any
) -> tuple[tuple[ShardingPlan, jax.sharding.Mesh] | None, Any]:
    """The sharding plan and its mesh for the engine's state (or ``None``), and the batches'
    sharding (or ``None``)."""
    if mesh is None:
        if plan is not None:
            raise ValueError("fit: sharding= needs a mesh= to place the parameters on.")
        return None, None
    if "data" not in mesh.axis_names:
        raise ValueError(f"fit: the mesh needs an axis named 'data'; it has {mesh.axis_names}.")
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = auto_mesh(mesh)
    return (ShardingPlan.of(plan), mesh), NamedSharding(mesh, PartitionSpec("data"))
