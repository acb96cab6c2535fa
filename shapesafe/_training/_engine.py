"""The fast path: the model split once into state, and pure jitted steps over that state.

``nnx.split`` separates the graph (static) from the trainable parameters (``nnx.Param``)
and everything else (batch statistics, RNG counters, frozen parameters). The steps below
are plain ``jax.jit`` functions of those states with buffer donation, so a step costs one
dispatch, not a walk over the module tree (``nnx.jit``'s ~1 ms of Python per call).
Several steps per call run under ``lax.scan`` where dispatch dominates.
"""

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from .._sharding import ShardingPlan, state_shardings
from ..layers._forward import Forward, cast_floating, running
from . import _step_log as step_log
from ._data_checks import label_classes, value_flags
from ._split import model_state, write_back

Metric = Any  # an object with name, init(), update(state, outputs, targets, mask), compute(state)


class TrainState(NamedTuple):
    """What a training step reads and returns: the trainable parameters (``nnx.Param``),
    everything else the model holds (batch statistics, RNG counters, frozen parameters) and
    the optimizer's state. Inside ``Engine`` each field holds its tree's leaves as a flat list
    (and ``Engine.defs`` the treedefs): lists and named tuples flatten in C++, ``nnx.State`` in
    Python (~40 us a call for a small MLP)."""

    params: Any
    rest: Any
    opt_state: Any


def _state_field(name: str) -> Any:
    """A property of ``Engine`` that shows one ``TrainState`` field as a tree."""

    def get(self: "Engine") -> Any:
        return jax.tree.unflatten(getattr(self.defs, name), getattr(self.state, name))

    def put(self: "Engine", tree: Any) -> None:
        leaves, treedef = jax.tree.flatten(tree)
        self.state = self.state._replace(**{name: leaves})
        if treedef != getattr(self.defs, name):  # another structure: other programs
            self.defs = self.defs._replace(**{name: treedef})
            self.programs = self._programs()

    return property(get, put)


class Batches(NamedTuple):
    """A batch (or ``steps`` batches stacked on a leading axis) for the step: ``(x, y, mask)``
    of host or device arrays."""

    x: Any
    y: Any
    mask: Any  # bool (batch,) or (steps, batch)
    checks: bool  # the step checks the values (False: the host checked them as it read them)


class Slices(NamedTuple):
    """The next batch (or ``steps`` batches) of arrays already on the device, which hold
    batches one after the other: the step slices its batch out itself, batch ``n`` being rows
    ``n * size`` on (``size`` the mask's length). The step log carries ``n`` on the device
    (``_step_log``; a host scalar cost about 2 us of transfer a step): ``number`` is what the
    host knows of it, written into a fresh log buffer, and ``restart`` starts one there (the
    first batch of other arrays). ``keys`` pick the element's inputs and targets."""

    arrays: Any
    mask: Any  # bool (batch,) or (steps, batch)
    keys: tuple[Any, Any]
    checks: bool  # the step checks the batches' values (False: the arrays were checked whole)
    number: int  # the first batch's number in ``arrays``
    restart: bool  # the log counts from ``number`` anew


