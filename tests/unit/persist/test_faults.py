"""Fault injection: a real process killed (SIGKILL) at every rename boundary of a save, a
checkpoint and an export over an earlier version; the earlier (or the new) version loads, and
no debris is left once it has been read or written again."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._persist import load_latest, save_checkpoint

BOUNDARIES = ["written", "aside", "swapped"]
# what the path holds after a kill there and recovery: the swap happens at "swapped"
EXPECTED = {"written": "old", "aside": "old", "swapped": "new"}

CHILD = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    from jaxtyping import Array, Float32
    import shapesafe as ss
    from shapesafe import layers as L
    from shapesafe._persist import save_checkpoint
    what, path = sys.argv[1], sys.argv[2]
    model = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=1)
    if what == "save":
        ss.save(model, path, overwrite=True)  # replaces the old version
    elif what == "export":
        ss.export(model, path, platforms=("cpu",))
    else:
        save_checkpoint(path, step=5, trees={"w": jnp.full(3, 2.0)}, meta={"run": "new"})
    print("finished", flush=True)
""")


def _kill_at(boundary: str, what: str, path: Path) -> None:
    env = {**os.environ, "SHAPESAFE_PAUSE_AT": boundary, "JAX_PLATFORMS": "cpu"}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, what, str(path)], env=env, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        line = child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert line.strip() == f"paused at {boundary}", line


def _debris(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-")))


def _kernel(model: object) -> np.ndarray:
    return np.asarray(model.layers[0].kernel[...])  # type: ignore[attr-defined]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_save_killed_at_each_boundary(tmp_path: Path, boundary: str) -> None:
    old = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=0)
    new = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=1)
    path = tmp_path / "artifacts" / "1"
    ss.save(old, path)
    _kill_at(boundary, "save", path)
    if boundary == "aside":
        assert not path.exists()  # the kill left no artifact at the path: load must recover it
    loaded = ss.load(path)
    want = old if EXPECTED[boundary] == "old" else new
    np.testing.assert_array_equal(_kernel(loaded), _kernel(want))
    assert _debris(path.parent) == []


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_export_killed_at_each_boundary(tmp_path: Path, boundary: str) -> None:
    old = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=0)
    path = tmp_path / "served"
    ss.export(old, path, platforms=("cpu",))
    _kill_at(boundary, "export", path)
    served = ss.load_exported(path)
    x = jnp.ones((2, 4), jnp.float32)
    new = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=1)
    want = old(x) if EXPECTED[boundary] == "old" else new(x)
    np.testing.assert_allclose(np.asarray(served(x)), np.asarray(want), rtol=1e-6)
    assert _debris(tmp_path) == []


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_checkpoint_killed_at_each_boundary(tmp_path: Path, boundary: str) -> None:
    save_checkpoint(tmp_path, step=5, trees={"w": jnp.full(3, 1.0)}, meta={"run": "old"})
    _kill_at(boundary, "checkpoint", tmp_path)
    trees, meta = load_latest(tmp_path, like={"w": jnp.zeros(3)})  # type: ignore[misc]
    assert meta == {"run": EXPECTED[boundary]}
    assert trees["w"].tolist() == ([1.0] * 3 if EXPECTED[boundary] == "old" else [2.0] * 3)
    save_checkpoint(tmp_path, step=6, trees={"w": jnp.full(3, 3.0)}, meta={"run": "next"})
    assert _debris(tmp_path) == []
