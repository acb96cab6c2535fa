"""Checkpoints: bitwise round-trips, atomic writes, refusal of another model's state, pruning,
no pickle, and a training process killed with SIGKILL that resumes to the same weights."""

import functools
import hashlib
import inspect
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import safetensors.numpy
from jaxtyping import Array, Float16, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._persist._checkpoint import load_latest, model_fingerprint, save_checkpoint
from shapesafe._training._engine import Engine

SPEC = Float32[Array, "batch 4"]
SCRIPT = Path(__file__).with_name("_train_script.py")


def _net(hidden: int = 8) -> Any:
    return L.Linear(hidden) >> L.BatchNorm() >> L.ReLU() >> L.Dropout(0.5) >> L.Linear(3)


@functools.cache  # the arrays are immutable: sharing them between tests is safe
def _state(seed: int, hidden: int, spec: Any) -> dict[str, Any]:
    model = ss.build(_net(hidden), spec, seed=seed)
    engine: Any = Engine(
        model, loss=ss.losses.cross_entropy, optimizer=optax.adam(1e-3), metrics=()
    )
    rng = np.random.default_rng(seed)

    def noise(x: Any) -> Any:
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(rng.standard_normal(x.shape).astype(x.dtype))
        return x

    trees = {
        "params": engine.params,
        "rest": engine.rest,
        "opt_state": engine.opt_state,
        "metrics": (jnp.asarray([3, 4], jnp.int32), jnp.float32(0.25)),
    }
    return {k: jax.tree.map(noise, v) for k, v in trees.items()}


def _trees(seed: int, hidden: int = 8, spec: Any = SPEC) -> dict[str, Any]:
    """A real engine's state (params, batch stats + RNG state, Adam state, a metric state), every
    float leaf filled with seeded noise so nothing is a trivial zero or one."""
    return dict(_state(seed, hidden, spec))


def _bits(x: Any) -> tuple[str, tuple[int, ...], bytes]:
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return str(x.dtype), x.shape, np.asarray(jax.random.key_data(x)).tobytes()
    a = np.asarray(x)
    return str(a.dtype), a.shape, a.tobytes()


def _assert_bitwise(got: Any, want: Any) -> None:
    assert str(jax.tree.structure(got)) == str(jax.tree.structure(want))
    for (path, g), w in zip(
        jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want), strict=True
    ):
        assert _bits(g) == _bits(w), jax.tree_util.keystr(path)


def _steps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- round trips ------------------------------------------------------------------------------------


def test_engine_state_round_trips_bitwise(tmp_path: Path) -> None:
    saved = _trees(seed=1)
    keys = [
        x for x in jax.tree.leaves(saved["rest"]) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    ]
    assert keys, "the model should carry a dropout RNG key"
    meta = {"epoch": 2, "position": 7, "history": {"loss": [2.5, 1.25]}}
    save_checkpoint(tmp_path, step=12, trees=saved, meta=meta)
    loaded, got_meta = load_latest(tmp_path, like=_trees(seed=2)) or pytest.fail("nothing loaded")
    assert got_meta == meta
    assert set(loaded) == set(saved)
    for name in saved:
        _assert_bitwise(loaded[name], saved[name])
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(loaded))
    # the restored RNG key continues the same random stream
    restored = [
        x for x in jax.tree.leaves(loaded["rest"]) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    ]
    assert restored[0].dtype == keys[0].dtype
    assert np.array_equal(jax.random.uniform(restored[0], (4,)), jax.random.uniform(keys[0], (4,)))


def test_unusual_dtypes_and_plain_numbers_round_trip(tmp_path: Path) -> None:
    tree = {
        "bf16": jnp.asarray([1.5, -2.25, 3e38], jnp.bfloat16),
        "f8": np.asarray([0.5, -1.0], ml_dtypes.float8_e4m3fn),
        "c64": jnp.asarray([1 + 2j], jnp.complex64),
        "i8": np.asarray([[-128, 127]], np.int8),
        "flags": jnp.asarray([True, False]),
        "scalar": jnp.float32(-0.0),
        "bf16_scalar": jnp.asarray(-1.5, jnp.bfloat16),
        "np_scalar": np.float32(0.1),
        "count": 7,
        "rate": 0.125,
        "rbg_keys": jax.random.split(jax.random.key(3, impl="rbg"), 2),
    }
    save_checkpoint(tmp_path, step=0, trees={"t": tree}, meta={})
    like = jax.tree.map(lambda x: x, tree)
    (loaded, _) = load_latest(tmp_path, like={"t": like}) or pytest.fail("nothing loaded")
    got = loaded["t"]
    assert got["count"] == 7 and isinstance(got["count"], int)
    assert got["rate"] == 0.125 and isinstance(got["rate"], float)
    assert isinstance(got["f8"], np.ndarray) and isinstance(got["bf16"], jax.Array)
    assert type(got["np_scalar"]) is np.float32
    for name in (
        "bf16",
        "f8",
        "c64",
        "i8",
        "flags",
        "scalar",
        "bf16_scalar",
        "np_scalar",
        "rbg_keys",
    ):
        assert _bits(got[name]) == _bits(tree[name]), name
    assert np.signbit(np.asarray(got["scalar"]))


