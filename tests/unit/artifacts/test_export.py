"""ss.export / ss.load_exported: StableHLO with a symbolic batch, served without the model's code."""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float32, UInt8

import shapesafe as ss
from shapesafe import layers as L

NAMES = ["cat", "dog"]


@pytest.fixture(scope="module")
def clf():
    net = (
        L.Rescale(1 / 255)
        >> L.Conv2D(4, 3)
        >> L.BatchNorm()
        >> L.ReLU()
        >> L.MaxPool(2)
        >> L.Flatten()
        >> L.Dropout(0.5)
        >> L.Linear(2)
    )
    model = ss.build(net, UInt8[Array, "batch 8 8 3"], seed=0)
    model.layers[2].mean[...] = jnp.full((4,), 0.3)
    return ss.Predictor(model, ss.encoders.Image(size=(8, 8)), ss.decoders.Labels(NAMES))


@pytest.fixture(scope="module")
def exported(clf, tmp_path_factory):
    return ss.export(clf, tmp_path_factory.mktemp("export") / "logo")


def _live(clf, x: np.ndarray) -> np.ndarray:
    """The live model's evaluation-mode outputs, computed directly (not through the predictor)."""
    model = clf.model
    model.eval()
    try:
        return np.asarray(model(jnp.asarray(x)))
    finally:
        model.train()


def test_the_export_record(exported):
    record = json.loads((exported / "export.json").read_text())
    assert record["versions"]["jaxlib"] == __import__("jaxlib").__version__
    assert record["platforms"] == ["cpu", "cuda"]  # made on a CPU: servable on a GPU too
    assert record["input_spec"] == {"dtype": "uint8", "dims": "batch 8 8 3"}
    assert record["decoder"]["names"] == NAMES and record["encoder"]["size"] == [8, 8]
    assert sorted(p.name for p in exported.iterdir()) == [
        "export.json",
        "model.stablehlo",
        "weights.npz",
    ]


def test_runs_in_a_process_that_imports_only_jax(clf, exported, tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import json, sys
        import jax, numpy as np
        root = {str(exported)!r}
        exp = jax.export.deserialize(bytearray(open(root + "/model.stablehlo", "rb").read()))
        record = json.load(open(root + "/export.json"))
        w = np.load(root + "/weights.npz", allow_pickle=False)
        weights = [w[d["name"]] for d in record["weights"]]
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "y5.npy")!r}, np.asarray(exp.call(weights, x)))
        np.save({str(tmp_path / "y2.npy")!r}, np.asarray(exp.call(weights, x[:2])))  # another batch size
        assert not any(m == "shapesafe" or m.startswith("shapesafe.") for m in sys.modules), "imported shapesafe"
        assert "flax" not in sys.modules
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    live = _live(clf, x)
    np.testing.assert_allclose(np.load(tmp_path / "y5.npy"), live, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "y2.npy"), live[:2], rtol=1e-5, atol=1e-6)


def test_load_exported_is_a_predictor_that_agrees_with_the_live_one(clf, exported):
    served = ss.load_exported(exported)
    assert isinstance(served, ss.Predictor)
    x = list(np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8))
    np.testing.assert_allclose(served.outputs(x), clf.outputs(x), rtol=1e-5, atol=1e-6)
    assert [p.label for p in served(x)] == [p.label for p in clf(x)]


def test_an_exported_model_checks_its_input(tmp_path):
    model = ss.build(L.Flatten() >> L.Linear(2), Float32[Array, "batch 3 2"])
    served = ss.load_exported(ss.export(model, tmp_path / "m"))
    assert served(jnp.ones((4, 3, 2))).shape == (4, 2)
    with pytest.raises(
        ss.ShapeError,
        match=r"the exported model takes Float32\[batch, 3, 2\], got float32\[4, 2, 3\]",
    ):
        served(jnp.ones((4, 2, 3)))


def test_a_tampered_export_is_refused(clf, tmp_path):
    path = ss.export(clf, tmp_path / "e")
    blob = bytearray((path / "model.stablehlo").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (path / "model.stablehlo").write_bytes(bytes(blob))
    with pytest.raises(
        ss.ArtifactError, match=r"model\.stablehlo does not match the SHA-256 in export\.json"
    ):
        ss.load_exported(path)
    with pytest.raises(
        ss.ArtifactError, match=r"is not a shapesafe export: export\.json is missing"
    ):
        ss.load_exported(tmp_path)


def test_exported_for_cpu_and_cuda_on_a_machine_without_a_gpu(clf, tmp_path):
    path = ss.export(clf, tmp_path / "both", platforms=("cpu", "cuda"))  # lowering needs no GPU
    record = json.loads((path / "export.json").read_text())
    assert record["platforms"] == ["cpu", "cuda"]
    served = ss.load_exported(path)
    assert served.model.exported.platforms == ("cpu", "cuda")
    x = np.random.default_rng(2).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(served.model(x), _live(clf, x), rtol=1e-5, atol=1e-6)


def test_an_export_for_another_platform_only_says_so(clf, tmp_path):
    other = "tpu" if jax.default_backend() != "tpu" else "cpu"  # lowering needs no such device
    served = ss.load_exported(ss.export(clf.model, tmp_path / "elsewhere", platforms=(other,)))
    with pytest.raises(
        ss.ArtifactError,
        match=rf"export\.json: the model was exported for {other} only, and this "
        r"JAX runs on \w+\. Export it again with ss\.export\(\.\.\., "
        r"platforms=\('\w+', \.\.\.\)\)",
    ):
        served(np.zeros((1, 8, 8, 3), np.uint8))
