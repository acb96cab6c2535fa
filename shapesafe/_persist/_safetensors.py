"""Streaming safetensors: write and read a weights file one tensor at a time, hashing as it goes.

``safetensors.numpy.save`` returns the whole file as one ``bytes`` object and ``load``
copies every tensor out of one, so saving or loading a model that way holds its weights
twice (or three times, with the copy into JAX). Here:

- ``write`` puts the header, then each tensor in turn: fetched to the host (a view, on the
  CPU), written to the file and fed to SHA-256, then dropped. The file is the one
  ``safetensors.numpy.save_file`` would write, up to the order of the tensors (widest dtypes
  first, so every tensor stays aligned to its item size) and the header's key order: it is
  the same format, which ``safetensors.safe_open`` and ``load_file`` read.
- ``read`` parses the header, lets the caller check it (names, shapes, dtypes), then reads
  each tensor straight into a fresh 64-byte-aligned buffer (``readinto``: no intermediate
  copy) that the caller turns into a JAX array; ``jax.device_put`` of such a buffer does not
  copy it on the CPU. The SHA-256 covers exactly the bytes that were read, so nothing can
  change between verification and use; the caller copies the arrays into its model only after
  ``read`` returns, i.e. after the hash matched. Any failure (a bad header, a short file, a
  refused check) first hashes the rest of the file, so that a modified or truncated file is
  reported as such (``Damaged``) rather than by whatever it broke.

Peak memory is therefore the weights once, plus one tensor in flight on a GPU
(``benchmarks/artifact_memory.py`` measures it). Dtypes safetensors' NumPy reader cannot map
back (``bfloat16``, float8) are stored as raw bytes with one more axis, as in checkpoints.
"""

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CODES = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "float64": "F64",
    "int64": "I64",
    "uint64": "U64",
}
DTYPES = {code: np.dtype(name) for name, code in CODES.items()}
# dtypes that safetensors' NumPy reader maps back exactly; any other is stored as raw bytes
NATIVE = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    }
)
_ALIGN = 64  # XLA:CPU aliases host buffers aligned to 64 bytes instead of copying them
_MAX_HEADER = 100_000_000  # as safetensors itself
_CHUNK = 1 << 20


def is_key(leaf: Any) -> bool:
    """Whether ``leaf`` is a typed PRNG key array (stored as its key data)."""
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


class Damaged(Exception):
    """The file's SHA-256 is not the expected one; ``nbytes``: how many bytes it holds."""

    def __init__(self, nbytes: int):
        super().__init__(nbytes)
        self.nbytes = nbytes


class Unreadable(Exception):
    """The file has the expected SHA-256 but is not a safetensors file this module reads."""


