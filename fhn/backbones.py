"""CNN feature extractors: AlexNet with FC layers as convs, GroupNorm ResNet 18-152 (upstream backbones.py).

ImageNet weights are read only from a local file (never downloaded); a net that
will load a checkpoint is built without them.
"""
import logging
import math
import os

import torch
import torch.nn as nn

from common.checkpoint import load_checkpoint
from common.errors import InputError

LOGGER = logging.getLogger(__name__)

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"


class WeightsError(InputError, FileNotFoundError):
    """Pretrained backbone weights are not available locally."""


class AlexNet(nn.Module):
    """AlexNet backbone; output 4096-d (291 input: 3x3 map averaged, 224: 1x1)."""

    def __init__(self):
        super().__init__()
        self.dim = 4096
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Conv2d(256, 4096, 6),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Conv2d(4096, 4096, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x):
        x = self.features(x)
        x = self.classifier(x)
        return x.view(-1, self.dim)

    def init_weights(self):
        pass

    def load_pretrained(self, state_dict):
        """torchvision AlexNet weights: FC weights reshaped to convs, classifier.6 dropped."""
        copy_matching_weights(self, state_dict)


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, num_group=32, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.gn1 = nn.GroupNorm(num_group, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.gn2 = nn.GroupNorm(num_group, planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, num_group=32, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.gn1 = nn.GroupNorm(num_group, planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.gn2 = nn.GroupNorm(num_group, planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.gn3 = nn.GroupNorm(num_group, planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.relu(self.gn1(self.conv1(x)))
        out = self.relu(self.gn2(self.conv2(out)))
        out = self.gn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        return self.relu(out)


class ResNet(nn.Module):
    """GroupNorm ResNet; fixed AvgPool2d(7) => needs 224 inputs (quirk 20)."""

    def __init__(self, block, layers, num_classes=1000, num_group=32, tailed=False):
        self.inplanes = 64
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.gn1 = nn.GroupNorm(num_group, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], num_group=num_group)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, num_group=num_group)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, num_group=num_group)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, num_group=num_group)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.tailed = tailed
        self.dim = 512 * block.expansion
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.GroupNorm):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
        for m in self.modules():
            if isinstance(m, Bottleneck):
                m.gn3.weight.data.fill_(0)
            if isinstance(m, BasicBlock):
                m.gn2.weight.data.fill_(0)

    def _make_layer(self, block, planes, blocks, stride=1, num_group=32):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1,
                          stride=stride, bias=False),
                nn.GroupNorm(num_group, planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, num_group, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, num_group=num_group))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.gn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        if self.tailed:
            return x
        return self.fc(x)

    def init_weights(self):
        pass

    def load_pretrained(self, state_dict):
        copy_matching_weights(self, state_dict)


def copy_matching_weights(module, state_dict):
    """Copy every weight whose key exists in `module` (reshaped when only the shape differs, as
    upstream does for FC-as-conv layers); log the ones dropped."""
    own_state = module.state_dict()
    with torch.no_grad():
        for key, param in state_dict.items():
            if key in own_state:
                own_state[key].copy_(param.reshape(own_state[key].shape))
            else:
                LOGGER.info("Weight %s is dropped.", key)


RESNET_LAYERS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
BACKBONES = ["alexnet"] + list(RESNET_LAYERS)


def default_weights_path(name):
    """Where upstream finds the ImageNet weights (torch hub cache / weights/resnetN.tar)."""
    if name == "alexnet":
        hub = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
        return os.path.join(hub, "hub", "checkpoints", ALEXNET_WEIGHTS)
    return os.path.join("weights", "%s.tar" % name)


def _read_weights(name, path):
    path = path or default_weights_path(name)
    if not os.path.isfile(path):
        hint = (
            "torchvision's AlexNet ImageNet weights (%s, download once from "
            "https://download.pytorch.org/models/%s)" % (ALEXNET_WEIGHTS, ALEXNET_WEIGHTS)
            if name == "alexnet"
            else "the GroupNorm ImageNet weights of %s (upstream expects weights/%s.tar)"
            % (name, name)
        )
        raise WeightsError(
            "backbone weights not found: %s. Put %s there or set net_param.backbone_weights "
            "to the file, or net_param.pretrained: false to start from random weights."
            % (path, hint)
        )
    state = load_checkpoint(path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    # GN ResNet files saved from DataParallel carry a "module." prefix
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def build_backbone(name, pretrained=False, weights=None):
    """Backbone `name`; ImageNet weights from the local file when `pretrained`."""
    if name == "alexnet":
        model = AlexNet()
    elif name in RESNET_LAYERS:
        block, layers = RESNET_LAYERS[name]
        model = ResNet(block, layers, tailed=True)
    else:
        raise KeyError("net_param.backbone must be one of %s, got %r" % (BACKBONES, name))
    if pretrained:
        model.load_pretrained(_read_weights(name, weights))
    return model
