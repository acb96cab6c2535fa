"""``export`` and ``load_exported``: a model as StableHLO, served without its Python code.

``ss.export(model_or_predictor, path)`` traces the model in evaluation mode with
``jax.export`` on a symbolic batch dimension (every named dimension of the input spec stays
symbolic), and writes a directory:

- ``model.stablehlo``: ``jax.export.Exported.serialize()``: the computation
  ``f(weights, x) -> outputs``, for every batch size;
- ``weights.npz``: the weights it takes, in call order (``w0000``, ``w0001``, ...), read
  with ``np.load(..., allow_pickle=False)``; dtypes NumPy cannot store (``bfloat16``) are
  stored as same-size unsigned ints and named in ``export.json``;
- ``export.json``: the input and output specs, the weights' names, dtypes and shapes, the
  platforms it was lowered for, the JAX and jaxlib versions that wrote it (a reader needs a
  jaxlib at least as new as the calling convention it uses), the predictor's encoder and
  decoder when one was exported, and the SHA-256 of the two other files.

Reading it needs only JAX and NumPy::

    exp = jax.export.deserialize(open("model.stablehlo", "rb").read())
    w = np.load("weights.npz", allow_pickle=False)
    outputs = exp.call([w[f"w{i:04d}"] for i in range(len(w.files))], x)

``ss.load_exported`` does that after verifying the hashes, and gives back a callable model
(or a ``Predictor`` over it, with the saved preprocessing and class names).
"""

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._errors import ArtifactError, ShapeError
from .._persist import NATIVE, RecordError, is_key, read_record, recover, write_file
from .._serving._decoders import decoder_from_config
from .._serving._encoders import encoder_from_config
from .._serving._predictor import Predictor
from .._specs import DTYPE_TO_JAXTYPING, spec_from_json, spec_text, spec_to_json
from ..layers import Model
from ._artifact import check_links, replace_artifact, to_json, versions

FORMAT = "shapesafe.export"
FORMAT_VERSION = 1
EXPORT = "export.json"
STABLEHLO = "model.stablehlo"
WEIGHTS = "weights.npz"


def export(
    obj: Any, path: str | os.PathLike[str], *, platforms: tuple[str, ...] | None = None
) -> Path:
    """Write ``obj``'s evaluation-mode forward pass as a ``jax.export`` (StableHLO) directory.

    Args:
        obj: a model from ``ss.build`` or a ``Predictor`` of one (its encoder and decoder are
            stored as configuration for ``load_exported``).
        path: the directory to write (replaced atomically if it holds an earlier export).
        platforms: the platforms to lower for, e.g. ``("cpu", "cuda")``; default: this
            backend and the CPU (from a CPU: ``("cpu", "cuda")``).

    Returns:
        The directory's path.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
        >>> path = ss.export(model, tempfile.mkdtemp() + "/served")
        >>> served = ss.load_exported(path)
        >>> served(jnp.ones((5, 3))).shape
        (5, 2)
    """
    predictor = obj if isinstance(obj, Predictor) else None
    model = obj.model if predictor is not None else obj
    if not isinstance(model, Model):
        raise ArtifactError(
            f"cannot export a {type(model).__name__}: ss.export takes a model built with ss.build "
            "or a Predictor of one."
        )
    copy = nnx.clone(model)
    copy.eval()
    graph, state = nnx.split(copy)
    leaves, treedef = jax.tree.flatten(state)
    is_weight = [not is_key(leaf) for leaf in leaves]
    weights = [leaf for leaf, w in zip(leaves, is_weight, strict=True) if w]
    constants = [
        leaf for leaf, w in zip(leaves, is_weight, strict=True) if not w
    ]  # RNG keys: unused in eval

    def forward(ws: list[Any], x: Any) -> Any:
        it_w, it_c = iter(ws), iter(constants)
        full = [next(it_w) if w else next(it_c) for w in is_weight]
        return nnx.merge(graph, jax.tree.unflatten(treedef, full))(x)

    in_json = spec_to_json(model.input_spec)
    shape = jax.export.symbolic_shape(", ".join(in_json["dims"].split()))
    x_struct = jax.ShapeDtypeStruct(shape, jnp.dtype(in_json["dtype"]))
    w_structs = [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in weights]
    targets = _default_platforms() if platforms is None else tuple(platforms)
    exported = jax.export.export(jax.jit(forward), platforms=targets)(w_structs, x_struct)
    blob = bytes(exported.serialize())
    described, arrays = [], {}
    for i, w in enumerate(jax.device_get(weights)):
        array = np.asarray(w)
        name = f"w{i:04d}"
        described.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape)})
        if array.dtype.name not in NATIVE:
            array = array.view(np.dtype(f"uint{8 * array.dtype.itemsize}"))
        arrays[name] = array
    buffer = io.BytesIO()
    savez: Any = np.savez  # (NumPy's stubs read **arrays as its allow_pickle flag)
    savez(buffer, **arrays)
    npz = buffer.getvalue()
    record: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "calling_convention_version": exported.calling_convention_version,
        "platforms": list(exported.platforms),
        "input_spec": in_json,
        "output_spec": spec_to_json(model.output_spec),
        "weights": described,
        "encoder": predictor.encoder.config()
        if predictor is not None and predictor.encoder is not None
        else None,
        "decoder": predictor.decoder.config()
        if predictor is not None and predictor.decoder is not None
        else None,
        "files": {
            STABLEHLO: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)},
            WEIGHTS: {"sha256": hashlib.sha256(npz).hexdigest(), "bytes": len(npz)},
        },
    }
    target = Path(path)
    files = {STABLEHLO: blob, WEIGHTS: npz, EXPORT: to_json(record, "the export record")}

    def fill(tmp: Path) -> None:
        for name, data in files.items():
            write_file(tmp / name, data)

    replace_artifact(target, fill, marker=EXPORT)
    return target


