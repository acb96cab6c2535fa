"""shapesafe._persist._safetensors: streamed weights files in the safetensors format, checked against the
safetensors library itself (its reader for what we write, its writer for what we read)."""

import hashlib

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

from shapesafe._persist._safetensors import Damaged, Unreadable, read, write

ARRAYS = {
    "flag": np.array([True, False, True]),
    "small": np.arange(5, dtype=np.int8),  # a 1-byte dtype first: the writer must realign the rest
    "scalar": np.array(2.5, np.float32),
    "empty": np.zeros((0, 3), np.float32),
    "wide": np.linspace(-1, 1, 12).reshape(3, 4),  # float64
    "counts": np.arange(6, dtype=np.uint32).reshape(2, 3),
}


def _no_check(metadata, entries):
    return None


def _keep(name, array):
    return array


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "w.safetensors"
    digest, size = write(path, list(ARRAYS.items()), metadata={"format": "test"})
    return path, digest, size


def test_safetensors_reads_what_is_written(written):
    path, digest, size = written
    data = path.read_bytes()
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    loaded = safetensors.numpy.load_file(str(path))
    assert set(loaded) == set(ARRAYS)
    for name, array in ARRAYS.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, name
        np.testing.assert_array_equal(loaded[name], array)
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"format": "test"}
    header = int.from_bytes(data[:8], "little")
    assert header % 8 == 0  # the data starts 8-byte aligned, as safetensors writes it


def test_jax_arrays_and_raw_bytes_dtypes(tmp_path):
    x = jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3)
    write(tmp_path / "b.safetensors", [("x", x), ("y", jnp.ones(2, jnp.float32))])
    loaded = safetensors.numpy.load_file(str(tmp_path / "b.safetensors"))
    assert loaded["x"].dtype == np.uint8 and loaded["x"].shape == (2, 3, 2)  # bfloat16 as raw bytes
    np.testing.assert_array_equal(
        loaded["x"].reshape(-1).view(ml_dtypes.bfloat16).reshape(2, 3),
        np.arange(6).reshape(2, 3).astype(ml_dtypes.bfloat16),
    )
    np.testing.assert_array_equal(loaded["y"], [1.0, 1.0])


def test_reads_what_safetensors_writes_into_aligned_buffers(tmp_path):
    path = tmp_path / "theirs.safetensors"
    safetensors.numpy.save_file(ARRAYS, str(path), metadata={"a": "b"})
    seen = []

    def check(metadata, entries):
        seen.append((metadata, {name: (shape, dtype.name) for name, shape, dtype in entries}))

    metadata, arrays = read(
        path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), check=check, place=_keep
    )
    assert metadata == {"a": "b"}
    assert seen[0][1] == {name: (a.shape, a.dtype.name) for name, a in ARRAYS.items()}
    for name, array in ARRAYS.items():
        np.testing.assert_array_equal(arrays[name], array)
        assert arrays[name].dtype == array.dtype and arrays[name].shape == array.shape
        assert arrays[name].size == 0 or arrays[name].ctypes.data % 64 == 0, name


def test_a_modified_file_is_damaged_whatever_else_breaks(written):
    path, digest, size = written
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Damaged) as e:
        read(path, sha256=digest, check=_no_check, place=_keep)
    assert e.value.nbytes == size

    def refuse(metadata, entries):
        raise ValueError("the caller refuses it")

    with pytest.raises(Damaged):  # the hash is what matters: the caller's refusal comes second
        read(path, sha256=digest, check=refuse, place=_keep)
    path.write_bytes(bytes(data[:8]) + b"{" + bytes(data[9:]))  # a broken header, too
    with pytest.raises(Damaged):
        read(path, sha256=digest, check=_no_check, place=_keep)


def test_a_truncated_file_is_damaged_with_its_size(written):
    path, digest, size = written
    path.write_bytes(path.read_bytes()[: size - 10])
    with pytest.raises(Damaged) as e:
        read(path, sha256=digest, check=_no_check, place=_keep)
    assert e.value.nbytes == size - 10


def _file(header: bytes, data_bytes: int) -> bytes:
    return len(header).to_bytes(8, "little") + header + b"\x00" * data_bytes


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 16, "header length 0"),
        (b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]", "not a JSON object"),
        (
            _file(b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', 4),
            r"'x' has 4 bytes of data for F32\[2\]",
        ),
        (
            _file(b'{"x":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', 3),
            r"the data of 'x' starts at byte 1, not 0",
        ),
        (
            _file(b'{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', 3),
            r"its tensors hold 2 bytes, the file 3",
        ),
    ],
    ids=["zeros", "not-an-object", "wrong-size", "a-gap", "extra-bytes"],
)
def test_a_file_with_its_own_hash_that_is_not_safetensors_is_unreadable(tmp_path, data, reason):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(Unreadable, match=reason):
        read(path, sha256=hashlib.sha256(data).hexdigest(), check=_no_check, place=_keep)


def test_the_callers_refusal_comes_before_any_data_is_placed(written):
    path, digest, _ = written
    placed = []

    def refuse(metadata, entries):
        raise KeyError("no such layer")

    with pytest.raises(KeyError, match="no such layer"):
        read(path, sha256=digest, check=refuse, place=lambda name, a: placed.append(name))
    assert placed == []
