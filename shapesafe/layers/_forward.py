"""How a built model's forward runs inside a training step: rematerialisation and compute dtype.

``ss.fit(..., remat=..., precision=...)`` (and ``ss.summary``, to measure them) trace the
training step's forward inside ``running(policy)``; the outermost ``Model.__call__`` reads the
policy once and clears it for the models nested in it. So the blueprints, the built modules and
their checked annotations stay what ``ss.build`` made; only the traced step changes, and a
different policy is a different compiled program (it is part of the engine's program key).

- Rematerialisation (``jax.checkpoint``, through ``nnx.remat`` so layers that update state, such
  as ``BatchNorm`` and ``Dropout``, still do): a checkpointed run of layers keeps only its input
  for the backward pass and computes its inner activations again there. ``remat=True`` cuts the
  model's ``n`` top-level layers into about ``sqrt(n)`` consecutive runs, each checkpointed
  (Chen et al. 2016, "Training deep nets with sublinear memory cost"); a regex checkpoints each
  top-level layer whose path (``"3.Residual"``, as in ``ShardingPlan`` paths) it matches whole.
- Compute dtype (``precision="mixed_bfloat16"``): the engine casts the floating parameters and
  state to bfloat16; the model checks its input against its input spec as built, casts
  floating activations to bfloat16 after the input check and after every layer (a
  ``Cast(jnp.float32)`` inside the model is overridden), and checks its floating input and output as
  cast to its specs' dtypes, so every model checks its specs as built. The outermost model
  returns that cast output (float32 logits, a float32 loss); a nested one (a ``Residual``'s
  block) passes on its bfloat16 output.
"""

import contextlib
import contextvars
import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

PRECISIONS = {"float32": None, "mixed_bfloat16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class Forward:
    """A forward policy: ``remat`` (``False``, ``True`` or a layer-path regex) and ``compute``,
    the dtype name floating activations run in (``None``: as built)."""

    remat: bool | str = False
    compute: str | None = None
    outer: bool = True  # the outermost model: its output leaves in its output spec's dtype

    @staticmethod
    def of(remat: bool | str, precision: str, *, where: str) -> "Forward | None":
        """The policy of ``fit``'s/``summary``'s arguments; ``None`` when it changes nothing.

        Raises:
            ValueError: an unknown precision, a remat that is not a bool or a valid regex.
        """
        if precision not in PRECISIONS:
            raise ValueError(
                f"{where}: precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                f"got {precision!r}."
            )
        if not isinstance(remat, bool | str):
            raise ValueError(
                f"{where}: remat must be True, False or a regex of layer paths "
                f'(e.g. r"\\d+\\.Residual"), got {remat!r}.'
            )
        if isinstance(remat, str):
            try:
                re.compile(remat)
            except re.error as e:
                raise ValueError(f"{where}: remat={remat!r} is not a valid regex: {e}.") from e
        policy = Forward(remat, PRECISIONS[precision])
        return None if policy == Forward() else policy

    @property
    def dtype(self) -> np.dtype | None:
        """The compute dtype, or ``None``."""
        if self.compute is None:
            return None
        return np.dtype(getattr(jnp, self.compute))

    def runs(self, paths: Sequence[str]) -> list[tuple[range, bool]]:
        """The model's layers (by path) as consecutive runs ``(indices, checkpointed)``.

        Raises:
            ValueError: a remat regex that matches no layer path.
        """
        n = len(paths)
        if self.remat is False or n == 0:
            return [(range(n), False)]
        if self.remat is True:
            size = math.ceil(n / math.ceil(math.sqrt(n)))
            return [(range(i, min(i + size, n)), True) for i in range(0, n, size)]
        pattern = re.compile(self.remat)
        hits = [pattern.fullmatch(p) is not None for p in paths]
        if not any(hits):
            raise ValueError(
                f"remat={self.remat!r} matches no layer path (the regex must match a whole "
                f"path). The model's layers are: {', '.join(paths)}. Fix the regex, or use "
                "remat=True to checkpoint the whole model in about sqrt(n) runs."
            )
        out: list[tuple[range, bool]] = []
        for i, hit in enumerate(hits):
            if hit:
                out.append((range(i, i + 1), True))
            elif out and not out[-1][1]:
                out[-1] = (range(out[-1][0].start, i + 1), False)
            else:
                out.append((range(i, i + 1), False))
        return out


def layer_paths(model: Any) -> list[str]:
    """The top-level layer paths of a built model (``"3.Residual"``); none for another module."""
    layers = getattr(getattr(model, "blueprint", None), "layers", None)
    return [f"{i}.{type(bp).__name__}" for i, bp in enumerate(layers or ())]


_POLICY: contextvars.ContextVar[Forward | None] = contextvars.ContextVar(
    "shapesafe_forward", default=None
)


@contextlib.contextmanager
def running(policy: Forward | None) -> Iterator[None]:
    """Run the forwards traced in this scope by ``policy`` (the outermost model takes it)."""
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


@contextlib.contextmanager
def taken() -> Iterator[Forward | None]:
    """The policy in force; what runs inside (a nested model) keeps its compute dtype only."""
    policy = _POLICY.get()
    if policy is None:
        yield None
        return
    inner = None
    if policy.compute is not None:
        inner = dataclasses.replace(policy, remat=False, outer=False)
    token = _POLICY.set(inner)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def cast_floating(x: Any, dtype: Any) -> Any:
    """``x`` as ``dtype`` when both are floating (an integer or boolean array stays)."""
    if dtype is None or not hasattr(x, "dtype") or not jnp.issubdtype(dtype, jnp.floating):
        return x
    if jnp.issubdtype(x.dtype, jnp.floating) and np.dtype(x.dtype) != dtype:
        return x.astype(dtype)
    return x