class _Id:
    """A key part compared by identity: losses, optimizers and metrics are the user's objects,
    often unhashable, and two equal-looking ones may still compile differently."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Id) and other.obj is self.obj


class Programs:
    """The jitted train/eval/predict steps of one model structure, loss, optimizer and metric
    set. ``programs()`` shares one per key, so a second ``fit`` (or ``evaluate``, ``predict``)
    on the same model with the same objects reuses the compiled steps; what changes the program
    (another loss or optimizer object, freezing, a new batch shape) compiles anew, and only that.
    """

    def __init__(
        self,
        train_graph: Any,
        eval_graph: Any,
        defs: TrainState,
        loss: Callable[..., Any] | None,
        optimizer: optax.GradientTransformation | None,
        metrics: tuple[Metric, ...],
        shardings: TrainState | None = None,
        forward: Forward | None = None,
        classes: int | None = None,
    ):
        self.train_graph, self.eval_graph, self.defs = train_graph, eval_graph, defs
        self.classes = classes  # the model's class count: the step checks labels against it
        self.loss, self.optimizer, self.metrics = loss, optimizer, metrics
        self.shardings = shardings  # flat NamedShardings of the state (a plan), or None
        self.forward = forward  # the training forward's remat and compute dtype, or None
        self._options = compiler_options(forward)
        self._train: dict[tuple[Any, bool], Callable[..., Any]] = {}
        self.eval = jax.jit(self._flat(self._eval_step, 0, "eval_step"))
        self.predict = jax.jit(self._flat(self._predict_step, 0, "predict_step"))

    def _flat(self, fn: Callable[..., Any], returns: int, name: str) -> Callable[..., Any]:
        """``fn(params, rest[, opt_state], *args)`` as a function of flat leaves; when it returns
        updated state (``returns`` trees first), those come back as a flat ``TrainState``.
        ``name`` is what JAX's logs and profiles call the program."""

        def flat(state: tuple[Any, ...], *args: Any) -> Any:
            trees = [jax.tree.unflatten(t, lv) for t, lv in zip(self.defs, state, strict=False)]
            out = fn(*trees, *args)
            if not returns:
                return out
            new = []
            for k, (tree, want) in enumerate(zip(out[:returns], self.defs, strict=False)):
                lv, treedef = jax.tree.flatten(tree)
                if treedef != want:
                    raise TypeError(
                        f"the training step changed the structure of its state: {treedef} != {want}"
                    )
                if self.shardings is not None:  # the state stays where the plan put it
                    lv = jax.lax.with_sharding_constraint(lv, list(self.shardings[k]))
                new.append(lv)
            return (TrainState(*new), *out[returns:])

        flat.__name__ = flat.__qualname__ = name
        return flat

    def train(self, keys: tuple[Any, Any] | None = None, checks: bool = True) -> Callable[..., Any]:
        """The jitted training step: ``(state, metric states, step log, x, y, masks)`` to the
        first three, or, with ``keys``, ``(..., arrays, None, masks)`` on the next batches of
        arrays already on the device (``Slices``, ``_feed.Resident``), ``keys`` picking the
        element's inputs and targets.
        One step for a mask of one batch, several under ``lax.scan`` for masks
        ``(steps, batch)``; without the value checks where ``checks`` is false (the data
        were checked on the host). One program per ``(keys, checks)``, bound here rather than
        passed as static arguments (which cost about 4 us a call)."""
        found = self._train.get((keys, checks))
        if found is None:
            steps = functools.partial(self._steps, keys=keys, checks=checks)
            found = self._train[(keys, checks)] = jax.jit(
                self._flat(steps, 3, "train_step"),
                donate_argnums=(0, 2),
                compiler_options=self._options,
            )
        return found

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
        *,
        guard: str = "cond",
        checks: bool = True,
    ) -> tuple[Any, ...]:
        loss, optimizer = self.loss, self.optimizer
        if loss is None or optimizer is None:
            raise ValueError("training needs a loss and an optimizer")

        policy = self.forward
        compute = policy.dtype if policy is not None else None

        def objective(p: Any) -> tuple[Any, tuple[Any, Any]]:
            if compute is not None:  # mixed precision: float32 kept outside, compute inside
                p = jax.tree.map(lambda a: cast_floating(a, compute), p)
            model = nnx.merge(  # fresh variables at this trace level
                self.train_graph, p, _cast_state(rest, compute), copy=True
            )
            with running(policy):
                out = model(x)
            value = loss(out, y, mask=mask)
            after: tuple[Any, ...] = nnx.split(model, nnx.Param, ...)
            new_rest = after[2] if compute is None else _cast_state(after[2], None, like=rest)
            return value, (out, new_rest)

        (value, (out, new_rest)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        # the batch's NaN and label checks (``checks=False``: its data were checked whole)
        flags = value_flags(x, y, mask, self.classes, values=checks)
        if self.shardings is not None:  # gradients placed like their parameters (FSDP: scattered)
            grads = jax.lax.with_sharding_constraint(
                grads, jax.tree.unflatten(self.defs.params, self.shardings.params)
            )

        # A non-finite loss, or a batch that fails the value checks, applies no update: the
        # state stays that of the last good step. One
        # step per call runs the update under `lax.cond`: a `jnp.where` over every leaf made XLA
        # copy the optimizer state (about 30 us a step for a small MLP on CPU). Inside
        # `lax.scan` it is the other way round: a cond in the loop body cost about 2x the step
        # and `jnp.where` nothing measurable (benchmarks/README.md, "steps_per_call").
        def update(grads: Any, opt_state: Any, params: Any, new_rest: Any) -> tuple[Any, Any, Any]:
            with jax.numpy_dtype_promotion(
                "standard"
            ):  # optax mixes int counts and floats internally
                updates, new_opt_state = optimizer.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), new_rest, new_opt_state

        def skip(grads: Any, opt_state: Any, params: Any, new_rest: Any) -> tuple[Any, Any, Any]:
            return params, rest, opt_state

        ok = jnp.isfinite(value) & (flags[0] == 0)
        if guard == "cond":
            new_params, new_rest, new_opt_state = jax.lax.cond(
                ok, update, skip, grads, opt_state, params, new_rest
            )
        else:
            new_params, new_rest, new_opt_state = jax.tree.map(
                lambda a, b: jnp.where(ok, a, b),
                update(grads, opt_state, params, new_rest),
                skip(grads, opt_state, params, new_rest),
            )
        mstates = tuple(
            m.update(s, out, y, mask) for m, s in zip(self.metrics, mstates, strict=True)
        )
        return new_params, new_rest, new_opt_state, mstates, value, flags

    def _logged_step(
        self,
        params: Any,
        rest: Any,
        opt_state: Any,
        mstates: tuple[Any, ...],
        log: Any,
        x: Any,
        y: Any,
        mask: Any,
        checks: bool = True,
    ) -> tuple[Any, ...]:
        """One step, its loss and value checks written into the step log (``_step_log``)."""
        state = (params, rest, opt_state, mstates)
        *new, value, flags = self._train_step(*state, x, y, mask, checks=checks)
        return (*new, step_log.write(log, value, flags))

    def _scan(
        self,
        state: tuple[Any, ...],
        log: Any,
        inputs: Any,
        batch: Callable[[Any], Any],
        checks: bool = True,
    ) -> tuple[Any, ...]:
        """Steps under ``lax.scan``, one per leading entry of ``inputs`` (``batch`` turns one
        entry into ``(x, y, mask)``); their losses and flags written into the log at the end."""

        def body(carry: tuple[Any, ...], item: Any) -> tuple[tuple[Any, ...], Any]:
            *new, value, flags = self._train_step(
                *carry, *batch(item), guard="where", checks=checks
            )
            return tuple(new), (value, flags)

        carry, (values, flags) = jax.lax.scan(body, state, inputs)
        return (*carry, step_log.write(log, values, flags))

    def _steps(
        self,
        params: Any,
        rest: Any,
        opt_state: Any,
        mstates: tuple[Any, ...],
        log: Any,
        first: Any,
        second: Any,
        masks: Any,
        *,
        keys: tuple[Any, Any] | None,
        checks: bool,
    ) -> tuple[Any, ...]:
        """One step (``masks`` of one batch) or several (``masks`` ``(steps, batch)``, under
        ``lax.scan``) on the batches ``(first, second)``: inputs and targets, or (``keys``
        given) the next batches of the arrays ``first`` (``Slices``), from the batch number the
        log holds, ``keys`` picking the element's inputs and targets; ``checks`` whether the
        step checks their values."""
        size = masks.shape[-1]
        if keys is not None:  # the batches' numbers
            second = step_log.next_batch(log, None if masks.ndim == 1 else masks.shape[0])

        def batch(item: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
            x, y, mask = item
            if keys is None:
                return x, y, mask
            # ``y``: this step's batch number. A slice, where a gather of the batch's rows
            # cost about 15 us on CPU (the epoch's order is gathered once, ``_feed.Resident``)
            element = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, y * size, size), first)
            return element[keys[0]], element[keys[1]], mask

        if masks.ndim == 1:
            x, y, mask = batch((first, second, masks))
            return self._logged_step(params, rest, opt_state, mstates, log, x, y, mask, checks)
        state = (params, rest, opt_state, mstates)
        scanned = (first if keys is None else None, second, masks)  # the arrays stay whole
        return self._scan(state, log, scanned, batch, checks=checks)

    def _infer(self, params: Any, rest: Any, x: Any) -> Any:
        """The eval-mode forward: as built, or in the policy's compute dtype (its remat left
        out: nothing is differentiated), the outputs in the output spec's dtype."""
        policy = self.forward
        if policy is None or policy.compute is None:
            return nnx.merge(self.eval_graph, params, rest)(x)
        compute = policy.dtype
        model = nnx.merge(self.eval_graph, _cast_state(params, compute), _cast_state(rest, compute))
        with running(Forward(compute=policy.compute)):
            return model(x)

    def _eval_step(
        self, params: Any, rest: Any, mstates: tuple[Any, ...], x: Any, y: Any, mask: Any
    ) -> tuple[Any, Any, Any]:
        out = self._infer(params, rest, x)
        mstates = tuple(
            m.update(s, out, y, mask) for m, s in zip(self.metrics, mstates, strict=True)
        )
        if self.loss is None:
            return mstates, jnp.zeros(()), jnp.sum(mask).astype(jnp.float32)
        value = self.loss(out, y, mask=mask)
        n = jnp.sum(mask).astype(value.dtype)
        return mstates, value * n, n

    def _predict_step(self, params: Any, rest: Any, x: Any) -> Any:
        return self._infer(params, rest, x)


