"""One battery over every model of the zoo (``models.zoo.REGISTRY``).

Each model is built once per module (small sizes, see ``models/zoo.py``) and must: build;
output ``Float32[batch, classes]`` for any batch size; give the same outputs jitted and
eager; have finite gradients of the cross-entropy for every parameter; have its loss lowered
by one SGD step on a fixed batch; refuse a wrong input with ``ShapeError``, eagerly and under
``jax.jit``; and compile once for repeated calls with the same shapes.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import shapesafe as ss
from shapesafe.models.zoo import REGISTRY, ZooModel


class Zoo:
    """One zoo model, built once, with its jitted forward (eval mode) and loss gradient (train mode).

    Both are plain ``jax.jit`` functions over ``nnx.split`` state, as ``ss.fit`` runs them, and
    are shared by the tests so that each model compiles each program once.
    """

    def __init__(self, made: ZooModel):
        self.made = made
        self.model = ss.build(made.blueprint, made.spec, seed=0)
        self.model.eval()
        eval_graph, state = nnx.split(self.model)
        self.model.train()
        train_split: tuple[Any, ...] = nnx.split(self.model, nnx.Param, ...)
        train_graph, params, rest = train_split
        self.state: Any = state
        self.params: Any = params
        self.traces = 0

        def forward(state: Any, x: Any) -> Any:
            self.traces += 1
            return nnx.merge(eval_graph, state)(x)

        def loss(params: Any, x: Any, y: Any) -> Any:
            return ss.losses.cross_entropy(nnx.merge(train_graph, params, rest, copy=True)(x), y)

        self.forward = jax.jit(forward)
        self.value_and_grad = jax.jit(jax.value_and_grad(loss))


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def zoo(request: pytest.FixtureRequest) -> Zoo:
    return Zoo(REGISTRY[request.param]())


def test_builds_with_finite_parameters(zoo: Zoo) -> None:
    model = zoo.model
    assert isinstance(model, ss.Model)
    assert model.blueprint == zoo.made.blueprint
    leaves = jax.tree.leaves(zoo.params)
    assert leaves, "a zoo model without parameters cannot learn"
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in leaves)
    assert ss.summary(model).trainable_params == sum(int(np.prod(p.shape)) for p in leaves)


@pytest.mark.parametrize("n", [1, 5], ids=["batch1", "batch5"])
def test_output_is_float32_batch_by_classes(zoo: Zoo, n: int) -> None:
    classes = zoo.made.classes
    assert ss.summary(zoo.model).output_spec == f"Float32[batch, {classes}]"
    zoo.model.eval()
    out = zoo.model(jnp.asarray(zoo.made.batch(n)[0]))
    assert out.shape == (n, classes)
    assert out.dtype == jnp.float32


def test_jit_equals_eager(zoo: Zoo) -> None:
    x = jnp.asarray(zoo.made.batch(4, seed=1)[0])
    zoo.model.eval()
    eager = zoo.model(x)
    np.testing.assert_allclose(
        np.asarray(zoo.forward(zoo.state, x)), np.asarray(eager), rtol=1e-5, atol=1e-5
    )


def test_gradients_are_finite_and_reach_every_parameter(zoo: Zoo) -> None:
    x, y = zoo.made.batch(8)
    value, grads = zoo.value_and_grad(zoo.params, x, y)
    assert bool(jnp.isfinite(value))
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert len(flat) == len(jax.tree.leaves(zoo.params))
    for path, g in flat:
        name = jax.tree_util.keystr(path)
        assert bool(jnp.all(jnp.isfinite(g))), f"non-finite gradient for {name}"
        assert bool(jnp.any(g != 0)), f"no gradient reaches {name}"


def test_one_sgd_step_lowers_the_loss_on_a_fixed_batch(zoo: Zoo) -> None:
    x, y = zoo.made.batch(8, seed=2)
    before, grads = zoo.value_and_grad(zoo.params, x, y)
    tx = optax.sgd(zoo.made.learning_rate)
    updates, _ = tx.update(grads, tx.init(zoo.params), zoo.params)
    after, _ = zoo.value_and_grad(optax.apply_updates(zoo.params, updates), x, y)
    assert float(after) < float(before)


def _wrong_inputs(made: ZooModel) -> dict[str, np.ndarray]:
    x, _ = made.batch(2)
    other = np.float32 if np.issubdtype(x.dtype, np.integer) else np.uint8
    bigger = np.concatenate([x, x[:, -1:]], axis=1)  # the first non-batch dimension one larger
    return {"dtype": x.astype(other), "size": bigger, "no_batch_dim": x[0]}


@pytest.mark.parametrize("how", ["eager", "jit"])
def test_a_wrong_input_raises_shape_error(zoo: Zoo, how: str) -> None:
    zoo.model.eval()
    for what, x in _wrong_inputs(zoo.made).items():
        with pytest.raises(ss.ShapeError, match="does not match the spec the model was built for"):
            zoo.model(jnp.asarray(x)) if how == "eager" else zoo.forward(zoo.state, x)
            pytest.fail(f"a wrong {what} was accepted")


def test_compiles_once_for_calls_with_the_same_shapes(zoo: Zoo) -> None:
    before = zoo.traces
    for seed in (0, 1):
        zoo.forward(zoo.state, zoo.made.batch(3, seed=seed)[0])
    assert zoo.traces - before == 1
    zoo.forward(
        zoo.state, zoo.made.batch(4, seed=2)[0]
    )  # seen by test_jit_equals_eager: no new trace
    assert zoo.traces - before == 1
