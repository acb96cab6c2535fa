"""The artifact commands: ``shapesafe predict ARTIFACT FILE... [--json]`` and ``shapesafe info ARTIFACT``."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, UInt8
from PIL import Image

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._cli import main

NAMES = ["cat", "dog"]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = ss.build(
        L.Rescale(1 / 255) >> L.Flatten() >> L.Linear(2), UInt8[Array, "batch 6 6 3"], seed=0
    )
    # a hand-set model: class "dog" wins exactly when the mean red value exceeds 0.5
    kernel = np.zeros((108, 2), np.float32)
    kernel[0::3, 1] = 1 / 36
    model.layers[2].kernel[...] = jnp.asarray(kernel)
    model.layers[2].bias[...] = jnp.asarray([0.0, -0.5], jnp.float32)
    clf = ss.Predictor(model, ss.encoders.Image(size=(6, 6)), ss.decoders.Labels(NAMES))
    path = ss.save(clf, root / "logo" / "3", metrics={"accuracy": 0.9})
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "red.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "blue.jpg")
    (root / "notes.jpg").write_text("not an image")
    model_only = ss.save(model, root / "model" / "1")
    return path, root, model_only


def test_predict_prints_label_and_confidence_per_file(artifact, capsys):
    path, root, _ = artifact
    assert main(["predict", str(path), str(root / "red.png"), str(root / "blue.jpg")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    p_dog = 1 / (1 + np.exp(-0.5))  # logits (0, 1 - 0.5) for pure red
    assert lines[0] == f"{root / 'red.png'}\tdog\t{p_dog:.4f}"
    assert lines[1].startswith(f"{root / 'blue.jpg'}\tcat\t")


def test_predict_json_and_top_k(artifact, capsys):
    path, root, _ = artifact
    assert main(["predict", str(path), str(root / "red.png"), "--json", "--top-k", "2"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert found["file"] == str(root / "red.png") and found["label"] == "dog"
    assert [name for name, _ in found["top"]] == ["dog", "cat"]
    assert found["confidence"] == pytest.approx(1 / (1 + np.exp(-0.5)))


def test_predict_reports_an_unreadable_file_and_goes_on(artifact, capsys):
    path, root, _ = artifact
    assert (
        main(["predict", str(path), str(root / "notes.jpg"), str(root / "red.png"), "--json"]) == 1
    )
    out = capsys.readouterr()
    assert [r["label"] for r in json.loads(out.out)] == ["dog"]
    assert (
        f"{root / 'notes.jpg'}: Predictor: cannot read '{root / 'notes.jpg'}': not an image format"
        in out.err
    )


def test_predict_refuses_a_model_without_an_encoder(artifact, capsys):
    _, root, model_only = artifact
    assert main(["predict", str(model_only), str(root / "red.png")]) == 2
    assert "holds a model without an encoder" in capsys.readouterr().err


def test_info_shows_specs_versions_metrics_and_hashes(artifact, capsys):
    path, _, _ = artifact
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "version        3 (predictor, format 1)" in out
    assert "input          UInt8[batch, 6, 6, 3]" in out
    assert "output         Float32[batch, 2]" in out
    assert "classes        cat, dog" in out
    assert "metrics        accuracy=0.9" in out
    assert "jax " in out and "flax " in out
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["files"]["weights.safetensors"]["sha256"] in out
    assert main(["info", str(path), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["preprocessing"]["size"] == [6, 6] and found["class_names"] == NAMES


def test_a_tampered_artifact_exits_2_with_the_reason(artifact, capsys, tmp_path):
    path, root, _ = artifact
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "weights.safetensors").write_bytes(b"oops")
    assert main(["info", str(copy)]) == 2
    assert "weights.safetensors does not match the SHA-256" in capsys.readouterr().err
    assert main(["predict", str(copy), str(root / "red.png")]) == 2
    assert "truncated or modified" in capsys.readouterr().err
