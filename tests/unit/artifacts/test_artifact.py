"""ss.save / ss.load: versioned artifact directories that are data, verified, and never executed."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jaxtyping import Array, Float32, UInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._artifacts._serialize import blueprint_from_json, blueprint_to_json, registry

NAMES = ["cat", "dog"]
NET = (
    L.Rescale(1 / 255)
    >> L.Conv2D(4, 3, padding="same")
    >> L.BatchNorm()
    >> L.ReLU()
    >> L.MaxPool(2)
    >> L.Flatten()
    >> L.Dropout(0.3)
    >> L.Linear(2).named("head")
)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def built():
    model = ss.build(NET, UInt8[Array, "batch 8 8 3"], seed=0)
    bn = model.layers[2]
    bn.mean[...] = jnp.linspace(-0.5, 0.5, 4)  # non-trivial running statistics must travel too
    bn.var[...] = jnp.linspace(0.5, 2.0, 4)
    return model


@pytest.fixture
def clf(built):
    return ss.Predictor(built, ss.encoders.Image(size=(8, 8)), ss.decoders.Labels(NAMES))


@pytest.fixture
def saved(clf, tmp_path):
    path = tmp_path / "logo" / "1"
    ss.save(clf, path, metrics={"accuracy": 0.75})
    return path


def _rehash(path, name: str) -> None:
    """Update the manifest's hash of ``name`` after a test edits it (to reach the deeper checks)."""
    manifest = json.loads((path / "manifest.json").read_text())
    data = (path / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (path / "manifest.json").write_text(json.dumps(manifest))


def _edit_architecture(path, edit) -> None:
    arch = json.loads((path / "architecture.json").read_text())
    edit(arch)
    (path / "architecture.json").write_text(json.dumps(arch))
    _rehash(path, "architecture.json")


def test_the_artifact_directory(saved):
    names = sorted(os.listdir(saved))
    assert names == [
        "architecture.json",
        "manifest.json",
        "metrics.json",
        "predictor.json",
        "weights.safetensors",
    ]
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["format"] == "shapesafe.artifact" and manifest["format_version"] == 1
    assert manifest["version"] == "1" and manifest["kind"] == "predictor"
    assert set(manifest["versions"]) >= {"shapesafe", "jax", "jaxlib", "flax"}
    for name in names[:1] + names[2:]:
        assert (
            manifest["files"][name]["sha256"]
            == hashlib.sha256((saved / name).read_bytes()).hexdigest()
        )
    arch = json.loads((saved / "architecture.json").read_text())
    assert arch["input_spec"] == {"dtype": "uint8", "dims": "batch 8 8 3"}
    assert arch["output_spec"] == {"dtype": "float32", "dims": "batch 2"}
    assert arch["blueprint"]["layers"][1] == {
        "layer": "Conv2D",
        "filters": 4,
        "kernel": [3, 3],
        "strides": [1, 1],
        "padding": "same",
        "dilation": [1, 1],
        "use_bias": True,
        "name": None,
    }
    predictor = json.loads((saved / "predictor.json").read_text())
    assert predictor["class_names"] == NAMES and predictor["encoder"]["size"] == [8, 8]
    import safetensors.numpy

    weights = safetensors.numpy.load_file(str(saved / "weights.safetensors"))
    assert {
        "layers.1.kernel",
        "layers.2.mean",
        "layers.2.var",
        "layers.7.kernel",
        "layers.6.rngs.key",
    } <= set(weights)


def test_load_in_a_fresh_process_gives_identical_outputs(clf, saved, tmp_path):
    x = _images(5)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import json, numpy as np, shapesafe as ss
        clf = ss.load({str(saved)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y.npy")!r}, clf.outputs(list(x)))
        print(json.dumps({{"labels": [p.label for p in clf(list(x))], "metrics": clf.metrics,
                          "version": clf.version, "mode": clf.model.layers[2].use_running_average}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), clf.outputs(list(x)))
    assert report == {
        "labels": [p.label for p in clf(list(x))],
        "metrics": {"accuracy": 0.75},
        "version": "1",
        "mode": True,
    }


def test_a_model_round_trips_and_loads_in_eval_mode(tmp_path):
    model = ss.build(
        L.Linear(3) >> L.Dropout(0.5) >> L.Linear(2), Float32[Array, "batch 4"], seed=1
    )
    ss.save(model, tmp_path / "m", version="2024-06-01")
    again = ss.load(tmp_path / "m")
    assert isinstance(again, ss.Model) and again.layers[1].deterministic
    x = jnp.ones((2, 4))
    model.eval()
    np.testing.assert_array_equal(again(x), model(x))
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["version"] == "2024-06-01"


COMPOSITE = [
    L.Residual(L.Conv2D(4, 3, padding="same") >> L.ReLU(), shortcut=L.Conv2D(4, 1))
    >> L.GlobalAvgPool()
    >> L.LayerNorm()
    >> L.Linear(3),
    L.Concat([L.Flatten() >> L.Linear(2), L.Flatten() >> L.Linear(3)]) >> L.GELU(approximate=True),
    L.Add([L.Flatten() >> L.Linear(2), L.Flatten() >> L.Linear(2).named("b")]) >> L.Softmax(),
    L.AvgPool((2, 2), strides=1, padding=((1, 0), (0, 1)))
    >> L.Reshape((-1, 3))
    >> L.LSTM(5)
    >> L.LeakyReLU(0.2),
    L.Cast(jnp.bfloat16)
    >> L.Rescale(0.5, 1.0, dtype=jnp.float32)
    >> L.Reshape((-1, 3))
    >> L.GRU(4, return_sequences=True)
    >> L.Conv1D(2, 3, padding="causal")
    >> L.Sigmoid()
    >> L.Tanh(),
]


@pytest.mark.parametrize(
    "blueprint", COMPOSITE, ids=["residual", "concat", "add", "pool-lstm", "cast-gru-conv1d"]
)
def test_every_kind_of_blueprint_round_trips_through_json(blueprint):
    text = json.dumps(blueprint_to_json(blueprint))
    assert blueprint_from_json(json.loads(text)) == blueprint


def test_a_composite_model_round_trips(tmp_path):
    blueprint = (
        L.Residual(L.Conv2D(3, 3, padding="same"), shortcut=L.Conv2D(3, 1))
        >> L.LayerNorm()
        >> L.Reshape((-1, 3))
        >> L.Concat([L.GRU(2), L.LSTM(2)])
        >> L.Add([L.Linear(2), L.Linear(2) >> L.Softmax()])
    )
    model = ss.build(blueprint, Float32[Array, "batch 4 4 3"], seed=0)
    ss.save(model, tmp_path / "a")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    model.eval()
    np.testing.assert_array_equal(ss.load(tmp_path / "a")(jnp.asarray(x)), model(jnp.asarray(x)))


def test_embedding_round_trips():
    bp = L.Embedding(10, 4) >> L.Flatten()
    assert blueprint_from_json(json.loads(json.dumps(blueprint_to_json(bp)))) == bp


def test_the_registry_holds_every_public_blueprint_but_user_code():
    public = {
        n
        for n in dir(L)
        if isinstance(getattr(L, n), type) and issubclass(getattr(L, n), L.Blueprint)
    }
    assert set(registry()) == public - {"Blueprint", "Custom", "Function"}


def test_saving_and_loading_never_hold_the_weights_twice(tmp_path):
    """The weights stream to and from the file (benchmarks/artifact_memory.py measures the 250 px CNN)."""
    import tracemalloc

    model = ss.build(
        L.Linear(2048) >> L.Linear(2), Float32[Array, "batch 2048"], seed=0
    )  # 16 MiB of weights
    weights = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(nnx.state(model)))
    tracemalloc.start()
    try:
        ss.save(model, tmp_path / "m")
        _, saving = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loaded = ss.load(tmp_path / "m")
        _, loading = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert saving < 0.1 * weights, (
        saving,
        weights,
    )  # was 2x: the whole file as bytes, then written
    assert loading < 1.2 * weights, (
        loading,
        weights,
    )  # the weights themselves (the arrays JAX uses); was 3x
    x = jnp.ones((1, 2048))
    np.testing.assert_array_equal(loaded(x), model(x))


# -- bad input: each a clear error naming the file --------------------------------------------------


def test_missing_weights(saved):
    (saved / "weights.safetensors").unlink()
    with pytest.raises(
        ss.ArtifactError, match=r"weights\.safetensors is missing \(the manifest lists it\)"
    ):
        ss.load(saved)


def test_truncated_weights(saved):
    data = (saved / "weights.safetensors").read_bytes()
    (saved / "weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ss.ArtifactError,
        match=r"weights\.safetensors does not match the SHA-256 in manifest\.json "
        rf"\({len(data) // 2} bytes, the manifest says {len(data)}\): "
        "it was truncated or modified",
    ):
        ss.load(saved)


def test_tampered_weights(saved):
    data = bytearray((saved / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (saved / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ss.ArtifactError, match=r"weights\.safetensors does not match the SHA-256"):
        ss.load(saved)


def test_garbage_weights_with_a_matching_hash(saved):
    (saved / "weights.safetensors").write_bytes(b"\x00" * 16)
    _rehash(saved, "weights.safetensors")
    with pytest.raises(
        ss.ArtifactError, match=r"weights\.safetensors is not a readable safetensors file"
    ):
        ss.load(saved)


def test_a_newer_format(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ss.ArtifactError,
        match=r"manifest\.json: the artifact has format version 99, newer than "
        r"this shapesafe reads \(1\).*Upgrade shapesafe",
    ):
        ss.load(saved)


def test_an_unknown_layer(saved):
    def edit(arch):
        arch["blueprint"]["layers"][3] = {"layer": "QuantumReLU", "name": None}

    _edit_architecture(saved, edit)
    with pytest.raises(
        ss.ArtifactError,
        match=r"architecture\.json: blueprint\.layers\[3\] names an unknown layer "
        r"'QuantumReLU'.*Known layers: .*Conv2D",
    ):
        ss.load(saved)


def test_user_code_layers_are_named_as_such(saved):
    def edit(arch):
        arch["blueprint"]["layers"][3] = {"layer": "Function", "fn": "os.system", "name": None}

    _edit_architecture(saved, edit)
    with pytest.raises(
        ss.ArtifactError,
        match=r"unknown layer 'Function'\. It holds user code, which artifacts "
        "never store",
    ):
        ss.load(saved)


def test_shapes_that_do_not_match_the_weights(saved):
    def edit(arch):
        arch["blueprint"]["layers"][1]["filters"] = 5  # the weights hold 4 filters

    _edit_architecture(saved, edit)
    with pytest.raises(
        ss.ArtifactError,
        match=r"weights\.safetensors does not fit the architecture in .*"
        r"architecture\.json: \d+ arrays differ.*\n"
        r"  layers\.1\.bias: the architecture has float32\[5\], "
        r"the weights file has float32\[4\]",
    ):
        ss.load(saved)


def test_specs_that_do_not_match(saved):
    def edit(arch):
        arch["output_spec"]["dims"] = "batch 3"

    _edit_architecture(saved, edit)
    with pytest.raises(
        ss.ArtifactError,
        match=r"the rebuilt model returns Float32\[batch, 2\], but the artifact "
        r"records Float32\[batch, 3\]",
    ):
        ss.load(saved)


def test_a_symlink_out_of_the_artifact(saved, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes((saved / "weights.safetensors").read_bytes())  # even with the right content
    (saved / "weights.safetensors").unlink()
    (saved / "weights.safetensors").symlink_to(outside)
    with pytest.raises(
        ss.ArtifactError,
        match=r"weights\.safetensors is a symlink to .*elsewhere\.safetensors, "
        "outside the artifact",
    ):
        ss.load(saved)


def test_a_manifest_that_lists_a_path_outside(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["files"]["../secret"] = {"sha256": "0", "bytes": 1}
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ss.ArtifactError, match=r"lists '\.\./secret', which is not a plain file name"
    ):
        ss.load(saved)


def test_not_an_artifact(tmp_path):
    with pytest.raises(
        ss.ArtifactError, match=r"is not an artifact directory \(it does not exist\)"
    ):
        ss.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        ss.ArtifactError, match=r"is not a shapesafe artifact: manifest\.json is missing"
    ):
        ss.load(tmp_path / "empty")


# -- failed saves leave the previous version -----------------------------------------------------


def _double(x: Float32[Array, "*batch n"]) -> Float32[Array, "*batch n"]:
    return 2 * x


def test_user_code_cannot_be_saved_and_the_previous_version_stays(clf, saved):
    before = clf.outputs(list(_images(3)))
    model = ss.build(
        L.Flatten() >> L.Cast(jnp.float32) >> L.Linear(2) >> _double, UInt8[Array, "batch 8 8 3"]
    )
    with pytest.raises(
        ss.ArtifactError,
        match=r"it contains Function\(_double\), a layer made from user code "
        r"\(Function\), and an artifact stores the architecture as JSON",
    ):
        ss.save(model, saved, overwrite=True)
    np.testing.assert_array_equal(ss.load(saved).outputs(list(_images(3))), before)
    assert sorted(os.listdir(saved.parent)) == ["1"]


def test_a_crash_while_writing_keeps_the_previous_version(clf, saved, monkeypatch):
    from flax import nnx

    import shapesafe._artifacts._artifact as artifact

    before = clf.outputs(list(_images(3)))
    clf = ss.Predictor(nnx.clone(clf.model), clf.encoder, clf.decoder)
    clf.model.layers[-1].kernel[...] = jnp.zeros_like(clf.model.layers[-1].kernel[...])
    calls = []

    def failing_write(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        with open(path, "wb") as f:
            f.write(data)

    monkeypatch.setattr(artifact, "write_file", failing_write)
    with pytest.raises(OSError, match="No space left"):
        ss.save(clf, saved, metrics={"accuracy": 0.1}, overwrite=True)
    monkeypatch.undo()
    again = ss.load(saved)
    np.testing.assert_array_equal(again.outputs(list(_images(3))), before)
    assert again.metrics == {"accuracy": 0.75}
    assert sorted(os.listdir(saved.parent)) == ["1"]  # no temporary directory left behind
    ss.save(clf, saved, overwrite=True)  # a later save replaces it
    assert not np.array_equal(ss.load(saved).outputs(list(_images(3))), before)


def test_bad_metrics_write_nothing(clf, tmp_path):
    with pytest.raises(ss.ArtifactError, match=r"metrics is not JSON-serialisable"):
        ss.save(clf, tmp_path / "a", metrics={"accuracy": object()})
    assert not (tmp_path / "a").exists()


def test_save_refuses_to_replace_something_else(clf, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(ss.ArtifactError, match=r"docs: it exists and is not a shapesafe artifact"):
        ss.save(clf, tmp_path / "docs")
    assert (tmp_path / "docs" / "notes.txt").read_text() == "mine"
