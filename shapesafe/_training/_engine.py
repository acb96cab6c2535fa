"""The fast path: the model split once into state, and pure jitted steps over that state.

``nnx.split`` separates the graph (static) from the trainable parameters (``nnx.Param``)
and everything else (batch statistics, RNG counters, frozen parameters). The steps below
are plain ``jax.jit`` functions of those states with buffer donation, so a step costs one
dispatch, not a walk over the module tree (``nnx.jit``'s ~1 ms of Python per call).
Several steps per call run under ``lax.scan`` where dispatch dominates.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

Metric = Any  # an object with name, init(), update(state, outputs, targets, mask), compute(state)


class TrainState(NamedTuple):
    """What a training step reads and returns: the trainable parameters (``nnx.Param``),
    everything else the model holds (batch statistics, RNG counters, frozen parameters) and
    the optimizer's state. Inside ``Engine`` each field holds its tree's leaves as a flat list
    (``TrainState.of``): lists and named tuples flatten in C++, ``nnx.State`` in
    Python (~40 us a call for a small MLP)."""

    params: Any
    rest: Any
    opt_state: Any

    @staticmethod
    def of(trees: "TrainState") -> tuple["TrainState", "TrainState"]:
        """Flat leaves and treedefs of ``trees``."""
        flat = [jax.tree.flatten(t) for t in trees]
        return TrainState(*(lv for lv, _ in flat)), TrainState(*(td for _, td in flat))


def _state_field(name: str) -> Any:
    """A property of ``Engine`` that shows one ``TrainState`` field as a tree."""

    def get(self: "Engine") -> Any:
        return jax.tree.unflatten(getattr(self.defs, name), getattr(self.state, name))

    def put(self: "Engine", tree: Any) -> None:
        leaves, treedef = jax.tree.flatten(tree)
        self.state = self.state._replace(**{name: leaves})
        self.defs = self.defs._replace(**{name: treedef})

    return property(get, put)


class Engine:
    """Jitted train/eval/predict steps for one model, loss, optimizer and metric set."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        loss: Callable[..., Any] | None,
        optimizer: optax.GradientTransformation | None,
        metrics: Sequence[Metric],
    ):
        self.loss, self.optimizer, self.metrics = loss, optimizer, tuple(metrics)
        model.eval()
        self.eval_graph = nnx.split(model, nnx.Param, ...)[0]
        model.train()
        split: tuple[Any, ...] = nnx.split(model, nnx.Param, ...)
        self.train_graph: Any = split[0]
        model.eval()  # the steps carry their own mode; the model itself is left for inference
        opt_state = optimizer.init(split[1]) if optimizer is not None else None
        self.state, self.defs = TrainState.of(TrainState(split[1], split[2], opt_state))
        self._train = jax.jit(self._flat(self._train_step, 3), donate_argnums=(0,))
        self._train_many = jax.jit(self._flat(self._train_scan, 3), donate_argnums=(0,))
        self._eval = jax.jit(self._flat(self._eval_step, 0))
        self._predict = jax.jit(self._flat(self._predict_step, 0))

    # -- the state: trees outside, flat leaves (``self.state``) for the jitted calls -----------
    params = _state_field("params")
    rest = _state_field("rest")
    opt_state = _state_field("opt_state")

    def _flat(self, fn: Callable[..., Any], returns: int) -> Callable[..., Any]:
        """``fn(params, rest[, opt_state], *args)`` as a function of flat leaves; when it returns
        updated state (``returns`` trees first), those come back as a flat ``TrainState``."""

        def flat(state: tuple[Any, ...], *args: Any) -> Any:
            trees = [jax.tree.unflatten(t, lv) for t, lv in zip(self.defs, state, strict=False)]
            out = fn(*trees, *args)
            if not returns:
                return out
            new = []
            for tree, want in zip(out[:returns], self.defs, strict=False):
                lv, treedef = jax.tree.flatten(tree)
                if treedef != want:
                    raise TypeError(
                        f"the training step changed the structure of its state: {treedef} != {want}"
                    )
                new.append(lv)
            return (TrainState(*new), *out[returns:])

        return flat

    # -- pure functions ---------------------------------------------------------------------
    def _train_step(
        self,
        params: Any,
        rest: Any,
        opt_state: Any,
        mstates: tuple[Any, ...],
        x: Any,
        y: Any,
        mask: Any,
    ) -> tuple[Any, ...]:
        loss, optimizer = self.loss, self.optimizer
        if loss is None or optimizer is None:
            raise ValueError("training needs a loss and an optimizer")

        def objective(p: Any) -> tuple[Any, tuple[Any, Any]]:
            model = nnx.merge(
                self.train_graph, p, rest, copy=True
            )  # fresh variables at this trace level
            out = model(x)
            value = loss(out, y, mask=mask)
            after: tuple[Any, ...] = nnx.split(model, nnx.Param, ...)
            return value, (out, after[2])

        (value, (out, new_rest)), grads = jax.value_and_grad(objective, has_aux=True)(params)

        # A non-finite loss applies no update: the state stays that of the last good step. The
        # update runs under `lax.cond`; a `jnp.where` over every leaf afterwards made XLA copy
        # the optimizer state (about 30 us a step for a small MLP on CPU).
        def update(grads: Any, opt_state: Any, params: Any, new_rest: Any) -> tuple[Any, Any, Any]:
            with jax.numpy_dtype_promotion(
                "standard"
            ):  # optax mixes int counts and floats internally
                updates, new_opt_state = optimizer.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), new_rest, new_opt_state

        def skip(grads: Any, opt_state: Any, params: Any, new_rest: Any) -> tuple[Any, Any, Any]:
            return params, rest, opt_state

        new_params, new_rest, new_opt_state = jax.lax.cond(
            jnp.isfinite(value), update, skip, grads, opt_state, params, new_rest
        )
        mstates = tuple(
            m.update(s, out, y, mask) for m, s in zip(self.metrics, mstates, strict=True)
        )
        return new_params, new_rest, new_opt_state, mstates, value

    def _train_scan(
        self,
        params: Any,
        rest: Any,
        opt_state: Any,
        mstates: tuple[Any, ...],
        xs: Any,
        ys: Any,
        masks: Any,
    ) -> tuple[Any, ...]:
        def body(
            carry: tuple[Any, ...], batch: tuple[Any, Any, Any]
        ) -> tuple[tuple[Any, ...], Any]:
            p, r, o, m = carry
            *new, value = self._train_step(p, r, o, m, *batch)
            return tuple(new), value

        (params, rest, opt_state, mstates), values = jax.lax.scan(
            body, (params, rest, opt_state, mstates), (xs, ys, masks)
        )
        return params, rest, opt_state, mstates, values

    def _eval_step(
        self, params: Any, rest: Any, mstates: tuple[Any, ...], x: Any, y: Any, mask: Any
    ) -> tuple[Any, Any, Any]:
        out = nnx.merge(self.eval_graph, params, rest)(x)
        mstates = tuple(
            m.update(s, out, y, mask) for m, s in zip(self.metrics, mstates, strict=True)
        )
        if self.loss is None:
            return mstates, jnp.zeros(()), jnp.sum(mask).astype(jnp.float32)
        value = self.loss(out, y, mask=mask)
        n = jnp.sum(mask).astype(value.dtype)
        return mstates, value * n, n

    def _predict_step(self, params: Any, rest: Any, x: Any) -> Any:
        return nnx.merge(self.eval_graph, params, rest)(x)

    # -- host side ----------------------------------------------------------------------------
    def init_metrics(self) -> tuple[Any, ...]:
        return tuple(m.init() for m in self.metrics)

    def compute_metrics(self, mstates: tuple[Any, ...], prefix: str = "") -> dict[str, Any]:
        logs: dict[str, Any] = {}
        for m, s in zip(self.metrics, mstates, strict=True):
            value = m.compute(s)
            if jnp.ndim(value) == 0:
                logs[prefix + m.name] = float(value)
        return logs

    def train(
        self, mstates: tuple[Any, ...], x: Any, y: Any, mask: Any
    ) -> tuple[tuple[Any, ...], Any]:
        step = self._train_many if jnp.ndim(mask) == 2 else self._train
        self.state, mstates, value = step(self.state, mstates, x, y, mask)
        return mstates, value

    def evaluate(
        self, mstates: tuple[Any, ...], x: Any, y: Any, mask: Any
    ) -> tuple[tuple[Any, ...], Any, Any]:
        return self._eval((self.state.params, self.state.rest), mstates, x, y, mask)

    def predict(self, x: Any) -> Any:
        return self._predict((self.state.params, self.state.rest), x)

    def write_back(self, model: nnx.Module) -> None:
        """Copy the trained state into ``model`` (the one place a module is mutated)."""
        nnx.update(model, self.params, self.rest)

    def learning_rate(self) -> float | None:
        """The current learning rate, where the optimizer exposes it (``optax.inject_hyperparams``)."""
        found: list[Any] = []

        def visit(node: Any) -> None:
            hp = getattr(node, "hyperparams", None)
            if isinstance(hp, dict) and "learning_rate" in hp:
                found.append(hp["learning_rate"])
            elif isinstance(node, tuple | list):
                for child in node:
                    visit(child)

        visit(self.opt_state)
        return float(found[0]) if found else None