def stored_form(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype ``x`` is stored with (raw bytes, one more axis, for non-native dtypes)."""
    dtype = np.dtype(x.dtype)
    shape = tuple(int(n) for n in x.shape)
    if dtype.name in NATIVE:
        return shape, dtype
    return (*shape, dtype.itemsize), np.dtype(np.uint8)


def _host(x: Any) -> np.ndarray:
    """One tensor on the host, as its stored bytes (a view of ``x`` where it lives on the CPU)."""
    array = np.asarray(jax.device_get(x), order="C")
    return array.reshape(-1).view(np.uint8)


def write(
    path: str | os.PathLike[str],
    arrays: Sequence[tuple[str, Any]],
    *,
    metadata: dict[str, str] | None = None,
) -> tuple[str, int]:
    """Write ``arrays`` (``(name, jax or NumPy array)``) as a safetensors file, one tensor at a time.

    The file is flushed and fsynced before returning.

    Returns:
        The file's SHA-256 (hex) and its size in bytes.

    Example:
        >>> import tempfile, numpy as np, safetensors.numpy
        >>> path = tempfile.mkdtemp() + "/w.safetensors"
        >>> _ = write(path, [("b", np.arange(3, dtype=np.int8)), ("a", np.ones((2, 2), np.float32))])
        >>> {k: v.tolist() for k, v in sorted(safetensors.numpy.load_file(path).items())}
        {'a': [[1.0, 1.0], [1.0, 1.0]], 'b': [0, 1, 2]}
    """
    forms = [stored_form(x) for _, x in arrays]
    order = sorted(range(len(arrays)), key=lambda i: -forms[i][1].itemsize)  # stable
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for i in order:
        shape, dtype = forms[i]
        end = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        header[arrays[i][0]] = {
            "dtype": CODES[dtype.name],
            "shape": list(shape),
            "data_offsets": [offset, end],
        }
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as f:
        for i in (-2, -1, *order):
            if i == -2:
                chunk: Any = len(text).to_bytes(8, "little")
            elif i == -1:
                chunk = text
            else:
                chunk = _host(arrays[i][1]).data  # a memoryview of the array, no copy
            f.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            del chunk
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest(), size


def _aligned(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start : start + nbytes]


Entry = tuple[str, tuple[int, ...], np.dtype]
"""A tensor of the header: ``(name, stored shape, stored dtype)``."""


def _entries(header: Any, data_bytes: int) -> tuple[dict[str, str], list[tuple[int, Entry]]]:
    """The metadata and the tensors of a parsed header, in file order, with their sizes checked."""
    if not isinstance(header, dict):
        raise Unreadable("its header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise Unreadable("its __metadata__ is not an object of strings")
    found = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = (
            isinstance(info, dict)
            and info.get("dtype") in DTYPES
            and isinstance(info.get("shape"), list)
        )
        ok = ok and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in info["shape"]
        )
        offsets = info.get("data_offsets") if ok else None
        if (
            not ok
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(n, int) for n in offsets)
        ):
            raise Unreadable(
                f"the header's entry for {name!r} is not a tensor description: {str(info)[:80]}"
            )
        dtype = DTYPES[info["dtype"]]
        shape = tuple(info["shape"])
        if offsets[1] - offsets[0] != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise Unreadable(
                f"{name!r} has {offsets[1] - offsets[0]} bytes of data for {info['dtype']}{list(shape)}"
            )
        found.append((offsets[0], (name, shape, dtype), offsets[1]))
    found.sort(key=lambda t: t[0])
    position = 0
    for start, (name, _, _), end in found:
        if start != position:
            raise Unreadable(f"the data of {name!r} starts at byte {start}, not {position}")
        position = end
    if position != data_bytes:
        raise Unreadable(
            f"its tensors hold {position} bytes, the file {data_bytes} after the header"
        )
    return metadata, [(start, entry) for start, entry, _ in found]


def read(
    path: str | os.PathLike[str],
    *,
    sha256: Any,
    check: Callable[[dict[str, str], list[Entry]], None],
    place: Callable[[str, np.ndarray], Any],
) -> tuple[dict[str, str], dict[str, Any]]:
    """Read a safetensors file tensor by tensor, verifying its SHA-256 over exactly what was read.

    Args:
        path: the file.
        sha256: the expected SHA-256 (hex).
        check: called with the metadata and the tensors' ``(name, shape, dtype)`` before any
            data is read; raises to refuse the file (its exception is raised again, unless the
            file does not match ``sha256``).
        place: called with each tensor's name and a fresh array holding its stored bytes
            (64-byte aligned), returns what to keep for it (e.g. ``jax.device_put(array)``).

    Returns:
        The metadata and ``{name: place(name, array)}``, once the whole file matched ``sha256``.

    Raises:
        Damaged: the file's SHA-256 is not ``sha256``. Unreadable: it is, but the file is not
            a safetensors file. FileNotFoundError, OSError: as ``open`` raises them.
    """
    digest = hashlib.sha256()
    with open(Path(path), "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        done = 0

        def take(
            buffer: Any,
        ) -> bool:  # fill ``buffer`` from the file; False if the file ends first
            nonlocal done
            view = memoryview(buffer).cast("B")
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
            digest.update(view[:got])
            done += got
            return got == len(view)

        def refuse() -> None:  # hash the rest, then say Damaged if it does not match
            nonlocal done
            chunk = bytearray(_CHUNK)
            while n := f.readinto(chunk):
                digest.update(memoryview(chunk)[:n])
                done += n
            if digest.hexdigest() != sha256:
                raise Damaged(done) from None

        placed: dict[str, Any] = {}
        try:
            head = bytearray(8)
            if not take(head):
                raise Unreadable("it is shorter than the 8 bytes of its header's length")
            length = int.from_bytes(head, "little")
            if not 2 <= length <= min(_MAX_HEADER, size - 8):
                raise Unreadable(f"its header length {length} does not fit the file ({size} bytes)")
            text = bytearray(length)
            if not take(text):
                raise Unreadable("it ends inside its header")
            try:
                header = json.loads(text)
            except ValueError as e:
                raise Unreadable(f"its header is not JSON ({e})") from None
            metadata, entries = _entries(header, size - 8 - length)
            check(metadata, [entry for _, entry in entries])
            for _, (name, shape, dtype) in entries:
                buffer = _aligned(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
                if not take(buffer):
                    raise Unreadable(f"it ends inside the data of {name!r}")
                placed[name] = place(name, buffer.view(dtype).reshape(shape))
        except Exception:
            placed.clear()
            refuse()
            raise
        refuse()  # hashes what the file may have gained since fstat, and compares
    return metadata, placed