def test_layout_is_safetensors_and_json_with_a_verifiable_hash(tmp_path: Path) -> None:
    trees = _trees(seed=0)
    path = save_checkpoint(tmp_path, step=5, trees=trees, meta={"epoch": 1})
    assert path == tmp_path / "step_00000005"
    assert _steps(path) == ["meta.json", "tensors.safetensors"]
    record = json.loads((path / "meta.json").read_text())
    assert record["version"] == 1 and record["step"] == 5 and record["meta"] == {"epoch": 1}
    data = (path / "tensors.safetensors").read_bytes()
    assert record["tensors_sha256"] == hashlib.sha256(data).hexdigest()
    # an independent reader sees every leaf under its tree-prefixed keystr path
    tensors = safetensors.numpy.load(data)
    kernel = "params['layers'][0]['kernel'].value"
    assert np.array_equal(tensors[kernel], np.asarray(trees["params"]["layers"][0]["kernel"][...]))
    described = {d["key"]: d for d in record["leaves"]}
    assert described[kernel] == {"key": kernel, "shape": [4, 8], "dtype": "float32"}
    key_entry = next(d for d in record["leaves"] if d["dtype"].startswith("key<"))
    assert key_entry["key"].startswith("rest[") and key_entry["impl"] == "threefry2x32"
    assert tensors[key_entry["key"]].dtype == np.uint32  # key data, re-wrapped on load
    assert record["fingerprint"] == model_fingerprint(trees)


def test_no_pickle_anywhere(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step=step, trees=_trees(seed=step), meta={"step": step}, keep=2)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} == {".json", ".safetensors"}
    for p in files:
        head = p.read_bytes()[:16]
        assert not head.startswith(b"\x80"), f"{p} looks like a pickle"
        if p.suffix == ".safetensors":  # 8-byte little-endian header length, then a JSON header
            (n,) = struct.unpack("<Q", head[:8])
            json.loads(p.read_bytes()[8 : 8 + n])


def test_fingerprint_depends_on_structure_not_values() -> None:
    assert model_fingerprint(_trees(seed=0)) == model_fingerprint(_trees(seed=1))
    assert model_fingerprint(_trees(seed=0)) != model_fingerprint(_trees(seed=0, hidden=16))
    assert len(model_fingerprint(_trees(seed=0))) == 12


# -- crashes and corruption ---------------------------------------------------------------------------


def _corrupt_truncate(path: Path) -> None:
    f = path / "tensors.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _corrupt_flip(path: Path) -> None:
    f = path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))


def _corrupt_drop_tensors(path: Path) -> None:
    (path / "tensors.safetensors").unlink()


def _corrupt_drop_meta(path: Path) -> None:
    (path / "meta.json").unlink()


def _corrupt_garble_meta(path: Path) -> None:
    f = path / "meta.json"
    f.write_text(f.read_text()[:40])


@pytest.mark.parametrize(
    ("corrupt", "why"),
    [
        (_corrupt_truncate, "SHA-256"),
        (_corrupt_flip, "SHA-256"),
        (_corrupt_drop_tensors, "tensors.safetensors is missing"),
        (_corrupt_drop_meta, "meta.json is missing"),
        (_corrupt_garble_meta, "meta.json is unreadable"),
    ],
    ids=["truncated-tensors", "flipped-byte", "missing-tensors", "missing-meta", "truncated-meta"],
)
def test_a_crash_mid_write_falls_back_to_the_previous_good_checkpoint(
    tmp_path: Path, corrupt: Any, why: str
) -> None:
    good = _trees(seed=1)
    save_checkpoint(tmp_path, step=10, trees=_trees(seed=0), meta={"step": 10})
    save_checkpoint(tmp_path, step=20, trees=good, meta={"step": 20})
    bad = save_checkpoint(tmp_path, step=30, trees=_trees(seed=2), meta={"step": 30})
    corrupt(bad)
    # debris of a write that never reached its rename
    debris = tmp_path / ".tmp-step_00000040-dead"
    debris.mkdir()
    (debris / "tensors.safetensors").write_bytes(b"\x00" * 10)
    before = _steps(tmp_path)
    with pytest.warns(UserWarning, match=rf"skipping the checkpoint .*step_00000030: .*{why}"):
        found = load_latest(tmp_path, like=_trees(seed=5))
    trees, meta = found or pytest.fail("nothing loaded")
    assert meta == {"step": 20}
    for name in good:
        _assert_bitwise(trees[name], good[name])
    assert _steps(tmp_path) == before  # loading deletes nothing
    # the next save clears the debris and keeps the three newest steps
    save_checkpoint(tmp_path, step=40, trees=good, meta={"step": 40})
    assert _steps(tmp_path) == ["step_00000020", "step_00000030", "step_00000040"]