def _default_platforms() -> tuple[str, ...]:
    """This backend and the CPU, plus CUDA from a CPU (an export made on a laptop serves on a GPU)."""
    backend = jax.default_backend()
    if backend == "cpu":
        return ("cpu", "cuda")
    if backend == "gpu":
        version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
        return ("rocm" if "rocm" in version else "cuda", "cpu")
    return (backend, "cpu")


class ExportedModel:
    """A model loaded from ``ss.export``'s StableHLO: callable on a batch, no model code needed.

    Attributes:
        input_spec, output_spec: the jaxtyping annotations of the exported model.
        exported: the ``jax.export.Exported``.
        record: the contents of ``export.json``.
    """

    def __init__(self, exported: Any, weights: list[Any], record: dict[str, Any], file: str):
        self.exported, self.record = exported, record
        self.input_spec = spec_from_json(record.get("input_spec"), file, "input_spec")
        self.output_spec = spec_from_json(record.get("output_spec"), file, "output_spec")
        self._weights = [jnp.asarray(w) for w in weights]
        self._call = jax.jit(exported.call)
        self._file = file

    def __repr__(self) -> str:
        return (
            f"ExportedModel({spec_text(self.record['input_spec'])} -> {spec_text(self.record['output_spec'])}, "
            f"platforms={self.record.get('platforms')})"
        )

    def __call__(self, x: Any) -> Any:
        want = self.record["input_spec"]
        dims = want["dims"].split()
        shape = tuple(getattr(x, "shape", ()))
        fixed_ok = len(shape) == len(dims) and all(
            not d.isdigit() or int(d) == n for d, n in zip(dims, shape, strict=True)
        )
        if not fixed_ok or np.dtype(getattr(x, "dtype", None) or "V").name != want["dtype"]:
            got = f"{np.dtype(getattr(x, 'dtype', None) or 'V').name}[{', '.join(map(str, shape))}]"
            raise ShapeError(f"the exported model takes {spec_text(want)}, got {got}.")
        here = _default_platforms()[0]
        lowered = list(self.record.get("platforms") or [])
        if here not in lowered:
            raise ArtifactError(
                f"{self._file}: the model was exported for {', '.join(lowered)} only, and this JAX "
                f"runs on {here}. Export it again with ss.export(..., platforms=({here!r}, ...))."
            )
        return self._call(self._weights, x)


def _check_record(record: dict[str, Any], file: str) -> None:
    """Every field ``load_exported`` uses has its type and bounds before it is used."""

    def bad(field: str, want: str, got: Any) -> ArtifactError:
        return ArtifactError(f"{file}: {field} must be {want}, got {got!r:.60}.")

    files = record.get("files")
    if not isinstance(files, dict):
        raise bad("files", "an object of file entries", files)
    for name in (STABLEHLO, WEIGHTS):
        entry = files.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise bad(f"files[{name!r}]", 'an object with a "sha256" string', entry)
    weights = record.get("weights")
    if not isinstance(weights, list):
        raise bad("weights", "a list of weight entries", weights)
    for i, d in enumerate(weights):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise bad(f"weights[{i}]", 'an object with a "name" string', d)
        if not isinstance(d.get("dtype"), str) or d["dtype"] not in DTYPE_TO_JAXTYPING:
            raise bad(f"weights[{i}].dtype", "a dtype name", d.get("dtype"))
        shape = d.get("shape")
        if not isinstance(shape, list) or not all(type(n) is int and 0 <= n < 2**31 for n in shape):
            raise bad(f"weights[{i}].shape", "a list of sizes", shape)
    platforms = record.get("platforms")
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise bad("platforms", "a list of platform names", platforms)
    versions = record.get("versions", {})
    if not isinstance(versions, dict):
        raise bad("versions", "an object of version strings", versions)
    spec_from_json(record.get("input_spec"), file, "input_spec")
    spec_from_json(record.get("output_spec"), file, "output_spec")


