"""Losses against independent references (hand-computed, NumPy, scikit-learn, PyTorch), their
masks, and the ShapeError a (batch,) vs (batch, 1) mix-up gets instead of a silent broadcast."""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Float32, Int32, Integer

import shapesafe as ss

L = ss.losses
RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(8, 5)).astype(np.float32)
LABELS = RNG.integers(0, 5, size=(8,)).astype(np.int32)


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# -- values -----------------------------------------------------------------------------------


def test_cross_entropy_hand_computed() -> None:
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    want = (-(3 - math.log(math.e + math.e**2 + math.e**3)) + math.log(3)) / 2
    assert float(L.cross_entropy(logits, jnp.array([2, 1]))) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5], ids=["plain", "smooth0.1", "smooth0.5"])
def test_cross_entropy_matches_torch(smoothing: float) -> None:
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.cross_entropy(
        torch.tensor(LOGITS), torch.tensor(LABELS).long(), label_smoothing=smoothing
    )
    got = L.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS), label_smoothing=smoothing)
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_cross_entropy_matches_sklearn_log_loss() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    probs = np.exp(_np_log_softmax(LOGITS))
    want = metrics.log_loss(LABELS, probs, labels=list(range(5)))
    assert float(L.cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS))) == pytest.approx(
        want, rel=1e-5
    )


def test_soft_cross_entropy_matches_torch_and_one_hot_matches_integer_labels() -> None:
    torch = pytest.importorskip("torch")
    soft = RNG.dirichlet(np.ones(5), size=8).astype(np.float32)
    want = torch.nn.functional.cross_entropy(torch.tensor(LOGITS), torch.tensor(soft))
    assert float(L.soft_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(soft))) == pytest.approx(
        float(want), rel=1e-5
    )
    one_hot = np.eye(5, dtype=np.float32)[LABELS]
    by_hand = -_np_log_softmax(LOGITS)[np.arange(8), LABELS].mean()
    assert float(L.soft_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(one_hot))) == pytest.approx(
        by_hand, rel=1e-5
    )


@pytest.mark.parametrize("shape", [(8,), (8, 1), (8, 3), (8, 2, 2)], ids=["b", "b1", "b3", "b22"])
def test_binary_cross_entropy_matches_torch(shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    logits = RNG.normal(size=shape).astype(np.float32) * 3
    labels = RNG.integers(0, 2, size=shape).astype(np.int32)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(logits), torch.tensor(labels).float()
    )
    got = L.binary_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_binary_cross_entropy_is_stable_for_large_logits() -> None:
    # log(1 + e^-100) ~ 0 for the right side, 100 for the wrong side: (0 + 100) / 2.
    got = L.binary_cross_entropy(jnp.array([100.0, -100.0]), jnp.array([1.0, 1.0]))
    assert float(got) == pytest.approx(50.0, rel=1e-6)


