"""Array pipelines and lists of NumPy batches trained from a device copy of their arrays
(``_feed.Resident``): the same batches in the same order as the data yields, the same weights
as hand-written NumPy SGD over those batches, value checks and a short last batch as on the
host path."""

from typing import Any

import jax
import numpy as np
import optax
import pytest
from conftest import Reader
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._training import _feed
from shapesafe._training._feed import Batcher, Resident
from shapesafe.data import from_arrays


def _arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(n, 3)).astype(np.float32),
        "y": rng.normal(size=(n, 1)).astype(np.float32),
    }


def _placed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the steps fed from the device copy (``Resident.place``)."""
    calls: list[int] = []
    place = Resident.place

    def spy(self: Resident, group: list[Any]) -> Any:
        calls.append(len(group))
        return place(self, group)

    monkeypatch.setattr(Resident, "place", spy)
    return calls


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_resident_batches_are_the_pipelines_batches_in_its_order(epoch: int, drop: bool) -> None:
    """The epoch's batches laid out on the device, sliced by number, are exactly the batches
    the pipeline yields, short last batch and its zero padding included, also from a later
    start."""
    data = _arrays(23)
    ds = from_arrays(data).shuffle(seed=1).skip(3).take(17).batch(5, drop_remainder=drop)
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    resident = Resident.of(ds, Batcher(model, None, None, None))
    assert resident is not None
    for start in (0, 2):
        want = list(ds.epoch(epoch, start=start))
        got = list(resident.epoch(epoch, start))
        assert len(got) == len(want) == (3 if drop else 4) - start  # 17 examples, batches of 5
        laid_out = {k: np.asarray(v) for k, v in resident.laid_out.items()}
        for i, (mask, batch) in enumerate(zip(got, want, strict=True), start):
            np.testing.assert_array_equal(mask, batch["mask"])
            for key in ("x", "y"):
                np.testing.assert_array_equal(laid_out[key][i * 5 : i * 5 + 5], batch[key])


def _fit_xy(model: ss.Model, ds: Any, **kw: Any) -> ss.History:
    """``fit`` with SGD(0.1) on the mean squared error of the ``"x"``/``"y"`` arrays."""
    return ss.fit(
        model,
        ds,
        loss=ss.losses.mean_squared_error,
        optimizer=optax.sgd(0.1),
        inputs="x",
        targets="y",
        progress=False,
        **kw,
    )


def _sgd(
    w: np.ndarray, b: np.ndarray, batches: list[dict[str, np.ndarray]], lr: float
) -> tuple[np.ndarray, np.ndarray]:
    """SGD on the masked mean squared error of ``x @ w + b``, by hand in NumPy (float64)."""
    w, b = w.astype(np.float64), b.astype(np.float64)
    for batch in batches:
        real = batch["mask"]
        x, y = batch["x"][real].astype(np.float64), batch["y"][real]
        err = x @ w + b - y
        w = w - lr * 2 * x.T @ err / err.size
        b = b - lr * 2 * err.sum(axis=0) / err.size
    return w, b


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_fit_on_an_array_pipeline_trains_from_device_rows_as_numpy_sgd(
    monkeypatch: pytest.MonkeyPatch, steps_per_call: int
) -> None:
    calls = _placed(monkeypatch)
    ds = from_arrays(_arrays(10)).shuffle(seed=0).batch(4)  # batches of 4, 4 and 2
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    history = _fit_xy(model, ds, epochs=3, steps_per_call=steps_per_call)
    assert sum(calls) == 9 and len(history.steps) == 9  # every step was fed from rows
    w, b = _sgd(w0, b0, [batch for e in range(1, 4) for batch in ds.epoch(e)], 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-5, atol=1e-6)


def test_a_bad_row_is_found_in_the_step_and_names_its_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NaN in the arrays reaches the step only through the gather: the batch holding that
    row applies no update and fit raises the host check's message naming the batch."""
    calls = _placed(monkeypatch)
    data = _arrays(12)
    ds = from_arrays(data).shuffle(seed=0).batch(4)
    batches = list(ds.epoch(1))
    shuffled = ds._parents[0]
    data["x"][shuffled.permutation(1)[9], 1] = np.nan  # a row of batch 2 of epoch 1
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^batch 2 of epoch 1 has NaN or infinite values in its inputs; clean the data "
        r"\(nothing was trained on this batch\)\.$",
    ):
        _fit_xy(model, ds, epochs=1)
    assert sum(calls) == 3
    w, b = _sgd(w0, b0, batches[:2], 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-5, atol=1e-6)


