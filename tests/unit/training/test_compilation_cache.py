"""``ss.compilation_cache``: a second process loads fit's compiled step from disk (JAX's
persistent compilation cache reports the hit) instead of compiling it."""

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import jax, numpy as np, optax
    import shapesafe as ss
    from shapesafe import layers as L
    from jaxtyping import Array, Float32

    ss.compilation_cache(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
    x = np.ones((8, 4), np.float32)
    y = np.zeros((8,), np.int32)
    model = ss.build(L.Linear(2), Float32[Array, "batch 4"], seed=0)
    with jax.log_compiles():
        ss.fit(model, [(x, y)], loss=ss.losses.cross_entropy, optimizer=optax.sgd(0.1),
               epochs=1, progress=False)
    """
)


def _run(cache: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


def test_a_second_process_loads_the_train_step_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "xla"
    first = _run(cache)
    assert "cache hit for 'jit_train_step'" not in first
    assert any(cache.iterdir())  # the programs were written
    second = _run(cache)
    assert "Persistent compilation cache hit for 'jit_train_step'" in second
