"""Hand-edited artifacts whose hashes were recomputed (so they pass verification): the loader
checks every field's type and bounds before using it and refuses with an ``ArtifactError``
naming the file and the field, instead of a RecursionError, jaxtyping's ValueError or an
AttributeError."""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L


def _rehash(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _saved(tmp_path: Path, predictor: bool = False) -> Path:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    path = tmp_path / "artifact"
    ss.save(
        ss.Predictor(model, decoder=ss.decoders.Labels(("a", "b"))) if predictor else model, path
    )
    return path


def _edit_architecture(path: Path, edit: Any) -> str:
    arch = json.loads((path / "architecture.json").read_text())
    text = edit(arch)
    (path / "architecture.json").write_text(text if isinstance(text, str) else json.dumps(arch))
    _rehash(path)
    return str(path / "architecture.json")


def _nest(arch: dict[str, Any], depth: int) -> str:
    inner = json.dumps(arch["blueprint"])
    deep = '{"layer": "Sequential", "name": "x", "layers": [' * depth + inner + "]}" * depth
    return json.dumps(arch).replace(inner, deep)


def test_3000_nested_sequentials(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    file = _edit_architecture(path, lambda a: _nest(a, 3000))
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{file} nests too deeply to read, which shapesafe never writes; the file was "
        r"edited or is damaged\.$",
    ):  # before: RecursionError
        ss.load(path)


def test_100_nested_sequentials_name_the_field(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    file = _edit_architecture(path, lambda a: _nest(a, 100))
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{file}: blueprint(\.layers\[0\]){{65}} nests layers more than 64 deep, which "
        r"shapesafe never writes; the file was edited or is damaged\.$",
    ):
        ss.load(path)


def test_dims_text_with_a_double_underscore(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    file = _edit_architecture(path, lambda a: a["input_spec"].update(dims="batch __"))
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{file}: input_spec\.dims 'batch __' is not a spec shapesafe writes: dimension "
        r"'__' \(each dimension is a name such as batch, a size such as 3, or arithmetic over "
        r"them; at most 64\)\. The file was edited or is damaged\.$",
    ):  # before: jaxtyping's ValueError
        ss.load(path)


def test_dims_text_that_jaxtyping_would_evaluate_is_refused_unevaluated(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    canary = tmp_path / "canary"
    payload = f"__import__('pathlib').Path({str(canary)!r}).touch()"
    file = _edit_architecture(path, lambda a: a["input_spec"].update(dims=f"batch {payload}"))
    with pytest.raises(
        ss.ArtifactError, match=rf"^{file}: input_spec\.dims .* is not a spec shapesafe writes"
    ):
        ss.load(path)
    assert not canary.exists()


def test_predictor_json_as_a_list(tmp_path: Path) -> None:
    path = _saved(tmp_path, predictor=True)
    (path / "predictor.json").write_text("[1, 2]")
    _rehash(path)
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{path / 'predictor.json'} is not a JSON object \(it holds a list\); a predictor "
        r'records \{"encoder": \.\.\., "decoder": \.\.\., "batch_size": \.\.\.\}\.$',
    ):  # before: AttributeError
        ss.load(path)
    from shapesafe._artifacts._artifact import info  # what `shapesafe info` prints

    with pytest.raises(ss.ArtifactError, match=r"predictor\.json is not a JSON object"):
        info(path)


@pytest.mark.parametrize("size", ["32", 0, True, 2**40], ids=["text", "zero", "bool", "huge"])
def test_predictor_batch_size_of_the_wrong_type_or_bounds(tmp_path: Path, size: Any) -> None:
    path = _saved(tmp_path, predictor=True)
    config = json.loads((path / "predictor.json").read_text())
    config["batch_size"] = size
    (path / "predictor.json").write_text(json.dumps(config))
    _rehash(path)
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{path / 'predictor.json'}: batch_size is {size!r}; it must be an integer in 1\.\.1048576\.$",
    ):
        ss.load(path)


def test_output_spec_as_a_list_and_a_huge_size(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    file = _edit_architecture(path, lambda a: a.update(output_spec=[1]))
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{file}: the rebuilt model returns Float32\[batch, 2\], but the artifact records \[1\]\.$",
    ):  # before: AttributeError in the message's own formatting
        ss.load(path)
    path = _saved(tmp_path / "2")
    file = _edit_architecture(path, lambda a: a["blueprint"]["layers"][0].update(features=2**70))
    with pytest.raises(
        ss.ArtifactError,
        match=rf"^{file}: blueprint\.layers\[0\]\.features is {2**70}, outside the sizes a layer "
        r"takes \(\|value\| <= 2\*\*31\)\.$",
    ):
        ss.load(path)


def test_export_json_fields_are_checked_before_use(tmp_path: Path) -> None:
    model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
    path = tmp_path / "served"
    ss.export(model, path, platforms=("cpu",))
    record = json.loads((path / "export.json").read_text())
    cases = [
        ("files", 67, r"files must be an object of file entries, got 67\."),
        ("weights", None, r"weights must be a list of weight entries, got None\."),
        ("weights", [True], r"weights\[0\] must be an object with a \"name\" string, got True\."),
        (
            "weights",
            [{**record["weights"][0], "name": "nope"}, record["weights"][1]],
            r"has no array 'nope' \(weights\[0\] in export\.json\)\.",
        ),
        (
            "weights",
            record["weights"][:1],
            r"weights lists 1 arrays, but the StableHLO takes 2 weights and an input\.",
        ),
        (
            "weights",
            [{**record["weights"][0], "shape": [3]}, record["weights"][1]],
            r"array 'w0000' is float32\[2\], but export\.json records float32\[3\]\.",
        ),
    ]
    for key, value, message in cases:  # before: TypeError, KeyError, AttributeError, ValueError
        (path / "export.json").write_text(json.dumps({**record, key: value}))
        with pytest.raises(
            ss.ArtifactError, match=rf"^{path}/(export\.json|weights\.npz):? {message}"
        ):
            ss.load_exported(path)
