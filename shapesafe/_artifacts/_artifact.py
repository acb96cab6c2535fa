"""``save`` and ``load``: a model or a predictor as a versioned artifact directory, never code.

An artifact is a directory of plain files:

- ``manifest.json``: the format and its version, the version label, the creation time, the
  shapesafe/JAX/jaxlib/Flax/NumPy/Python versions that wrote it, what it holds (``model`` or
  ``predictor``), and the size and SHA-256 of every other file;
- ``architecture.json``: the blueprint as JSON configuration (``shapesafe._serialize``) and
  the model's input and output specs;
- ``weights.safetensors``: every ``nnx.Variable`` of the model (parameters, BatchNorm
  statistics, RNG state) by its dotted path (``layers.2.kernel``);
- ``predictor.json`` (predictors only): the encoder (the preprocessing) and the decoder (the
  class names);
- ``metrics.json``: evaluation metrics recorded at save time;
- ``monitor.json`` (optional): a drift monitor's reference statistics.

Saving writes everything to a temporary directory beside the target, fsyncs it, and swaps it
in with renames, so a failed save leaves the previous version as it was. Loading refuses
symlinks that point outside the artifact, checks the format version and every file's hash
before reading it, rebuilds the model from the JSON with ``ss.build``, checks that the specs
and every weight's shape agree, and only then copies the weights in. Nothing is unpickled,
imported or evaluated from an artifact.

The weights stream (``shapesafe._safetensors``): saving writes and hashes them one tensor at a
time, and loading reads each tensor into its own buffer, which becomes the model's array
without another copy on the CPU, while hashing exactly the bytes it reads; the weights are put
into the model only once the whole file matched its SHA-256. So neither holds the weights
twice (``benchmarks/artifact_memory.py``).
"""

import datetime as dt
import hashlib
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .._errors import ArtifactError
from .._persist import (
    NATIVE,
    RecordError,
    dumps,
    is_key,
    links_out,
    read_record,
    recover,
    replace_dir,
    write_file,
)
from .._persist import safetensors as _safetensors
from .._serving._decoders import decoder_from_config
from .._serving._encoders import encoder_from_config
from .._serving._predictor import Predictor
from .._specs import spec_from_json, spec_text, spec_to_json
from .._version import __version__
from ..layers import Model
from ._serialize import blueprint_from_json, blueprint_to_json

FORMAT = "shapesafe.artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARCHITECTURE = "architecture.json"
WEIGHTS = "weights.safetensors"
PREDICTOR = "predictor.json"
METRICS = "metrics.json"
MONITOR = "monitor.json"
_SHOWN = 5


