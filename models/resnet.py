"""ResNets from shapesafe blueprints: ``resnet18`` (torchvision's layout) and ``resnet_small``.

A ResNet is a stem, stages of residual blocks, global average pooling and a linear head.
Each ``BasicBlock`` (He et al., 2016) is ``L.Residual(conv3x3 >> BN >> ReLU >> conv3x3 >> BN,
shortcut=...) >> L.ReLU()``; where a stage halves height and width or changes the number of
channels, the shortcut is a projection, a strided 1x1 convolution and a BatchNorm.

Layers carry torchvision's names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``fc``;
``conv1``/``bn1``/``conv2``/``bn2`` inside a block), so ``net["layer3"]`` and
``model["fc"]`` read as in PyTorch, and the head is always the last layer: ``net[:-1]`` is
the backbone, ending in ``Float32[batch, channels]`` features.

Conventions as torchvision: convolutions have no bias (a BatchNorm follows each), explicit
padding (1 for 3x3, 3 for the 7x7 stem), the stem's max pooling pads with ``-inf``, and
BatchNorm uses ``epsilon=1e-5`` and PyTorch's default momentum 0.1, which is shapesafe's
``momentum=0.9`` (see ``L.BatchNorm``).

Inputs. ``resnet18`` takes ``Float32[batch, size, size, 3]`` images normalised as the
weights it runs expect (torchvision's ImageNet weights: pixels in [0, 1], minus the
per-channel mean ``(0.485, 0.456, 0.406)``, divided by the std ``(0.229, 0.224, 0.225)``),
channels-last. ``resnet_small`` takes ``UInt8[batch, size, size, 3]`` photos and scales them
to [0, 1] itself (``L.Rescale(1 / 255)``), so it trains on the raw pixels a dataset yields.

``load_torchvision`` loads a torchvision-layout ``state_dict`` (``.pt`` or ``.safetensors``)
into a built ``resnet18`` (see ``ss.load_state_dict``).
"""

import os
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple

from jaxtyping import Array, Float32, UInt8

import shapesafe as ss
from shapesafe import layers as L

MOMENTUM = 0.9  # PyTorch's BatchNorm momentum 0.1 (the other side's weight)


class Network(NamedTuple):
    """A zoo network: its blueprint and the input spec to build it for (``ss.build(*net)``)."""

    blueprint: L.Sequential
    spec: Any


def _bn() -> L.BatchNorm:
    return L.BatchNorm(momentum=MOMENTUM, epsilon=1e-5)


def basic_block(filters: int, *, strides: int = 1, project: bool = False) -> L.Sequential:
    """A ResNet ``BasicBlock``: two 3x3 convolutions with BatchNorm, a shortcut, then ReLU.

    Args:
        filters: output channels of both convolutions.
        strides: of the first convolution (2 halves height and width).
        project: use a 1x1 convolution + BatchNorm shortcut (needed when ``strides > 1`` or
            the channels change); otherwise the shortcut is the input itself.

    Returns:
        ``L.Residual(...) >> L.ReLU()``, two layers.
    """
    main = (
        L.Conv2D(filters, 3, strides=strides, padding=1, use_bias=False).named("conv1")
        >> _bn().named("bn1")
        >> L.ReLU()
        >> L.Conv2D(filters, 3, padding=1, use_bias=False).named("conv2")
        >> _bn().named("bn2")
    )
    shortcut = (L.Conv2D(filters, 1, strides=strides, use_bias=False) >> _bn()) if project else None
    return L.Residual(main, shortcut=shortcut) >> L.ReLU()


def stage(filters: int, blocks: int, *, strides: int, project: bool) -> L.Sequential:
    """``blocks`` basic blocks; the first has ``strides`` and, if ``project``, a projection."""
    layers = basic_block(filters, strides=strides, project=project)
    for _ in range(blocks - 1):
        layers = layers >> basic_block(filters)
    return layers