def test_the_first_batch_is_still_checked_on_the_host_before_it_trains() -> None:
    data = _arrays(8)
    ds = from_arrays(data).batch(4)
    data["y"][1, 0] = np.inf
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0 = np.asarray(model.layers[0].kernel).copy()
    with pytest.raises(
        ss.ShapesafeError,
        match=r"^batch 0 of epoch 1 has NaN or infinite values in its targets",
    ):
        _fit_xy(model, ds, epochs=1)
    np.testing.assert_array_equal(np.asarray(model.layers[0].kernel), w0)  # nothing trained


def test_batch_norm_on_a_short_padded_batch_matches_the_host_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BatchNorm's batch statistics see the padded rows: the device copy pads with zeros, as
    ``batch`` does, so the weights and running statistics equal training on the pipeline's
    own batches fed from the host (read one by one); a list of those batches trains from its
    device copy the same, and arrays over the size limit stay on the host and train the same."""
    rng = np.random.default_rng(3)
    data = {
        "x": rng.normal(size=(14, 3)).astype(np.float32) * 3 + 1,
        "label": rng.integers(0, 2, 14).astype(np.int32),
    }
    ds = from_arrays(data).shuffle(seed=2).batch(4)  # batches of 4, 4, 4 and 2
    net = L.Linear(4) >> L.BatchNorm() >> L.ReLU() >> L.Linear(2)

    def train(batches: Any) -> list[np.ndarray]:
        model = ss.build(net, Float32[Array, "batch 3"], seed=0)
        ss.fit(
            model,
            batches,
            loss=ss.losses.cross_entropy,
            optimizer=optax.adam(0.01),
            epochs=1,
            progress=False,
        )
        return [np.asarray(a) for a in jax.tree.leaves(nnx.state(model))]

    calls = _placed(monkeypatch)
    resident = train(ds)
    assert sum(calls) == 4
    listed = train(list(ds.epoch(1)))
    assert sum(calls) == 8
    host = train(Reader(list(ds.epoch(1))))
    monkeypatch.setattr(_feed, "RESIDENT_BYTES", 0)
    over_the_limit = train(ds)
    assert sum(calls) == 8  # neither the reader's batches nor the large arrays came from a copy
    assert len(resident) == len(host) == 8  # 2 kernels, 2 biases, scale, bias, mean, var
    for a, b, c, d in zip(resident, host, over_the_limit, listed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(b, c)
        np.testing.assert_allclose(d, b, rtol=1e-5, atol=1e-6)


def _listed_batches() -> list[dict[str, np.ndarray]]:
    """Batches of 4 as a user hands them over: full ones, one with its own mask (its last two
    examples masked out, one with a NaN target), and a short last one."""
    data = _arrays(14, seed=4)
    batches = [{k: v[i : i + 4] for k, v in data.items()} for i in range(0, 14, 4)]
    batches[1]["y"] = batches[1]["y"].copy()
    batches[1]["y"][3, 0] = np.nan
    batches[1]["mask"] = np.array([True, True, False, False])
    return batches


@pytest.mark.parametrize("steps_per_call", [1, 2])
def test_a_list_of_numpy_batches_trains_from_its_device_copy_as_numpy_sgd(
    monkeypatch: pytest.MonkeyPatch, steps_per_call: int
) -> None:
    """A list of NumPy batches is copied to the device once: each step is fed from the copy,
    a batch's own mask is kept (a NaN target in a masked-out example trains nothing and
    raises nothing), the short last batch is padded and masked, over two epochs in the list's order."""
    calls = _placed(monkeypatch)
    batches = _listed_batches()
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    history = _fit_xy(model, batches, epochs=2, steps_per_call=steps_per_call)
    assert sum(calls) == 8 and len(history.steps) == 8
    masked = [b | {"mask": b.get("mask", np.ones(len(b["x"]), bool))} for b in batches]
    w, b = _sgd(w0, b0, masked * 2, 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "change",
    ["a later batch is larger", "another dtype", "another shape", "JAX arrays", "over the limit"],
)
def test_a_list_the_device_copy_cannot_hold_trains_from_the_host(
    monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Lists that are not NumPy batches of one element shape, no larger than the first, stay
    on the host path, which reads them one by one and names a batch at fault."""
    batches = _listed_batches()[:3]
    last = batches[2]
    if change == "a later batch is larger":
        last["x"], last["y"] = np.concatenate([last["x"]] * 2), np.concatenate([last["y"]] * 2)
    elif change == "another dtype":
        last["x"] = last["x"].astype(np.float64)
    elif change == "another shape":
        last["x"] = last["x"][:, :2]
    elif change == "JAX arrays":
        last["x"] = jax.numpy.asarray(last["x"])
    else:
        monkeypatch.setattr(_feed, "RESIDENT_BYTES", 100)
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    assert Resident.of(batches, Batcher(model, "x", "y", None)) is None
    if change == "a later batch is larger":
        with pytest.raises(
            ss.ShapesafeError,
            match=r"^batch 2 of epoch 1 has 8 examples, more than the first batch's 4; "
            r"batches must not grow\.$",
        ):
            _fit_xy(model, batches, epochs=1)
    elif change in ("JAX arrays", "over the limit"):
        assert len(_fit_xy(model, batches, epochs=1).steps) == 3


def test_arrays_clean_in_every_row_train_without_the_steps_value_checks() -> None:
    """``clean`` looks at every row once per ``fit``: arrays that pass leave the checks out
    of the step; a bad row anywhere keeps them in, and a bad row that no batch uses trains."""
    rng = np.random.default_rng(0)
    data = {
        "x": rng.normal(size=(12, 4, 3)).astype(np.float32),
        "label": rng.integers(0, 3, 12).astype(np.int32),
    }
    model = ss.build(L.Flatten() >> L.Linear(3), Float32[Array, "batch 4 3"], seed=0)
    batcher = Batcher(model, None, None, None)
    checks = lambda ds: Resident.of(ds, batcher).checks  # type: ignore[union-attr]  # noqa: E731
    assert checks(from_arrays(data).batch(4)) is False
    for key, row, value in (("x", 0, np.inf), ("label", 1, 3), ("label", 2, -1)):
        bad = {k: v.copy() for k, v in data.items()}
        bad[key][row] = value
        assert checks(from_arrays(bad).batch(4)) is True, (key, value)
    bad["label"][2] = 7  # rows 0..3 of ``bad`` are never trained on below
    history = ss.fit(
        model,
        from_arrays(bad).skip(4).batch(4),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=2,
        progress=False,
    )
    assert len(history.steps) == 4 and np.isfinite(history.steps).all()


class _StepLosses(ss.callbacks.Callback):
    """A callback that reads every step's loss: the step log is read back after every call."""

    wants_step_loss = True

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, run: Any, step: int, loss: float | None) -> None:
        assert loss is not None
        self.losses.append(loss)


