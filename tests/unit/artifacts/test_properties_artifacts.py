"""Damaged and hand-edited artifacts: random byte flips and truncations of any file, and random
JSON field mutations (with the hashes recomputed, so they pass verification) of a saved model,
a saved predictor and an export. Loading raises ``ss.ArtifactError`` or gives a verified
model that runs (or refuses an input with ``ss.ShapeError``), never another exception, and
never runs code from the artifact (a mutation that would, touches a canary file).

Run many more with ``pytest --hypothesis-profile=long``.
"""

import functools
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import hypothesis_scale
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L

CANARY = Path(tempfile.gettempdir()) / "shapesafe-artifact-canary"
PAYLOAD = f"__import__('pathlib').Path({str(CANARY)!r}).touch()"
JSON_FILES = {
    "model": ["manifest.json", "architecture.json", "metrics.json"],
    "predictor": ["manifest.json", "architecture.json", "predictor.json", "metrics.json"],
    "export": ["export.json"],
}
VALUES = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            0,
            -1,
            1,
            2**31,
            2**70,
            1.5,
            float("nan"),
            "",
            "__",
            "batch __",
            PAYLOAD,
            "... 3",
            "batch 0",
            [],
            [1, 2],
            {},
            {"layer": "Linear"},
            {"dtype": "float32"},
            {"dtype": "float32", "dims": PAYLOAD},
            {"dtype": "float99", "dims": "batch 3"},
        ]
    ),
    st.integers(-5, 70),
    st.text(max_size=8),
)


@functools.cache
def originals() -> dict[str, Path]:
    """A model, a predictor and an export, saved once per session."""
    root = Path(tempfile.mkdtemp(prefix="shapesafe-artifacts-"))
    net = L.Conv2D(2, 3, padding="same") >> L.ReLU() >> L.GlobalAvgPool() >> L.Linear(3)
    model = ss.build(net, Float32[Array, "batch 6 6 1"], seed=0)
    clf = ss.Predictor(model, decoder=ss.decoders.Labels(("a", "b", "c")))
    ss.save(model, root / "model")
    ss.save(clf, root / "predictor")
    ss.export(model, root / "export", platforms=("cpu",))
    return {"model": root / "model", "predictor": root / "predictor", "export": root / "export"}


def rehash(path: Path) -> None:
    """Recompute every hash the manifest lists, as a careful hand edit would."""
    manifest = path / "manifest.json"
    m = json.loads(manifest.read_text())
    files = m.get("files") if isinstance(m, dict) else None
    if not isinstance(files, dict):
        return
    for name, entry in files.items():
        if isinstance(entry, dict) and isinstance(name, str) and (path / name).is_file():
            data = (path / name).read_bytes()
            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    manifest.write_text(json.dumps(m))


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255), st.booleans()),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0), st.booleans()),
    st.tuples(st.just("json"), st.integers(0, 10**6), VALUES, st.booleans()),
)


def mutate(path: Path, kind: str, mutation: tuple[Any, ...]) -> str:
    """Apply one mutation to a copy of an artifact; returns what it did (for failure messages)."""
    op, where, value, flag = mutation
    if op == "json":
        name = JSON_FILES[kind][where % len(JSON_FILES[kind])]
        doc = json.loads((path / name).read_text())
        paths = _paths(doc)
        target = paths[(where // 7) % len(paths)]
        delete = flag and bool(target)
        doc = _set(doc, target, value, delete)
        (path / name).write_text(json.dumps(doc))
        if kind != "export" and name != "manifest.json":
            rehash(path)
        elif kind != "export":
            rehash(path)  # the manifest hashes the others, so its own edits stay consistent
        return f"{name}: {'deleted' if delete else 'set'} {list(target)} {'' if delete else '= ' + repr(value)[:60]}"
    files = sorted(p for p in path.iterdir() if p.is_file())
    file = files[where % len(files)]
    data = bytearray(file.read_bytes())
    if op == "flip" and data:
        i = (where // 7) % len(data)
        data[i] ^= value
    else:
        data = data[: (where // 7) % max(1, len(data))]
    file.write_bytes(bytes(data))
    if flag and kind != "export" and file.name != "manifest.json":
        rehash(path)  # a careful edit: the damage now passes the hashes
    return f"{op} {file.name} at {where // 7}{' (rehashed)' if flag else ''}"


def check_load(kind: str, mutation: tuple[Any, ...]) -> str:
    """Load a mutated copy: ArtifactError, or a verified load that runs; returns which."""
    CANARY.unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shapesafe-mutated-"))
    try:
        path = work / kind
        shutil.copytree(originals()[kind], path)
        did = mutate(path, kind, mutation)
        try:
            loaded = ss.load_exported(path) if kind == "export" else ss.load(path)
        except ss.ArtifactError as e:
            assert str(path) in str(e) or "json" in str(e), f"{did}: the message names no file: {e}"
            return "ArtifactError"
        except Exception as e:
            pytest.fail(f"{kind}, {did}: a raw {type(e).__name__}: {e}")
        model = loaded.model if isinstance(loaded, ss.Predictor) else loaded
        try:
            y = model(jnp.zeros((2, 6, 6, 1), jnp.float32))
            assert np.asarray(y).shape[0] == 2
        except (ss.ShapeError, ss.ArtifactError):
            pass
        except Exception as e:
            pytest.fail(f"{kind}, {did}: loaded, then a raw {type(e).__name__} when called: {e}")
        return "loaded"
    finally:
        shutil.rmtree(work, ignore_errors=True)
        assert not CANARY.exists(), f"{kind}, {mutation}: loading ran code from the artifact"


@settings(max_examples=30 * hypothesis_scale())
@given(kind=st.sampled_from(["model", "predictor", "export"]), mutation=mutations)
def test_damaged_or_edited_artifacts_raise_only_artifact_errors(
    kind: str, mutation: tuple[Any, ...]
) -> None:
    check_load(kind, mutation)


def test_the_property_is_not_vacuous() -> None:
    """Unmutated copies load; a flipped weight byte is refused, and so is a rehashed bad field."""
    assert check_load("model", ("json", 2 * 7, 0.5, False)) == "loaded"  # metrics.json's value
    assert check_load("predictor", ("flip", 7 * 10**3 + 3, 1, False)) == "ArtifactError"
    assert check_load("model", ("json", 1, {"dtype": "float32", "dims": PAYLOAD}, False)) in (
        "ArtifactError",
        "loaded",
    )
    assert not CANARY.exists()
