"""models/resnet.py and ss.load_state_dict: ResNet-18 against a plain-PyTorch ResNet-18 with
torchvision's layout and key names, safetensors without PyTorch, errors that name the keys,
and the small ResNet's summary and training step.

torchvision itself is not importable beside this torch, so the reference below is written in
plain ``torch.nn`` with torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``, ...). The two ResNet-18s are built once per module (a
build compiles every initialiser: about 10 s on 2 cores).
"""

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors.numpy
from jaxtyping import Array, Float32

import shapesafe as ss
from shapesafe import layers as L
from shapesafe.models import resnet

CLASSES = 10
SIZE = 64
STAGES = ((1, 64), (2, 128), (3, 256), (4, 512))


# -- the reference: torchvision's ResNet-18 layout, by hand ---------------------------------


def torchvision_resnet18_shapes(classes: int) -> dict[str, tuple[int, ...]]:
    """Every ``state_dict`` key of torchvision's ``resnet18(num_classes=classes)`` and its shape."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    cin = 64
    for s, c in STAGES:
        for b in range(2):
            p = f"layer{s}.{b}"
            shapes[f"{p}.conv1.weight"] = (c, cin if b == 0 else c, 3, 3)
            bn(f"{p}.bn1", c)
            shapes[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn2", c)
            if b == 0 and s > 1:
                shapes[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                bn(f"{p}.downsample.1", c)
        cin = c
    shapes["fc.weight"] = (classes, 512)
    shapes["fc.bias"] = (classes,)
    return shapes


def random_state_dict(classes: int, seed: int) -> dict[str, np.ndarray]:
    """Random weights for every key, BatchNorm running statistics included, scaled so that
    activations keep an O(1) size through 18 layers (He-normal convolutions)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in torchvision_resnet18_shapes(classes).items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = np.array(7, np.int64)
        elif leaf == "weight" and len(shape) > 1:  # conv (out, in, kh, kw) or fc (out, in)
            out[key] = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif leaf in ("weight", "running_var"):  # BatchNorm scale, variance
            out[key] = rng.uniform(0.5, 1.5, shape)
        else:  # biases, running means
            out[key] = rng.normal(0.0, 0.2, shape)
        out[key] = out[key].astype(np.int64 if leaf == "num_batches_tracked" else np.float32)
    return out


def torch_resnet18(classes: int) -> Any:
    """torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2]) in plain torch.nn, same module names."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: Any) -> Any:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self, classes: int):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            cin = 64
            for s, c in STAGES:
                stride = 1 if s == 1 else 2
                setattr(
                    self,
                    f"layer{s}",
                    nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)),
                )
                cin = c
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, classes)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18(classes)


@pytest.fixture(scope="module")
def r18() -> ss.Model:
    """Our ResNet-18, built once (tests load every weight they rely on)."""
    return ss.build(*resnet.resnet18(classes=CLASSES, size=SIZE), seed=0)


def kernels(model: ss.Model) -> dict[str, np.ndarray]:
    """A few of the model's arrays, to show that a failed load changed nothing."""
    return {
        "conv1": np.asarray(model["conv1"].kernel[...]),
        "fc": np.asarray(model["fc"].bias[...]),
        "mean": np.asarray(model["layer3"][0].shortcut[1].mean[...]),
    }


# -- parity with PyTorch ----------------------------------------------------------------------


def test_reference_has_torchvision_keys_and_shapes() -> None:
    """The plain-torch reference and the hand-written table agree on every key and shape."""
    net = torch_resnet18(CLASSES)
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == torchvision_resnet18_shapes(CLASSES)
    assert len(got) == 122  # torchvision's resnet18 state_dict has 122 entries


