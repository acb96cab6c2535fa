"""Fault injection: a real process killed (SIGKILL) at every write and rename boundary of a
save, a checkpoint and an export over an earlier version; the earlier (or the new) version
loads, and no debris is left once it has been read or written again.

Boundaries (``shapesafe._persist._atomic``): ``writing`` (the first file written into the
fresh directory), ``written`` (all written and synced), ``aside`` (the old version renamed
aside: nothing at the path), ``swapped`` (the new version renamed in). Run this file as a
script to print the (operation, boundary, outcome) table:
``python tests/unit/persist/test_faults.py``.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._persist import load_latest, save_checkpoint

BOUNDARIES = ["writing", "written", "aside", "swapped"]
# what the path holds after a kill there and recovery: the swap happens at "swapped"
EXPECTED = {"writing": "old", "written": "old", "aside": "old", "swapped": "new"}
OPERATIONS = ["save", "checkpoint", "export"]

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


def _save(tmp_path: Path, boundary: str) -> str:
    old = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=0)
    new = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=1)
    path = tmp_path / "artifacts" / "1"
    ss.save(old, path)
    _kill_at(boundary, "save", path)
    left = "no artifact at the path" if not path.exists() else "an artifact at the path"
    if boundary == "aside":
        assert not path.exists()  # the kill left no artifact at the path: load must recover it
    debris = len(_debris(path.parent))
    loaded = ss.load(path)
    want = old if EXPECTED[boundary] == "old" else new
    np.testing.assert_array_equal(_kernel(loaded), _kernel(want))
    assert _debris(path.parent) == []
    return f"{left}, {debris} debris; load gives the {EXPECTED[boundary]} version, debris removed"


def _export(tmp_path: Path, boundary: str) -> str:
    old = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=0)
    path = tmp_path / "served"
    ss.export(old, path, platforms=("cpu",))
    _kill_at(boundary, "export", path)
    left = "no export at the path" if not path.exists() else "an export at the path"
    debris = len(_debris(tmp_path))
    served = ss.load_exported(path)
    x = jnp.ones((2, 4), jnp.float32)
    new = ss.build(L.Linear(3), Float32[Array, "batch 4"], seed=1)
    want = old(x) if EXPECTED[boundary] == "old" else new(x)
    np.testing.assert_allclose(np.asarray(served(x)), np.asarray(want), rtol=1e-6)
    assert _debris(tmp_path) == []
    return f"{left}, {debris} debris; load_exported gives the {EXPECTED[boundary]} version, debris removed"


def _checkpoint(tmp_path: Path, boundary: str) -> str:
    save_checkpoint(tmp_path, step=5, trees={"w": jnp.full(3, 1.0)}, meta={"run": "old"})
    _kill_at(boundary, "checkpoint", tmp_path)
    debris = len(_debris(tmp_path))
    trees, meta = load_latest(tmp_path, like={"w": jnp.zeros(3)})  # type: ignore[misc]
    assert meta == {"run": EXPECTED[boundary]}
    assert trees["w"].tolist() == ([1.0] * 3 if EXPECTED[boundary] == "old" else [2.0] * 3)
    save_checkpoint(tmp_path, step=6, trees={"w": jnp.full(3, 3.0)}, meta={"run": "next"})
    assert _debris(tmp_path) == []
    return f"{debris} debris; load_latest gives the {EXPECTED[boundary]} step, the next save removes the debris"


RUN = {"save": _save, "export": _export, "checkpoint": _checkpoint}


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("what", OPERATIONS)
def test_killed_at_each_boundary(tmp_path: Path, what: str, boundary: str) -> None:
    RUN[what](tmp_path, boundary)


def test_a_first_save_killed_before_its_swap_leaves_nothing_and_no_debris(tmp_path: Path) -> None:
    path = tmp_path / "artifacts" / "1"
    path.parent.mkdir(parents=True)
    _kill_at("written", "save", path)
    assert _debris(path.parent) != []
    with pytest.raises(
        ss.ArtifactError, match=r"is not an artifact directory \(it does not exist\)"
    ):
        ss.load(path)
    assert _debris(path.parent) == []  # the killed save's .tmp-* is gone


if __name__ == "__main__":  # the table: python tests/unit/persist/test_faults.py
    rows = []
    for what in OPERATIONS:
        for boundary in BOUNDARIES:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(
                    {
                        "operation": what,
                        "boundary": boundary,
                        "outcome": RUN[what](Path(tmp), boundary),
                    }
                )
    print(json.dumps(rows, indent=1))
