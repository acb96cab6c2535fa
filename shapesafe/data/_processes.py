"""``map(fn, workers=n, processes=True)``: ``fn`` in worker processes, for pure-Python
functions that hold the GIL (threads then take turns instead of running at once).

Elements and results are pickled to and from the workers; the pipeline upstream (e.g. image
decoding) still runs in this process's threads, and the output order stays the input order.
Workers are started with ``spawn`` (a fork of a process running JAX's threads can deadlock),
so ``fn`` must be importable: defined at the top level of a module, not a lambda, a local
function or a function typed into a notebook; and, as with any ``spawn`` pool, a script
that iterates such a dataset needs the ``if __name__ == "__main__":`` guard (each worker
imports the main module).
"""

import concurrent.futures as cf
import multiprocessing
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

from ._calls import Invoke, fn_name


def check_picklable(invoke: Invoke, fn: Callable[..., Any], where: str) -> None:
    """Raise ``ValueError`` naming ``fn`` and the fix unless worker processes can receive it."""
    name = fn_name(fn)
    fix = (
        f"Define {name} at the top level of an importable module (a .py file; not a lambda, a "
        "function inside another function, or a notebook cell), or use threads (processes=False)."
    )
    inner = getattr(fn, "func", fn)
    if getattr(inner, "__module__", None) == "__main__" and not hasattr(
        sys.modules["__main__"], "__file__"
    ):
        raise ValueError(
            f"{where}: processes=True runs {name} in worker processes, which cannot import it from "
            f"an interactive session. {fix}"
        )
    try:
        pickle.dumps(invoke)
    except Exception as e:  # PicklingError, AttributeError ("local object"), TypeError
        raise ValueError(
            f"{where}: processes=True sends {name} to worker processes, but it cannot be "
            f"pickled ({type(e).__name__}: {e}). {fix}"
        ) from e


_POOLS: dict[int, cf.ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def pool(workers: int) -> cf.ProcessPoolExecutor:
    """The process pool of ``workers`` workers, started on first use and shared by every
    ``map(..., processes=True)`` with that many (starting a worker costs an interpreter and
    its imports, so datasets built again, e.g. per epoch or per test, reuse them)."""
    with _POOLS_LOCK:
        found = _POOLS.get(workers)
        if found is None or getattr(found, "_broken", False):
            found = _POOLS[workers] = cf.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            )
        return found


class ProcessRunner:
    """Runs one ``Invoke`` on the shared pool of ``workers`` processes."""

    def __init__(self, invoke: Invoke, workers: int):
        self.invoke, self.workers = invoke, workers

    def __call__(self, value: Any, rng_seed: tuple[int, ...]) -> Any:
        return pool(self.workers).submit(self.invoke, value, rng_seed).result()