def resnet18(classes: int = 1000, *, size: int = 224) -> Network:
    """ResNet-18 with torchvision's layer layout, for ``size`` x ``size`` RGB images.

    Stem: 7x7/2 convolution (64 filters, padding 3), BatchNorm, ReLU, 3x3/2 max pooling
    (padding 1); then four stages of two basic blocks with 64, 128, 256 and 512 channels (the
    last three start with a stride-2 block and a projection shortcut); global average pooling
    and ``fc``, a ``Linear(classes)``. 11.7 M parameters for 1000 classes.

    Args:
        classes: outputs of the head.
        size: height and width of the input images (any size >= 32 works; 224 is ImageNet's).

    Returns:
        ``Network(blueprint, spec)``, spec ``Float32[Array, "batch size size 3"]`` (normalised
        images, channels-last; see the module docstring).

    Example:
        >>> from shapesafe.models import resnet
        >>> net, spec = resnet.resnet18(classes=10, size=64)
        >>> [layer.name for layer in net]
        ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4', 'avgpool', 'fc']
        >>> net[-1]
        Linear(10, name='fc')
    """
    ss_stages = [
        stage(64, 2, strides=1, project=False).named("layer1"),
        stage(128, 2, strides=2, project=True).named("layer2"),
        stage(256, 2, strides=2, project=True).named("layer3"),
        stage(512, 2, strides=2, project=True).named("layer4"),
    ]
    net = L.Sequential(
        (
            L.Conv2D(64, 7, strides=2, padding=3, use_bias=False).named("conv1"),
            _bn().named("bn1"),
            L.ReLU().named("relu"),
            L.MaxPool((3, 3), strides=2, padding=1).named("maxpool"),
            *ss_stages,
            L.GlobalAvgPool().named("avgpool"),
            L.Linear(classes).named("fc"),
        )
    )
    return Network(net, Float32[Array, f"batch {size} {size} 3"])


def resnet_small(classes: int, *, width: int = 16, size: int = 64) -> Network:
    """A small ResNet for 32-128 px photos: 3 stages of 2 basic blocks (``width``, ``2 width``,
    ``4 width`` channels), the last two halving height and width; no max-pooling stem.

    It takes raw ``uint8`` pixels: the first layer, ``rescale``, maps them to [0, 1]. The stem
    is a 3x3/2 convolution (``width`` filters, padding 1), BatchNorm and ReLU, so a 64 px
    input reaches the stages at 32 px and leaves them at 8 px. About 0.17 M parameters at
    ``width=16``.

    Args:
        classes: outputs of the head (``fc``, the last layer).
        width: channels of the first stage; the others have 2x and 4x as many.
        size: height and width of the input photos.

    Returns:
        ``Network(blueprint, spec)``, spec ``UInt8[Array, "batch size size 3"]``.

    Example:
        >>> from shapesafe.models import resnet
        >>> net, spec = resnet.resnet_small(classes=5, width=8, size=32)
        >>> spec.dtype.__name__, spec.dim_str
        ('UInt8', 'batch 32 32 3')
        >>> net[-1], net[:-1][-1]  # the head; the backbone ends in pooled features
        (Linear(5, name='fc'), GlobalAvgPool(name='avgpool'))
    """
    net = L.Sequential(
        (
            L.Rescale(1 / 255).named("rescale"),
            L.Conv2D(width, 3, strides=2, padding=1, use_bias=False).named("conv1"),
            _bn().named("bn1"),
            L.ReLU().named("relu"),
            stage(width, 2, strides=1, project=False).named("layer1"),
            stage(2 * width, 2, strides=2, project=True).named("layer2"),
            stage(4 * width, 2, strides=2, project=True).named("layer3"),
            L.GlobalAvgPool().named("avgpool"),
            L.Linear(classes).named("fc"),
        )
    )
    return Network(net, UInt8[Array, f"batch {size} {size} 3"])


