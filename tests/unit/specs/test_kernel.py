"""The spec kernel: parsing by jaxtyping's documented grammar, structured mismatches, and
messages that do not depend on jaxtyping's own wording."""

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
from jaxtyping import Array, Float, Float32, Int32, Integer, Shaped, UInt8

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._specs import compare, compare_specs, parse


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        ("batch 3", [("named", "batch", None), ("fixed", "", 3)]),
        ("*batch rows=4", [("variadic", "batch", None), ("fixed", "", 4)]),
        ("... _ #c", [("variadic", "", None), ("any", "", None), ("named", "c", None)]),
        ("h-2 *_", [("symbolic", "h-2", None), ("variadic", "", None)]),
    ],
    ids=["named-fixed", "variadic-documented-size", "anonymous-broadcast", "symbolic"],
)
def test_parse_follows_jaxtyping_grammar(dims, expected):
    spec = parse(Float[Array, dims])
    assert [(d.kind, d.name, d.size) for d in spec.dims] == expected
    assert spec.category == "Float"
    assert spec.dtypes is not None and "float32" in spec.dtypes and "int32" not in spec.dtypes


def test_parse_shaped_allows_any_dtype():
    assert parse(Shaped[Array, "n"]).dtypes is None


def test_compare_reports_axis_binding_and_dtype():
    bindings: dict = {}
    assert compare(Float32[Array, "batch 3"], np.zeros((4, 3), np.float32), bindings) is None
    assert bindings == {"batch": 4}
    m = compare(Float32[Array, "batch 5"], np.zeros((2, 5), np.float32), bindings)
    assert m is not None and m.first.kind == "binding"
    assert (m.first.axis, m.first.have, m.first.earlier, m.first.name) == (0, 2, 4, "batch")
    assert m.reasons() == ["dimension 0 is 2, but batch is 4 elsewhere."]
    m = compare(Float32[Array, "*batch 3"], np.zeros((4, 7, 5), np.int32))
    assert [p.kind for p in m.problems] == ["dtype", "size"]
    assert m.reasons() == ["int32 is not float32.", "dimension 2 is 5, expected 3."]
    m = compare(Float[Array, "*batch h w c"], np.zeros((4, 3), np.float32))
    assert m.reasons() == ["it needs at least 3 dimensions (h w c), got 2 [4, 3]."]


def test_compare_specs_passes_what_cannot_be_decided():
    assert (
        compare_specs(UInt8[np.ndarray, "batch 250 250 3"], UInt8[Array, "batch 250 250 3"]) is None
    )
    assert compare_specs(UInt8[np.ndarray, "n 3"], UInt8[Array, "batch 3"]) is None  # names bind
    m = compare_specs(UInt8[np.ndarray, "batch 3"], Integer[Array, "batch 4"])
    assert m is not None and m.reasons() == ["dimension 1 is 3, expected 4."]
    m = compare_specs(Float32[np.ndarray, "batch 3"], Int32[Array, "batch 3"])
    assert m.reasons() == ["float32 is not int32."]


def _messages():
    out = []
    with pytest.raises(ss.ShapeError) as e:  # the talk's missing Cast, at build time
        ss.build(L.Flatten() >> L.Linear(64), UInt8[Array, "batch 8 8 3"])
    out.append(str(e.value))
    model = ss.build(L.Linear(4), Float32[Array, "batch 3"])
    with pytest.raises(ss.ShapeError) as e:  # the model's boundary, eagerly
        model(jnp.zeros((2, 5)))
    out.append(str(e.value))
    with pytest.raises(ss.ShapeError) as e:  # a built layer under jit
        jax.jit(lambda x: model.layers[0](x))(jnp.zeros((2, 5)))
    out.append(str(e.value))
    with pytest.raises(ss.ShapeError) as e:  # a loss's shared bindings
        ss.losses.cross_entropy(jnp.zeros((4, 3)), jnp.zeros((5,), jnp.int32))
    out.append(str(e.value))

    def f(x: Float[Array, "batch 3"]) -> Float[Array, "batch 2"]:
        return x

    with pytest.raises(ss.ShapeError) as e:  # a user's annotated function returning a wrong shape
        ss.build(L.Function(f), Float32[Array, "batch 3"])
    out.append(str(e.value))
    return out


def test_messages_do_not_depend_on_jaxtyping_wording(monkeypatch):
    plain = _messages()
    assert "dimension 1 is 5, expected 3" in plain[2] and "Float32[2, 5]" in plain[1]
    assert "batch is 4 elsewhere" in plain[3]
    assert "dimension 1 is 3, expected 2" in plain[4]

    def reworded(self, *args):
        TypeError.__init__(self, "reworded by a future jaxtyping: no parameter names, no values")

    monkeypatch.setattr(jaxtyping.TypeCheckError, "__init__", reworded)
    monkeypatch.setattr(jaxtyping.TypeCheckError, "__str__", lambda self: "reworded")
    assert _messages() == plain