def _read_weights(file: Path, blob: bytes, entries: list[dict[str, Any]]) -> list[np.ndarray]:
    """The weights ``entries`` name, each of its recorded dtype and shape."""
    weights = []
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            for i, d in enumerate(entries):
                if d["name"] not in npz.files:
                    raise ArtifactError(
                        f"{file} has no array {d['name']!r} (weights[{i}] in {EXPORT})."
                    )
                array = npz[d["name"]]
                if d["dtype"] not in NATIVE:
                    array = array.view(jnp.dtype(d["dtype"]))
                if array.shape != tuple(d["shape"]) or np.dtype(array.dtype).name != d["dtype"]:
                    raise ArtifactError(
                        f"{file}: array {d['name']!r} is {np.dtype(array.dtype).name}"
                        f"{list(array.shape)}, but {EXPORT} records {d['dtype']}{d['shape']}."
                    )
                weights.append(array)
    except ArtifactError:
        raise
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{file} is not a readable .npz file: {e}") from None
    return weights


def _check_signature(
    exported: Any, weights: list[np.ndarray], record: dict[str, Any], file: str
) -> None:
    """The StableHLO takes exactly these weights (and one input of the recorded rank)."""
    avals = list(getattr(exported, "in_avals", ()))
    if len(avals) != len(weights) + 1:
        raise ArtifactError(
            f"{file}: weights lists {len(weights)} arrays, but the StableHLO takes "
            f"{max(0, len(avals) - 1)} weights and an input."
        )
    for i, (aval, w) in enumerate(zip(avals, weights, strict=False)):
        if tuple(aval.shape) != w.shape or np.dtype(aval.dtype) != w.dtype:
            raise ArtifactError(
                f"{file}: weights[{i}] is {np.dtype(w.dtype).name}{list(w.shape)}, but the "
                f"StableHLO takes {np.dtype(aval.dtype).name}{list(aval.shape)} there."
            )
    dims = str(record["input_spec"]["dims"]).split()
    if len(avals[-1].shape) != len(dims):
        raise ArtifactError(
            f"{file}: input_spec has {len(dims)} dimensions, but the StableHLO takes "
            f"{len(avals[-1].shape)}."
        )


def load_exported(path: str | os.PathLike[str]) -> Any:
    """Load a directory written by ``ss.export``: an ``ExportedModel``, or a ``Predictor`` over one.

    Only JAX's deserializer and NumPy's pickle-free ``.npz`` reader touch the files, after
    their SHA-256 are checked against ``export.json``.

    Args:
        path: the directory ``ss.export`` wrote.

    Returns:
        An ``ExportedModel`` (callable on a batch, checked against the exported spec), or a
        ``Predictor`` over one when the export held an encoder or a decoder.

    Raises:
        ArtifactError: a missing or modified file, a newer format, or StableHLO this jaxlib
            cannot read (the message gives the jaxlib version that wrote it).
    """
    root = Path(path)
    recover(root)
    file = root / EXPORT
    try:
        record = read_record(file, fmt=FORMAT, what="export", newest=FORMAT_VERSION)
    except RecordError as e:
        raise ArtifactError(f"{e} Upgrade shapesafe." if e.newer else str(e)) from None
    check_links(root)
    _check_record(record, str(file))
    data: dict[str, bytes] = {}
    for name in (STABLEHLO, WEIGHTS):
        try:
            blob = (root / name).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{root / name} is missing.") from None
        if hashlib.sha256(blob).hexdigest() != record.get("files", {}).get(name, {}).get("sha256"):
            raise ArtifactError(
                f"{root / name} does not match the SHA-256 in {EXPORT}: truncated or modified."
            )
        data[name] = blob
    written = record.get("versions", {}).get("jaxlib", "?")
    try:
        exported = jax.export.deserialize(bytearray(data[STABLEHLO]))
    except Exception as e:
        raise ArtifactError(
            f"{root / STABLEHLO} cannot be read by this JAX ({jax.__version__}); it was written "
            f"with jaxlib {written}: {type(e).__name__}: {e}"
        ) from None
    weights = _read_weights(root / WEIGHTS, data[WEIGHTS], record["weights"])
    _check_signature(exported, weights, record, str(file))
    model = ExportedModel(exported, weights, record, str(file))
    encoder = encoder_from_config(record.get("encoder"), str(file))
    decoder = decoder_from_config(record.get("decoder"), str(file))
    if encoder is None and decoder is None:
        return model
    return Predictor(model, encoder, decoder)
