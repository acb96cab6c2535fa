"""Sources and combinators: specs derived when built, values against NumPy, exact resume."""

import functools
import json
from typing import TypedDict

import numpy as np
import pytest
from jaxtyping import Array, Float32, Int32, Int64, UInt8

import shapesafe as ss
from shapesafe.data import compatible, from_arrays, from_generator, from_source


def _ds(n: int = 10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return from_arrays({"x": x, "label": (np.arange(n) % 2).astype(np.int32)}), x


def _same(a, b) -> bool:
    return ss.data.ElementSpec(a) == ss.data.ElementSpec(b)


def _labels(ds) -> list[int]:
    return [int(e["label"]) for e in ds]


def test_from_arrays_spec_len_and_values():
    ds, x = _ds(4)
    assert ds.spec == ss.data.ElementSpec(
        {"x": Float32[np.ndarray, "3"], "label": Int32[np.ndarray, ""]}
    )
    assert repr(ds.spec) == '{"x": Float32[np.ndarray, "3"], "label": Int32[np.ndarray, ""]}'
    assert len(ds) == 4
    got = [e["x"] for e in ds]
    np.testing.assert_array_equal(np.stack(got), x)


def test_batch_pads_short_last_batch_and_masks_it():
    ds, x = _ds(10)
    b = ds.batch(4)
    assert len(b) == 3
    assert (
        repr(b.spec["x"]) and b.spec["x"].dim_str == "batch 3" and b.spec["mask"].dim_str == "batch"
    )
    batches = list(b)
    assert [bt["x"].shape for bt in batches] == [(4, 3)] * 3
    np.testing.assert_array_equal(batches[2]["mask"], [True, True, False, False])
    np.testing.assert_array_equal(batches[2]["x"][:2], x[8:])
    np.testing.assert_array_equal(batches[2]["x"][2:], 0)
    real = np.concatenate([bt["x"][bt["mask"]] for bt in batches])
    np.testing.assert_array_equal(real, x)  # every example exactly once


def test_batch_drop_remainder():
    ds, _ = _ds(10)
    b = ds.batch(4, drop_remainder=True)
    assert len(b) == 2 and len(list(b)) == 2


def test_batch_twice_fails_when_built_naming_the_stage():
    ds, _ = _ds()
    with pytest.raises(
        ss.ShapeError, match=r"stage 3, batch\(2\): the elements already have a leading batch"
    ):
        ds.batch(4).batch(2)


def test_tuple_elements_get_mask_as_last_part():
    x = np.ones((5, 2), np.float32)
    y = np.zeros((5,), np.int32)
    b = from_arrays((x, y)).batch(2)
    last = list(b)[-1]
    assert len(last) == 3 and last[2].tolist() == [True, False]


def test_shuffle_is_a_permutation_seeded_by_seed_and_epoch():
    ds, _ = _ds(20)
    s = ds.map(lambda x: x, spec=ds.spec).shuffle(seed=3)  # a 1:1 map keeps random access
    e0 = [e["x"][0] for e in s.epoch(0)]
    e0_again = [e["x"][0] for e in s.epoch(0)]
    e1 = [e["x"][0] for e in s.epoch(1)]
    assert e0 == e0_again and e0 != e1
    assert sorted(e0) == sorted(e1) == [3.0 * i for i in range(20)]
    perm = np.random.default_rng([3, 0]).permutation(20)  # the documented seeding
    assert e0 == [3.0 * i for i in perm]


def test_map_keyed_derives_spec_from_annotations_and_binds_sizes():
    ds, x = _ds(3)

    def double(x: Float32[np.ndarray, "n"]) -> Float32[np.ndarray, "n"]:
        return x * np.float32(2)

    m = ds.map(double)
    assert _same(m.spec["x"], Float32[np.ndarray, "3"])
    np.testing.assert_array_equal(np.stack([e["x"] for e in m]), 2 * x)
    assert _labels(m) == [0, 1, 0]


def test_map_annotated_with_jax_arrays_keeps_host_numpy_elements():
    """The design writes element specs as UInt8[Array, ...]: a map annotated that way works on
    the host pipeline, its spec says np.ndarray, and a jax.Array result is brought to the host."""
    import jax.numpy as jnp

    def scale(image: UInt8[Array, "h w 3"]) -> Float32[Array, "h w 3"]:
        return jnp.asarray(image, jnp.float32) / 255

    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    ds = from_arrays({"image": images, "label": np.array([0, 1], np.int32)}).map(scale)
    assert _same(ds.spec["image"], Float32[np.ndarray, "4 4 3"])
    got = [e["image"] for e in ds]
    assert all(type(g) is np.ndarray for g in got)
    np.testing.assert_allclose(np.stack(got), images.astype(np.float32) / 255, rtol=1e-6)


def test_map_dtype_mismatch_fails_when_built():
    images = from_arrays(
        {"image": np.zeros((2, 4, 4, 3), np.uint8), "label": np.zeros(2, np.int32)}
    )

    def brighten(image: Float32[np.ndarray, "h w 3"]) -> Float32[np.ndarray, "h w 3"]:
        return image

    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)stage 2, map\(brighten\): parameter 'image'.*uint8 is not float32.*map\(normalise\)",
    ):
        images.map(brighten)