@pytest.mark.parametrize("shape", [(8,), (8, 3), (8, 2, 2)], ids=["b", "b3", "b22"])
def test_mean_squared_error_matches_torch_and_numpy(shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    p, t = RNG.normal(size=shape).astype(np.float32), RNG.normal(size=shape).astype(np.float32)
    want = torch.nn.functional.mse_loss(torch.tensor(p), torch.tensor(t))
    got = L.mean_squared_error(jnp.asarray(p), jnp.asarray(t))
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert float(got) == pytest.approx(float(np.mean((p.astype(np.float64) - t) ** 2)), rel=1e-5)


def test_jit_matches_the_numpy_reference() -> None:
    want = -_np_log_softmax(LOGITS)[np.arange(8), LABELS].mean()
    got = jax.jit(L.cross_entropy)(jnp.asarray(LOGITS), jnp.asarray(LABELS))
    assert float(got) == pytest.approx(want, rel=1e-5)


# -- masks ------------------------------------------------------------------------------------


def test_mask_averages_over_real_examples_only() -> None:
    mask = np.array([1, 1, 0, 1, 0, 1, 1, 0], bool)
    garbage = LOGITS.copy()
    garbage[~mask] = 1e4  # padded rows: huge values that must count zero
    want = -_np_log_softmax(LOGITS)[mask][np.arange(mask.sum()), LABELS[mask]].mean()
    got = L.cross_entropy(jnp.asarray(garbage), jnp.asarray(LABELS), mask=jnp.asarray(mask))
    assert float(got) == pytest.approx(want, rel=1e-5)
    p, t = RNG.normal(size=(8, 3)).astype(np.float32), RNG.normal(size=(8, 3)).astype(np.float32)
    mse = L.mean_squared_error(jnp.asarray(p), jnp.asarray(t), mask=jnp.asarray(mask))
    assert float(mse) == pytest.approx(float(np.mean((p[mask] - t[mask]) ** 2)), rel=1e-5)


def test_mask_gives_padded_examples_zero_gradient() -> None:
    mask = jnp.array([True, True, False])
    logits = jnp.zeros((3, 2))
    grad = jax.grad(L.cross_entropy)(logits, jnp.array([0, 1, 0]), mask=mask)
    # d/dlogits of the mean over 2 real examples: (softmax - one_hot) / 2 = +-0.25; padded row 0.
    np.testing.assert_allclose(
        np.asarray(grad), [[-0.25, 0.25], [0.25, -0.25], [0.0, 0.0]], atol=1e-7
    )


@pytest.mark.parametrize(
    "loss", [L.mean_squared_error, L.binary_cross_entropy, L.soft_cross_entropy]
)
def test_a_nan_target_in_a_masked_out_example_leaves_the_gradient_finite(loss: Any) -> None:
    """A masked-out example's NaN target (which fit lets through: only real examples are
    checked) counts nothing: the value and the gradient equal those of the same loss over
    the two real examples alone, unmasked; the masked row's gradient is 0, not NaN."""
    out = jnp.asarray(RNG.normal(size=(3, 2)).astype(np.float32))
    targets = np.array([[0.2, 0.8], [1.0, 0.0], [np.nan, np.nan]], np.float32)
    mask = jnp.array([True, True, False])
    value, grad = jax.value_and_grad(loss)(out, jnp.asarray(targets), mask=mask)
    want, want_grad = jax.value_and_grad(loss)(out[:2], jnp.asarray(targets[:2]))
    assert float(value) == pytest.approx(float(want), rel=1e-6)
    np.testing.assert_allclose(np.asarray(grad[:2]), np.asarray(want_grad), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(grad[2]), [0.0, 0.0])  # before: NaN


def test_all_masked_batch_is_zero_not_nan() -> None:
    got = L.mean_squared_error(jnp.ones((2, 1)), jnp.zeros((2, 1)), mask=jnp.zeros((2,), bool))
    assert float(got) == 0.0


# -- shape and label errors ---------------------------------------------------------------------

MIXUPS = [
    pytest.param(
        L.mean_squared_error,
        (4, 1),
        (4,),
        r"predictions\[:, 0\].*targets\[:, None\]",
        id="mse-b1-b",
    ),
    pytest.param(
        L.mean_squared_error,
        (4,),
        (4, 1),
        r"targets\[:, 0\].*predictions\[:, None\]",
        id="mse-b-b1",
    ),
    pytest.param(
        L.binary_cross_entropy, (4, 1), (4,), r"logits\[:, 0\].*labels\[:, None\]", id="bce-b1-b"
    ),
    pytest.param(
        L.binary_cross_entropy, (4,), (4, 1), r"labels\[:, 0\].*logits\[:, None\]", id="bce-b-b1"
    ),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(("loss", "first", "second", "fix"), MIXUPS)
def test_batch_vs_batch_1_is_a_shape_error_naming_both_shapes_and_the_fix(
    loss: object, first: tuple[int, ...], second: tuple[int, ...], fix: str, jit: bool
) -> None:
    fn = jax.jit(loss) if jit else loss  # type: ignore[arg-type]
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)cannot take its argument.*"
        r"\[4, 1\] has a trailing dimension of size 1 that .* \[4\] lacks.*"
        r"broadcast to \(batch, batch\).*" + fix,
    ):
        fn(jnp.zeros(first), jnp.zeros(second))  # type: ignore[operator]


def test_cross_entropy_labels_batch_1_names_the_fix() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)expected  labels: Integer\[Array, \"batch\"\].*"
        r"got       labels: Int32\[4, 1\].*use labels\[:, 0\]",
    ):
        L.cross_entropy(jnp.zeros((4, 3)), jnp.zeros((4, 1), jnp.int32))


def test_cross_entropy_on_one_hot_labels_points_to_soft_cross_entropy() -> None:
    with pytest.raises(
        ss.ShapeError, match=r"(?s)float32 is not an integer dtype.*ss.losses.soft_cross_entropy"
    ):
        L.cross_entropy(jnp.zeros((4, 3)), jnp.eye(3)[jnp.array([0, 1, 2, 0])])


def test_wrong_mask_length_is_a_shape_error() -> None:
    with pytest.raises(
        ss.ShapeError, match=r"mask must hold one bool per example, shape \[4\]; got \[3\]"
    ):
        L.mean_squared_error(jnp.zeros((4, 2)), jnp.zeros((4, 2)), mask=jnp.ones((3,), bool))


@pytest.mark.parametrize("label", [5, -1], ids=["too-big", "negative"])
def test_out_of_range_label_names_the_value_and_the_classes(label: int) -> None:
    with pytest.raises(
        ValueError, match=rf"label {label} is out of range for 3 classes \(labels must be 0..2"
    ):
        L.cross_entropy(jnp.zeros((4, 3)), jnp.array([0, 1, label, 2]))


def test_masked_out_of_range_label_is_ignored_and_jit_cannot_check() -> None:
    mask = jnp.array([True, True, False, True])
    got = L.cross_entropy(jnp.zeros((4, 3)), jnp.array([0, 1, 7, 2]), mask=mask)
    assert float(got) == pytest.approx(math.log(3), rel=1e-6)
    # Under jit the values are not known while tracing: no error, a NaN (ss.fit checks on the host).
    assert math.isnan(float(jax.jit(L.cross_entropy)(jnp.zeros((2, 3)), jnp.array([0, 7]))))


