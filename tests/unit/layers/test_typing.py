"""``shapesafe.typing``: typed specs are jaxtyping's annotations at run time; the static-only
generics (``Blueprint[...]``, ``Model[...]``) change nothing that runs.

What the checkers see of them is tested by ``tests/test_types_static.py``.
"""

from typing import Any

import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from jaxtyping import Array

import shapesafe as ss
from shapesafe import layers as L
from shapesafe import typing as st


@pytest.mark.parametrize(
    "name", ["Bool", "UInt8", "Int32", "BFloat16", "Float16", "Float32", "Float64", "Complex64"]
)
def test_a_typed_spec_is_the_jaxtyping_annotation(name: str) -> None:
    ours, theirs = getattr(st, name), getattr(jaxtyping, name)
    one_string = ours[Array, "batch 8 3"]
    per_axis = ours[Array, "batch", 8, 3]
    for spec in (one_string, per_axis):
        assert spec.dtype is theirs
        assert spec.dim_str == "batch 8 3"
        assert spec.dtypes == theirs[Array, "batch 8 3"].dtypes
    assert ours[np.ndarray, ""].array_type is np.ndarray


def test_it_checks_values_as_jaxtyping_does() -> None:
    spec: Any = st.UInt8[Array, "batch", 4]  # to checkers a Spec, which isinstance does not take
    assert isinstance(jnp.zeros((2, 4), jnp.uint8), spec)
    assert not isinstance(jnp.zeros((2, 4), jnp.float32), spec)
    assert not isinstance(jnp.zeros((2, 5), jnp.uint8), spec)


def test_build_gives_the_same_model_from_either_spec() -> None:
    net = L.Flatten() >> L.Rescale(1 / 255) >> L.Linear(3)
    typed = ss.summary(ss.build(net, st.UInt8[Array, "batch", 4, 4, 3], seed=0))
    plain = ss.summary(ss.build(net, jaxtyping.UInt8[Array, "batch 4 4 3"], seed=0))
    assert typed.rows == plain.rows
    assert (typed.input_spec, typed.output_spec) == ("UInt8[batch, 4, 4, 3]", "Float32[batch, 3]")


@pytest.mark.parametrize("axis", ["*batch", "...", "batch 4", "", -1, True, 2.0])
def test_one_item_per_axis_refuses_what_is_not_one_axis(axis: object) -> None:
    with pytest.raises(TypeError, match=r"each item is one axis.*got"):
        st.Float32[Array, axis, 3]


def test_a_subscript_without_dimensions_is_refused() -> None:
    with pytest.raises(TypeError, match=r'Float32\[Array, "batch 3"\]'):
        st.Float32[Array]  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


def test_the_static_generics_subscript_and_change_nothing_at_run_time() -> None:
    assert L.Sequential[st.Floating, st.Rank1Plus, st.AsInput, st.Rank2] is not None
    assert ss.Model[st.Floating, st.Rank4, st.Floating, st.Rank2] is not None
    assert (
        L.Cast(np.float32) == L.Cast(jnp.float32)
        and repr(L.Cast(np.float32)) == "Cast(jnp.float32)"
    )
    assert L.MaxPool((2, 2)).window == (2, 2) and L.MaxPool(2).window == (2,)
    assert repr(L.Rescale(1 / 255, dtype=jnp.bfloat16)) == "Rescale(1 / 255, dtype=jnp.bfloat16)"
    assert repr(L.Linear(2).named("head")) == "Linear(2, name='head')"
    assert repr(L.Sequential((L.ReLU(),))) == "ReLU()"