def pretrained_small() -> ss.Model:
    """``resnet_small(12, width=32, size=64)`` pretrained on "shapes in the wild", in evaluation mode.

    Its 12-way head (``fc``) names which shape, if any, is pasted on a photo
    (``models.pretrain.SHAPES``); the rest is a backbone for 64 px photos, shipped in
    ``models/weights/resnet_small_shapes/`` (an ``ss.save`` artifact; how it was trained and
    its source-task accuracy are in ``pretrain.json`` there; ``python -m models.pretrain``
    remakes it). Swap the head for a task of your own::

        backbone = resnet.pretrained_small()
        model = ss.build(backbone.blueprint[:-1] >> L.Linear(2).named("fc"), backbone.input_spec)
        ss.copy_weights(backbone, model, skip="fc", strict=True)
        ss.freeze(model, range(len(model) - 1))  # train the head first

    Example:
        >>> from shapesafe.models import resnet
        >>> model = resnet.pretrained_small()
        >>> ss.summary(model).input_spec, ss.summary(model).output_spec
        ('UInt8[batch, 64, 64, 3]', 'Float32[batch, 12]')
    """
    from . import pretrain

    model: ss.Model = ss.load(pretrain.WEIGHTS)
    return model


# -- torchvision's state_dict names ---------------------------------------------------------


def torchvision_names(blueprint: L.Sequential) -> dict[str, str]:
    """Map torchvision's module names to this ResNet's layer paths, for ``ss.load_state_dict``.

    ``conv1 -> "conv1"``, ``layer2.0.conv1 -> "layer2.0.block.conv1"``,
    ``layer2.0.downsample.1 -> "layer2.0.shortcut.1"``, ``layer2.1.bn2 -> "layer2.2.block.bn2"``
    (each block is a ``Residual`` and a ``ReLU``, so torchvision's block ``k`` is layer ``2k``
    of our stage), ``fc -> "fc"``. Read from the blueprint's layer names, so it holds for any
    network of this module (and for a new head named ``fc``).

    Example:
        >>> from shapesafe.models import resnet
        >>> names = resnet.torchvision_names(resnet.resnet18().blueprint)
        >>> names["layer1.1.conv2"], names["layer4.0.downsample.0"], len(names)
        ('layer1.2.block.conv2', 'layer4.0.shortcut.0', 41)
    """
    names: dict[str, str] = {}
    for layer in blueprint:
        if layer.name in ("conv1", "bn1", "fc"):
            names[layer.name] = layer.name
        if not (
            isinstance(layer, L.Sequential)
            and layer.name is not None
            and layer.name.startswith("layer")
        ):
            continue
        k = 0  # torchvision's block index
        for i, block in enumerate(layer):
            if not isinstance(block, L.Residual):
                continue
            for part in ("conv1", "bn1", "conv2", "bn2"):
                names[f"{layer.name}.{k}.{part}"] = f"{layer.name}.{i}.block.{part}"
            for j in range(len(block.shortcut) if block.shortcut is not None else 0):
                names[f"{layer.name}.{k}.downsample.{j}"] = f"{layer.name}.{i}.shortcut.{j}"
            k += 1
    return names


def load_torchvision(
    model: ss.Model,
    state_dict: Mapping[str, Any] | str | os.PathLike[str],
    *,
    skip: Collection[str] = (),
) -> list[str]:
    """Load a torchvision-layout ResNet ``state_dict`` into a model built from this module.

    Converts layouts (convolutions OIHW to HWIO, the linear head's ``(out, in)`` to
    ``(in, out)``) and copies BatchNorm's running statistics; see ``ss.load_state_dict``.

    Args:
        model: ``ss.build(*resnet18(...))`` (changed in place).
        state_dict: a mapping of names to tensors or arrays, or a ``.safetensors`` file (read
            without PyTorch) or a ``.pt``/``.pth`` file (read with
            ``torch.load(weights_only=True)``).
        skip: torchvision module names to leave out, e.g. ``("fc",)`` to load a backbone
            into a network with a head of another size.

    Returns:
        The ``state_dict`` keys loaded.

    Raises:
        ShapesafeError: keys missing from or unknown to the model, or shapes that differ
            (all listed; nothing is loaded then).
    """
    return ss.load_state_dict(model, state_dict, torchvision_names(model.blueprint), skip=skip)