@pytest.mark.parametrize("steps_per_call", [1, 7])
@pytest.mark.parametrize("read_each_step", [False, True])
def test_batch_numbers_kept_on_the_device_follow_the_list_across_log_buffers(
    steps_per_call: int, read_each_step: bool
) -> None:
    """The step finds its batch's number in the step log. Over 150 batches (three log buffers
    of 64 rows), in groups of 7 with a shorter last group, with the log read back after every
    call, and over two epochs, every batch trains once, in the list's order: the weights are
    NumPy SGD's over the same batches."""
    data = _arrays(150 * 2, seed=7)
    batches = [{k: v[i : i + 2] for k, v in data.items()} for i in range(0, 300, 2)]
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    w0, b0 = np.asarray(model.layers[0].kernel), np.asarray(model.layers[0].bias)
    reader = _StepLosses()
    history = _fit_xy(
        model,
        batches,
        epochs=2,
        steps_per_call=steps_per_call,
        callbacks=[reader] if read_each_step else [],
    )
    assert len(history.steps) == 300
    masked = [b | {"mask": np.ones(2, bool)} for b in batches]
    w, b = _sgd(w0, b0, masked * 2, 0.1)
    np.testing.assert_allclose(np.asarray(model.layers[0].kernel), w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model.layers[0].bias), b, rtol=1e-4, atol=1e-5)
    if read_each_step:  # each step's loss: the mean squared error of its own batch before it
        x, y = masked[0]["x"], masked[0]["y"]
        first = np.mean((x.astype(np.float64) @ w0 + b0 - y) ** 2)
        np.testing.assert_allclose(reader.losses[0], first, rtol=1e-5)
        assert len(reader.losses) == 300


