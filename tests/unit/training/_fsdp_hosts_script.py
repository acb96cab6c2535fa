"""Train one FSDP MLP on scikit-learn's digits as process ``--process-id`` of ``--processes``;
print JSON (process 0 only).

Run by ``tests/unit/training/test_fsdp_hosts.py`` in subprocesses with
``XLA_FLAGS=--xla_force_host_platform_device_count=<n>`` (set before JAX starts): two processes
of two CPU devices each, joined by ``jax.distributed.initialize`` over gloo, or one process of
four devices. Each global batch of 64 holds the same examples in both set-ups; a process yields
its own contiguous part of it (``64 // processes`` examples), as a host would. The JSON holds
the per-step losses, every parameter gathered whole (``process_allgather``), the device and
process counts, and the per-device shard shape of the first kernel.
"""

import argparse
import json
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jaxtyping import Array, Float32
from sklearn.datasets import load_digits

import shapesafe as ss
from shapesafe import layers as L

BATCH = 64


class Part:
    """This process's contiguous part of each global batch, in a fixed order."""

    def __init__(self, x: np.ndarray, y: np.ndarray, index: int, count: int):
        self.x, self.y, self.index, self.count = x, y, index, count

    def __iter__(self) -> Any:
        part = BATCH // self.count
        for i in range(0, len(self.x) - BATCH + 1, BATCH):
            lo = i + self.index * part
            yield {"image": self.x[lo : lo + part], "label": self.y[lo : lo + part]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.processes,
            process_id=args.process_id,
        )
    x, y = load_digits(return_X_y=True)
    x, y = (x[:1024] / 16.0).astype(np.float32), y[:1024].astype(np.int32)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    net = L.Linear(128) >> L.ReLU() >> L.Linear(64) >> L.ReLU() >> L.Linear(10)
    model = ss.build(net, Float32[Array, "batch 64"], seed=0, mesh=mesh, sharding="fsdp")
    history = ss.fit(
        model,
        Part(x, y, jax.process_index(), jax.process_count()),
        loss=ss.losses.cross_entropy,
        optimizer=optax.adam(1e-2),
        epochs=2,
        mesh=mesh,
        sharding="fsdp",
        progress=False,
    )
    params = nnx.state(model, nnx.Param)
    kernel = model.layers[0].kernel[...]  # type: ignore[union-attr]
    whole = [
        np.asarray(multihost_utils.process_allgather(a, tiled=True)).tolist()
        for a in jax.tree.leaves(params)
    ]
    if jax.process_index() == 0:
        print(
            json.dumps(
                {
                    "devices": jax.device_count(),
                    "processes": jax.process_count(),
                    "kernel_shard": sorted(
                        {tuple(s.data.shape) for s in kernel.addressable_shards}
                    ),
                    "steps": history.steps,
                    "params": whole,
                }
            )
        )


if __name__ == "__main__":
    main()
