"""A model's state for the jitted steps, read from its variables and written back into them.

``nnx.split(model, nnx.Param, ...)`` walks the module graph in Python (about 0.3 ms for the
digits MLP, more for deeper models) and ``nnx.update`` walks it again to write the trained
state back; ``fit``, ``evaluate`` and ``predict`` paid both on every call. The model as a JAX
pytree (``jax.tree.flatten``, tens of us, in C++ over nnx's pytree nodes) gives its
``Variable`` objects and a treedef that holds every module's static attributes (layer sizes,
Dropout's mode, a ``Variable``'s type and metadata). A model whose treedef and ``Variable``
objects are those of its last split has that split's graph: its state is the variables' current
values, and the trained state is written straight into them. Anything else (a replaced
variable, a frozen layer, another mode, a module that is not a pytree) is split and updated by
nnx itself.
"""

import collections
import weakref
from typing import Any, NamedTuple

import jax
from flax import nnx
from jax.core import Tracer


class ModelState(NamedTuple):
    """The model split for the steps: its graph in both modes, its state as the leaves and
    treedefs of two trees, and where those leaves live among its variables."""

    train_graph: Any
    eval_graph: Any
    params: list[Any]  # the leaves of the nnx.State of the nnx.Param variables
    rest: list[Any]  # and of everything else
    defs: tuple[Any, Any]  # the two states' treedefs
    known: "_Known | None"  # the split's variables (None: the state is written back by nnx)


class _Known(NamedTuple):
    """What the last split of one model found: its pytree form, and where each leaf of the
    split's states lives among the model's variables."""

    treedef: Any
    variables: list[nnx.Variable[Any]]
    modes: tuple[Any, Any]
    params_def: Any
    rest_def: Any
    params_at: list[int]
    rest_at: list[int]

    def matches(self, variables: list[Any], treedef: Any) -> bool:
        return (
            len(variables) == len(self.variables)
            and all(a is b for a, b in zip(variables, self.variables, strict=True))
            and treedef == self.treedef
        )

    def state(self) -> ModelState:
        raw = [v.get_raw_value() for v in self.variables]
        params, rest = [raw[i] for i in self.params_at], [raw[i] for i in self.rest_at]
        return ModelState(*self.modes, params, rest, (self.params_def, self.rest_def), self)


_MODES: "collections.OrderedDict[Any, tuple[Any, Any]]" = collections.OrderedDict()
_KEEP = 32  # graphs kept, least recently made dropped


def _mode_graphs(model: nnx.Module, graph: Any) -> tuple[Any, Any]:
    """``(train-mode graph, eval-mode graph)`` of ``model``, whose current graph is ``graph``,
    and the model left in eval mode (inference: Dropout off, BatchNorm on running statistics).

    Kept by either graph: switching modes walks the whole module tree, so a model already in
    eval mode whose graphs are known is not walked at all."""
    found = _MODES.get(graph)
    if found is None:
        model.train()
        train_graph = nnx.split(model, nnx.Param, ...)[0]
        model.eval()
        found = (train_graph, nnx.split(model, nnx.Param, ...)[0])
        _MODES[found[0]] = _MODES[found[1]] = found
        while len(_MODES) > _KEEP:
            _MODES.popitem(last=False)
    elif found[0] != found[1] and found[0] == graph:  # in training mode: leave it for inference
        model.eval()
    return found


_KNOWN: "weakref.WeakKeyDictionary[nnx.Module, _Known]" = weakref.WeakKeyDictionary()


_VARIABLE_TYPES: dict[type, bool] = {}  # whether a type's instances are variables


def _is_variable(x: Any) -> bool:
    """``isinstance(x, nnx.Variable)``, known by ``x``'s type where the type alone decides
    (nnx's ``__instancecheck__`` also looks at tracers and hijax variables; it was about a
    third of the model's flatten)."""
    kind = _VARIABLE_TYPES.get(type(x))
    if kind is None:
        kind = isinstance(x, nnx.Variable)
        if issubclass(type(x), nnx.Variable) == kind and not isinstance(x, Tracer):
            _VARIABLE_TYPES[type(x)] = kind
    return kind


def _flatten(model: nnx.Module) -> tuple[list[Any], Any]:
    return jax.tree.flatten(model, is_leaf=_is_variable)


def _known(model: nnx.Module) -> _Known | None:
    """The last split of ``model``, where the model still has its graph and variables."""
    try:
        known = _KNOWN.get(model)
    except TypeError:  # not weakly referenceable, or unhashable
        return None
    if known is None:
        return None
    variables, treedef = _flatten(model)
    return known if known.matches(variables, treedef) else None


def model_state(model: nnx.Module) -> ModelState:
    """``model``'s graph in training and in inference mode and its state (``nnx.Param``
    variables, and the rest), the model left in inference mode."""
    known = _known(model)
    if known is not None:
        return known.state()
    split: tuple[Any, ...] = nnx.split(model, nnx.Param, ...)
    graph, params, rest = split
    modes = _mode_graphs(model, graph)  # leaves the model in inference mode
    (p_leaves, p_def), (r_leaves, r_def) = jax.tree.flatten(params), jax.tree.flatten(rest)
    known = _remember(model, modes, p_leaves, p_def, r_leaves, r_def)
    return ModelState(*modes, p_leaves, r_leaves, (p_def, r_def), known)


def write_back(
    model: nnx.Module, known: _Known | None, params: list[Any], rest: list[Any], defs: Any
) -> None:
    """Put the trained state into ``model``: the leaves ``params`` and ``rest`` of trees of the
    treedefs ``defs``, into the variables ``model_state`` read them from (its ``known``; the
    model's structure stays as it was for the steps that trained it), or by ``nnx.update``."""
    if known is None or tuple(defs) != (known.params_def, known.rest_def):
        nnx.update(model, jax.tree.unflatten(defs[0], params), jax.tree.unflatten(defs[1], rest))
        return
    for at, leaves in ((known.params_at, params), (known.rest_at, rest)):
        for i, value in zip(at, leaves, strict=True):
            known.variables[i].set_raw_value(value)


def _remember(
    model: nnx.Module,
    modes: tuple[Any, Any],
    p_leaves: list[Any],
    p_def: Any,
    r_leaves: list[Any],
    r_def: Any,
) -> _Known | None:
    """Keep where the split's leaves live among the model's variables, where each leaf is the
    plain array of exactly one variable (not an array reference, nor shared)."""
    variables, treedef = _flatten(model)
    if not all(_is_variable(v) and not v.hijax and not v.ref for v in variables):
        return None
    index: dict[int, int] = {}
    for i, v in enumerate(variables):
        raw = v.get_raw_value()
        if not isinstance(raw, jax.Array):
            return None
        if index.setdefault(id(raw), i) != i and variables[index[id(raw)]] is not v:
            return None  # one array held by two variables: which to write is ambiguous
    try:
        p_at, r_at = [index[id(a)] for a in p_leaves], [index[id(a)] for a in r_leaves]
        known = _KNOWN[model] = _Known(treedef, variables, modes, p_def, r_def, p_at, r_at)
    except (KeyError, TypeError):  # a leaf not found among the variables; or no weak reference
        return None
    return known