def test_only_corrupt_checkpoints_warn_and_give_none(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, step=1, trees=_trees(seed=0), meta={})
    _corrupt_truncate(path)
    with pytest.warns(UserWarning, match="step_00000001"):
        assert load_latest(tmp_path, like=_trees(seed=0)) is None


def test_an_empty_or_missing_directory_holds_no_checkpoint(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "nowhere", like=_trees(seed=0)) is None
    (tmp_path / "stray").mkdir()
    (tmp_path / "step_notanumber").mkdir()
    assert load_latest(tmp_path, like=_trees(seed=0)) is None


def test_unserialisable_meta_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path, step=1, trees=_trees(seed=0), meta={"when": object()})
    assert not tmp_path.exists() or _steps(tmp_path) == []


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, step=1, trees=_trees(seed=0), meta={})
    record = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps(record | {"version": 99}))
    with pytest.raises(
        ss.ShapesafeError, match="format version 99, newer than this shapesafe reads"
    ):
        load_latest(tmp_path, like=_trees(seed=0))


# -- another model's checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "expected_line"),
    [
        (
            lambda: _trees(seed=0, hidden=16),
            r"params\['layers'\]\[0\]\['kernel'\]\.value: expected float32\[4, 16\], found float32\[4, 8\]",
        ),
        (
            lambda: _trees(seed=0, spec=Float16[Array, "batch 4"]),
            r"params\['layers'\]\[0\]\['kernel'\]\.value: expected float16\[4, 8\], found float32\[4, 8\]",
        ),
        (
            lambda: {**_trees(seed=0), "extra": {"w": jnp.zeros(2)}},
            r"extra\['w'\]: expected float32\[2\], found \(absent\)",
        ),
    ],
    ids=["wider-layer", "other-dtype", "extra-leaf"],
)
def test_a_different_model_is_refused_with_what_differs(
    tmp_path: Path, other: Any, expected_line: str
) -> None:
    save_checkpoint(tmp_path, step=3, trees=_trees(seed=0), meta={})
    before = _steps(tmp_path / "step_00000003")
    with pytest.raises(ss.ShapesafeError, match="written by a different model") as info:
        load_latest(tmp_path, like=other())
    message = str(info.value)
    assert "step_00000003" in message and "Use another checkpoint_dir" in message
    assert f"delete {tmp_path}" in message
    assert re.search(expected_line, message), message
    assert message.count("\n  ") <= 6  # a few differences shown, then a count
    assert _steps(tmp_path / "step_00000003") == before


def test_a_refusal_lists_the_first_differences_and_counts_the_rest(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, step=3, trees=_trees(seed=0), meta={})
    with pytest.raises(ss.ShapesafeError, match=r"and \d+ more") as info:
        load_latest(tmp_path, like=_trees(seed=0, hidden=16))
    assert str(info.value).count("expected float32") == 5


# -- keeping and replacing ---------------------------------------------------------------------------------


def test_keep_prunes_the_oldest_after_the_new_one_is_in_place(tmp_path: Path) -> None:
    trees = _trees(seed=0)
    for step in range(1, 7):
        save_checkpoint(tmp_path, step=step, trees=trees, meta={"step": step}, keep=2)
    assert _steps(tmp_path) == ["step_00000005", "step_00000006"]
    _, meta = load_latest(tmp_path, like=trees) or pytest.fail("nothing loaded")
    assert meta == {"step": 6}


