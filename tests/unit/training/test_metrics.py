"""Metrics against independent references (hand-computed, scikit-learn), aggregated exactly
over a dataset split into batches with a padded, masked short last batch."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shapesafe as ss

M = ss.metrics
RNG = np.random.default_rng(1)
N, C = 37, 4
SCORES = RNG.normal(size=(N, C)).astype(np.float32)
LABELS = RNG.integers(0, C, size=(N,)).astype(np.int32)
PREDICTED = SCORES.argmax(-1)


def run(metric: Any, outputs: Any, targets: Any, mask: Any = None) -> Any:
    state = metric.update(
        metric.init(),
        jnp.asarray(outputs),
        jnp.asarray(targets),
        None if mask is None else jnp.asarray(mask),
    )
    return np.asarray(metric.compute(state))


def batched(
    metric: Any, outputs: np.ndarray, targets: np.ndarray, size: int, *, jit: bool = False
) -> Any:
    """Feed ``size``-example batches, the last padded with garbage and masked, like ``ss.fit``."""
    update = jax.jit(metric.update) if jit else metric.update
    state = metric.init()
    for start in range(0, len(outputs), size):
        o, t = outputs[start : start + size], targets[start : start + size]
        real = len(o)
        pad = size - real
        o = np.concatenate([o, np.full((pad, *o.shape[1:]), 9.0, o.dtype)])  # garbage, masked out
        t = np.concatenate([t, np.zeros((pad, *t.shape[1:]), t.dtype)])
        mask = np.arange(size) < real
        state = update(state, jnp.asarray(o), jnp.asarray(t), jnp.asarray(mask))
    return np.asarray(metric.compute(state))


# -- values against references ------------------------------------------------------------------


def test_accuracy_hand_computed_and_usable_as_an_object() -> None:
    outputs = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    assert M.accuracy.name == "accuracy"
    assert float(run(M.accuracy, outputs, np.array([0, 1, 1, 0], np.int32))) == 0.5


def test_accuracy_takes_one_hot_targets_and_binary_logits() -> None:
    one_hot = np.eye(C, dtype=np.float32)[LABELS]
    assert float(run(M.accuracy, SCORES, one_hot)) == pytest.approx(np.mean(PREDICTED == LABELS))
    logits = np.array([2.0, -1.0, 0.5, -3.0], np.float32)
    labels = np.array([1, 1, 0, 0], np.int32)
    assert float(run(M.accuracy, logits, labels)) == 0.5
    assert float(run(M.accuracy, logits[:, None], labels[:, None].astype(np.float32))) == 0.5
    probs = np.array([0.9, 0.2, 0.6, 0.1], np.float32)
    assert float(run(M.Accuracy(threshold=0.5), probs, labels)) == 0.5


@pytest.mark.parametrize("k", [1, 2, 3], ids=["k1", "k2", "k3"])
def test_top_k_accuracy_matches_sklearn(k: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    want = metrics.top_k_accuracy_score(LABELS, SCORES, k=k, labels=list(range(C)))
    m = M.top_k_accuracy(k)
    assert m.name == f"top_{k}_accuracy"
    assert float(run(m, SCORES, LABELS)) == pytest.approx(want)


SCORE_CASES = [
    (score, average) for score in ("precision", "recall", "f1") for average in ("macro", "micro")
]


@pytest.mark.parametrize(
    ("score", "average"), SCORE_CASES, ids=[f"{s}-{a}" for s, a in SCORE_CASES]
)
def test_precision_recall_f1_match_sklearn(score: str, average: str) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    reference = {
        "precision": metrics.precision_score,
        "recall": metrics.recall_score,
        "f1": metrics.f1_score,
    }
    factory = {"precision": M.precision, "recall": M.recall, "f1": M.f1}[score]
    want = reference[score](LABELS, PREDICTED, average=average, zero_division=0)
    assert float(run(factory(C, average=average), SCORES, LABELS)) == pytest.approx(want, rel=1e-6)


def test_macro_average_skips_classes_absent_from_targets_and_predictions_like_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    labels = np.array([0, 0, 1, 1, 1], np.int32)  # classes 2 and 3 never occur
    predicted = np.array([0, 1, 1, 1, 0])
    outputs = np.eye(C, dtype=np.float32)[predicted]
    for factory, reference in [
        (M.precision, metrics.precision_score),
        (M.recall, metrics.recall_score),
        (M.f1, metrics.f1_score),
    ]:
        want = reference(labels, predicted, average="macro", zero_division=0)
        assert float(run(factory(C), outputs, labels)) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("score", ["precision", "recall", "f1"])
def test_binary_average_on_binary_logits_matches_sklearn(score: str) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    logits = RNG.normal(size=(20,)).astype(np.float32)
    labels = RNG.integers(0, 2, size=(20,)).astype(np.int32)
    reference = {
        "precision": metrics.precision_score,
        "recall": metrics.recall_score,
        "f1": metrics.f1_score,
    }
    factory = {"precision": M.precision, "recall": M.recall, "f1": M.f1}[score]
    want = reference[score](labels, (logits > 0).astype(int), average="binary", zero_division=0)
    assert float(run(factory(2, average="binary"), logits, labels)) == pytest.approx(want, rel=1e-6)


def test_confusion_matrix_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    want = metrics.confusion_matrix(LABELS, PREDICTED, labels=list(range(C)))
    got = run(M.confusion_matrix(C), SCORES, LABELS)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_no_prediction_of_a_class_scores_zero_not_nan() -> None:
    outputs = np.eye(3, dtype=np.float32)[[0, 0, 0]]
    assert float(run(M.precision(3), outputs, np.array([0, 1, 2], np.int32))) == pytest.approx(
        1 / 3 / 3
    )


def test_out_of_range_labels_are_not_counted_by_the_confusion_matrix() -> None:
    outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    got = run(M.confusion_matrix(3), outputs, np.array([0, 1, 7, -1], np.int32))
    np.testing.assert_array_equal(got, np.diag([1, 1, 0]))


# -- exact aggregation --------------------------------------------------------------------------

# 10 examples in batches of 4, 4, 2: all right, all wrong, all right (scores without ties).
AGG_OUT = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]] + np.array(
    [0.0, 0.1, 0.2], np.float32
)
AGG_LAB = np.array([0, 1, 2, 0, 0, 0, 1, 2, 2, 0], np.int32)


def _all_metrics() -> list[Any]:
    return [
        M.accuracy,
        M.top_k_accuracy(2),
        M.precision(3),
        M.recall(3),
        M.f1(3),
        M.precision(3, average="micro"),
        M.confusion_matrix(3),
    ]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_batches_of_4_4_2_padded_give_the_same_figure_as_all_10_at_once(jit: bool) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    predicted = AGG_OUT.argmax(-1)
    references = {
        "accuracy": metrics.accuracy_score(AGG_LAB, predicted),
        "precision": metrics.precision_score(AGG_LAB, predicted, average="macro", zero_division=0),
        "recall": metrics.recall_score(AGG_LAB, predicted, average="macro", zero_division=0),
        "f1": metrics.f1_score(AGG_LAB, predicted, average="macro", zero_division=0),
        "precision_micro": metrics.precision_score(AGG_LAB, predicted, average="micro"),
        "confusion_matrix": metrics.confusion_matrix(AGG_LAB, predicted, labels=[0, 1, 2]),
        "top_2_accuracy": metrics.top_k_accuracy_score(AGG_LAB, AGG_OUT, k=2, labels=[0, 1, 2]),
    }
    for m in _all_metrics():
        got = batched(m, AGG_OUT, AGG_LAB, 4, jit=jit)
        np.testing.assert_allclose(got, references[m.name], rtol=1e-6, err_msg=m.name)
        np.testing.assert_allclose(got, run(m, AGG_OUT, AGG_LAB), rtol=1e-6, err_msg=m.name)


def test_exact_aggregation_differs_from_the_mean_of_per_batch_means() -> None:
    exact = float(batched(M.accuracy, AGG_OUT, AGG_LAB, 4))
    per_batch = [float(run(M.accuracy, AGG_OUT[s : s + 4], AGG_LAB[s : s + 4])) for s in (0, 4, 8)]
    assert per_batch == [1.0, 0.0, 1.0]
    assert exact == pytest.approx(0.6)  # 6 of 10, not (1 + 0 + 1) / 3
    assert float(np.mean(per_batch)) != pytest.approx(exact)


def test_metrics_run_inside_a_jitted_scan_over_batches() -> None:
    outs = jnp.asarray(SCORES[:36].reshape(9, 4, C))
    labs = jnp.asarray(LABELS[:36].reshape(9, 4))
    masks = jnp.ones((9, 4), bool)
    m = M.f1(C)

    @jax.jit
    def total(state: Any) -> Any:
        def body(s: Any, batch: Any) -> tuple[Any, None]:
            return m.update(s, *batch), None

        return jax.lax.scan(body, state, (outs, labs, masks))[0]

    metrics = pytest.importorskip("sklearn.metrics")
    want = metrics.f1_score(LABELS[:36], PREDICTED[:36], average="macro", zero_division=0)
    assert float(m.compute(total(m.init()))) == pytest.approx(want, rel=1e-6)


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "targets", "match"),
    [
        (
            (4, 1),
            (4,),
            r"accuracy: binary outputs \[4, 1\] need targets of the same shape, got \[4\]. "
            r"Use targets\[:, None\]",
        ),
        (
            (4,),
            (4, 1),
            r"binary outputs \[4\] need targets of the same shape, got \[4, 1\]. Use targets\[:, 0\]",
        ),
        (
            (4, 3),
            (4, 1),
            r"targets must be integer class ids \[4\] or one-hot \[4, 3\]; got float32\[4, 1\]. "
            r"Use targets\[:, 0\]",
        ),
        (
            (4, 3),
            (3,),
            r"(?s)cannot take its argument 'targets'.*outputs, targets and mask must hold the same "
            r"examples \(dimension 0\); got outputs \[4, 3\], targets \[3\]",
        ),
        ((4, 2, 2), (4,), r"classification metrics take outputs \(batch, classes\)"),
    ],
    ids=["b1-b", "b-b1", "scores-b1", "batch-sizes", "rank3"],
)
def test_shape_mistakes_are_shape_errors(
    outputs: tuple[int, ...], targets: tuple[int, ...], match: str
) -> None:
    with pytest.raises(ss.ShapeError, match=match):
        M.accuracy.update(M.accuracy.init(), jnp.zeros(outputs), jnp.zeros(targets))


def test_shape_error_under_jit_too() -> None:
    with pytest.raises(ss.ShapeError, match=r"Use targets\[:, None\]"):
        jax.jit(M.accuracy.update)(M.accuracy.init(), jnp.zeros((4, 1)), jnp.zeros((4,)))


def test_num_classes_must_match_the_outputs() -> None:
    m = M.confusion_matrix(3)
    with pytest.raises(
        ss.ShapeError,
        match=r"confusion_matrix was made for num_classes=3, but the outputs "
        r"\[2, 4\] have 4 classes",
    ):
        m.update(m.init(), jnp.zeros((2, 4)), jnp.zeros((2,), jnp.int32))


def test_k_larger_than_classes_is_a_shape_error() -> None:
    m = M.top_k_accuracy(5)
    with pytest.raises(
        ss.ShapeError, match="top_5_accuracy needs at least 5 classes; the outputs have 3"
    ):
        m.update(m.init(), jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: M.precision(3, average="weighted"),
            r"average must be one of \('macro', 'micro', 'binary'\)",
        ),
        (lambda: M.recall(3, average="binary"), r"average='binary' needs num_classes=2"),
        (lambda: M.f1(1), r"num_classes must be an integer >= 2, got 1"),
        (lambda: M.confusion_matrix(0), r"num_classes must be an integer >= 2, got 0"),
        (lambda: M.top_k_accuracy(0), r"k must be a positive integer, got 0"),
    ],
    ids=["average", "binary-3", "f1-1", "cm-0", "k-0"],
)
def test_bad_arguments_list_the_allowed_values(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_names() -> None:
    assert [m.name for m in _all_metrics()] == [
        "accuracy",
        "top_2_accuracy",
        "precision",
        "recall",
        "f1",
        "precision_micro",
        "confusion_matrix",
    ]