def test_binary_labels_outside_0_1_are_refused() -> None:
    with pytest.raises(ValueError, match=r"label 2 is outside \[0, 1\]"):
        L.binary_cross_entropy(jnp.zeros((3,)), jnp.array([0, 1, 2]))


@pytest.mark.parametrize("eps", [-0.1, 1.0], ids=["negative", "one"])
def test_bad_label_smoothing_lists_the_allowed_range(eps: float) -> None:
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        L.cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing=eps)


# -- target specs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "output", "dtype", "dims"),
    [
        (L.cross_entropy, Float32[Array, "batch 10"], "Integer", "batch"),
        (
            functools.partial(L.cross_entropy, label_smoothing=0.1),
            Float32[Array, "batch 10"],
            "Integer",
            "batch",
        ),
        (L.soft_cross_entropy, Float32[Array, "batch 10"], "Float", "batch 10"),
        (L.binary_cross_entropy, Float32[Array, "batch 1"], "Real", "batch 1"),
        (L.binary_cross_entropy, Float32[Array, "batch"], "Real", "batch"),
        (L.mean_squared_error, Float32[Array, "batch 4 3"], "Float", "batch 4 3"),
        (L.mean_squared_error, jax.ShapeDtypeStruct((32, 2), jnp.float32), "Float", "32 2"),
    ],
    ids=["ce", "ce-partial", "soft", "bce-b1", "bce-b", "mse-rank3", "mse-struct"],
)
def test_target_spec_binds_the_output_dims(
    loss: object, output: object, dtype: str, dims: str
) -> None:
    spec = L.target_spec(loss, output)  # type: ignore[arg-type]
    assert (spec.dtype.__name__, spec.dim_str) == (dtype, dims)


def test_target_spec_of_a_user_loss_reads_its_annotations_and_skips_unannotated_ones() -> None:
    def hinge(
        scores: Float[Array, "batch classes"], labels: Integer[Array, " batch"]
    ) -> Float[Array, ""]:
        return jnp.mean(scores)

    assert L.target_spec(hinge, Float32[Array, "batch 7"]).dim_str == "batch"
    assert L.target_spec(lambda out, y: jnp.mean(out), Float32[Array, "batch 7"]) is None
    L.check_targets(
        lambda out, y: jnp.mean(out), Float32[Array, "batch 7"], Float32[Array, "batch 3"]
    )


def test_check_targets_accepts_fitting_specs() -> None:
    L.check_targets(L.cross_entropy, Float32[Array, "batch 10"], Int32[Array, "batch"])
    L.check_targets(L.binary_cross_entropy, Float32[Array, "batch 1"], Float32[Array, "batch 1"])
    L.check_targets(L.mean_squared_error, Float32[Array, "batch 3"], Float32[Array, "batch 3"])


@pytest.mark.parametrize(
    ("loss", "output", "target", "match"),
    [
        (
            L.cross_entropy,
            Float32[Array, "batch 10"],
            Int32[Array, "batch 1"],
            r"(?s)data\['label'\] does not fit the loss ss.losses.cross_entropy.*expected  Integer\[batch\].*"
            r"Float32\[batch, 10\].*got       Int32\[batch, 1\].*y\[:, 0\]",
        ),
        (
            L.cross_entropy,
            Float32[Array, "batch 10"],
            Float32[Array, "batch 10"],
            r"(?s)float32 is not an integer dtype.*use ss.losses.soft_cross_entropy",
        ),
        (
            L.binary_cross_entropy,
            Float32[Array, "batch 1"],
            Int32[Array, "batch"],
            r"(?s)expected  Real\[batch, 1\].*got       Int32\[batch\].*y\[:, None\]",
        ),
        (
            L.mean_squared_error,
            Float32[Array, "batch"],
            Float32[Array, "batch 1"],
            r"(?s)expected  Float\[batch\].*got       Float32\[batch, 1\].*y\[:, 0\]",
        ),
        (
            L.soft_cross_entropy,
            Float32[Array, "batch 10"],
            Float32[Array, "batch 9"],
            r"the shapes differ: expected \[batch, 10\], got \[batch, 9\]",
        ),
    ],
    ids=["ce-b1", "ce-onehot", "bce-b", "mse-b1", "soft-classes"],
)
def test_check_targets_refuses_with_both_sides_and_the_fix(
    loss: object, output: object, target: object, match: str
) -> None:
    with pytest.raises(ss.ShapeError, match=match):
        L.check_targets(loss, output, target, where="data['label']")  # type: ignore[arg-type]


def test_an_output_that_does_not_fit_the_loss_is_refused() -> None:
    with pytest.raises(
        ss.ShapeError,
        match=r"the model's output Float32\[batch\] does not fit "
        r"ss.losses.cross_entropy, which takes outputs \"batch classes\"",
    ):
        L.target_spec(L.cross_entropy, Float32[Array, "batch"])
    with pytest.raises(ss.ShapeError, match=r"takes Float outputs. Insert L.Cast\(jnp.float32\)"):
        L.target_spec(L.mean_squared_error, Int32[Array, "batch 3"])