def test_saving_a_step_again_replaces_it(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, step=4, trees=_trees(seed=0), meta={"epoch_done": False})
    save_checkpoint(tmp_path, step=4, trees=_trees(seed=1), meta={"epoch_done": True})
    assert _steps(tmp_path) == ["step_00000004"]
    trees, meta = load_latest(tmp_path, like=_trees(seed=0)) or pytest.fail("nothing loaded")
    assert meta == {"epoch_done": True}
    _assert_bitwise(trees["params"], _trees(seed=1)["params"])


def test_a_crash_while_replacing_a_step_keeps_the_set_aside_copy(tmp_path: Path) -> None:
    """Saving a step again moves the old copy aside, renames the new one in, then deletes the old:
    a crash between the two renames leaves only the set-aside copy, which still loads."""
    save_checkpoint(tmp_path, step=4, trees=_trees(seed=0), meta={"step": 3})
    good = _trees(seed=1)
    save_checkpoint(tmp_path, step=8, trees=good, meta={"step": 8})
    aside = tmp_path / ".old-step_00000008-dead"
    aside.mkdir()
    (tmp_path / "step_00000008").rename(aside / "step_00000008")
    trees, meta = load_latest(tmp_path, like=_trees(seed=2)) or pytest.fail("nothing loaded")
    assert meta == {"step": 8}
    _assert_bitwise(trees["params"], good["params"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step": -1}, "step must be a non-negative integer"),
        ({"step": 1, "keep": 0}, "keep must be a positive integer"),
    ],
    ids=["negative-step", "keep-zero"],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path, trees={}, meta={}, **kwargs)


# -- a real process killed with SIGKILL ----------------------------------------------------------------------

FIT_CHECKPOINTS = "checkpoint_dir" in inspect.signature(ss.fit).parameters
ARGS = [
    "--epochs",
    "3",
    "--checkpoint-every",
    "5",
    "--batch-size",
    "64",
    "--dropout",
    "0.2",
    "--batch-norm",
]
STEPS_PER_EPOCH = math.ceil(1797 / 64)  # scikit-learn's digits: 1797 images


def _script(directory: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        "--checkpoint-dir",
        str(directory),
        "--out",
        str(out),
        *ARGS,
        *extra,
    ]


def _start(command: list[str], cwd: Path, devices: int = 1) -> "subprocess.Popen[bytes]":
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # the bitwise promise is made for CPU
    if devices > 1:  # simulated CPU devices (XLA reads the flag once, when JAX starts)
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd
    )


def _finish(proc: "subprocess.Popen[bytes]", what: str) -> None:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{what} failed:\n{out.decode()[-3000:]}"


def _kill_mid_epoch(victim: "subprocess.Popen[bytes]", directory: Path) -> list[int]:
    """SIGKILL ``victim`` as soon as a checkpoint from the middle of epoch 2 is in place; the
    steps saved in ``directory`` when it died."""
    deadline = time.monotonic() + 120
    while True:
        steps = [int(p.name[5:]) for p in directory.glob("step_*")] if directory.exists() else []
        if any(s > STEPS_PER_EPOCH and s % STEPS_PER_EPOCH >= 5 for s in steps):
            break
        if victim.poll() is not None:
            out = victim.communicate()[0].decode()
            pytest.fail(
                f"the run ended (code {victim.returncode}) before it could be killed:\n{out[-3000:]}"
            )
        assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
        time.sleep(0.002)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    return sorted(int(p.name[5:]) for p in directory.glob("step_*"))


