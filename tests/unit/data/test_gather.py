"""Array pipelines batch in one gather per leaf: the same batches, in the same order, with the
same masks and resume points as the element-by-element path (a ``from_source`` over the same
rows, which cannot gather), and as slicing the arrays by hand."""

from typing import Any

import numpy as np
import pytest
from jaxtyping import Float32, Int64

from shapesafe.data import from_arrays, from_source

N = 37


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(N, 3)).astype(np.float32), "label": np.arange(N, dtype=np.int64)}


def _rows(a: dict[str, np.ndarray]) -> Any:
    spec = {"x": Float32[np.ndarray, "3"], "label": Int64[np.ndarray, ""]}
    rows = [{"x": a["x"][i], "label": np.array(a["label"][i])} for i in range(N)]
    return from_source(rows, spec)


CHAINS = {
    "batch": lambda ds: ds.batch(8),
    "shuffle": lambda ds: ds.shuffle(seed=3).batch(8),
    "drop": lambda ds: ds.shuffle(seed=1).batch(8, drop_remainder=True),
    "take_skip": lambda ds: ds.skip(5).take(20).shuffle(seed=2).batch(6),
    "split": lambda ds: ds.split(0.7, seed=0, stratify=False)[1].shuffle(seed=4).batch(4),
}


def _same(a: Any, b: Any) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_gathered_batches_equal_the_element_wise_path(chain: str) -> None:
    a = _arrays()
    fast, slow = CHAINS[chain](from_arrays(a)), CHAINS[chain](_rows(a))
    assert fast._parents[0]._gathers and not slow._parents[0]._gathers  # the two paths
    assert fast.spec == slow.spec and len(fast) == len(slow)
    for epoch in (0, 1):
        got, want = list(fast.epoch(epoch)), list(slow.epoch(epoch))
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _same(g, w)
    # resuming mid-epoch gives the rest of the same epoch
    it = fast.epoch(1)
    next(it)
    state = it.get_state()
    rest = list(fast.epoch(state=state))
    for g, w in zip(rest, list(slow.epoch(1))[1:], strict=True):
        _same(g, w)


def test_a_plain_batch_is_the_arrays_sliced_and_the_short_one_padded_and_masked() -> None:
    a = _arrays()
    batches = list(from_arrays(a).batch(8))
    assert len(batches) == 5  # 37 = 4 * 8 + 5
    np.testing.assert_array_equal(batches[1]["x"], a["x"][8:16])
    last = batches[-1]
    np.testing.assert_array_equal(last["mask"], [True] * 5 + [False] * 3)
    np.testing.assert_array_equal(last["x"][:5], a["x"][32:])
    np.testing.assert_array_equal(last["x"][5:], np.zeros((3, 3), np.float32))
    # a batch owns its memory: writing into it leaves the source arrays alone
    batches[0]["x"][:] = 7
    assert not np.any(a["x"][:8] == 7)


def test_tuple_and_single_array_elements_gather_too() -> None:
    x = np.arange(10, dtype=np.int32)
    single = list(from_arrays(x).batch(4))
    np.testing.assert_array_equal(single[0][0], [0, 1, 2, 3])
    np.testing.assert_array_equal(single[2][1], [True, True, False, False])
    pairs = list(from_arrays((x, x * 2)).shuffle(seed=0).batch(5))
    for xs, ys, mask in pairs:
        np.testing.assert_array_equal(ys, xs * 2)
        assert mask.all()
    seen = np.sort(np.concatenate([p[0] for p in pairs]))
    np.testing.assert_array_equal(seen, x)  # a permutation: every row once