def test_map_after_batch_rank_mismatch_fails_when_built():
    images = from_arrays({"image": np.zeros((2, 4, 4, 3), np.uint8)})

    def f(image: UInt8[np.ndarray, "h w 3"]) -> UInt8[np.ndarray, "h w 3"]:
        return image

    with pytest.raises(ss.ShapeError, match=r"(?s)needs 3 dimensions.*already batched"):
        images.batch(2).map(f)


def test_map_unknown_key_fails_when_built():
    ds, _ = _ds()

    def f(img: Float32[np.ndarray, "3"]) -> Float32[np.ndarray, "3"]:
        return img

    with pytest.raises(
        ss.ShapeError,
        match=r"parameter 'img' is not a key of the elements; their keys are \['label', 'x'\]",
    ):
        ds.map(f)


def test_map_wrong_output_at_run_time_names_stage_and_example():
    ds, _ = _ds(3)

    def bad(x: Float32[np.ndarray, "3"]) -> Float32[np.ndarray, "3"]:
        return x[:2]

    m = ds.map(bad)
    with pytest.raises(
        ss.ShapeError,
        match=r"(?s)stage 2, map\(bad\): element from example 0 does not match.*dimension 0 is 2, expected 3",
    ):
        list(m)


def test_map_without_return_annotation_needs_spec_where_it_returns_no_arrays():
    ds, _ = _ds()
    with pytest.raises(
        ss.ShapeError, match="cannot tell the spec of <lambda>'s output: it is not annotated"
    ):
        ds.map(lambda x: "not an array")


def test_map_typeddict_whole_element_and_unknown_key():
    class In(TypedDict):
        x: Float32[np.ndarray, "3"]
        label: Int32[np.ndarray, ""]

    class Out(TypedDict):
        y: Float32[np.ndarray, ""]

    def total(e: In) -> Out:
        return {"y": np.asarray(e["x"].sum())}

    ds, x = _ds(2)
    m = ds.map(total)
    assert m.spec == ss.data.ElementSpec({"y": Float32[np.ndarray, ""]})
    assert [float(e["y"]) for e in m] == [float(r.sum()) for r in x]

    class Wrong(TypedDict):
        pixels: Float32[np.ndarray, "3"]

    def g(e: Wrong) -> Out:
        return {"y": np.float32(0)}

    with pytest.raises(ss.ShapeError, match="expects the key 'pixels'"):
        ds.map(g)


