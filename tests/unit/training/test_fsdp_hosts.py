"""Several hosts: two processes of two CPU devices each, joined by ``jax.distributed`` (gloo),
train the same FSDP run as one process of four devices. The runs happen in subprocesses
(``tests/unit/training/_fsdp_hosts_script.py``), since the device count is fixed when JAX
starts; this file compares what they print."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("_fsdp_hosts_script.py")


def _env(devices: int) -> dict[str, str]:
    return dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
    )


def _last_json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])  # gloo logs its connections on stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def runs() -> dict[str, Any]:
    cmd = [sys.executable, str(SCRIPT)]
    one = subprocess.Popen(
        cmd, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    port = str(_free_port())
    hosts = [
        subprocess.Popen(
            [*cmd, "--processes", "2", "--process-id", str(i), "--port", port],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    outs = {}
    for name, proc in (("one", one), ("host0", hosts[0]), ("host1", hosts[1])):
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in (one, *hosts):
                p.kill()
            raise
        assert proc.returncode == 0, f"{name}: {err[-4000:]}"
        outs[name] = out
    return {"one": _last_json(outs["one"]), "two": _last_json(outs["host0"])}


def test_two_processes_of_two_devices_make_one_mesh_of_four(runs: dict[str, Any]) -> None:
    one, two = runs["one"], runs["two"]
    assert (one["processes"], one["devices"]) == (1, 4)
    assert (two["processes"], two["devices"]) == (2, 4)
    # Linear(128)'s (64, 128) kernel: a quarter on every device in both set-ups
    assert one["kernel_shard"] == two["kernel_shard"] == [[64, 32]]


def test_two_processes_train_the_one_process_fsdp_run(runs: dict[str, Any]) -> None:
    one, two = runs["one"], runs["two"]
    assert len(one["steps"]) == len(two["steps"]) == 2 * 16  # 1024 examples, batches of 64
    assert one["steps"][-1] < 0.6 * one["steps"][0]  # it trained
    np.testing.assert_allclose(two["steps"], one["steps"], rtol=1e-5)
    for a, b in zip(two["params"], one["params"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
