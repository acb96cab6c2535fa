"""Peak memory of saving and loading a large model: ``ss.save`` / ``ss.load`` vs safetensors.

The model is the talk's CNN at 250x250 (``ss.build(talk.cnn(), talk.image_spec(250))``,
251,922,818 parameters, 961 MiB of float32). Each measurement runs in a fresh process: it
builds (or not) what it needs, records its resident set size, resets the kernel's peak
(``/proc/self/clear_refs``), does the one operation, and reports the peak minus the start
(``VmHWM - VmRSS``): the extra memory the operation needed beyond what was already there.

- ``shapesafe_save``: ``ss.save(model, path)`` of the built model;
- ``safetensors_save_file``: ``safetensors.numpy.save_file`` of the same arrays (host views of
  the model's arrays, no copy on the CPU), the peer;
- ``shapesafe_load``: ``ss.load(path)``, ending with the model in JAX arrays;
- ``safetensors_load_file``: ``safetensors.numpy.load_file`` of the peer's file (NumPy arrays),
  and ``safetensors_load_file_to_jax``: the same, then ``jnp.asarray`` of each array.

The loaded model's weights are compared with the peer's file (read with ``safe_open``), and
the artifact's weights file is read with ``safe_open`` too: the same format, the same values.
Linux only (``/proc``). Prints one JSON object.

    python benchmarks/artifact_memory.py              # 250x250x3, the talk's size
"""

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common
import jax
import jax.numpy as jnp
import numpy as np

STEPS = (
    "shapesafe_save",
    "safetensors_save_file",
    "shapesafe_load",
    "safetensors_load_file",
    "safetensors_load_file_to_jax",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=int, default=250, help="image height and width (default 250, the talk's)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="fresh processes per step (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights (default 0)")
    parser.add_argument(
        "--child", choices=STEPS, help=argparse.SUPPRESS
    )  # one measurement, in this process
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument(
        "--inline",
        action="store_true",  # the tests' smoke run: one process, figures not clean
        help=argparse.SUPPRESS,
    )
    return parser.parse_args(argv)


def _status(field: str) -> float:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _measure(operation: Any) -> tuple[Any, float, float]:
    """``(result, peak RSS increase in MiB, wall seconds)`` of ``operation()``."""
    gc.collect()
    try:  # hand memory freed since the build back to the system, so that the start is steady
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    time.sleep(0.5)
    start = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    t0 = time.perf_counter()
    result = jax.block_until_ready(operation())
    seconds = time.perf_counter() - t0
    return result, _status("VmHWM") - start, seconds


def _host_arrays(model: Any) -> dict[str, np.ndarray]:
    """Every variable of ``model`` as a host array by dotted path (RNG keys as key data), as a
    safetensors user would write them: views of the model's arrays on the CPU."""
    from flax import nnx

    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        value = var.get_value()
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        out[".".join(map(str, path))] = np.asarray(value)
    return out


def child(step: str, size: int, seed: int, directory: Path) -> dict[str, Any]:
    import safetensors.numpy
    from safetensors import safe_open

    import shapesafe as ss

    artifact, peer = directory / "artifact", directory / "peer.safetensors"
    out: dict[str, Any] = {}
    if step in ("shapesafe_save", "safetensors_save_file"):
        model = common.build_shapesafe(size, seed)
        from flax import nnx

        jax.block_until_ready(nnx.state(model))  # the build's initialisation may still be running
        if step == "shapesafe_save":
            _, out["peak_mib"], out["seconds"] = _measure(
                lambda: ss.save(model, artifact, overwrite=True)  # repeats rewrite it
            )
        else:
            arrays = _host_arrays(model)
            _, out["peak_mib"], out["seconds"] = _measure(
                lambda: safetensors.numpy.save_file(arrays, str(peer))
            )
        out["param_count"] = common.param_count(model)
    elif step == "shapesafe_load":
        loaded, out["peak_mib"], out["seconds"] = _measure(lambda: ss.load(artifact))
        ours = _host_arrays(loaded)
        with (
            safe_open(str(peer), framework="numpy") as theirs,
            safe_open(str(artifact / "weights.safetensors"), framework="numpy") as file,
        ):
            out["loaded_equals_peer_file"] = set(theirs.keys()) == set(ours) and all(
                np.array_equal(theirs.get_tensor(k), v) for k, v in ours.items()
            )
            out["artifact_file_equals_peer_file"] = set(file.keys()) == set(theirs.keys()) and all(
                np.array_equal(file.get_tensor(k), theirs.get_tensor(k)) for k in theirs.keys()
            )
    elif step == "safetensors_load_file":
        _, out["peak_mib"], out["seconds"] = _measure(
            lambda: safetensors.numpy.load_file(str(peer))
        )
    else:

        def to_jax() -> dict[str, Any]:
            return {k: jnp.asarray(v) for k, v in safetensors.numpy.load_file(str(peer)).items()}

        _, out["peak_mib"], out["seconds"] = _measure(to_jax)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.size, args.seed, Path(args.dir))))
        return
    runs: dict[str, list[dict[str, Any]]] = {step: [] for step in STEPS}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            for step in STEPS:  # saves first: the loads read what they wrote
                if args.inline:
                    runs[step].append(child(step, args.size, args.seed, Path(work)))
                    continue
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        step,
                        "--size",
                        str(args.size),
                        "--seed",
                        str(args.seed),
                        "--dir",
                        work,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{step} failed:\n{done.stderr[-3000:]}")
                runs[step].append(json.loads(done.stdout.strip().splitlines()[-1]))
        weights = Path(work, "artifact", "weights.safetensors").stat().st_size
        peer = Path(work, "peer.safetensors").stat().st_size
    weights_mib = weights / 2**20
    peak = {step: float(np.median([r["peak_mib"] for r in runs[step]])) for step in STEPS}
    loads = runs["shapesafe_load"]
    common.emit(
        {
            "benchmark": "artifact_memory",
            **common.environment(),
            "parameters": {"size": args.size, "repeats": args.repeats, "seed": args.seed},
            "param_count": runs["shapesafe_save"][0]["param_count"],
            "weights_file_mib": round(weights_mib, 1),
            "peer_file_mib": round(peer / 2**20, 1),
            "peak_rss_increase_mib": {step: round(v, 1) for step, v in peak.items()},
            "peak_over_weights": {step: round(v / weights_mib, 3) for step, v in peak.items()},
            "seconds": {
                step: round(float(np.median([r["seconds"] for r in runs[step]])), 3)
                for step in STEPS
            },
            "samples_mib": {step: [round(r["peak_mib"], 1) for r in runs[step]] for step in STEPS},
            "loaded_equals_peer_file": all(r["loaded_equals_peer_file"] for r in loads),
            "artifact_file_equals_peer_file": all(
                r["artifact_file_equals_peer_file"] for r in loads
            ),
        }
    )


if __name__ == "__main__":
    main()