def test_map_workers_keeps_order_and_seeded_rng_is_per_element():
    ds, _ = _ds(30)

    def noisy(x: Float32[np.ndarray, "3"], rng: np.random.Generator) -> Float32[np.ndarray, "3"]:
        return (x + rng.standard_normal(3)).astype(np.float32)

    serial = [e["x"] for e in ds.map(noisy, seed=1)]
    parallel = [e["x"] for e in ds.map(noisy, seed=1, workers=3)]
    np.testing.assert_array_equal(np.stack(serial), np.stack(parallel))
    expected = np.arange(3, dtype=np.float32) + np.random.default_rng((1, 0, 0)).standard_normal(
        3
    ).astype(np.float32)
    np.testing.assert_allclose(serial[0], expected, rtol=1e-6)


def test_from_generator_checks_elements_and_is_a_stream():
    def gen():
        yield np.zeros((2,), np.float32)
        yield np.zeros((3,), np.float32)

    ds = from_generator(gen, Float32[np.ndarray, "2"])
    with pytest.raises(TypeError, match="not known"):
        len(ds)
    it = iter(ds)
    next(it)
    with pytest.raises(
        ss.ShapeError, match=r"stage 1, from_generator\(gen\): element from element 1 of"
    ):
        next(it)


def test_filter_flat_map_take_skip_repeat_against_python():
    ds, _ = _ds(10)

    def even(label: Int32[np.ndarray, ""]) -> bool:
        return int(label) == 0

    assert len(list(ds.filter(even))) == 5

    def twice(x: Float32[np.ndarray, "3"]):
        yield x
        yield x + np.float32(1)

    fm = from_arrays(np.arange(6, dtype=np.float32).reshape(2, 3)).flat_map(
        twice, spec=Float32[np.ndarray, "3"]
    )
    assert [float(v[0]) for v in fm] == [0.0, 1.0, 3.0, 4.0]
    idx = [int(e["x"][0]) // 3 for e in ds.skip(2).take(3)]
    assert idx == [2, 3, 4]
    assert len(ds.take(3).repeat(2)) == 6
    assert [int(e["x"][0]) // 3 for e in ds.take(2).repeat(3)] == [0, 1] * 3
    gen_rep = (
        from_generator(lambda: iter([np.array(1.0, np.float32)]), Float32[np.ndarray, ""])
        .repeat()
        .take(4)
    )
    assert [float(v) for v in gen_rep] == [1.0] * 4


def test_zip_and_concatenate():
    a = from_arrays(np.arange(3, dtype=np.int64))
    b = from_arrays(np.arange(3, dtype=np.int64) * 10)
    assert [(int(u), int(v)) for u, v in a.zip(b)] == [(0, 0), (1, 10), (2, 20)]
    assert [int(v) for v in a.concatenate(b)] == [0, 1, 2, 0, 10, 20]
    c = from_arrays(np.arange(3, dtype=np.float32))
    with pytest.raises(ss.ShapeError, match="part 1 has another spec"):
        a.concatenate(c)


def test_cache_computes_each_element_once():
    calls = []

    class Source:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            calls.append(i)
            return np.array(i)

    ds = from_source(Source(), Int64[np.ndarray, ""]).cache()
    assert [int(v) for v in ds] == [0, 1, 2, 3]
    assert [int(v) for v in ds.epoch(1)] == [0, 1, 2, 3]
    assert calls == [0, 1, 2, 3]


def test_split_is_stratified_disjoint_and_complete():
    labels = np.array([0] * 10 + [1] * 30, np.int32)
    ds = from_arrays({"x": np.arange(40, dtype=np.float32), "label": labels})
    train, test = ds.split(0.8, seed=0)
    tr, te = [int(e["x"]) for e in train], [int(e["x"]) for e in test]
    assert sorted(tr + te) == list(range(40))
    assert len(tr) == 32 and len(te) == 8
    assert sum(labels[tr] == 0) == 8 and sum(labels[te] == 0) == 2
    assert [int(e["x"]) for e in ds.split(0.8, seed=0)[0]] == tr  # deterministic


def test_resume_random_access_pipeline_exactly():
    ds, _ = _ds(23)

    def aug(x: Float32[np.ndarray, "3"], rng: np.random.Generator) -> Float32[np.ndarray, "3"]:
        return (x + rng.integers(0, 100)).astype(np.float32)

    pipe = ds.shuffle(seed=5).map(aug, workers=2).batch(4).prefetch(2)
    full = [b["x"] for b in pipe.epoch(3)]
    it = pipe.epoch(3)
    head = [next(it)["x"] for _ in range(2)]
    state = json.loads(json.dumps(it.get_state()))
    it.close()
    rest = [b["x"] for b in pipe.epoch(state=state)]
    np.testing.assert_array_equal(np.stack(head + rest), np.stack(full))
    assert state["epoch"] == 3 and state["position"] == 2
    started = [b["x"] for b in pipe.epoch(3, start=2)]
    np.testing.assert_array_equal(np.stack(started), np.stack(full[2:]))


def test_resume_stream_pipeline_exactly():
    def gen():
        for i in range(17):
            yield np.array(i, np.int64)

    def keep(x: Int64[np.ndarray, ""]) -> bool:
        return int(x) % 3 != 0

    def pair(x: Int64[np.ndarray, ""]):
        yield x
        yield np.asarray(x * 100)

    pipe = (
        from_generator(gen, Int64[np.ndarray, ""])
        .filter(keep)
        .flat_map(pair, spec=Int64[np.ndarray, ""])
        .shuffle(seed=0, buffer_size=4)
        .batch(3)
    )
    full = [b[0].tolist() for b in pipe.epoch(1)]
    it = pipe.epoch(1)
    head = [next(it)[0].tolist() for _ in range(3)]
    it2 = pipe.epoch(1)
    it2.set_state(json.loads(json.dumps(it.get_state())))
    assert head + [b[0].tolist() for b in it2] == full


def test_spec_compatible_with_model_spec_ignores_array_type():
    ds = from_arrays({"image": np.zeros((3, 8, 8, 3), np.uint8)}).batch(2)
    assert compatible(ds.spec["image"], UInt8[Array, "batch 8 8 3"])
    assert not compatible(ds.spec["image"], UInt8[Array, "batch 9 8 3"])
    with pytest.raises(
        ss.ShapeError, match=r"(?s)fit: the model's input cannot take.*dimension 1 is 8, expected 9"
    ):
        ss.data.check_compatible(
            ds.spec["image"], UInt8[Array, "batch 9 8 3"], where="fit: the model's input"
        )


def test_validation_errors_list_allowed_values():
    ds, _ = _ds()
    with pytest.raises(ValueError, match="batch: size must be a positive int"):
        ds.batch(0)
    with pytest.raises(ValueError, match="needs a buffer"):
        ds.filter(lambda x: True).shuffle(seed=0)
    with pytest.raises(ValueError, match="no random access"):
        ds.filter(lambda x: True).split(0.5)


def test_prefetch_onto_device_changes_array_type():
    import jax

    ds, x = _ds(4)
    p = ds.batch(2).prefetch(2, sharding=jax.devices()[0])
    assert "Array" in repr(p.spec)
    first = next(iter(p))
    assert isinstance(first["x"], jax.Array)
    np.testing.assert_array_equal(np.asarray(first["x"]), x[:2])


def test_partial_transform_resolves_fstring_dims():
    from shapesafe.data import random_crop

    ds = from_arrays({"image": np.zeros((2, 10, 12, 3), np.uint8)})
    m = ds.map(functools.partial(random_crop, height=4, width=5))
    assert _same(m.spec["image"], UInt8[np.ndarray, "4 5 3"])
    assert next(iter(m))["image"].shape == (4, 5, 3)