def test_logits_match_pytorch_on_random_weights(r18: ss.Model, tmp_path: Any) -> None:
    """Same random weights (BatchNorm statistics too), eval mode, 2 random 64x64 images.
    Tolerance: 1e-5 of the largest logit (float32 convolutions summed in other orders)."""
    torch = pytest.importorskip("torch")
    weights = random_state_dict(CLASSES, seed=1)
    net = torch_resnet18(CLASSES)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    net.eval()
    path = tmp_path / "resnet18.pt"
    torch.save(net.state_dict(), path)
    x = np.random.default_rng(2).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()

    loaded = resnet.load_torchvision(r18, path)  # the .pt file, via torch.load(weights_only=True)
    assert len(loaded) == 122 - 20  # every key but the 20 num_batches_tracked
    r18.eval()
    got = np.asarray(jax.jit(r18)(jnp.asarray(x)))
    scale = float(np.max(np.abs(want)))
    assert scale > 0.5 and np.std(want) > 0.1  # logits of a usable size, not a degenerate net
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)  # measured: 5e-7 * scale
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


def test_state_dict_of_torch_tensors_loads(r18: ss.Model) -> None:
    """torch.Tensors straight from module.state_dict(), the layouts converted by index."""
    net = torch_resnet18(CLASSES)
    resnet.load_torchvision(r18, net.state_dict())
    w = net.layer2[0].conv1.weight.detach().numpy()  # (out, in, kh, kw)
    np.testing.assert_array_equal(
        np.asarray(r18["layer2"][0].block["conv1"].kernel[...])[2, 1, 5, 7], w[7, 5, 2, 1]
    )
    np.testing.assert_array_equal(
        np.asarray(r18["fc"].kernel[...])[300, 4], net.fc.weight.detach().numpy()[4, 300]
    )
    np.testing.assert_array_equal(
        np.asarray(r18["layer4"][2].block["bn2"].var[...]), net.layer4[1].bn2.running_var.numpy()
    )


# -- safetensors, without PyTorch -------------------------------------------------------------


