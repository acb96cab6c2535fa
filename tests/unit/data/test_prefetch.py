"""prefetch reads the next epoch ahead: the same elements as without it, and none for a
consumer that iterates one epoch over and over."""

import gc
import json
import time

import numpy as np

from shapesafe.data import from_arrays


def _pipeline():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    return (
        from_arrays({"x": x, "label": (np.arange(20) % 2).astype(np.int32)})
        .shuffle(seed=3)
        .batch(4)
    )


def _xs(it) -> list[list[float]]:
    return [b["x"].ravel().tolist() for b in it]


def _wait_for(predicate, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_next_epoch_is_read_ahead_and_yields_the_same_elements():
    plain = _pipeline()
    ds = plain.prefetch(2)
    assert _xs(ds.epoch(0)) == _xs(plain.epoch(0))
    assert _wait_for(
        lambda: ds.ahead is not None and ds.ahead.queue.full()
    )  # epoch 1's first 2 batches
    assert ds.ahead.epoch == 1
    assert _xs(ds.epoch(1)) == _xs(plain.epoch(1))  # taken over, nothing lost or repeated
    assert _wait_for(lambda: ds.ahead is not None and ds.ahead.epoch == 2)
    it = ds.epoch(2)
    next(it)
    state = json.loads(json.dumps(it.get_state()))
    assert _xs(ds.epoch(state=state)) == _xs(plain.epoch(2))[1:]  # resuming skips the read-ahead


def test_a_consumer_repeating_one_epoch_gets_no_read_ahead_after_the_first():
    ds = _pipeline().prefetch(2)
    first = _xs(ds)
    assert _wait_for(lambda: ds.ahead is not None)
    assert _xs(ds) == first  # epoch 0 again: the read-ahead of epoch 1 is dropped
    time.sleep(0.2)
    assert ds.ahead is None


def test_a_dropped_dataset_stops_its_read_ahead_thread():
    ds = _pipeline().prefetch(2)
    _xs(ds)
    assert _wait_for(lambda: ds.ahead is not None and ds.ahead.thread is not None)
    thread = ds.ahead.thread
    del ds
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
