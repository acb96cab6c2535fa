"""``prefetch``: a background thread that keeps the next elements ready (optionally on device)."""

import queue
import threading
from typing import Any

import jax
import jax.tree_util as jtu

from ._dataset import Dataset, Item, Iter, State
from ._specs import ElementSpec, retype


class Prefetch(Dataset):
    def __init__(self, parent: Dataset, size: int, *, sharding: Any):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"prefetch: size must be a positive int, got {size!r}.")
        self._parents = (parent,)
        self.size, self.sharding = size, sharding
        self._stage = f"prefetch({size}{', sharding=...' if sharding is not None else ''})"
        tree = parent.spec.tree
        if sharding is not None:
            tree = jtu.tree_map(lambda a: retype(a, jax.Array), tree)
        self.spec = ElementSpec(tree)

    def _length(self) -> int | None:
        return self._parents[0]._length()

    def _open(self, epoch: int, state: State | None) -> Iter:
        return _PrefetchIter(self, epoch, state)


_DONE = object()


class _PrefetchIter(Iter):
    """The producer thread puts ``(item, parent_state_after_it)``; the state of the consumer
    is the state recorded with the last item it took, so resuming loses and repeats nothing."""

    def __init__(self, ds: Prefetch, epoch: int, state: State | None):
        self.ds = ds
        self.parent = ds._parents[0]._open(epoch, state["parent"] if state else None)
        self.last: State = {"parent": self.parent.state()}
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=ds.size)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _produce(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    value, origin = self.parent.next()
                except StopIteration:
                    self._put(_DONE)
                    return
                if self.ds.sharding is not None:
                    value = jax.device_put(value, self.ds.sharding)
                self._put(((value, origin), {"parent": self.parent.state()}))
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def _put(self, obj: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(obj, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> Item:
        if self.thread is None:
            self.thread = threading.Thread(target=self._produce, name="shapesafe-prefetch", daemon=True)
            self.thread.start()
        got = self.queue.get()
        if got is _DONE:
            self.queue.put(_DONE)
            raise StopIteration
        if isinstance(got, BaseException):
            raise got
        item, self.last = got
        return item

    def state(self) -> State:
        return self.last

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.parent.close()
