"""Training and prediction as Keras users write them (issue 13): arrays in, arguments checked
before any work with a message that says what to type, and inference mode after build and fit."""

import inspect

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

SPEC = Float32[Array, "batch 4"]


def _data(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32)  # the class is the sign of the first feature


def _model(seed: int = 0) -> ss.Model:
    return ss.build(L.Linear(2), SPEC, seed=seed)


def _fit(model: ss.Model, data: object, **kw: object) -> ss.History:
    args: dict[str, object] = {
        "loss": ss.losses.cross_entropy,
        "optimizer": optax.adam(0.05),
        "epochs": 3,
        "progress": False,
    }
    return ss.fit(model, data, **(args | kw))  # type: ignore[arg-type]


def _accuracy(model: ss.Model, x: np.ndarray, y: np.ndarray) -> float:
    """NumPy's accuracy of the model's logits, computed from the model's own weights."""
    layer = model.layers[0]
    logits = x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
    return float(np.mean(logits.argmax(axis=1) == y))


def _cross_entropy(model: ss.Model, x: np.ndarray, y: np.ndarray) -> float:
    layer = model.layers[0]
    z = (x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_fit_on_a_pair_of_arrays_with_validation_split_takes_the_last_fifth() -> None:
    x, y = _data()
    model = _model()
    history = _fit(
        model, (x, y), batch_size=32, validation_split=0.2, metrics=[ss.metrics.accuracy], epochs=10
    )
    assert history["accuracy"][-1] > 0.8
    # evaluated on the last 20 rows (Keras' rule), with the final weights: NumPy agrees
    assert history["eval_accuracy"][-1] == pytest.approx(_accuracy(model, x[80:], y[80:]))
    assert history["eval_loss"][-1] == pytest.approx(
        _cross_entropy(model, x[80:], y[80:]), rel=1e-5
    )


def test_fit_on_a_dict_of_arrays_with_validation_data() -> None:
    x, y = _data()
    model = _model()
    history = _fit(
        model,
        {"image": x, "label": y},
        validation_data=(x[:30], y[:30]),
        metrics=[ss.metrics.accuracy],
    )
    assert history["eval_accuracy"][-1] == pytest.approx(_accuracy(model, x[:30], y[:30]))


def test_shuffle_is_on_by_default_for_arrays() -> None:
    assert inspect.signature(ss.fit).parameters["shuffle"].default is True
    x, y = _data(64)
    order = np.argsort(x[:, 0])  # sorted by the label's feature: an unshuffled pass is biased
    a, b = _model(), _model()
    _fit(a, (x[order], y[order]), epochs=1, batch_size=16, optimizer=optax.sgd(0.5))
    _fit(b, (x[order], y[order]), epochs=1, batch_size=16, optimizer=optax.sgd(0.5), shuffle=False)
    assert not np.allclose(np.asarray(a.layers[0].kernel[...]), np.asarray(b.layers[0].kernel[...]))


def test_evaluate_and_predict_on_plain_arrays_match_numpy() -> None:
    x, y = _data(50)
    model = _model()
    logs = ss.evaluate(model, (x, y), metrics=[ss.metrics.accuracy], loss=ss.losses.cross_entropy)
    assert logs["accuracy"] == pytest.approx(_accuracy(model, x, y))
    assert logs["loss"] == pytest.approx(_cross_entropy(model, x, y), rel=1e-5)
    out = ss.predict(model, x, batch_size=16)  # 16, 16, 16, 2: the last batch is padded
    layer = model.layers[0]
    want = x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
    assert out.shape == (50, 2)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_an_optax_loss_without_mask_is_wrapped_into_a_masked_mean() -> None:
    x, y = _data(50)
    model = _model()
    loss = optax.softmax_cross_entropy_with_integer_labels  # per example, no mask argument
    logs = ss.evaluate(model, (x, y), loss=loss, batch_size=32)  # 32 + 18 (14 padded)
    assert logs["loss"] == pytest.approx(_cross_entropy(model, x, y), rel=1e-5)
    history = _fit(model, (x, y), loss=loss)
    assert history["loss"][-1] < history["loss"][0]


# What a user sees: these run without the test suite's jaxtyping import hook, which would
# otherwise answer first with beartype's own report of fit's annotations (pyright and mypy flag
# the same mistakes in the editor: tests/types/mistakes_edit_time.py).
_REFUSALS = """
import json, numpy as np, optax
import shapesafe as ss
from jaxtyping import Array, Float32
from shapesafe import layers as L
x = np.zeros((8, 4), np.float32); y = np.zeros((8,), np.int32)
model = ss.build(L.Linear(2), Float32[Array, "batch 4"])
good = dict(loss=ss.losses.cross_entropy, optimizer=optax.adam(1e-3), epochs=1, progress=False)
cases = {
    "optimizer-name": lambda: ss.fit(model, (x, y), **(good | {"optimizer": "adam"})),
    "optimizer-uncalled": lambda: ss.fit(model, (x, y), **(good | {"optimizer": optax.adam})),
    "loss-name": lambda: ss.fit(model, (x, y), **(good | {"loss": "cross_entropy"})),
    "steps-per-call": lambda: ss.fit(model, (x, y), **(good | {"steps_per_call": "2"})),
    "blueprint": lambda: ss.fit(L.Linear(2), (x, y), **good),
    "predict-blueprint": lambda: ss.predict(L.Linear(2), x),
}
out = {}
for name, call in cases.items():
    try:
        call()
        out[name] = None
    except Exception as e:
        out[name] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""

_BUILD_FIRST = (
    "Linear(2) is a blueprint, not a built model. Build it first: "
    'model = ss.build(blueprint, Float32[Array, "batch ..."]), then ss.{0}(model, ...).'
)


def test_fit_refuses_arguments_of_the_wrong_kind_before_any_work() -> None:
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", _REFUSALS],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {
        "optimizer-name": [
            "TypeError",
            "fit: optimizer='adam' is a name; shapesafe takes optax objects. Pass "
            "optimizer=optax.adam(1e-3) (with the learning rate you want).",
        ],
        "optimizer-uncalled": [
            "TypeError",
            "fit: optimizer=optax.adam is the function that makes the optimizer, not the "
            "optimizer. Call it: optimizer=optax.adam(1e-3) (with the learning rate you want).",
        ],
        "loss-name": [
            "TypeError",
            "fit: loss='cross_entropy' is a name; shapesafe takes the function itself. Pass "
            "loss=ss.losses.cross_entropy.",
        ],
        "steps-per-call": [
            "TypeError",
            "fit: steps_per_call must be an int (steps per jitted call), got str '2'.",
        ],
        "blueprint": ["TypeError", "fit: " + _BUILD_FIRST.format("fit")],
        "predict-blueprint": ["TypeError", "predict: " + _BUILD_FIRST.format("predict")],
    }


def test_labels_shorter_than_the_inputs_name_both_lengths() -> None:
    x, y = _data()
    with pytest.raises(ValueError) as info:
        _fit(_model(), (x, y[:90]))
    assert str(info.value) == (
        "fit: the labels y have 90 examples but the inputs x have 100; every array needs one "
        "row per example (same first dimension)."
    )


def test_float64_arrays_into_fit_say_astype() -> None:
    x, y = _data()
    with pytest.raises(ss.ShapeError) as info:
        _fit(_model(), (x.astype(np.float64), y))
    assert str(info.value).splitlines()[-1] == (
        "  Convert it first: x.astype(np.float32); or build the model for Float[...], which takes "
        "any floating dtype and converts it to float32 at its input (as L.Cast(jnp.float32) would)."
    )


# -- modes -------------------------------------------------------------------------------------


def test_dropout_is_off_after_build_and_after_fit_and_on_for_fits_steps() -> None:
    x, y = _data()
    net = L.Linear(16) >> L.ReLU() >> L.Dropout(0.5) >> L.Linear(2)
    model = ss.build(net, SPEC, seed=0)
    first = np.asarray(model(x))
    np.testing.assert_array_equal(first, np.asarray(model(x)))  # deterministic after build
    model.train()
    assert not np.array_equal(np.asarray(model(x)), np.asarray(model(x)))  # train() still works
    model.eval()
    np.testing.assert_array_equal(np.asarray(model(x)), first)
    _fit(model, (x, y))
    after = np.asarray(model(x))
    np.testing.assert_array_equal(after, np.asarray(model(x)))  # deterministic after fit
    assert not np.array_equal(after, first)  # and trained


def test_fit_trains_batchnorm_on_batch_statistics_and_leaves_it_on_running_ones() -> None:
    x, y = _data()
    model = ss.build(L.BatchNorm(momentum=0.0) >> L.Linear(2), SPEC, seed=0)
    bn = model.layers[0]
    assert bn.use_running_average is True
    _fit(model, (x, y), epochs=1, batch_size=100, shuffle=False)
    # momentum 0: the running mean is the last training batch's mean (training mode updated it)
    np.testing.assert_allclose(np.asarray(bn.mean[...]), x.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert bn.use_running_average is True


# -- summary without building --------------------------------------------------------------------


def test_summary_of_a_blueprint_and_a_spec_builds_nothing() -> None:
    net = L.Flatten() >> L.Linear(64) >> L.ReLU() >> L.Linear(10)
    s = ss.summary(net, Float32[Array, "batch 28 28"])
    assert s.total_params == 784 * 64 + 64 + 64 * 10 + 10  # by hand
    assert s.output_spec == "Float32[batch, 10]"
    assert str(s).splitlines()[1] == (
        "       (not built: shapes and parameter counts inferred, nothing allocated)"
    )
    with pytest.raises(TypeError) as info:
        ss.summary(net)  # type: ignore[call-arg]
    assert str(info.value).endswith(
        "is a blueprint, whose sizes are known only for an input. Pass its input spec: "
        'ss.summary(blueprint, Float32[Array, "batch 784"]) (nothing is allocated), or '
        "summarise the model ss.build returns."
    )


def test_summary_of_a_blueprint_agrees_with_the_built_model() -> None:
    net = L.Linear(8) >> L.BatchNorm() >> L.Linear(3)
    built = ss.summary(ss.build(net, SPEC, seed=0))
    abstract = ss.summary(net, SPEC)
    assert abstract.rows == built.rows
    assert (abstract.total_params, abstract.trainable_params) == (
        built.total_params,
        built.trainable_params,
    )
    assert built.total_params == (4 * 8 + 8) + 4 * 8 + (8 * 3 + 3)  # BatchNorm: 2 params + 2 stats


def test_inference_after_build_matches_jnp() -> None:
    model = _model()
    x = jnp.ones((2, 4), jnp.float32)
    layer = model.layers[0]
    np.testing.assert_allclose(
        np.asarray(model(x)),
        np.ones((2, 4), np.float32) @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...]),
        rtol=1e-6,
    )