def test_safetensors_round_trip_without_torch(
    r18: ss.Model, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .safetensors file written and read with NumPy only (``import torch`` would fail)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now raises ImportError
    weights = random_state_dict(CLASSES, seed=3)
    path = tmp_path / "resnet18.safetensors"
    safetensors.numpy.save_file(weights, str(path))
    resnet.load_torchvision(r18, path)
    conv = weights["layer3.0.downsample.0.weight"]  # (256, 128, 1, 1)
    got = np.asarray(r18["layer3"][0].shortcut[0].kernel[...])  # (1, 1, 128, 256)
    np.testing.assert_array_equal(got, conv[:, :, 0, 0].T[None, None])
    np.testing.assert_array_equal(
        np.asarray(r18["conv1"].kernel[...]), weights["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(np.asarray(r18["fc"].kernel[...]), weights["fc.weight"].T)
    bn = r18["layer1"][2].block["bn1"]
    for ours, theirs in (
        ("scale", "weight"),
        ("bias", "bias"),
        ("mean", "running_mean"),
        ("var", "running_var"),
    ):
        np.testing.assert_array_equal(
            np.asarray(getattr(bn, ours)[...]), weights[f"layer1.1.bn1.{theirs}"]
        )


def test_pt_file_without_torch_says_how_to_convert(
    r18: ss.Model, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "resnet18.pt"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        ss.ShapesafeError,
        match=r"reading 'resnet18.pt' needs PyTorch .* convert the file once to .safetensors",
    ):
        resnet.load_torchvision(r18, path)


# -- errors that name the keys ----------------------------------------------------------------


def edited(change: Callable[[dict[str, np.ndarray]], None]) -> dict[str, np.ndarray]:
    weights = random_state_dict(CLASSES, seed=4)
    change(weights)
    return weights


def test_missing_unknown_and_misshaped_keys_are_all_listed_and_nothing_loads(r18: ss.Model) -> None:
    def change(w: dict[str, np.ndarray]) -> None:
        del w["layer3.1.bn2.running_var"], w["fc.bias"]
        w["layer5.0.conv1.weight"] = np.zeros((3, 3), np.float32)
        w["layer2.0.downsample.0.weight"] = np.zeros((128, 32, 1, 1), np.float32)

    before = kernels(r18)
    with pytest.raises(ss.ShapesafeError) as info:
        resnet.load_torchvision(r18, edited(change))
    message = str(info.value)
    assert message.startswith(
        "load_state_dict: the state_dict does not fit the model; nothing was loaded."
    )
    assert (
        "2 keys missing (the model expects them, the state_dict lacks them):\n    layer3.1.bn2.running_var\n    fc.bias"
        in message
    )
    assert (
        "1 key unknown (in the state_dict, but no entry of `modules` places them):\n    layer5.0.conv1.weight"
        in message
    )
    assert (
        "layer2.0.downsample.0.weight: expected (128, 64, 1, 1) (for layer2.0.shortcut.0.kernel, "
        "(1, 1, 64, 128) in shapesafe's layout), found (128, 32, 1, 1)"
    ) in message
    after = kernels(r18)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_head_of_another_size_is_an_error_unless_skipped(r18: ss.Model) -> None:
    """ImageNet's 1000-class head on a 10-class model: name the mismatch; skip=("fc",) loads the rest."""
    weights = random_state_dict(1000, seed=5)
    with pytest.raises(
        ss.ShapesafeError, match=r"fc.weight: expected \(10, 512\) .* found \(1000, 512\)"
    ):
        resnet.load_torchvision(r18, weights)
    fc = np.asarray(r18["fc"].kernel[...])
    loaded = resnet.load_torchvision(r18, weights, skip=("fc",))
    assert "fc.weight" not in loaded and len(loaded) == 100
    np.testing.assert_array_equal(np.asarray(r18["fc"].kernel[...]), fc)
    np.testing.assert_array_equal(np.asarray(r18["bn1"].mean[...]), weights["bn1.running_mean"])


def test_many_unknown_keys_are_counted() -> None:
    model = ss.build(L.Linear(2).named("fc"), Float32[Array, "batch 3"])
    weights = {f"extra{i}.weight": np.zeros(1, np.float32) for i in range(20)}
    weights |= {"fc.weight": np.zeros((2, 3), np.float32), "fc.bias": np.zeros(2, np.float32)}
    with pytest.raises(
        ss.ShapesafeError,
        match=r"20 keys unknown .*\n    extra0.weight\n(.*\n){11}    \.\.\. and 8 more",
    ):
        ss.load_state_dict(model, weights, {"fc": "fc"})


@pytest.mark.parametrize(
    "modules, pattern",
    [
        (
            {"conv1": "stem"},
            r"'stem' names no layer: the model has no layer 'stem' \(a step there is 0 to 9 or one of "
            r"\['conv1', 'bn1', 'relu', 'maxpool', 'layer1'",
        ),
        (
            {"layer1.0.conv1": "layer1.0.block.conv9"},
            r"'layer1.0.block.conv9' names no layer: layer1.0.block has no "
            r"layer 'conv9' \(a step there is 0 to 4 or one of \['conv1', 'bn1', 'conv2', 'bn2'\]\)",
        ),
        (
            {"layer1.0.conv1": "layer1.0.main.conv1"},
            r"layer1.0 has no 'main' \(its parts are \['block'\]\)",
        ),
        (
            {"relu": "relu"},
            r"'relu' is a ReLU\(name='relu'\), which holds no PyTorch tensors; map PyTorch modules "
            r"to layers of these kinds: Conv1D, Conv2D, Linear",
        ),
    ],
    ids=["top-level-name", "nested-name", "part", "layer-without-tensors"],
)
def test_bad_paths_in_the_mapping_are_named(
    r18: ss.Model, modules: dict[str, str], pattern: str
) -> None:
    with pytest.raises(ss.ShapesafeError, match=pattern):
        ss.load_state_dict(r18, {}, modules)


def test_unreadable_file_kinds_are_refused(r18: ss.Model, tmp_path: Any) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot read 'weights.npz'; use a .safetensors file"):
        resnet.load_torchvision(r18, path)
    with pytest.raises(FileNotFoundError, match=r"no file"):
        resnet.load_torchvision(r18, tmp_path / "absent.safetensors")


# -- the networks ------------------------------------------------------------------------------


def test_resnet18_layout_and_parameter_count(r18: ss.Model) -> None:
    table = ss.summary(r18)
    # torchvision's resnet18 has 11,689,512 parameters with 1000 classes; 10 classes drop 990 * 513
    assert table.trainable_params == 11_689_512 - 990 * 513
    rows = {row[0]: row for row in table.rows}
    assert rows["3 (maxpool)"][2:4] == ("Float32[batch, 32, 32, 64]", "Float32[batch, 16, 16, 64]")
    assert rows["7 (layer4)"][3] == "Float32[batch, 2, 2, 512]"
    assert (
        rows["7.0.shortcut.0"][1].strip() == "Conv2D(512, (1, 1), strides=(2, 2), use_bias=False)"
    )
    assert table.output_spec == "Float32[batch, 10]"
    net = resnet.resnet18(classes=CLASSES).blueprint
    assert net[:-1][-1] == L.GlobalAvgPool().named("avgpool") and net[-1] == L.Linear(
        CLASSES
    ).named("fc")


def small_params(w: int, classes: int) -> tuple[int, int]:
    """(all, trainable) parameters of resnet_small, counted by hand; BatchNorm holds 2 + 2."""

    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout

    convs = conv(3, 3, w)
    bns = [w]
    for cin, c, project in ((w, w, False), (w, 2 * w, True), (2 * w, 4 * w, True)):
        convs += conv(3, cin, c) + 3 * conv(3, c, c) + (conv(1, cin, c) if project else 0)
        bns += [c] * (5 if project else 4)
    fc = 4 * w * classes + classes
    return convs + fc + 4 * sum(bns), convs + fc + 2 * sum(bns)


@pytest.fixture(scope="module")
def small() -> ss.Model:
    return ss.build(*resnet.resnet_small(classes=3, width=8, size=32), seed=0)


def test_resnet_small_summary_is_readable(small: ss.Model) -> None:
    table = ss.summary(small)
    assert (table.total_params, table.trainable_params) == small_params(8, 3)
    assert (
        table.input_spec == "UInt8[batch, 32, 32, 3]" and table.output_spec == "Float32[batch, 3]"
    )
    rows = {row[0]: row for row in table.rows}
    assert rows["4 (layer1)"][1:4] == (
        "Sequential(...)",
        "Float32[batch, 16, 16, 8]",
        "Float32[batch, 16, 16, 8]",
    )
    assert rows["5.0"][1:4] == (
        "  Residual(...)",
        "Float32[batch, 16, 16, 8]",
        "Float32[batch, 8, 8, 16]",
    )
    assert rows["5.0.block.0 (conv1)"][1].strip().startswith("Conv2D(16, (3, 3), strides=(2, 2)")
    assert rows["5.1"][1].strip() == "ReLU()"
    assert rows["7 (avgpool)"][3] == "Float32[batch, 32]"  # net[:-1], the backbone, ends here
    assert list(rows)[-1] == "8 (fc)"
    assert max(len(line) for line in str(table).splitlines()) < 200


def test_resnet_small_refuses_channels_first_and_float_input(small: ss.Model) -> None:
    with pytest.raises(ss.ShapeError, match=r"channels-first"):
        small(np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(ss.ShapeError, match=r"its dtype is float32; the model was built for uint8"):
        small(np.zeros((2, 32, 32, 3), np.float32))


def test_resnet_small_one_step_lowers_the_loss(small: ss.Model) -> None:
    """Two epochs over one batch: the second epoch's loss is the loss after one SGD step."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    y = np.arange(8, dtype=np.int32) % 3
    history = ss.fit(
        small,
        [(x, y)],
        loss=ss.losses.cross_entropy,
        optimizer=optax.sgd(0.05),
        epochs=2,
        progress=False,
    )
    first, second = history["loss"]
    assert np.isfinite(first) and second < first
    bn = small["bn1"]
    assert not np.allclose(np.asarray(bn.mean[...]), 0.0)  # running statistics were updated
