"""Networks for the six chapters, built by name: ``build("resnet20", num_classes=100)``, ``names()``.

| name | network (module) | paper / chapter |
| --- | --- | --- |
| ``cnn_small`` | ``cnn.SmallCNN`` 4 convs 16-32-64-64 | robustness, hard samples (CPU scale) |
| ``cnn_small_s2`` | ``cnn.SmallCNN`` with a stride-2 first conv: 32x32 input at 16x16 cost | robustness (CPU) |
| ``cnn_tiny`` | ``cnn.SmallCNN`` 4 convs 8-16-32-32 (~15k weights) | DST from scratch (CPU scale) |
| ``resnet8/20/32/56`` | ``resnet.resnet_3stage`` CIFAR ResNet, width 1 | robustness, hard samples |
| ``resnet18/34`` | ``resnet.resnet_4stage`` CIFAR ResNet-18/34, width 1 | hard samples, robustness |
| ``vgg11/16/19`` | ``vgg.VGG`` CIFAR VGG with BN, width 1 | robustness, hard samples |
| ``wrn22_2`` | ``resnet.WideResNet`` WRN-22-2 | DST from scratch (RigL's CIFAR-10 network) |
| ``cnn1d`` | ``conv1d.CNN1d`` FCN-style 1D CNN | DSN baseline |
| ``scnn`` | ``conv1d.SCNN`` DSN's sparse large-kernel CNN | DSN |
| ``e2enet`` | ``conv3d.E2ENet`` depth-shift encoder + fusion decoder | E2ENet |
| ``slak_mini`` / ``convnext_mini`` | ``large_kernel.SLaKNet`` decomposed M x N / plain 7x7 | SLaK |
| ``slak_tiny`` / ``convnext_tiny`` | ``large_kernel.slak_tiny`` paper-scale SLaK-T / ConvNeXt-T | SLaK |
| ``asr_encoder`` | ``speech.ASREncoder`` Conformer-lite CTC encoder | DDP-ASR |

Keyword arguments are the constructor's (see each docstring for shapes and defaults), except the ones a
name fixes (the depth of ``resnet20``, the kernel settings of ``convnext_*``). Names of the layers each
paper sparsifies are listed in the docstring of each module.
"""

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from dstlib import checks
from dstlib.models.cnn import SmallCNN
from dstlib.models.conv1d import SCNN, CNN1d
from dstlib.models.conv3d import DepthShift, E2ENet
from dstlib.models.large_kernel import DecomposedLargeKernel, SLaKNet, slak_tiny
from dstlib.models.resnet import WideResNet, resnet_3stage, resnet_4stage
from dstlib.models.speech import ASREncoder, ctc_greedy_decode
from dstlib.models.vgg import VGG

CONVNEXT_KERNELS = {"kernel_size": 7, "small_kernel": None, "decompose": False}

# name -> (constructor, keyword arguments the name fixes)
REGISTRY: dict[str, tuple[Callable[..., nn.Module], dict[str, Any]]] = {
    "cnn_small": (SmallCNN, {}),
    "cnn_tiny": (SmallCNN, {"widths": (8, 16, 32, 32)}),
    "cnn_small_s2": (SmallCNN, {"stem_stride": 2}),
    **{f"resnet{d}": (resnet_3stage, {"depth": d}) for d in (8, 20, 32, 56)},
    **{f"resnet{d}": (resnet_4stage, {"depth": d}) for d in (18, 34)},
    **{f"vgg{d}": (VGG, {"depth": d}) for d in (11, 16, 19)},
    "wrn22_2": (WideResNet, {"depth": 22, "widen": 2}),
    "cnn1d": (CNN1d, {}),
    "scnn": (SCNN, {}),
    "e2enet": (E2ENet, {}),
    "slak_mini": (SLaKNet, {}),
    "convnext_mini": (SLaKNet, CONVNEXT_KERNELS),
    "slak_tiny": (slak_tiny, {}),
    "convnext_tiny": (slak_tiny, {**CONVNEXT_KERNELS, "width_factor": 1.0}),
    "asr_encoder": (ASREncoder, {}),
}


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(REGISTRY)


def allowed_kwargs(name: str) -> list[str]:
    """Keyword arguments ``build(name, ...)`` accepts."""
    checks.one_of("name", name, names())
    constructor, fixed = REGISTRY[name]
    return [p for p in inspect.signature(constructor).parameters if p not in fixed]


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with constructor keyword arguments ``kwargs``.

    Raises ``ValueError`` for an unknown name (listing the names) or keyword (listing the allowed ones).
    """
    allowed = allowed_kwargs(name)
    unknown = sorted(set(kwargs) - set(allowed))
    checks.require(not unknown, "keywords", unknown, f"for model {name!r}: {allowed}")
    constructor, fixed = REGISTRY[name]
    return constructor(**fixed, **kwargs)


__all__ = [
    "ASREncoder",
    "CNN1d",
    "DecomposedLargeKernel",
    "DepthShift",
    "E2ENet",
    "SCNN",
    "SLaKNet",
    "SmallCNN",
    "VGG",
    "allowed_kwargs",
    "build",
    "ctc_greedy_decode",
    "names",
    "resnet_3stage",
    "resnet_4stage",
    "slak_tiny",
]
