"""Sharding plans resolved against parameter shapes, on abstract meshes (no devices needed)."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, PartitionSpec
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe._sharding import leaf_path

GRID = AbstractMesh((4, 2), ("data", "model"))
LINE = AbstractMesh((8,), ("data",))


def _params(*shapes: tuple[int, ...]) -> list[tuple[str, jax.ShapeDtypeStruct]]:
    return [
        (f"{i}.Linear.kernel", jax.ShapeDtypeStruct(s, np.float32)) for i, s in enumerate(shapes)
    ]


def test_fsdp_splits_the_largest_divisible_axis_of_big_parameters() -> None:
    placed = ss.ShardingPlan.of("fsdp").resolve(
        _params((64, 512), (512, 512), (100, 48), (10, 700), (512,), (30, 30, 30)), LINE
    )
    assert [p.spec for p in placed] == [
        PartitionSpec(None, "data"),  # 512 is the larger axis
        PartitionSpec("data", None),  # a tie: the first axis
        PartitionSpec(None, "data"),  # 100 is larger but 8 does not divide it; 48 it does
        PartitionSpec(),  # 7000 elements, but neither 10 nor 700 is a multiple of 8
        PartitionSpec(),  # 512 elements: under min_size
        PartitionSpec(),  # 27000 elements, 30 is no multiple of 8
    ]
    assert [p.reason for p in placed][2:5] == [
        "fsdp",
        "replicated (no axis divisible by data=8)",
        "replicated (under min_size=4096)",
    ]
    assert placed[0].shard_shape(LINE) == (64, 64)
    assert placed[0].device_bytes(LINE) == 64 * 64 * 4


def test_min_size_zero_splits_small_parameters_too() -> None:
    (p,) = ss.ShardingPlan(fsdp=True, min_size=0).resolve(_params((16,)), LINE)
    assert p.spec == PartitionSpec("data")


def test_the_first_matching_rule_wins_and_fsdp_takes_the_rest() -> None:
    plan = ss.ShardingPlan(
        {r"0\..*": (None, "model"), r".*kernel": ("model", None)}, fsdp=True, min_size=0
    )
    bias = ("2.Linear.bias", jax.ShapeDtypeStruct((8,), np.float32))
    placed = plan.resolve([*_params((4, 6), (6, 8)), bias], GRID)
    assert [p.spec for p in placed] == [
        PartitionSpec(None, "model"),
        PartitionSpec("model", None),
        PartitionSpec("data"),
    ]
    assert [p.reason for p in placed] == [r"rule '0\\..*'", "rule '.*kernel'", "fsdp"]


def test_replicate_places_everything_on_every_device() -> None:
    placed = ss.ShardingPlan.of("replicate").resolve(_params((64, 512)), GRID)
    assert placed[0].spec == PartitionSpec() and placed[0].shard_shape(GRID) == (64, 512)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            {".*": (None,)},
            "parameter 0.Linear.kernel of shape (4, 6): the rule '.*' -> (None,) has 1 entries "
            "for 2 axes. Give one entry per axis (None keeps an axis whole), or narrow the "
            "regex so it does not match this parameter.",
        ),
        (
            {".*": ("model", "model")},
            "parameter 0.Linear.kernel of shape (4, 6): the rule '.*' -> ('model', 'model') uses "
            "the mesh axis 'model' twice; an array can be split over a mesh axis along one of "
            "its axes only.",
        ),
        (
            {".*": ("data", None)},
            "parameter 0.Linear.kernel of shape (6, 4): the rule '.*' -> ('data', None) splits "
            "axis 0 (6) over the mesh axis 'data' of size 4, which does not divide 6. Use a mesh "
            "size that divides 6 (2, 3, 6), or keep axis 0 whole (None) in the rule.",
        ),
        (
            {".*": (None, "tensor")},
            "parameter 0.Linear.kernel of shape (6, 4): the rule '.*' -> (None, 'tensor') names "
            "the mesh axis 'tensor', but the mesh has axes {'data': 4, 'model': 2}. Use one of "
            "those, or make the mesh with an axis named 'tensor'.",
        ),
    ],
    ids=["entries", "twice", "indivisible", "unknown-axis"],
)
def test_rules_that_cannot_hold_are_refused(rules: dict, message: str) -> None:
    shape = (4, 6) if message.count("(4, 6)") else (6, 4)
    with pytest.raises(ss.ShardingError) as info:
        ss.ShardingPlan(rules).resolve(_params(shape), GRID)
    assert str(info.value) == message
    assert isinstance(info.value, ss.ShapeError)


def test_a_rule_matching_nothing_lists_the_paths() -> None:
    with pytest.raises(ss.ShardingError, match=r"^the sharding rule 'dense' -> \('model',\) "):
        ss.ShardingPlan({"dense": ("model",)}).resolve(_params(*[(8,)] * 7), GRID)
    with pytest.raises(ss.ShardingError, match=r"0\.Linear\.kernel, .*5\.Linear\.kernel, \.\.\."):
        ss.ShardingPlan({"dense": ("model",)}).resolve(_params(*[(8,)] * 7), GRID)


def test_fsdp_needs_a_data_axis() -> None:
    with pytest.raises(
        ss.ShardingError,
        match=r"FSDP splits parameters over the mesh axis 'data', but the mesh has axes "
        r"\{'batch': 8\}\. Name one axis 'data'",
    ):
        ss.ShardingPlan.of("fsdp").resolve(_params((8, 8)), AbstractMesh((8,), ("batch",)))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (({"(": (None,)},), {}, r"the rule '\(' is not a regex"),
        (({".*": "model"},), {}, r"the rule '\.\*' maps to 'model'; a layout is a tuple"),
        ((), {"min_size": -1}, r"min_size must be an int >= 0, got -1"),
    ],
    ids=["regex", "string-layout", "min-size"],
)
def test_plan_constructor_validates(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ss.ShardingPlan(*args, **kwargs)


def test_of_lists_the_accepted_values() -> None:
    assert ss.ShardingPlan.of(None) == ss.ShardingPlan.of("replicate") == ss.ShardingPlan()
    assert ss.ShardingPlan.of({".*": (None,)}) == ss.ShardingPlan({".*": (None,)})
    with pytest.raises(ValueError, match=r'sharding must be "replicate", "fsdp", a mapping'):
        ss.ShardingPlan.of("zero3")


def test_parameter_paths_name_layers_by_index_and_blueprint() -> None:
    net = L.Linear(8) >> L.ReLU() >> L.Residual(L.Linear(8)).named("skip") >> L.Linear(2)
    model = ss.build(net, Float32[Array, "batch 4"], seed=0)
    flat = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    assert [leaf_path(model, kp) for kp, _ in flat] == [
        "0.Linear.bias",
        "0.Linear.kernel",
        "2.Residual.block.0.Linear.bias",
        "2.Residual.block.0.Linear.kernel",
        "3.Linear.bias",
        "3.Linear.kernel",
    ]


def test_sharding_without_a_mesh_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^build: sharding= needs a mesh= "):
        ss.build(L.Linear(2), Float32[Array, "batch 4"], sharding="fsdp")
    model = ss.build(L.Linear(2), Float32[Array, "batch 4"])
    data = [(np.zeros((4, 4), np.float32), np.zeros((4,), np.int32))]
    with pytest.raises(ValueError, match=r"^fit: sharding= needs a mesh= "):
        ss.fit(
            model,
            data,
            loss=ss.losses.cross_entropy,
            optimizer=optax.sgd(0.1),
            epochs=1,
            progress=False,
            sharding="fsdp",
        )
