"""``prefetch``: a background thread that keeps the next elements ready (optionally on device).

When an epoch's last element has been produced, the thread goes on with the first elements
of the next epoch (up to ``size``), which ``epoch(e + 1)`` then takes over, so a training
loop's first step of every epoch does not wait for the pipeline to start again. A consumer
that opens the same epoch again (an evaluation set, iterated with ``iter(ds)``) does not
get that read-ahead after the first time.
"""

import queue
import threading
import weakref
from typing import Any

import jax
import jax.tree_util as jtu

from ._dataset import Dataset, Item, Iter, State, stage
from ._element_spec import ElementSpec, retype


@stage("prefetch")
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
        self.lock = threading.Lock()
        self.ahead: _PrefetchIter | None = None  # the next epoch, started early
        self.last_epoch: int | None = None

    def _length(self) -> int | None:
        return self._parents[0]._length()

    def _open(self, epoch: int, state: State | None) -> Iter:
        with self.lock:
            ahead, self.ahead = self.ahead, None
            repeated, self.last_epoch = self.last_epoch == epoch, epoch
        if ahead is not None:
            if state is None and ahead.epoch == epoch:
                return ahead
            ahead.close()
        return _PrefetchIter(self, epoch, state, read_ahead=not repeated)

    def start_ahead(self, epoch: int) -> None:
        """Start producing ``epoch`` now (called when the epoch before it is done)."""
        with self.lock:
            if self.ahead is not None:
                return
            ahead = self.ahead = _PrefetchIter(self, epoch, None, read_ahead=True)
        weakref.finalize(self, ahead.stop.set)  # a dataset dropped before its next epoch: stop
        ahead.start()


_DONE = object()


class _PrefetchIter(Iter):
    """The producer thread puts ``(item, parent_state_after_it)``; the state of the consumer
    is the state recorded with the last item it took, so resuming loses and repeats nothing."""

    def __init__(self, ds: Prefetch, epoch: int, state: State | None, *, read_ahead: bool):
        # the dataset only weakly: a thread reading ahead must not keep a dropped dataset alive
        self.ds, self.sharding = weakref.ref(ds), ds.sharding
        self.epoch, self.read_ahead = epoch, read_ahead
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
                    ds = self.ds()
                    if ds is not None and self.read_ahead and not self.stop.is_set():
                        ds.start_ahead(self.epoch + 1)
                    return
                if self.sharding is not None:
                    value = jax.device_put(value, self.sharding)
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

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._produce, name="shapesafe-prefetch", daemon=True
            )
            self.thread.start()

    def next(self) -> Item:
        self.start()
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