def versions() -> dict[str, str]:
    """The versions of the libraries that write (and should read) an artifact."""
    import importlib.metadata

    import flax

    return {
        "shapesafe": __version__,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "flax": flax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def to_json(data: Any, what: str) -> bytes:
    """``data`` as an artifact's JSON file; ``ArtifactError`` naming ``what`` if it cannot be."""
    try:
        return dumps(data)
    except (TypeError, ValueError) as e:
        raise ArtifactError(
            f"cannot save: {what} is not JSON-serialisable ({e}). Use numbers and strings."
        ) from None


def flat_variables(model: nnx.Module) -> list[tuple[str, Any]]:
    """``(dotted path, nnx.Variable)`` for every variable of ``model``, in a fixed order."""
    return [
        (".".join(str(k) for k in path), var) for path, var in nnx.to_flat_state(nnx.state(model))
    ]


def weight_arrays(model: nnx.Module) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """Every variable of ``model`` as ``(dotted path, array)`` (RNG keys as their key data), and the
    safetensors metadata naming each variable's kind and each key's implementation."""
    items = flat_variables(model)
    values = [var.get_value() for _, var in items]
    kinds = {key: type(var).__name__ for key, var in items}
    keys = {
        key: str(jax.random.key_impl(v))
        for (key, _), v in zip(items, values, strict=True)
        if is_key(v)
    }
    arrays = [
        (key, jax.random.key_data(v) if is_key(v) else v)
        for (key, _), v in zip(items, values, strict=True)
    ]
    return arrays, {"format": FORMAT, "variables": json.dumps(kinds), "keys": json.dumps(keys)}


def save(
    obj: Any,
    path: str | os.PathLike[str],
    *,
    version: str | None = None,
    metrics: dict[str, Any] | None = None,
    monitor: Any = None,
    overwrite: bool = False,
) -> Path:
    """Save a built model or a ``Predictor`` as an artifact directory at ``path``, atomically.

    Args:
        obj: a model from ``ss.build`` (built from ``shapesafe.layers`` blueprints only), or a
            ``Predictor`` of one.
        path: the artifact directory, e.g. ``"artifacts/logo/1"`` (one directory per version).
        overwrite: replace an artifact already at ``path`` (only once the new one is
            completely written); without it, saving onto an existing version is refused.
        version: the version label recorded in the manifest (default: the directory's name).
        metrics: evaluation metrics to record, e.g. ``{"accuracy": 0.97}`` (default: the
            predictor's ``metrics``). ``ss.monitor.check_accuracy`` compares against them.
        monitor: a ``ss.monitor.DriftMonitor`` whose reference statistics to store with it.

    Returns:
        The artifact's path.

    Raises:
        ArtifactError: the model holds user code (``Custom``/``Function`` layers) or is an
            exported one, metrics are not JSON, ``path`` is something other than an
            artifact, names a file (``w.safetensors``), or holds an artifact and ``overwrite``
            is false. Nothing on disk changes then.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> import shapesafe as ss
        >>> from jaxtyping import Array, Float32
        >>> from shapesafe import layers as L
        >>> model = ss.build(L.Linear(2), Float32[Array, "batch 3"], seed=0)
        >>> d = tempfile.mkdtemp()
        >>> ss.save(model, f"{d}/model/1", metrics={"accuracy": 0.9}).name
        '1'
        >>> again = ss.load(f"{d}/model/1")
        >>> bool(jnp.all(again(jnp.ones((1, 3))) == model(jnp.ones((1, 3)))))
        True
    """
    target = Path(path)
    check_target(target, overwrite)
    predictor = obj if isinstance(obj, Predictor) else None
    model = obj.model if predictor is not None else obj
    if not isinstance(model, Model):
        what = (
            "an exported model (ss.load_exported)"
            if hasattr(model, "exported")
            else type(model).__name__
        )
        raise ArtifactError(
            f"cannot save {what}: ss.save takes a model built with ss.build or a Predictor of one."
        )
    files: dict[str, bytes] = {}  # the small files; the weights stream into the directory (fill)
    files[ARCHITECTURE] = to_json(
        {
            "blueprint": blueprint_to_json(model.blueprint, "the model"),
            "input_spec": spec_to_json(model.input_spec),
            "output_spec": spec_to_json(model.output_spec),
        },
        "the architecture",
    )
    kind = "model"
    if predictor is not None:
        kind = "predictor"
        decoder = predictor.decoder.config() if predictor.decoder is not None else None
        files[PREDICTOR] = to_json(
            {
                "encoder": predictor.encoder.config() if predictor.encoder is not None else None,
                "decoder": decoder,
                "class_names": (decoder or {}).get("names"),
                "batch_size": predictor.batch_size,
            },
            "the encoder or decoder configuration",
        )
        if metrics is None:
            metrics = predictor.metrics
    files[METRICS] = to_json(dict(metrics or {}), "metrics")
    if monitor is not None:
        files[MONITOR] = to_json(monitor.to_dict(), "the monitor")
    label = target.name if version is None else version
    if not isinstance(label, str) or not label:
        raise ArtifactError(f"cannot save: version must be a non-empty string, got {version!r}.")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": label,
        "kind": kind,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    arrays, metadata = weight_arrays(model)

    def fill(tmp: Path) -> None:
        sha256, size = _safetensors.write(tmp / WEIGHTS, arrays, metadata=metadata)
        listed = {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in files.items()
        }
        listed[WEIGHTS] = {"sha256": sha256, "bytes": size}
        for name, data in files.items():
            write_file(tmp / name, data)
        write_file(
            tmp / MANIFEST,
            to_json({**manifest, "files": dict(sorted(listed.items()))}, "the manifest"),
        )

    replace_artifact(target, fill)
    return target


_FILE_SUFFIXES = (".safetensors", ".json", ".npz", ".npy", ".pkl", ".pickle", ".pt", ".pth", ".h5")


def check_target(target: Path, overwrite: bool, *, marker: str = MANIFEST) -> None:
    """Refuse a file name for an artifact directory, and an existing version unless ``overwrite``."""
    if not isinstance(overwrite, bool):
        raise TypeError(f"save: overwrite must be True or False, got {overwrite!r}.")
    if target.suffix.lower() in _FILE_SUFFIXES or target.is_file():
        raise ArtifactError(
            f"cannot save to {target}: an artifact is a directory (architecture, weights, "
            f"specs and a manifest), not a {target.suffix or 'single'} file. Pass a directory, "
            f"one per version, e.g. {str(target.with_suffix('') / '1')!r}."
        )
    if not overwrite and (target / marker).is_file():
        raise ArtifactError(
            f"cannot save to {target}: an artifact is already saved there. Pass overwrite=True "
            f"to replace it, or save a new version beside it (e.g. {str(_next_version(target))!r})."
        )


def _next_version(target: Path) -> Path:
    """``artifacts/logo/2`` after ``artifacts/logo/1``; ``name-2`` for a non-numeric name."""
    if target.name.isdigit():
        n = int(target.name) + 1
        while (target.parent / str(n)).exists():
            n += 1
        return target.parent / str(n)
    return target.parent / f"{target.name}-2"


def replace_artifact(target: Path, fill: Callable[[Path], None], *, marker: str = MANIFEST) -> None:
    """Swap a freshly written directory in for ``target`` (see ``shapesafe._persist``).

    Only an earlier artifact (a directory holding ``marker``) or an empty directory is replaced.
    """
    recover(target)
    if target.is_symlink() or (target.exists() and not (target / marker).is_file()):
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            target.rmdir()  # an empty directory is fine to fill
        else:
            raise ArtifactError(
                f"cannot save to {target}: it exists and is not a shapesafe artifact "
                f"(no {marker}); choose another path or remove it."
            )
    replace_dir(target, fill)


# -- loading -----------------------------------------------------------------------------------


def check_links(root: Path) -> None:
    """Refuse any symlink inside ``root`` whose target is outside it."""
    out = links_out(root)
    if out is not None:
        entry, target = out
        raise ArtifactError(
            f"{entry} is a symlink to {target}, outside the artifact {root}; "
            "an artifact's files must be inside it. Refusing to load it."
        )


def _mismatch(file: Path, nbytes: int, entry: Any) -> ArtifactError:
    size = entry.get("bytes") if isinstance(entry, dict) else None
    return ArtifactError(
        f"{file} does not match the SHA-256 in {MANIFEST} ({nbytes} bytes, the manifest "
        f"says {size}): it was truncated or modified after saving. Refusing to load it."
    )


def _file_sha256(file: Path) -> tuple[str, int]:
    """A file's SHA-256 and size, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def read_verified(
    path: str | os.PathLike[str], *, defer_weights: bool = False
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the verified bytes of every file it lists but the weights.

    The weights file is verified too, read in chunks and not kept; with ``defer_weights``
    only its presence is checked here, and the caller verifies it as it reads it (``load``).

    Raises:
        ArtifactError: not an artifact, a newer format, a symlink out, a missing file, or a
            file whose SHA-256 is not the manifest's (truncated or modified).
    """
    root = Path(path)
    recover(root)  # a save killed between its renames left the previous version aside
    if not root.is_dir():
        raise ArtifactError(
            f"{root} is not an artifact directory (it {'is a file' if root.exists() else 'does not exist'})."
        )
    check_links(root)
    mpath = root / MANIFEST
    try:
        manifest = read_record(mpath, fmt=FORMAT, what="artifact", newest=FORMAT_VERSION)
    except RecordError as e:
        raise ArtifactError(f"{e} Upgrade shapesafe to load it." if e.newer else str(e)) from None
    listed = manifest.get("files")
    if not isinstance(listed, dict) or ARCHITECTURE not in listed or WEIGHTS not in listed:
        raise ArtifactError(f'{mpath} does not list {ARCHITECTURE} and {WEIGHTS} in "files".')
    out: dict[str, bytes] = {}
    for name, entry in listed.items():
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise ArtifactError(
                f"{mpath} lists {name!r}, which is not a plain file name in the artifact."
            )
        file = root / name
        want = entry.get("sha256") if isinstance(entry, dict) else None
        try:
            if name == WEIGHTS:
                if defer_weights:
                    if not file.is_file():
                        raise FileNotFoundError(file)
                    continue
                found, nbytes = _file_sha256(file)
                if found != want:
                    raise _mismatch(file, nbytes, entry)
                continue
            data = file.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(
                f"{file} is missing (the manifest lists it). The artifact is incomplete."
            ) from None
        except OSError as e:
            raise ArtifactError(f"{file} is unreadable: {e}") from None
        if hashlib.sha256(data).hexdigest() != want:
            raise _mismatch(file, len(data), entry)
        out[name] = data
    return manifest, out


def _parse(name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise ArtifactError(f"{name} is not valid JSON: {e}") from None
    except RecursionError:
        raise ArtifactError(
            f"{name} nests too deeply to read, which shapesafe never writes; the file was "
            "edited or is damaged."
        ) from None


def _predictor_config(data: Any, file: str) -> dict[str, Any]:
    """``predictor.json``: an object whose ``batch_size`` is a positive int (checked before use)."""
    if not isinstance(data, dict):
        raise ArtifactError(
            f"{file} is not a JSON object (it holds a {type(data).__name__}); a predictor "
            'records {"encoder": ..., "decoder": ..., "batch_size": ...}.'
        )
    size = data.get("batch_size", 32)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 2**20:
        raise ArtifactError(
            f"{file}: batch_size is {size!r:.40}; it must be an integer in 1..{2**20}."
        )
    return data


def _rebuild(root: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> Model:
    from .._errors import ShapesafeError
    from .._specs import spec_from_annotation
    from ..layers._sequential import Sequential

    arch = _parse(str(root / ARCHITECTURE), files[ARCHITECTURE])
    if not isinstance(arch, dict):
        raise ArtifactError(f"{root / ARCHITECTURE} is not a JSON object.")
    where = str(root / ARCHITECTURE)
    blueprint = blueprint_from_json(arch.get("blueprint"), where, "blueprint")
    seq = blueprint if isinstance(blueprint, Sequential) else Sequential((blueprint,))
    annotation = spec_from_json(arch.get("input_spec"), where, "input_spec")
    try:  # as ss.build, but abstractly: no parameter is initialised, the weights file fills them
        in_spec = spec_from_annotation(annotation, what=f"{where}: input_spec")
        model: Model = nnx.eval_shape(
            lambda: seq.build_model(in_spec, nnx.Rngs(params=0, dropout=1))
        )
    except (ShapesafeError, TypeError, ValueError) as e:
        raise ArtifactError(
            f"{where}: the architecture does not build for its input spec "
            f"{spec_text(arch['input_spec'])}:\n{e}"
        ) from None
    got = spec_to_json(model.output_spec)
    if got != arch.get("output_spec"):
        raise ArtifactError(
            f"{where}: the rebuilt model returns {spec_text(got)}, but the artifact records "
            f"{spec_text(arch.get('output_spec') or {})}."
        )
    _load_weights(model, root / WEIGHTS, manifest["files"][WEIGHTS], where)
    model.eval()
    return model


def _load_weights(model: Model, file: Path, entry: Any, arch: str) -> None:
    """Stream the weights file into ``model``, after checking every name, shape and dtype against
    the architecture and the whole file against its SHA-256 (``entry``, from the manifest)."""
    items = flat_variables(model)
    values = {key: var.get_value() for key, var in items}
    keys: dict[str, str] = {}

    def check(metadata: dict[str, str], entries: list[_safetensors.Entry]) -> None:
        try:
            keys.update(json.loads(metadata.get("keys", "{}")))
        except (TypeError, ValueError) as e:
            raise _safetensors.Unreadable(
                f"its metadata's keys are not a JSON object ({e})"
            ) from None
        stored = {name: (shape, dtype) for name, shape, dtype in entries}
        problems = []
        for key, value in values.items():
            if key not in stored:
                problems.append(
                    f"  {key}: the architecture has {_text(value)}, the weights file has none"
                )
                continue
            (have, dtype), shape = stored[key], tuple(value.shape)
            if _is_abstract_key(value):
                ok = key in keys and len(have) == len(shape) + 1 and have[: len(shape)] == shape
            elif np.dtype(value.dtype).name in NATIVE:
                ok = have == shape and dtype == np.dtype(value.dtype)
            else:  # stored as raw bytes, one more axis
                ok = have == (*shape, np.dtype(value.dtype).itemsize) and dtype == np.uint8
            if not ok:
                problems.append(
                    f"  {key}: the architecture has {_text(value)}, the weights file has "
                    f"{dtype.name}[{', '.join(map(str, have))}]"
                )
        problems += [
            f"  {k}: in the weights file, not in the architecture"
            for k in sorted(set(stored) - set(values))
        ]
        if problems:
            shown = problems[:_SHOWN] + (
                [f"  ... and {len(problems) - _SHOWN} more"] if len(problems) > _SHOWN else []
            )
            raise ArtifactError(
                f"{file} does not fit the architecture in {arch}: {len(problems)} arrays differ "
                "(shapes, dtypes or names):\n" + "\n".join(shown)
            )

    def place(key: str, array: np.ndarray) -> Any:
        value = values[key]
        if not _is_abstract_key(value) and np.dtype(value.dtype).name not in NATIVE:
            array = array.reshape(-1).view(value.dtype).reshape(array.shape[:-1])
        return jax.device_put(array)  # on the CPU, the array's own (aligned) buffer: no copy

    want = entry.get("sha256") if isinstance(entry, dict) else None
    try:
        _, placed = _safetensors.read(file, sha256=want, check=check, place=place)
    except _safetensors.Damaged as e:
        raise _mismatch(file, e.nbytes, entry) from None
    except _safetensors.Unreadable as e:
        raise ArtifactError(f"{file} is not a readable safetensors file ({e}).") from None
    except FileNotFoundError:
        raise ArtifactError(
            f"{file} is missing (the manifest lists it). The artifact is incomplete."
        ) from None
    except OSError as e:
        raise ArtifactError(f"{file} is unreadable: {e}") from None
    restored = []
    for key, var in items:
        new = placed.pop(key)
        if _is_abstract_key(values[key]):
            new = jax.random.wrap_key_data(new, impl=keys[key])
        restored.append((tuple(_key_part(k) for k in key.split(".")), var.replace(new)))
    nnx.update(model, nnx.from_flat_state(restored))


def _is_abstract_key(value: Any) -> bool:
    return jnp.issubdtype(value.dtype, jax.dtypes.prng_key)


def _key_part(text: str) -> Any:
    return int(text) if text.isdigit() else text


def _text(value: Any) -> str:
    if _is_abstract_key(value):
        return f"key[{', '.join(map(str, value.shape))}]"
    return f"{np.dtype(value.dtype).name}[{', '.join(map(str, value.shape))}]"


def load(path: str | os.PathLike[str]) -> Any:
    """Load an artifact written by ``ss.save``: a ``Predictor`` or a model, in evaluation mode.

    The files are verified (format version, SHA-256 of each, no symlink out of the
    directory), the model is rebuilt from its JSON architecture with ``ss.build`` and its
    specs and weight shapes are checked before any weight is copied in. No code from the
    artifact runs.

    Args:
        path: the artifact directory.

    Returns:
        What was saved: a ``Predictor`` (with ``metrics`` and ``version`` set) or a ``Model``.

    Raises:
        ArtifactError: naming the file and the problem (missing, truncated or modified files,
            a newer format, an unknown layer, weights that do not fit the architecture, ...).
    """
    root = Path(path)
    manifest, files = read_verified(root, defer_weights=True)
    model = _rebuild(root, manifest, files)
    if manifest.get("kind") != "predictor":
        return model
    if PREDICTOR not in files:
        raise ArtifactError(
            f"{root / MANIFEST} says it holds a predictor, but does not list {PREDICTOR}."
        )
    file = str(root / PREDICTOR)
    config = _predictor_config(_parse(str(root / PREDICTOR), files[PREDICTOR]), file)
    encoder = encoder_from_config(config.get("encoder"), file)
    decoder = decoder_from_config(config.get("decoder"), file)
    try:
        predictor: Predictor[Any, Any] = Predictor(
            model, encoder, decoder, batch_size=config.get("batch_size", 32)
        )
    except Exception as e:
        raise ArtifactError(f"{file}: the encoder or decoder does not fit the model: {e}") from None
    metrics = _parse(str(root / METRICS), files[METRICS]) if METRICS in files else {}
    predictor.metrics = metrics if isinstance(metrics, dict) else {}
    version = manifest.get("version")
    predictor.version = version if isinstance(version, str) else None
    return predictor


def info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What an artifact holds, verified, without building the model: manifest, specs, classes,
    preprocessing and metrics."""
    root = Path(path)
    manifest, files = read_verified(root)
    arch = _parse(str(root / ARCHITECTURE), files[ARCHITECTURE])
    if not isinstance(arch, dict):
        raise ArtifactError(f"{root / ARCHITECTURE} is not a JSON object.")
    out: dict[str, Any] = {
        "path": str(root),
        **{
            k: manifest.get(k)
            for k in ("version", "kind", "created", "format_version", "versions", "files")
        },
    }
    out["input_spec"] = spec_text(arch.get("input_spec") or {})
    out["output_spec"] = spec_text(arch.get("output_spec") or {})
    if PREDICTOR in files:
        config = _predictor_config(
            _parse(str(root / PREDICTOR), files[PREDICTOR]), str(root / PREDICTOR)
        )
        out["class_names"] = config.get("class_names")
        out["preprocessing"] = config.get("encoder")
        out["decoder"] = config.get("decoder")
    out["metrics"] = _parse(str(root / METRICS), files[METRICS]) if METRICS in files else {}
    return out
