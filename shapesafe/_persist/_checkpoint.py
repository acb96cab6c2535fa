"""Training checkpoints: atomic, pickle-free, and refused when they belong to another model.

A checkpoint is a directory ``step_<step:08d>/`` holding two files:

- ``tensors.safetensors``: every array leaf of the saved trees, keyed by the tree's name and
  the leaf's ``jax.tree_util.keystr`` path (``"params['layers'][0]['kernel'].value"``). RNG
  keys (``key<fry>`` arrays) are stored as their ``jax.random.key_data`` and re-wrapped on
  load; dtypes safetensors cannot read back (``bfloat16``, float8) are stored as raw bytes.
- ``meta.json``: the caller's ``meta`` (epoch, data position, history, ...), the format
  version, the SHA-256 of the tensors file and, for every leaf, its path, shape and dtype.

Writing goes to a temporary directory in the same parent, every file and the directory are
fsynced, and one ``os.rename`` puts the checkpoint in place, so a crash leaves either the
old set of checkpoints or the new one, never half of one. Older checkpoints beyond ``keep``
are deleted only after the new one is in place. Loading verifies the hash before reading a
single tensor, skips (with a warning) a newest checkpoint that is truncated or corrupt, and
refuses one written by a different model, listing what differs. Nothing is ever unpickled.

One writer per directory: in multi-host training only one process should save.
"""

import hashlib
import json
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from .._errors import ShapesafeError
from .._version import __version__
from ._atomic import OLD, TMP, replace_dir, write_file
from ._records import RecordError, read_record
from ._safetensors import NATIVE, is_key

FORMAT = "shapesafe.checkpoint"
VERSION = 1
TENSORS = "tensors.safetensors"
META = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_SHOWN = 5  # differing leaves listed in a refusal