def compiler_options(forward: Forward | None) -> dict[str, Any] | None:
    """XLA options of a training step run by ``forward``.

    With remat on the CPU backend, XLA's ``cse_barrier_expander`` pass removes the
    optimization barriers that ``jax.checkpoint`` puts around the recomputation before common
    subexpression elimination runs, so CSE merges the recomputation into the forward and the
    checkpoint saves nothing (the compiled step's temporaries stay the same; measured in
    ``tests/unit/training/test_remat.py``). Skipping that pass for the step keeps the barriers;
    on GPU and TPU the barriers already outlive CSE.
    """
    if forward is None or forward.remat is False or jax.default_backend() != "cpu":
        return None
    return {"xla_disable_hlo_passes": "cse_barrier_expander"}


_SHARDINGS: "collections.OrderedDict[tuple[Any, ...], tuple[Any, Any, Any]]" = (
    collections.OrderedDict()
)


def _shardings(
    placement: "tuple[ShardingPlan, jax.sharding.Mesh]",
    model: nnx.Module,
    graph: Any,
    params: Any,
    rest: Any,
    optimizer: optax.GradientTransformation | None,
) -> tuple[Any, Any, Any]:
    """Trees of ``NamedSharding``s for the parameters, the other variables (replicated) and
    the optimizer's state, by the plan; kept per plan, mesh, model structure, parameter shapes
    and optimizer, since resolving a plan walks every parameter's path (a few ms a call)."""
    plan, mesh = placement
    avals = tuple((a.shape, a.dtype) for a in jax.tree.leaves(params))
    key = (plan, mesh, graph, jax.tree.structure(params), avals, _Id(optimizer))
    found = _SHARDINGS.get(key)
    if found is None:
        abstract = jax.eval_shape(optimizer.init, params) if optimizer is not None else None
        p_sh, o_sh = state_shardings(plan, mesh, model, params, abstract)
        replicated = NamedSharding(mesh, PartitionSpec())
        found = _SHARDINGS[key] = (p_sh, jax.tree.map(lambda _: replicated, rest), o_sh)
        while len(_SHARDINGS) > _KEEP:
            _SHARDINGS.popitem(last=False)
    return found


