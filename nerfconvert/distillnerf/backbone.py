"""2D image encoder: a small CNN with two FPN necks (depth features and image features phi).

Trained from scratch by default: no pretrained weights can be downloaded here. With
``backbone="resnet18"`` torchvision's ResNet-18 is used, with ImageNet weights when the file is
already in the torch hub cache (never downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfconvert import NerfconvertError

RESNET18_WEIGHTS = "resnet18-f37072fd.pth"


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: a batch is the N cameras of one frame, and DDP ranks do not share statistics.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.ReLU(inplace=True),
    )


class SmallBackbone(nn.Module):
    """Four stride-2 stages (strides 2, 4, 8, 16); returns the stride 4, 8 and 16 maps."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 96)) -> None:
        super().__init__()
        c0, c1, c2, c3 = channels
        self.stem = nn.Sequential(conv_block(3, c0, 2), conv_block(c0, c0))
        self.stages = nn.ModuleList(
            [nn.Sequential(conv_block(a, b, 2), conv_block(b, b)) for a, b in ((c0, c1), (c1, c2), (c2, c3))]
        )
        self.out_channels = (c1, c2, c3)

    def forward(self, images: Tensor) -> List[Tensor]:
        x = self.stem(images)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class ResNet18Backbone(nn.Module):
    """torchvision ResNet-18 trunk (strides 4, 8, 16), ImageNet weights from the local cache only."""

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        if pretrained:
            path = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_WEIGHTS
            if not path.exists():
                raise NerfconvertError(
                    f"backbone resnet18 with pretrained weights needs {path} (no download here); put the file "
                    "there, or pass --pipeline.model.pretrained-backbone False, or use --pipeline.model.backbone small."
                )
            net.load_state_dict(torch.load(path, map_location="cpu"))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.stages = nn.ModuleList([nn.Identity(), net.layer2, net.layer3])
        self.out_channels = (64, 128, 256)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> List[Tensor]:
        x = self.stem((images - self.mean) / self.std)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class FPN(nn.Module):
    """Feature pyramid (Lin et al.): lateral 1x1 convs, top-down upsampling and sums, one 3x3
    output conv at the finest level (stride 4)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList([nn.Conv2d(c, out_channels, 1) for c in in_channels])
        self.output = conv_block(out_channels, out_channels)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = self.laterals[-1](features[-1])
        for lateral, feat in zip(reversed(self.laterals[:-1]), reversed(features[:-1])):
            x = lateral(feat) + F.interpolate(x, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return self.output(x)


class ImageEncoder(nn.Module):
    """Backbone + depth FPN + image-feature FPN. Output maps are at stride 4."""

    def __init__(self, backbone: str, channels: Sequence[int], depth_channels: int, feature_channels: int,
                 pretrained: bool = True) -> None:
        super().__init__()
        if backbone == "small":
            self.backbone: nn.Module = SmallBackbone(channels)
        elif backbone == "resnet18":
            self.backbone = ResNet18Backbone(pretrained)
        else:
            raise NerfconvertError(f"unknown backbone {backbone!r}; use small or resnet18.")
        self.depth_fpn = FPN(self.backbone.out_channels, depth_channels)
        self.feature_fpn = FPN(self.backbone.out_channels, feature_channels)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """images [N, 3, H, W] in [0, 1] -> (depth features, image features phi), each [N, C, h, w]."""
        pyramid = self.backbone(images)
        return self.depth_fpn(pyramid), self.feature_fpn(pyramid)
