"""Test settings and shared fixtures.

Strict promotion makes a silent broadcast or upcast fail a test. jaxtyping+beartype
checking of ``shapesafe`` and ``models`` is on through ``--jaxtyping-packages`` in
``pyproject.toml``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

# Property tests: ``ci`` (the default) keeps the whole property suite small enough for every
# run; ``pytest --hypothesis-profile=long`` draws many more examples for an occasional deep run.
# Tests that set ``max_examples`` themselves scale it by ``hypothesis_scale()``.
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile(
    "ci",
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_hypothesis_settings.register_profile(
    "long",
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_hypothesis_settings.load_profile("ci")


def hypothesis_scale() -> int:
    """How many times the examples a property test asks for: 1 under ``ci``, 20 under ``long``."""
    return 20 if _hypothesis_settings.get_current_profile_name() == "long" else 1


# The public modules: the docs' API pages and the docstring checks cover each of them.
PUBLIC_MODULES = [
    "shapesafe",
    "shapesafe.layers",
    "shapesafe.data",
    "shapesafe.losses",
    "shapesafe.metrics",
    "shapesafe.callbacks",
    "shapesafe.encoders",
    "shapesafe.decoders",
    "shapesafe.monitor",
    "shapesafe.typing",
]


class Batches:
    """Re-iterable ``(x, y)`` batches over arrays, in a fixed order (the last one may be short)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, size: int):
        self.x, self.y, self.size = x, y, size

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(0, len(self.x), self.size):
            yield self.x[i : i + self.size], self.y[i : i + self.size]

    def __len__(self) -> int:
        return -(-len(self.x) // self.size)


class Reader:
    """Batches read one by one, as from files: an iterable that is not a list, so ``fit``
    reads, checks and copies them batch by batch (the host path), never ahead."""

    def __init__(self, batches: list[Any]):
        self.batches = batches

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's real 8x8 handwritten digits, scaled to [0, 1], split 1500 / 297."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return x[:1500], y[:1500], x[1500:], y[1500:]


ROOT = Path(__file__).resolve().parents[1]


def run_benchmarks(
    scripts: dict[str, list[str]],
    env: dict[str, dict[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``benchmarks/<script> <args>`` for each entry at the same time (each in its own
    process, importing this checkout), and return each one's JSON output.

    ``env`` adds variables per script. A script that fails is an assertion error with its
    stderr; the others are then stopped (no process or pipe outlives the call).
    """
    base = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    running = {
        script: subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**base, **(env or {}).get(script, {})},
        )
        for script, args in scripts.items()
    }
    out = {}
    try:
        for script, process in running.items():
            stdout, stderr = process.communicate(timeout=180)
            assert process.returncode == 0, f"{script} failed:\n{stderr[-3000:]}"
            out[script] = json.loads(stdout)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
            process.communicate()
    return out


def run_on_devices(script: Path, devices: int, *, timeout: int) -> Any:
    """Run ``script`` in a fresh process with ``devices`` simulated CPU devices (from the
    ``tests/`` folder) and return the JSON it prints; its stderr is shown if it fails."""
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=script.parent.parent,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)