def _placed(tree: Any, shardings: Any) -> Any:
    """``tree``'s arrays on ``shardings``; those already there are not touched (a model
    trained by an earlier ``fit`` on the same plan already holds its parameters so)."""

    def put(a: Any, s: Any) -> Any:
        there = isinstance(a, jax.Array) and a.sharding.is_equivalent_to(s, a.ndim)
        return a if there else jax.device_put(a, s)

    return jax.tree.map(put, tree, shardings)


def _cast_state(tree: Any, dtype: Any, *, like: Any = None) -> Any:
    """``tree``'s floating leaves as ``dtype``, or (``like`` given) as ``like``'s leaves are."""
    if like is not None:
        return jax.tree.map(lambda a, b: cast_floating(a, b.dtype), tree, like)
    return tree if dtype is None else jax.tree.map(lambda a: cast_floating(a, dtype), tree)


_PROGRAMS: "collections.OrderedDict[tuple[Any, ...], Programs]" = collections.OrderedDict()
_KEEP = 16  # programs kept for reuse, least recently used dropped (each holds its executables)


def programs(
    train_graph: Any,
    eval_graph: Any,
    defs: TrainState,
    loss: Callable[..., Any] | None,
    optimizer: optax.GradientTransformation | None,
    metrics: tuple[Metric, ...],
    shardings: TrainState | None = None,
    forward: Forward | None = None,
    classes: int | None = None,
) -> Programs:
    """The shared ``Programs`` for this model structure, these objects, this placement,
    this forward policy (remat, compute dtype) and class count."""
    key = (  # the graphs by identity: ``_split._mode_graphs`` gives one object per graph (hashing one
        _Id(train_graph),  # walks it, about 0.1 ms)
        _Id(eval_graph),
        defs,
        _Id(loss),
        _Id(optimizer),
        tuple(map(_Id, metrics)),
        shardings,
        forward,
        classes,
    )
    found = _PROGRAMS.get(key)
    if found is None:
        found = _PROGRAMS[key] = Programs(
            train_graph, eval_graph, defs, loss, optimizer, metrics, shardings, forward, classes
        )
        while len(_PROGRAMS) > _KEEP:
            _PROGRAMS.popitem(last=False)
    else:
        _PROGRAMS.move_to_end(key)
    return found


