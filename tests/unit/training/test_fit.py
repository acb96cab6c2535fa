"""ss.fit / evaluate / predict: real training, exact metrics, checks before the first batch."""

import json
import typing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import Batches
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

SPEC = Float32[Array, "batch 64"]


def _mlp(seed: int = 0) -> ss.Model:
    return ss.build(L.Linear(64) >> L.ReLU() >> L.Linear(10), SPEC, seed=seed)


def test_mlp_learns_sklearn_digits_to_95_percent(digits, tmp_path) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = digits
    model = _mlp()
    history = ss.fit(
        model,
        Batches(xtr, ytr, 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=6,
        eval_data=Batches(xte, yte, 64),
        metrics=[ss.metrics.accuracy],
        progress=False,
        log_file=tmp_path / "log.jsonl",
    )
    assert history["eval_accuracy"][-1] >= 0.95
    assert history["loss"][-1] < history["loss"][0]
    assert len(history.steps) == 6 * 47  # 1500 / 32 -> 47 steps per epoch
    # evaluate agrees with a NumPy computation of accuracy on predict's outputs
    logits = ss.predict(model, Batches(xte, yte, 64))
    assert logits.shape == (297, 10)
    acc = float(np.mean(np.argmax(logits, -1) == yte))
    scores = ss.evaluate(model, Batches(xte, yte, 64), metrics=[ss.metrics.accuracy])
    assert scores["accuracy"] == pytest.approx(acc, abs=1e-6)
    assert history["eval_accuracy"][-1] == pytest.approx(acc, abs=1e-6)
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[-1]["eval_accuracy"] == pytest.approx(acc, abs=1e-6)


def test_fit_matches_a_hand_written_optax_loop_on_the_same_batches(digits) -> None:  # type: ignore[no-untyped-def]
    """One epoch of ss.fit equals a plain jax.grad + optax loop (an independent reference)."""
    xtr, ytr, _, _ = digits
    x, y = xtr[:96], ytr[:96]
    model = _mlp(seed=3)
    ref = _mlp(seed=3)
    ss.fit(
        model,
        Batches(x, y, 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        progress=False,
    )
    params: typing.Any = {
        k: np.asarray(v)
        for k, v in (
            ("w1", ref.layers[0].kernel[...]),
            ("b1", ref.layers[0].bias[...]),
            ("w2", ref.layers[2].kernel[...]),
            ("b2", ref.layers[2].bias[...]),
        )
    }

    def loss_fn(p, xb, yb):  # type: ignore[no-untyped-def]
        h = jnp.maximum(xb @ p["w1"] + p["b1"][None, :], 0.0)
        logits = h @ p["w2"] + p["b2"][None, :]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

    tx = optax.sgd(0.1)
    state = tx.init(params)
    for i in range(0, 96, 32):
        g = jax.grad(loss_fn)(params, x[i : i + 32], y[i : i + 32])
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(model.layers[0].kernel[...], params["w1"], atol=1e-5)
    np.testing.assert_allclose(model.layers[2].bias[...], params["b2"], atol=1e-5)


def test_several_steps_per_call_give_the_same_weights(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    data = Batches(xtr[:200], ytr[:200], 32)  # 7 batches, the last one short: 4 + 1 + 1 + 1 calls
    a, b = _mlp(), _mlp()
    for model, k in ((a, 1), (b, 4)):
        ss.fit(
            model,
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.adam(1e-2),
            epochs=2,
            progress=False,
            steps_per_call=k,
        )
    np.testing.assert_allclose(a.layers[0].kernel[...], b.layers[0].kernel[...], atol=1e-5)


def test_same_seed_same_result(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    net = L.Linear(32) >> L.ReLU() >> L.Dropout(0.3) >> L.Linear(10)
    outs = []
    for _ in range(2):
        model = ss.build(net, SPEC, seed=5)
        h = ss.fit(
            model,
            Batches(xtr[:256], ytr[:256], 32),
            loss=ss.losses.cross_entropy,
            optimizer=optax.adam(1e-2),
            epochs=2,
            progress=False,
        )
        outs.append((np.asarray(model.layers[0].kernel[...]), h.steps))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]


def test_dataset_spec_mismatch_is_refused_before_any_step() -> None:
    class Spec:
        spec: typing.ClassVar = {"image": Float32[np.ndarray, "batch 8 8"]}

        def __iter__(self):  # type: ignore[no-untyped-def]
            raise AssertionError("no batch may be read")

    calls = []

    def loss(out, y, *, mask):  # type: ignore[no-untyped-def]
        calls.append(1)
        return jnp.mean(out)

    with pytest.raises(
        ss.ShapeError, match=r"(?s)data\['image'\] cannot feed the model: rank 3.*model input"
    ):
        ss.fit(_mlp(), Spec(), loss=loss, optimizer=optax.sgd(0.1), epochs=1, progress=False)
    assert not calls


def test_first_batch_of_the_wrong_shape_is_a_shape_error_naming_it() -> None:
    data = Batches(np.zeros((10, 63), np.float32), np.zeros(10, np.int32), 5)
    with pytest.raises(
        ss.ShapeError,
        match=r"batch 0 of epoch 1 does not fit the model: dimension 1 is 63, expected 64",
    ):
        ss.fit(
            _mlp(),
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )


def test_nan_in_a_batch_is_an_error_naming_the_batch_and_keeps_weights(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    x = xtr[:96].copy()
    x[70, 3] = np.nan  # in batch 2
    model = _mlp()
    with pytest.raises(ss.ShapesafeError, match=r"batch 2 of epoch 1 has NaN or infinite values"):
        ss.fit(
            model,
            Batches(x, ytr[:96], 32),
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )
    assert np.all(np.isfinite(model.layers[0].kernel[...]))
    assert not np.array_equal(
        model.layers[0].kernel[...], _mlp().layers[0].kernel[...]
    )  # 2 steps were kept


def test_labels_out_of_range_name_the_value_and_the_classes() -> None:
    data = Batches(np.zeros((8, 64), np.float32), np.array([0, 1, 2, 12, 0, 0, 0, 0], np.int32), 8)
    with pytest.raises(ss.ShapesafeError, match=r"label 12 .*10 classes"):
        ss.fit(
            _mlp(),
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )


def test_empty_dataset_is_a_clear_error() -> None:
    data = Batches(np.zeros((0, 64), np.float32), np.zeros(0, np.int32), 8)
    with pytest.raises(ss.ShapesafeError, match="yielded no batches"):
        ss.fit(
            _mlp(),
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
        )


def test_a_non_finite_loss_stops_training_names_the_step_and_keeps_the_last_good_weights() -> None:
    x = np.ones((64, 64), np.float32)
    y = np.zeros(64, np.int32)
    model = _mlp()
    seen: list[np.ndarray] = []

    class Spy(ss.callbacks.Callback):
        def on_step_end(self, run, step, loss):  # type: ignore[no-untyped-def]
            seen.append(np.asarray(run.engine.params["layers"][0]["kernel"][...]))

    stop = ss.callbacks.StopOnNaN()
    # a learning rate so large that the loss overflows within a few steps
    ss.fit(
        model,
        Batches(x, y, 8),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(1e30),
        epochs=3,
        callbacks=[stop, Spy()],
        progress=False,
    )
    assert stop.bad_step is not None and stop.bad_step <= 8
    final = np.asarray(model.layers[0].kernel[...])
    assert np.all(np.isfinite(final))
    np.testing.assert_array_equal(
        final, seen[stop.bad_step - 2]
    )  # the state after the last good step


def test_without_a_callback_a_non_finite_loss_stops_within_two_chunks_of_steps() -> None:
    """The losses are read back 64 at a time once 128 are pending, so a run whose loss has
    overflowed stops there, not at the end of a long epoch, and names the first bad step."""
    x = np.ones((8, 64), np.float32)
    y = np.zeros(8, np.int32)
    model = _mlp()
    steps: list[int] = []

    class Count(ss.callbacks.Callback):
        def on_step_end(self, run, step, loss):  # type: ignore[no-untyped-def]
            steps.append(step)

    history = ss.fit(
        model,
        [(x, y)] * 2000,
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(1e30),
        epochs=1,
        callbacks=[Count()],
        progress=False,
    )
    assert 128 <= len(steps) <= 2 * 64 + 64 < 2000
    bad = int(np.argmin(np.isfinite(history.steps))) + 1  # the first non-finite loss, by hand
    assert bad <= 8 and np.isfinite(history.steps[: bad - 1]).all()
    assert np.all(np.isfinite(np.asarray(model.layers[0].kernel[...])))
    assert len(history.epochs) == 1  # the epoch's logs are still made


def test_early_stopping_restores_the_best_weights(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = digits
    model = _mlp()
    best: dict[str, np.ndarray] = {}

    class Keep(ss.callbacks.Callback):
        def on_epoch_end(self, run, epoch, logs):  # type: ignore[no-untyped-def]
            best[f"{epoch}"] = np.asarray(run.engine.params["layers"][0]["kernel"][...]).copy()

    stopper = ss.callbacks.EarlyStopping("eval_loss", patience=1)
    # a learning rate too large: eval loss gets worse after a while
    h = ss.fit(
        model,
        Batches(xtr[:300], ytr[:300], 30),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(3.0),
        epochs=12,
        eval_data=Batches(xte, yte, 99),
        callbacks=[stopper, Keep()],
        progress=False,
    )
    losses = h["eval_loss"]
    assert stopper.best_epoch == int(np.argmin(losses)) + 1
    np.testing.assert_array_equal(model.layers[0].kernel[...], best[str(stopper.best_epoch)])


def test_freeze_gives_no_gradient_and_no_optimizer_state(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    model = _mlp()
    frozen = np.asarray(model.layers[0].kernel[...]).copy()
    head = np.asarray(model.layers[2].kernel[...]).copy()
    assert ss.freeze(model, "layers/0") == ["layers/0/bias", "layers/0/kernel"]
    states: list[object] = []

    class Peek(ss.callbacks.Callback):
        def on_train_begin(self, run):  # type: ignore[no-untyped-def]
            states.append(run.engine.opt_state)

    ss.fit(
        model,
        Batches(xtr[:128], ytr[:128], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=1,
        callbacks=[Peek()],
        progress=False,
    )
    np.testing.assert_array_equal(model.layers[0].kernel[...], frozen)
    assert not np.array_equal(model.layers[2].kernel[...], head)
    n_opt = sum(x.size for x in jax.tree.leaves(states[0]))
    assert n_opt == 2 * (64 * 10 + 10) + 1  # adam's mu and nu for the head only, plus its count
    assert ss.unfreeze(model) == ["layers/0/bias", "layers/0/kernel"]
    ss.fit(
        model,
        Batches(xtr[:64], ytr[:64], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=1,
        progress=False,
    )
    assert not np.array_equal(model.layers[0].kernel[...], frozen)


def test_history_plot_writes_a_png(digits, tmp_path) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = digits
    h = ss.fit(
        _mlp(),
        Batches(xtr[:128], ytr[:128], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=2,
        eval_data=Batches(xte, yte, 99),
        metrics=[ss.metrics.accuracy],
        progress=False,
    )
    fig = h.plot(tmp_path / "curves.png")
    data = (tmp_path / "curves.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]


def test_learning_rate_of_a_schedule_is_logged(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    sched = optax.linear_schedule(0.1, 0.0, transition_steps=8)
    h = ss.fit(
        _mlp(),
        Batches(xtr[:128], ytr[:128], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=sched),
        epochs=2,
        progress=False,
    )
    # the rate used by each epoch's last step: steps 4 and 8 run at counts 3 and 7
    assert h["lr"] == pytest.approx([0.1 * (1 - 3 / 8), 0.1 * (1 - 7 / 8)])


def test_plain_progress_lines_when_not_a_tty(digits, capsys) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    ss.fit(
        _mlp(),
        Batches(xtr[:128], ytr[:128], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        log_every=2,
        progress=None,
    )
    out = capsys.readouterr().out
    assert "epoch 1/1 step 2" in out and "steps/s" in out and "epoch 1/1  loss=" in out


def test_train_and_eval_modes_switch_dropout(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, _ = digits
    model = ss.build(L.Linear(64) >> L.Dropout(0.5) >> L.Linear(10), SPEC)
    ss.fit(
        model,
        Batches(xtr[:64], ytr[:64], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        progress=False,
    )
    model.eval()
    a = ss.predict(model, [xte[:16]])
    b = ss.predict(model, [xte[:16]])
    np.testing.assert_array_equal(a, b)  # predict is deterministic: dropout off


def test_a_frozen_batchnorm_uses_and_keeps_its_running_statistics(digits) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = digits
    model = ss.build(L.Linear(16) >> L.BatchNorm() >> L.ReLU() >> L.Linear(10), SPEC)
    bn = model.layers[1]
    bn.mean[...] = jnp.full((16,), 0.5)
    bn.var[...] = jnp.full((16,), 4.0)
    ss.freeze(model, [0, 1])
    assert bn.frozen
    x = xtr[:32]
    h = np.asarray(model.layers[0](jnp.asarray(x)))
    # train mode, yet the running statistics normalise: (h - 0.5) / sqrt(4 + eps) * 1 + 0
    np.testing.assert_allclose(
        bn(jnp.asarray(h)), (h - 0.5) / np.sqrt(4.0 + 1e-5), rtol=1e-5, atol=1e-6
    )
    ss.fit(
        model,
        Batches(xtr[:64], ytr[:64], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        progress=False,
    )
    np.testing.assert_array_equal(bn.mean[...], np.full((16,), 0.5, np.float32))
    np.testing.assert_array_equal(bn.var[...], np.full((16,), 4.0, np.float32))
    ss.unfreeze(model)
    assert not bn.frozen


def test_eval_every_n_steps_reports_eval_figures(digits, capsys) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = digits
    ss.fit(
        _mlp(),
        Batches(xtr[:128], ytr[:128], 32),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=1,
        eval_data=Batches(xte, yte, 99),
        metrics=[ss.metrics.accuracy],
        eval_every=2,
        log_every=1000,
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 2", "step 4"]
    assert all("eval_loss=" in line and "eval_accuracy=" in line for line in lines)
