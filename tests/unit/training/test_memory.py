"""``summary(..., optimizer=...)``: the memory plan on one device, counted by hand."""

import jax
import numpy as np
import optax
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L


def test_memory_plan_on_one_device_counts_parameters_state_and_gradients() -> None:
    model = ss.build(L.Linear(8) >> L.ReLU() >> L.Linear(3), Float32[Array, "batch 5"], seed=0)
    params = (5 * 8 + 8 + 8 * 3 + 3) * 4
    s = ss.summary(model, optimizer=optax.sgd(0.1, momentum=0.9))
    assert s.memory is not None
    assert s.memory.mesh == {"data": 1}
    assert s.memory.rows == {
        "parameters": (params, params),
        "optimizer state": (params, params),  # one momentum slot per parameter
        "gradients": (params, params),
    }
    assert [p.path for p in s.memory.placements] == [
        "0.Linear.bias",
        "0.Linear.kernel",
        "2.Linear.bias",
        "2.Linear.kernel",
    ]
    assert str(s).endswith(
        "memory                per device   on one device\n"
        "parameters              0.00 MiB        0.00 MiB\n"
        "optimizer state         0.00 MiB        0.00 MiB\n"
        "gradients               0.00 MiB        0.00 MiB"
    )


def test_temporaries_come_from_the_compiled_step() -> None:
    model = ss.build(L.Linear(64) >> L.ReLU() >> L.Linear(3), Float32[Array, "batch 32"], seed=0)
    batch = (np.zeros((128, 32), np.float32), jax.ShapeDtypeStruct((128,), np.int32))
    s = ss.summary(model, optimizer=optax.adam(1e-3), loss=ss.losses.cross_entropy, batch=batch)
    assert s.memory is not None
    temp, whole = s.memory.rows["temporaries"]
    # at least the hidden activations (128 x 64 float32) live while the gradient is computed
    assert temp is not None and temp >= 128 * 64 * 4 and whole is None


def test_a_plain_summary_has_no_memory_plan() -> None:
    model = ss.build(L.Linear(3), Float32[Array, "batch 5"], seed=0)
    s = ss.summary(model)
    assert s.memory is None and "per device" not in str(s)