def _unshared(state: TrainState) -> TrainState:
    """``state`` with each array in it once: the step donates the state's buffers, and XLA
    refuses a buffer donated twice, as when two variables were given one array
    (``b.kernel.set_value(a.kernel.get_value())``); a second holder gets a copy."""
    seen: set[int] = set()

    def once(a: Any) -> Any:
        if id(a) not in seen:
            seen.add(id(a))
            return a
        return jnp.copy(a)

    return TrainState(*([once(a) for a in field] for field in state))


_INITS: "collections.OrderedDict[tuple[Any, ...], tuple[Callable[[Any], Any], Any]]" = (
    collections.OrderedDict()
)


def init_optimizer(
    optimizer: optax.GradientTransformation, params_def: Any, params: list[Any], shardings: Any
) -> tuple[list[Any], Any]:
    """``optimizer.init`` of the parameters (the leaves ``params`` of a tree of ``params_def``)
    as one jitted call, to the leaves and treedef of its state, created where ``shardings`` (a
    tree of ``NamedSharding``s, or ``None``) puts it: under FSDP each device makes only its part
    of Adam's moments, never the whole. Eagerly, ``init`` is one dispatch per leaf, and each
    ``zeros_like`` of a sharded parameter built its zeros on the host and copied them over
    (about 40 ms per ``fit`` call for a 2.3 M-parameter MLP on 8 simulated devices); in and out
    as flat leaves, the call builds no ``nnx.State`` on the host (about 0.3 ms for the digits
    MLP). Kept per optimizer object, structure, shapes and placement, so a repeated ``fit``
    compiles it once."""
    avals = tuple((a.shape, a.dtype) for a in params)
    placed = None if shardings is None else tuple(jax.tree.leaves(shardings))
    key = (_Id(optimizer), params_def, avals, placed)
    found = _INITS.get(key)
    if found is None:

        def init(leaves: list[Any]) -> Any:
            return optimizer.init(jax.tree.unflatten(params_def, leaves))

        treedef = jax.tree.structure(jax.eval_shape(init, params))
        flat = jax.jit(
            lambda leaves: jax.tree.leaves(init(leaves)),
            out_shardings=None if placed is None else list(placed),
        )
        found = _INITS[key] = (flat, treedef)
        while len(_INITS) > _KEEP:
            _INITS.popitem(last=False)
    else:
        _INITS.move_to_end(key)
    return list(found[0](params)), found[1]