@pytest.mark.skipif(not FIT_CHECKPOINTS, reason="ss.fit does not take checkpoint_dir yet")
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_bitwise(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    a_out, b_out = tmp_path / "a.npz", tmp_path / "b.npz"
    # (1) uninterrupted, and (2) the same run, slowed so it can be killed, side by side
    whole = _start(_script(a_dir, a_out), tmp_path)
    victim = _start(_script(b_dir, b_out, "--slow", "0.03"), tmp_path)
    try:
        saved = _kill_mid_epoch(victim, b_dir)
        _finish(whole, "the uninterrupted run")
    finally:
        for proc in (victim, whole):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            if proc.stdout is not None and not proc.stdout.closed:
                proc.communicate(timeout=60)
    total = 3 * STEPS_PER_EPOCH
    assert saved and saved[-1] < total and saved[-1] % STEPS_PER_EPOCH, (
        f"not killed mid-epoch: {saved}"
    )
    assert not b_out.exists()
    # (3) the same command again, on B: it resumes from B's newest checkpoint and finishes
    _finish(_start(_script(b_dir, b_out), tmp_path), "the resumed run")

    a_report = json.loads(a_out.with_suffix(".json").read_text())
    b_report = json.loads(b_out.with_suffix(".json").read_text())
    assert a_report["steps_per_epoch"] == STEPS_PER_EPOCH and a_report["steps_run"] == total
    assert b_report["first_step"] == saved[-1] + 1, (
        "the rerun did not resume from the newest checkpoint"
    )
    assert b_report["steps_run"] == total - saved[-1]
    with np.load(a_out) as a_file, np.load(b_out) as b_file:
        a, b = dict(a_file), dict(b_file)
    assert sorted(a) == sorted(b) and len(a) >= 4
    for name in a:  # parameters, batch statistics and RNG state, bit for bit
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name
    # the resumed run's History is the uninterrupted run's (step losses and epoch logs but the time)
    assert b_report["history_steps"] == a_report["history_steps"]
    assert b_report["epochs"] == a_report["epochs"]


# The same kill and resume under FSDP on 8 simulated devices, with a hidden layer of 512 so that
# both kernels are split: (64, 512) along its 512 columns, (512, 10) along its 512 rows (each has
# at least ss.ShardingPlan's min_size=4096 elements); biases and BatchNorm's 512-vectors are not.
DEVICES, HIDDEN, F32 = 8, 512, 4
KERNELS = {
    "['layers'][0]['kernel'].value": 64 * HIDDEN,
    "['layers'][4]['kernel'].value": HIDDEN * 10,
}
SMALL = {"['layers'][0]['bias'].value": HIDDEN, "['layers'][1]['scale'].value": HIDDEN}
SMALL |= {"['layers'][1]['bias'].value": HIDDEN, "['layers'][4]['bias'].value": 10}


@pytest.mark.skipif(not FIT_CHECKPOINTS, reason="ss.fit does not take checkpoint_dir yet")
def test_a_run_killed_mid_epoch_under_fsdp_resumes_bitwise_and_still_sharded(
    tmp_path: Path,
) -> None:
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    a_out, b_out = tmp_path / "a.npz", tmp_path / "b.npz"
    extra = ("--fsdp", "--hidden", str(HIDDEN))
    whole = _start(_script(a_dir, a_out, *extra), tmp_path, DEVICES)
    victim = _start(_script(b_dir, b_out, *extra, "--slow", "0.03"), tmp_path, DEVICES)
    try:
        saved = _kill_mid_epoch(victim, b_dir)
        _finish(whole, "the uninterrupted FSDP run")
    finally:
        for proc in (victim, whole):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            if proc.stdout is not None and not proc.stdout.closed:
                proc.communicate(timeout=60)
    total = 3 * STEPS_PER_EPOCH
    assert saved and saved[-1] < total and saved[-1] % STEPS_PER_EPOCH, (
        f"not killed mid-epoch: {saved}"
    )
    assert not b_out.exists()
    _finish(_start(_script(b_dir, b_out, *extra), tmp_path, DEVICES), "the resumed FSDP run")

    a_report = json.loads(a_out.with_suffix(".json").read_text())
    b_report = json.loads(b_out.with_suffix(".json").read_text())
    assert a_report["devices"] == b_report["devices"] == DEVICES
    assert a_report["steps_run"] == total and b_report["steps_run"] == total - saved[-1]
    assert b_report["first_step"] == saved[-1] + 1  # resumed, not started over
    with np.load(a_out) as a_file, np.load(b_out) as b_file:
        a, b = dict(a_file), dict(b_file)
    assert sorted(a) == sorted(b) and len(a) >= 8
    for name in a:  # parameters, batch statistics and RNG state, bit for bit
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name
    assert len(a_report["history_steps"]) == total
    assert b_report["history_steps"] == a_report["history_steps"]  # every step's loss, exactly
    assert b_report["epochs"] == a_report["epochs"]

    # where the state lives: as restored (before the resumed run's first step), and at the end
    began, ended = b_report["began"], b_report["ended"]
    assert began["step"] == saved[-1]
    whole_bytes = {path: n * F32 for path, n in (KERNELS | SMALL).items()}
    expected = {p: [n // DEVICES] * DEVICES for p, n in whole_bytes.items() if p in KERNELS}
    expected |= {p: [n] * DEVICES for p, n in whole_bytes.items() if p in SMALL}
    for placement in (began["params"], ended["params"], a_report["began"]["params"]):
        assert placement == expected
    one = sum(b[0] for b in expected.values())
    assert began["opt_state"] == [one] * DEVICES  # SGD's momentum, placed like the parameters
    kernels = sum(KERNELS.values()) * F32
    assert sum(expected[p][0] for p in KERNELS) == kernels // DEVICES  # 1/8 of the kernels each