def _leaves(trees: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(key, leaf)`` for every leaf of every tree, in a fixed order (tree names sorted)."""
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for name in sorted(trees):
        for path, leaf in jax.tree_util.tree_flatten_with_path(trees[name])[0]:
            key = name + jax.tree_util.keystr(path)
            if key in seen:
                raise ShapesafeError(
                    f"checkpoint: two leaves share the path {key!r}; rename one of them."
                )
            seen.add(key)
            out.append((key, leaf))
    return out


def _describe(key: str, leaf: Any) -> dict[str, Any]:
    if is_key(leaf):
        return {
            "key": key,
            "shape": list(leaf.shape),
            "dtype": str(leaf.dtype),
            "impl": str(jax.random.key_impl(leaf)),
        }
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):  # no data read: works on any device
        return {
            "key": key,
            "shape": [int(n) for n in leaf.shape],
            "dtype": str(np.dtype(leaf.dtype)),
        }
    if not isinstance(leaf, bool | int | float | complex):
        raise ShapesafeError(
            f"checkpoint: the leaf {key} is a {type(leaf).__name__}, not an array or a number; "
            "only arrays and numbers can be saved."
        )
    array = np.asarray(leaf)
    return {"key": key, "shape": list(array.shape), "dtype": str(array.dtype)}


def _describe_all(trees: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_describe(key, leaf) for key, leaf in _leaves(trees)]


def _fingerprint(described: list[dict[str, Any]]) -> str:
    text = json.dumps(
        [[d["key"], d["shape"], d["dtype"]] for d in described], separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_fingerprint(trees: Mapping[str, Any]) -> str:
    """A short hash of the leaf paths, shapes and dtypes of ``trees``: equal for the same model.

    Example:
        >>> import jax.numpy as jnp
        >>> a = model_fingerprint({"params": {"w": jnp.zeros((2, 3))}})
        >>> a == model_fingerprint({"params": {"w": jnp.ones((2, 3))}}), len(a)
        (True, 12)
        >>> a == model_fingerprint({"params": {"w": jnp.zeros((3, 3))}})
        False
    """
    return _fingerprint(_describe_all(trees))


def _host(leaves: list[Any]) -> list[np.ndarray]:
    """The host arrays written for ``leaves``, fetched from devices in one go: key data for RNG
    keys, raw bytes for dtypes safetensors cannot read back."""
    fetched = jax.device_get([jax.random.key_data(x) if is_key(x) else x for x in leaves])
    out = []
    for array in fetched:
        array = np.asarray(array, order="C")  # (not ascontiguousarray: it makes scalars 1-d)
        if array.dtype.name not in NATIVE:
            array = array.reshape(-1).view(np.uint8).reshape((*array.shape, array.dtype.itemsize))
        out.append(array)
    return out


def _steps(directory: Path) -> list[tuple[int, Path]]:
    """The ``step_*`` checkpoint directories, newest (highest step) first."""
    found = []
    for child in directory.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found, reverse=True)


def _candidates(directory: Path) -> list[Path]:
    """Checkpoints to try loading, newest first: the ``step_*`` directories, and one a crash may
    have left aside while it was being replaced by a save of the same step (``.old-*/step_*``)."""
    found = [(step, 1, path) for step, path in _steps(directory)]
    for child in directory.iterdir():
        if child.name.startswith(OLD) and child.is_dir():
            found += [(step, 0, path) for step, path in _steps(child)]
    return [path for _, _, path in sorted(found, reverse=True)]


def save_checkpoint(
    directory: str | Path, *, step: int, trees: dict[str, Any], meta: dict[str, Any], keep: int = 3
) -> Path:
    """Write ``trees`` and ``meta`` atomically as ``directory/step_<step:08d>/`` and prune old ones.

    Args:
        directory: the checkpoint directory (created if needed).
        step: the training step; names the checkpoint. A checkpoint of the same step is replaced.
        trees: named pytrees of arrays, e.g. ``{"params": ..., "rest": ..., "opt_state": ...}``.
        meta: JSON-serialisable facts to restore with them (epoch, data position, history, ...).
        keep: how many checkpoints to keep, newest by step; the one just written is always kept.

    Returns:
        The path of the new checkpoint.

    Raises:
        ValueError: ``step`` or ``keep`` is not a non-negative / positive integer.
        ShapesafeError: a leaf is not an array or a number, or two leaves share a path.
        TypeError: ``meta`` is not JSON-serialisable (nothing is written then).

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> d = tempfile.TemporaryDirectory()
        >>> save_checkpoint(d.name, step=7, trees={"params": {"w": jnp.ones(3)}}, meta={"epoch": 1}).name
        'step_00000007'
        >>> trees, meta = load_latest(d.name, like={"params": {"w": jnp.zeros(3)}})
        >>> trees["params"]["w"].tolist(), meta
        ([1.0, 1.0, 1.0], {'epoch': 1})
        >>> d.cleanup()
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"save_checkpoint: step must be a non-negative integer, got {step!r}.")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"save_checkpoint: keep must be a positive integer, got {keep!r}.")
    directory = Path(directory)
    leaves = _leaves(trees)
    described = [_describe(key, leaf) for key, leaf in leaves]
    host = _host([leaf for _, leaf in leaves])
    data = safetensors.numpy.save(
        {key: array for (key, _), array in zip(leaves, host, strict=True)},
        metadata={"format": FORMAT, "version": str(VERSION)},
    )

    record = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "fingerprint": _fingerprint(described),
        "tensors": TENSORS,
        "tensors_sha256": hashlib.sha256(data).hexdigest(),
        "leaves": described,
        "versions": {"shapesafe": __version__, "jax": jax.__version__},
        "meta": meta,
    }
    text = json.dumps(record, indent=1)  # before touching the disk: bad meta writes nothing
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"step_{int(step):08d}"

    def fill(tmp: Path) -> None:
        write_file(tmp / TENSORS, data)
        write_file(tmp / META, text.encode())

    replace_dir(final, fill)
    _prune(directory, keep, final)
    return final


def _prune(directory: Path, keep: int, current: Path) -> None:
    """Delete checkpoints beyond the newest ``keep`` (never ``current``) and debris of crashed writes."""
    for _, path in _steps(directory)[keep:]:
        if path != current:
            shutil.rmtree(path, ignore_errors=True)
    for child in directory.iterdir():
        if child.name.startswith((TMP, OLD)) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)