class Engine:
    """One model's training state and the shared ``Programs`` that step it.

    With ``placement`` (a sharding plan and its mesh) the state is placed by the plan before
    the optimizer's state is made, so that state is created sharded."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        loss: Callable[..., Any] | None,
        optimizer: optax.GradientTransformation | None,
        metrics: Sequence[Metric],
        forward: Forward | None = None,
        placement: "tuple[ShardingPlan, jax.sharding.Mesh] | None" = None,
    ):
        self.loss, self.optimizer, self.metrics = loss, optimizer, tuple(metrics)
        self.forward = forward
        self.classes = label_classes(model)
        # the steps carry their own mode; the model itself is left for inference
        split = model_state(model)
        self._train_graph, self._eval_graph, self._known = split[0], split[1], split.known
        params, rest, (p_def, r_def) = split.params, split.rest, split.defs
        self.shardings: TrainState | None = None  # flat NamedShardings of a plan's placement
        o_sh = None
        if placement is not None:
            trees = (jax.tree.unflatten(p_def, params), jax.tree.unflatten(r_def, rest))
            p_sh, r_sh, o_sh = _shardings(placement, model, self._eval_graph, *trees, optimizer)
            self.shardings = TrainState(*(tuple(jax.tree.leaves(t)) for t in (p_sh, r_sh, o_sh)))
            params = _placed(params, list(self.shardings.params))
            rest = _placed(rest, list(self.shardings.rest))
        opt_state, o_def = (
            init_optimizer(optimizer, p_def, params, o_sh)
            if optimizer is not None
            else jax.tree.flatten(None)
        )
        self.defs = TrainState(p_def, r_def, o_def)
        self.state = _unshared(TrainState(params, rest, opt_state))
        self.programs = self._programs()

    def _programs(self) -> Programs:
        return programs(
            self._train_graph,
            self._eval_graph,
            self.defs,
            self.loss,
            self.optimizer,
            self.metrics,
            self.shardings,
            self.forward,
            self.classes,
        )

    # -- the state: trees outside, flat leaves (``self.state``) for the jitted calls -----------
    params = _state_field("params")
    rest = _state_field("rest")
    opt_state = _state_field("opt_state")

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
        self, mstates: tuple[Any, ...], log: Any, batch: "Batches | Slices"
    ) -> tuple[tuple[Any, ...], Any]:
        """One call of the step (or of several, for a batch with a leading step axis): the
        metric states and the step log (``_step_log``) with each step's loss and value checks
        written, on the device."""
        if isinstance(batch, Slices):
            step = self.programs.train(batch.keys, batch.checks)
            self.state, mstates, log = step(
                self.state, mstates, log, batch.arrays, None, batch.mask
            )
        else:
            step = self.programs.train(None, batch.checks)
            self.state, mstates, log = step(self.state, mstates, log, *batch[:3])
        return mstates, log

    def evaluate(
        self, mstates: tuple[Any, ...], x: Any, y: Any, mask: Any
    ) -> tuple[tuple[Any, ...], Any, Any]:
        return self.programs.eval((self.state.params, self.state.rest), mstates, x, y, mask)

    def predict(self, x: Any) -> Any:
        return self.programs.predict((self.state.params, self.state.rest), x)

    def write_back(self, model: nnx.Module) -> None:
        """Copy the trained state into ``model`` (the one place a module is mutated)."""
        write_back(model, self._known, self.state.params, self.state.rest, self.defs[:2])

    def learning_rate(self) -> float | None:
        """The current learning rate, where the optimizer exposes it (``optax.inject_hyperparams``)."""
        if self.optimizer is None:
            return None
        index = _learning_rate_leaf(self.defs.opt_state)
        return None if index is None else float(self.state.opt_state[index])


_LEARNING_RATE_LEAF: dict[Any, int | None] = {}


def _learning_rate_leaf(treedef: Any) -> int | None:
    """Which leaf of an optimizer state of this structure is the learning rate that
    ``optax.inject_hyperparams`` keeps, or ``None``; found once per structure, since making the
    state's tree (its ``nnx.State`` nodes) costs about 0.5 ms, at every epoch's end."""
    if treedef not in _LEARNING_RATE_LEAF:
        found: list[int] = []

        def visit(node: Any) -> None:
            hp = getattr(node, "hyperparams", None)
            if isinstance(hp, dict) and "learning_rate" in hp:
                found.append(hp["learning_rate"])
            elif isinstance(node, tuple | list):
                for child in node:
                    visit(child)

        visit(jax.tree.unflatten(treedef, range(treedef.num_leaves)))  # leaves: their indices
        if len(_LEARNING_RATE_LEAF) >= 4 * _KEEP:
            _LEARNING_RATE_LEAF.clear()
        _LEARNING_RATE_LEAF[treedef] = found[0] if found else None
    return _LEARNING_RATE_LEAF[treedef]
