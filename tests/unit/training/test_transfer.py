"""Transfer learning: copy_weights, param_labels with optax.multi_transform under ss.fit,
freezing a backbone with BatchNorm, the shipped pretrained backbone and ``demo --transfer``."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

SPEC = Float32[Array, "batch 3"]


def _net(head: int = 5) -> L.Sequential:
    return L.Linear(4).named("hidden") >> L.ReLU() >> L.Linear(head).named("fc")


def _bn_net() -> L.Sequential:
    return L.Linear(4) >> L.BatchNorm() >> L.ReLU() >> L.Linear(2).named("fc")


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.normal(size=(6, 3)).astype(np.float32), np.array([0, 1, 1, 0, 1, 0], np.int32))]


# -- copy_weights -----------------------------------------------------------------------------


def test_copy_weights_carries_the_backbone_over_and_leaves_the_new_head() -> None:
    old = ss.build(_net(5), SPEC, seed=0)
    new = ss.build(_net(5)[:-1] >> L.Linear(2).named("fc"), SPEC, seed=1)
    head_before = np.array(new["fc"].kernel[...])
    copied = ss.copy_weights(old, new)
    assert copied == ["layers/0/bias", "layers/0/kernel"]
    np.testing.assert_array_equal(
        np.asarray(new["hidden"].kernel[...]), np.asarray(old["hidden"].kernel[...])
    )
    np.testing.assert_array_equal(np.asarray(new["fc"].kernel[...]), head_before)
    # a copy, not shared buffers: changing the source later leaves the destination alone
    old["hidden"].kernel[...] = jnp.zeros((3, 4), jnp.float32)
    assert float(jnp.abs(new["hidden"].kernel[...]).sum()) > 0


def test_copy_weights_copies_batchnorm_statistics_into_frozen_parameters() -> None:
    src = ss.build(_bn_net(), SPEC, seed=0)
    src.layers[1].mean[...] = jnp.array([1.0, 2.0, 3.0, 4.0], jnp.float32)
    dst = ss.build(_bn_net(), SPEC, seed=1)
    ss.freeze(dst, [0, 1])
    copied = ss.copy_weights(src, dst, skip="fc")
    assert "layers/1/mean" in copied and "layers/3/kernel" not in copied
    np.testing.assert_array_equal(np.asarray(dst.layers[1].mean[...]), [1.0, 2.0, 3.0, 4.0])
    assert isinstance(
        dst.layers[0].kernel, ss.Frozen
    )  # still frozen: values were copied, not variables


def test_copy_weights_strict_lists_what_does_not_match() -> None:
    old = ss.build(_net(5), SPEC, seed=0)
    new = ss.build(_net(5)[:-1] >> L.ReLU() >> L.Linear(2), SPEC, seed=1)
    with pytest.raises(
        ss.ShapesafeError,
        match=r"2 variables of dst are not in src: layers/3/bias, layers/3/kernel; "
        r"2 variables of src have no place in dst: layers/2/bias, layers/2/kernel\. Pass skip=",
    ):
        ss.copy_weights(old, new, strict=True)
    assert ss.copy_weights(
        old, ss.build(_net(5), SPEC, seed=2), strict=True
    )  # same architecture: all of it
    with pytest.raises(ss.ShapesafeError, match="no variable of dst has a counterpart"):
        ss.copy_weights(old, ss.build(L.Linear(7), SPEC, seed=0))


# -- param_labels + optax.multi_transform under ss.fit ---------------------------------------


def _hand_loss(w: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    """The network and mean softmax cross-entropy, written out by hand."""
    h = jnp.maximum(x @ w["k0"] + w["b0"].reshape(1, -1), 0.0)
    logits = h @ w["k2"] + w["b2"].reshape(1, -1)
    logp = logits - jax.scipy.special.logsumexp(logits, axis=1, keepdims=True)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def test_partitioned_learning_rates_move_each_part_by_its_own_rate() -> None:
    lr_head, lr_backbone = 0.5, 0.01
    model = ss.build(_net(2), SPEC, seed=0)
    w = {
        "k0": jnp.array(model.layers[0].kernel[...]),
        "b0": jnp.array(model.layers[0].bias[...]),
        "k2": jnp.array(model.layers[2].kernel[...]),
        "b2": jnp.array(model.layers[2].bias[...]),
    }
    ((x, y),) = _batches()
    grads = jax.grad(_hand_loss)(w, jnp.asarray(x), jnp.asarray(y))
    labels = ss.param_labels(model, {"fc": "head"}, default="backbone")
    optimizer = optax.multi_transform(
        {"head": optax.sgd(lr_head), "backbone": optax.sgd(lr_backbone)}, labels
    )
    ss.fit(
        model,
        _batches(),
        loss=ss.losses.cross_entropy,
        optimizer=optimizer,
        epochs=1,
        progress=False,
    )
    tol = {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(
        model.layers[0].kernel[...], w["k0"] - lr_backbone * grads["k0"], **tol
    )
    np.testing.assert_allclose(
        model.layers[0].bias[...], w["b0"] - lr_backbone * grads["b0"], **tol
    )
    np.testing.assert_allclose(model.layers[2].kernel[...], w["k2"] - lr_head * grads["k2"], **tol)
    np.testing.assert_allclose(model.layers[2].bias[...], w["b2"] - lr_head * grads["b2"], **tol)


def test_param_labels_by_function_and_its_errors() -> None:
    model = ss.build(_net(2), SPEC, seed=0)
    labels = ss.param_labels(model, lambda path: "bias" if path.endswith("bias") else "kernel")
    tree = labels(nnx.state(model, nnx.Param))  # the tree fit passes to the optimizer
    assert sorted(jax.tree.leaves(tree)) == ["bias", "bias", "kernel", "kernel"]
    with pytest.raises(ValueError, match=r"no label for parameter 'layers/0/bias'; add its layer"):
        ss.param_labels(model, {"fc": "head"})
    with pytest.raises(ValueError, match=r"\['head'\] match no trainable parameter"):
        ss.param_labels(model, {"head": "x"}, default="y")


def test_frozen_backbone_and_its_batchnorm_statistics_stay_put_then_fine_tune() -> None:
    model = ss.build(_bn_net(), SPEC, seed=0)
    before = {p: np.array(v.get_value()) for p, v in _flat(model).items()}
    ss.freeze(model, [0, 1])
    ss.fit(
        model,
        _batches(),
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.1),
        epochs=3,
        progress=False,
    )
    after = {p: np.array(v.get_value()) for p, v in _flat(model).items()}
    for path in (
        "layers/0/kernel",
        "layers/0/bias",
        "layers/1/scale",
        "layers/1/mean",
        "layers/1/var",
    ):
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)
    assert not np.array_equal(after["layers/3/kernel"], before["layers/3/kernel"])
    # unfreeze, fine-tune everything with a ten times smaller rate for the backbone
    ss.unfreeze(model)
    labels = ss.param_labels(model, {"fc": "head"}, default="backbone")
    ss.fit(
        model,
        _batches(),
        loss=ss.losses.cross_entropy,
        epochs=1,
        progress=False,
        optimizer=optax.multi_transform(
            {"head": optax.sgd(0.1), "backbone": optax.sgd(0.01)}, labels
        ),
    )
    tuned = {p: np.array(v.get_value()) for p, v in _flat(model).items()}
    assert not np.array_equal(tuned["layers/0/kernel"], after["layers/0/kernel"])
    assert not np.array_equal(
        tuned["layers/1/mean"], after["layers/1/mean"]
    )  # BatchNorm trains again


def _flat(model: object) -> dict[str, object]:
    from shapesafe._training._transfer import _variables

    return _variables(model)  # type: ignore[arg-type]


# -- the shipped backbone and the demo ---------------------------------------------------------


def test_pretrained_small_loads_with_its_record() -> None:
    from shapesafe.models import pretrain, resnet

    model = resnet.pretrained_small()
    assert (
        model.names[-1] == "fc"
        and str(ss.summary(model).output_spec) == f"Float32[batch, {len(pretrain.SHAPES)}]"
    )
    record = json.loads((pretrain.WEIGHTS / "pretrain.json").read_text())
    assert record["classes"] == list(pretrain.SHAPES) and record["source_held_out_accuracy"] > 0.5
    assert (pretrain.WEIGHTS / "weights.safetensors").stat().st_size < 5_000_000


def test_demo_transfer_quick(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from shapesafe._cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["demo", "--transfer", "--quick", "--quiet", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert set(result["test_accuracy"]) == {"pretrained", "scratch"}
    assert all(0.0 <= a <= 1.0 for a in result["test_accuracy"].values())
    assert result["labelled_train_photos"] < result["train_photos"]
