"""Width-scaled models: the paper's ResNet18 and VGG11, a small CNN (the CPU default), an MLP;
a researcher's own by import path (custom.py).

`width` is k: ResNet18's four stages have k, 2k, 4k, 8k channels (k = 64 is the usual
ResNet18); the CNN's three conv stages have k, 2k, 4k; the MLP's two hidden layers 16k.
All accept any input size of at least 8x8, or signals 1 high and at least 8 long (global
average pooling before the head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class BasicBlock(nn.Module):
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # conv -> bn in forward (metrics/fold.py)

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet18 (3x3 stem, no max-pool) with stage widths k, 2k, 4k, 8k."""

    def __init__(self, width: int, in_channels: int, n_classes: int):
        super().__init__()
        k = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, k, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(k), nn.ReLU())
        layers, cin = [], k
        for i, c in enumerate((k, 2 * k, 4 * k, 8 * k)):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, c, stride), BasicBlock(c, c, 1)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(8 * k, n_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class SmallCNN(nn.Module):
    """conv-BN-ReLU stages of k, 2k, 4k channels, 2x2 max-pool after the last two. On
    signals (inputs one row high, [C, 1, L]: MNIST-1D) the same network in one dimension:
    1x3 kernels and 1x2 pooling."""

    def __init__(self, width: int, in_channels: int, n_classes: int, one_d: bool = False):
        super().__init__()
        k, layers, cin = width, [], in_channels
        kernel, pad, pool = ((1, 3), (0, 1), (1, 2)) if one_d else (3, 1, 2)
        for i, c in enumerate((k, 2 * k, 4 * k)):
            layers += [nn.Conv2d(cin, c, kernel, 1, pad, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU()]
            if i > 0:
                layers.append(nn.MaxPool2d(pool))
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(4 * k, n_classes)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class MLP(nn.Module):
    """Two hidden ReLU layers of 16k units (no BatchNorm)."""

    def __init__(self, width: int, in_features: int, n_classes: int):
        super().__init__()
        h = 16 * width
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, h), nn.ReLU(),
                                 nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n_classes))

    def forward(self, x):
        return self.net(x)


class VGG11(nn.Module):
    """The paper's appendix VGG11 with BatchNorm, widths k, 2k, 4k, 4k, 8k, 8k, 8k, 8k (k = 64
    is the usual VGG11), max-pool after stages 1, 2, 4, 6, 8 while the input is large enough,
    global average pooling, one linear head. On signals one row high: 1x3 kernels, 1x2
    pooling, as the small CNN."""

    PLAN = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")

    def __init__(self, width: int, in_channels: int, n_classes: int, size: tuple[int, int]):
        super().__init__()
        one_d = size[0] == 1
        kernel, pad, pool = ((1, 3), (0, 1), (1, 2)) if one_d else (3, 1, 2)
        layers, cin, (h, w) = [], in_channels, size
        for step in self.PLAN:
            if step == "M":
                if w >= 2 and (one_d or h >= 2):  # pool while there is room
                    layers.append(nn.MaxPool2d(pool))
                    h, w = (h if one_d else h // 2), w // 2
                continue
            layers += [nn.Conv2d(cin, step * width, kernel, 1, pad, bias=False),
                       nn.BatchNorm2d(step * width), nn.ReLU()]
            cin = step * width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


# model.arch -> factory(width, input_shape [C, H, W], n_classes); one line per model. A name
# `package.module:factory` is a researcher's own, with this signature (custom.py).
REGISTRY = {
    "cnn": lambda k, shape, n: SmallCNN(k, shape[0], n, one_d=shape[1] == 1),
    "resnet18": lambda k, shape, n: ResNet18(k, shape[0], n),
    "mlp": lambda k, shape, n: MLP(k, shape[0] * shape[1] * shape[2], n),
    "vgg11": lambda k, shape, n: VGG11(k, shape[0], n, (shape[1], shape[2])),
}


def build_model(arch: str, width: int, input_shape, n_classes: int, seed: int) -> nn.Module:
    """A freshly initialized model; the same seed gives the same weights on any device."""
    torch.manual_seed(seed)
    shape = tuple(input_shape)
    if arch in REGISTRY:
        return REGISTRY[arch](width, shape, n_classes)
    from . import custom
    if not custom.is_path(arch):
        raise ConfigError(f"model.arch: must be one of {', '.join(REGISTRY)} or an import "
                          f"path package.module:factory, got {arch!r}")
    model = custom.resolve(arch, "model.arch")(width, shape, n_classes)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.arch: {arch} returned a {type(model).__name__}, not a "
                          "torch.nn.Module")
    return model


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def fast_layout(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last for convolutional models on CPU, where oneDNN's convolutions, pooling
    and BatchNorm run it 1.3-2x faster for these small images (benchmarks/bench_speed.py;
    the Hessian's double backward is the exception and stays contiguous). On a GPU
    cuDNN's default is left alone."""
    if device.type == "cpu" and has_conv(model) and not _narrow_strided_1x1(model):
        return torch.channels_last
    return torch.contiguous_format


def _narrow_strided_1x1(model: nn.Module) -> bool:
    """A strided 1x1 convolution with 2-7 input channels (ResNet18's shortcut at widths 1-6):
    its channels_last backward corrupts the heap on one thread with oneDNN pinned at AVX2
    (torch 2.14, tests/test_shipped_params.py), so such models stay contiguous."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
               and m.in_channels < 8 for m in model.modules())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