class _Corrupt(Exception):
    """A checkpoint that cannot be read back as written."""


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The verified record and tensors of one checkpoint, or ``_Corrupt`` saying why not."""
    try:
        record = read_record(
            path / META, fmt=FORMAT, what="checkpoint", newest=VERSION, version_key="version"
        )
    except RecordError as e:
        if e.newer:
            raise ShapesafeError(f"{e} Upgrade shapesafe, or use another checkpoint_dir.") from None
        raise _Corrupt(str(e)) from None
    try:
        data = (path / TENSORS).read_bytes()
    except FileNotFoundError:
        raise _Corrupt(f"{TENSORS} is missing") from None
    except OSError as e:
        raise _Corrupt(f"{TENSORS} is unreadable ({e})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.get("tensors_sha256"):
        raise _Corrupt(
            f"{TENSORS} does not match its SHA-256 ({len(data)} bytes; truncated or modified)"
        )
    try:
        tensors = safetensors.numpy.load(data)
        leaves = record["leaves"]
        for d in leaves:
            stored = tensors[d["key"]]
            base = tuple(d["shape"])
            wrapped = d["dtype"] not in NATIVE  # keys and raw bytes add one axis
            if stored.shape[: len(base)] != base or stored.ndim != len(base) + wrapped:
                raise ValueError(f"{d['key']} has shape {stored.shape}, its record says {base}")
    except Exception as e:  # any failure to parse is corruption, never a crash
        raise _Corrupt(f"{TENSORS} is unreadable ({type(e).__name__}: {e})") from None
    return record, tensors


def _differences(expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[str]:
    def text(d: dict[str, Any] | None) -> str:
        return "(absent)" if d is None else f"{d['dtype']}[{', '.join(map(str, d['shape']))}]"

    want = {d["key"]: d for d in expected}
    have = {d["key"]: d for d in found}
    lines = []
    for key in [d["key"] for d in expected] + [d["key"] for d in found if d["key"] not in want]:
        a, b = want.get(key), have.get(key)
        if a is None or b is None or a["shape"] != b["shape"] or a["dtype"] != b["dtype"]:
            lines.append(f"  {key}: expected {text(a)}, found {text(b)}")
    return lines


def _restore(like: Any, stored: np.ndarray) -> Any:
    """``stored`` as a leaf of the same kind, dtype and placement as ``like``."""
    if is_key(like):
        data = jnp.asarray(stored)
        if isinstance(like.sharding, jax.sharding.NamedSharding):
            data = jax.device_put(data, like.sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
    dtype = np.dtype(like.dtype) if hasattr(like, "dtype") else np.asarray(like).dtype
    array = (
        np.array(stored)
        if dtype.name in NATIVE
        else np.array(stored).reshape(-1).view(dtype).reshape(stored.shape[:-1])
    )
    if isinstance(like, jax.Array):
        if isinstance(like.sharding, jax.sharding.NamedSharding):  # keep a mesh's placement
            return jax.device_put(array, like.sharding)
        return jnp.asarray(array)
    if isinstance(like, np.ndarray):
        return array
    if isinstance(like, np.generic):
        return array[()]
    return array.item()  # a Python number


def load_latest(
    directory: str | Path, *, like: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The trees and meta of the newest valid checkpoint in ``directory``, or ``None`` if it holds none.

    A newest checkpoint that is truncated or corrupt (a file missing, a wrong SHA-256, an
    unreadable file) is skipped with a warning naming it and why, in favour of the previous
    one. Nothing is deleted.

    Args:
        directory: a directory written by ``save_checkpoint`` (it need not exist).
        like: trees of the same structure as those saved (the current training state):
            they give the structure, shapes, dtypes and placement of what is returned.

    Returns:
        ``(trees, meta)`` with ``trees`` shaped like ``like``, or ``None``.

    Raises:
        ShapesafeError: the newest valid checkpoint was written by a different model (its
            leaf paths, shapes or dtypes differ from ``like``'s), or by a newer shapesafe.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for path in _candidates(directory):
        try:
            record, tensors = _read(path)
        except _Corrupt as why:
            warnings.warn(
                f"shapesafe: skipping the checkpoint {path}: {why}. Falling back to the previous one.",
                stacklevel=2,
            )
            continue
        expected = [
            d for name in like for d in _describe_all({name: like[name]})
        ]  # params first, as given
        lines = _differences(expected, record["leaves"])
        if lines:
            shown = lines[:_SHOWN] + (
                [f"  ... and {len(lines) - _SHOWN} more"] if len(lines) > _SHOWN else []
            )
            raise ShapesafeError(
                f"the checkpoint {path} was written by a different model (fingerprint {record.get('fingerprint')}; "
                f"this model's is {model_fingerprint(like)}), so training cannot resume from it. "
                f"{len(lines)} saved arrays differ:\n" + "\n".join(shown) + "\n"
                f"Use another checkpoint_dir, or delete {directory} if its checkpoints are no longer needed "
                "(nothing in it was changed)."
            )
        trees = {}
        for name in like:
            flat, treedef = jax.tree_util.tree_flatten_with_path(like[name])
            leaves = [_restore(leaf, tensors[name + jax.tree_util.keystr(p)]) for p, leaf in flat]
            trees[name] = jax.tree_util.tree_unflatten(treedef, leaves)
        return trees, record["meta"]
    return None