@pytest.mark.parametrize(("steps_per_call", "start"), [(1, 0), (7, 0), (7, 3)])
def test_a_lists_chunks_hold_each_group_of_batches_at_its_number(
    steps_per_call: int, start: int
) -> None:
    """A list is laid out on the device a chunk at a time: each call's batches are in the
    arrays it is given, from the number it is given, also where a group from an odd start
    crosses a chunk's end, and over a second epoch from the chunks kept."""
    data = _arrays(150 * 2 + 1, seed=3)
    batches = [{k: v[i : i + 2] for k, v in data.items()} for i in range(0, 301, 2)]  # last: 1
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    resident = Resident.of(batches, Batcher(model, "x", "y", None), steps_per_call)
    assert resident is not None
    shapes = set()
    for epoch in (1, 2):
        masks = list(resident.epoch(epoch, start))
        groups = [masks[i : i + steps_per_call] for i in range(0, len(masks), steps_per_call)]
        position = start
        for group in groups:
            placed = resident.place(group)
            laid_out = {k: np.asarray(v) for k, v in placed.arrays.items()}
            shapes.add(laid_out["x"].shape)
            for j in range(len(group)):
                want = batches[position + j]
                n = len(want["x"])
                rows = slice((placed.number + j) * 2, (placed.number + j) * 2 + n)
                for key in ("x", "y"):
                    np.testing.assert_array_equal(laid_out[key][rows], want[key])
                np.testing.assert_array_equal(np.asarray(group[j])[:n], True)
            position += len(group)
        assert position == len(batches)
    # one shape of chunk, the last one too (it ends at the list's end): one compiled step
    assert shapes == {(2 * 7 * (64 // 7), 3)} if steps_per_call == 7 else {(2 * 64, 3)}


@pytest.mark.parametrize(
    ("batches", "steps_per_call", "width"),
    [
        *[(1, 1, 1), (2, 1, 2), (3, 1, 4), (5, 1, 8), (64, 1, 64), (65, 1, 64), (500, 1, 64)],
        *[(3, 2, 4), (5, 2, 8), (100, 7, 63), (10, 200, 200)],
    ],
)
def test_a_lists_chunks_are_a_few_widths_whatever_its_length(
    batches: int, steps_per_call: int, width: int
) -> None:
    """A chunk holds 64 batches (a multiple of ``steps_per_call``), and a shorter list the
    next power of two that holds it, zero batches after its end: lists of any length train
    from chunks of a few shapes, so the step compiles for those alone."""
    data = _arrays(2 * batches, seed=1)
    listed = [{k: v[i : i + 2] for k, v in data.items()} for i in range(0, 2 * batches, 2)]
    model = ss.build(L.Linear(1), Float32[Array, "batch 3"], seed=0)
    resident = Resident.of(listed, Batcher(model, "x", "y", None), steps_per_call)
    assert resident is not None and resident.span == width
    for mask in resident.epoch(1, 0):
        placed = resident.place([mask])  # the last: in a chunk of ``width`` batches
    laid_out = {k: np.asarray(v) for k, v in placed.arrays.items()}
    assert laid_out["x"].shape == (2 * width, 3)
    rows = slice(2 * placed.number, 2 * placed.number + 2)
    np.testing.assert_array_equal(laid_out["x"][rows], listed[-1]["x"])
    after = laid_out["x"][2 * (placed.number + 1) :]
    assert not after.any() or batches >= width  # zeros after a short list's batches


def test_a_chunk_of_large_batches_holds_fewer_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk stays within ``CHUNK_BYTES`` (at least one call's batches)."""
    monkeypatch.setattr(_feed, "CHUNK_BYTES", 1000)  # a batch below is 2 * (3 + 1) * 4 = 32 B
    assert _feed.chunk_width(500, 32, 1) == 31
    assert _feed.chunk_width(500, 32, 4) == 28
    assert _feed.chunk_width(500, 4000, 1) == 1
    assert _feed.chunk_width(500, 4000, 3) == 3
