"""The ResNet U-Net generator: fastai's DynamicUnet (the reference tutorial's and DeOldify's net) as a plain module.

DynamicUnet finds its layout by running dummy inputs through the body at build time (4 s of a 12 s colorizing run)
and needs fastai imported (another 3.7 s). A torchvision ResNet's layout is known: every stage halves the size and
its channels stand in its convolutions, so this module reads them there. Parameter names and shapes, the
initialisation (the same random draws in the same order) and the outputs are DynamicUnet's; tests/test_resunet.py
builds both and compares them, so checkpoints of either load into the other.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from gan_colorizer.errors import UserError
from gan_colorizer.weights import fetch_state, hub_file, load_state_dict_file

TRACE_SIZE = (256, 256)  # the dummy input DynamicUnet drew twice at build time: drawn here too, for the same weights
SKIPS = (2, 4, 5, 6)  # body children whose outputs cross to the decoder: relu (1/2 size), layer1..3 (1/4..1/16)


def conv_layer(cin: int, cout: int, ks: int = 3, relu: bool = True, bias_std: float = 0.01) -> nn.Sequential:
    """fastai's ConvLayer as DynamicUnet uses it (no normalisation): conv then ReLU, initialised as fastai does."""
    conv = nn.Conv2d(cin, cout, ks, padding=(ks - 1) // 2)
    with torch.no_grad():
        if bias_std:
            conv.bias.normal_(0, bias_std)
        else:
            conv.bias.zero_()
    if relu:  # fastai's default init for a conv before a ReLU; none before nothing (torch's own stays)
        nn.init.kaiming_uniform_(conv.weight)
    return nn.Sequential(conv, nn.ReLU()) if relu else nn.Sequential(conv)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """fastai's BatchNorm: weight 1, bias 1e-3."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
        bn.weight.fill_(1.0)
    return bn


def kaiming_init(*layers: nn.Module) -> None:
    """fastai's apply_init: every conv's weight kaiming-normal, its bias 0, in module order."""
    for layer in layers:
        for m in layer.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                with torch.no_grad():
                    m.bias.zero_()


def icnr(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """fastai's ICNR init of a conv before PixelShuffle(scale): each group of scale**2 sub-pixels starts equal
    (no checkerboard); the reshapes are fastai's, kept as written so the same draw gives the same weights."""
    ni, nf, h, w = weight.shape
    ni2 = ni // scale ** 2
    k = nn.init.kaiming_normal_(weight.new_zeros([ni2, nf, h, w])).transpose(0, 1)
    k = k.contiguous().view(ni2, nf, -1).repeat(1, 1, scale ** 2)
    return k.contiguous().view([nf, ni, h, w]).transpose(0, 1)


def pixel_shuffle_up(cin: int, cout: int) -> nn.Sequential:
    """fastai's PixelShuffle_ICNR: a 1x1 conv to 4 * cout channels (+ ReLU), then PixelShuffle(2)."""
    conv = conv_layer(cin, cout * 4, ks=1, bias_std=0)
    with torch.no_grad():
        conv[0].weight.copy_(icnr(conv[0].weight))
    return nn.Sequential(conv, nn.PixelShuffle(2))


class UnetBlock(nn.Module):
    """Upsample the path (pixel shuffle), concatenate the normalised skip, two 3x3 convs."""

    def __init__(self, up_channels: int, skip_channels: int, final_div: bool = True):
        super().__init__()
        self.shuf = pixel_shuffle_up(up_channels, up_channels // 2)
        self.bn = batch_norm(skip_channels)
        ni = up_channels // 2 + skip_channels
        self.out_channels = ni if final_div else ni // 2
        self.conv1 = conv_layer(ni, self.out_channels)
        self.conv2 = conv_layer(self.out_channels, self.out_channels)
        self.relu = nn.ReLU()
        kaiming_init(self.conv1, self.conv2)

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up_out = self.shuf(up_in)
        if skip.shape[-2:] != up_out.shape[-2:]:  # sides that are not multiples of 32
            up_out = F.interpolate(up_out, skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(self.relu(torch.cat([up_out, self.bn(skip)], dim=1))))


class ResizeTo(nn.Module):
    """fastai's ResizeToOrig: nearest-resize x to the input's size when they differ."""

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, like.shape[-2:], mode="nearest") if x.shape[-2:] != like.shape[-2:] else x


class CatInput(nn.Module):
    """fastai's MergeLayer(dense=True): the decoder's output with the network's input (the last cross)."""

    def forward(self, x: torch.Tensor, gray_l: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, gray_l], dim=1)


class ResBlock(nn.Module):
    """fastai's ResBlock(1, n, n) without normalisation: two 3x3 convs plus the identity, then ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.convpath = nn.Sequential(conv_layer(channels, channels), conv_layer(channels, channels, relu=False))
        self.idpath = nn.Sequential()  # the identity (fastai's place for a 1x1 conv when the widths differ)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))


def stage_channels(body: nn.Sequential) -> list[int]:
    """Output channels of each child of a ResNet body (conv1, bn1, relu, maxpool, layer1..4), read from its
    convolutions: a stage of residual blocks ends in its last block's last conv (conv2 basic, conv3 bottleneck)."""
    channels, width = [], None
    for child in body:
        if isinstance(child, nn.Conv2d):
            width = child.out_channels
        elif isinstance(child, nn.Sequential):
            width = [m for m in child[-1].children() if isinstance(m, nn.Conv2d)][-1].out_channels
        channels.append(width)
    return channels


def unet_stages(body, middle, blocks, upsample, res_block, out) -> list[tuple[str, str, nn.Module]]:
    """The stages of a U-Net on a torchvision ResNet body (ours, and DeOldify's), named by where they are: the body's
    stem (its ReLU, at 1/2 size) and four stages, the middle convs, the decoder blocks, the last upsampling, the head's
    residual block and its last conv."""
    stages = [("encoder.stem", "encoder", body[2])]
    stages += [(f"encoder.layer{i}", "encoder", body[3 + i]) for i in range(1, 5)]
    stages += [("bottleneck", "bottleneck", middle)]
    stages += [(f"decoder.block{i}", "decoder", block) for i, block in enumerate(blocks, 1)]
    return stages + [("decoder.upsample", "decoder", upsample), ("head.resblock", "head", res_block),
                     ("head.out", "head", out)]


class ResUNet(nn.Module):
    """A U-Net on a ResNet body: layers are DynamicUnet's [body, BatchNorm, ReLU, middle convs, 4 UnetBlocks,
    pixel shuffle to full size, resize to the input, concat the input, ResBlock, 1x1 conv to n_out]."""

    def __init__(self, body: nn.Sequential, n_out: int):
        super().__init__()
        channels, n_in = stage_channels(body), body[0].in_channels
        for _ in range(2):  # DynamicUnet's two dummy inputs: the same random stream, so a seed gives its weights
            next(body.parameters()).new_empty(1, n_in, *TRACE_SIZE).uniform_(-1.0, 1.0)
        width = channels[-1]
        middle = nn.Sequential(conv_layer(width, width * 2), conv_layer(width * 2, width))
        layers = [body, batch_norm(width), nn.ReLU(), middle]
        for i, skip in enumerate(reversed(SKIPS)):
            layers.append(UnetBlock(width, channels[skip], final_div=i != len(SKIPS) - 1))
            width = layers[-1].out_channels
        layers += [pixel_shuffle_up(width, width), ResizeTo(), CatInput()]  # the body's stem halves: back to full size
        width += n_in
        layers += [ResBlock(width), conv_layer(width, n_out, ks=1, relu=False)]
        kaiming_init(middle, layers[-2])
        self.layers = nn.ModuleList(layers)  # DynamicUnet's attribute: the parameter names are layers.N...

    @property
    def body(self) -> nn.Sequential:
        return self.layers[0]

    @property
    def middle(self) -> nn.Sequential:
        return self.layers[3]

    @property
    def blocks(self) -> list[UnetBlock]:
        return list(self.layers[4:4 + len(SKIPS)])

    @property
    def upsample(self) -> nn.Sequential:
        return self.layers[4 + len(SKIPS)]

    size_multiple = 32  # input sides it takes: the body halves five times

    def named_stages(self) -> list[tuple[str, str, nn.Module]]:
        """(name, group, module) in forward order, for the tools that look inside (inspect/anatomy.py)."""
        *_, res_block, out = self.layers
        return unet_stages(self.body, self.middle, self.blocks, self.upsample, res_block, out)

    def extra_groups(self) -> list[tuple[str, nn.Module]]:
        """Parameters outside every stage's hook: the stem's conv and BatchNorm, before the hooked ReLU."""
        return [("encoder", self.body)]

    def forward(self, gray_l: torch.Tensor) -> torch.Tensor:
        body, bn, relu, middle = self.layers[:4]
        skips, x = [], gray_l
        for i, child in enumerate(body):
            x = child(x)
            if i in SKIPS:
                skips.append(x)
        x = middle(relu(bn(x)))
        for block, skip in zip(self.blocks, reversed(skips)):
            x = block(x, skip)
        upsample, resize, cat, res_block, out = self.layers[4 + len(SKIPS):]
        return out(res_block(cat(resize(upsample(x), gray_l), gray_l)))


def resnet_weights(backbone: str) -> torchvision.models.WeightsEnum:
    """torchvision's ImageNet weights of a ResNet (IMAGENET1K_V1, the body of the fastai / DeOldify U-Nets)."""
    return torchvision.models.get_model_weights(backbone).IMAGENET1K_V1


def imagenet_body(backbone: str) -> tuple[dict, str]:
    """The body's ImageNet state dict through torchvision's weights API (cached, or downloaded on first use)."""
    weights = resnet_weights(backbone)
    state, source = fetch_state(weights.url, f"--pretrained: ImageNet weights for {backbone}",
                                "or pass --no-pretrained for a random body", load=weights.get_state_dict)
    return state, f"torchvision {weights}, {source}"


def resnet_body(backbone: str, weights: dict | None = None, source: str = "") -> nn.Sequential:
    """A torchvision ResNet without pool and fc, taking 1 channel: with weights, conv1 is summed over RGB."""
    model = getattr(torchvision.models, backbone)(weights=None)
    if weights is not None:
        result = model.load_state_dict(weights, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("fc.")]
        if missing or result.unexpected_keys:
            raise UserError(f"{source}: not a torchvision {backbone} state dict "
                            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    conv = model.conv1
    gray_conv = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    if weights is not None:
        gray_conv.weight.data.copy_(conv.weight.data.sum(dim=1, keepdim=True))
    model.conv1 = gray_conv
    return nn.Sequential(*list(model.children())[:-2])


def resunet(backbone: str = "resnet18", weights: dict | None = None, source: str = "", n_out: int = 2) -> ResUNet:
    """The U-Net on a ResNet body (fastai's DynamicUnet layout); 31,099,672 parameters with resnet18 (the reference
    tutorial's net)."""
    return ResUNet(resnet_body(backbone, weights, source), n_out)


def body_weights(model_cfg) -> tuple[dict | None, str]:
    if model_cfg.backbone_weights:
        return load_state_dict_file(model_cfg.backbone_weights, "backbone weights"), model_cfg.backbone_weights
    if model_cfg.pretrained:
        return imagenet_body(model_cfg.backbone)
    return None, ""


def check_body_weights(model_cfg) -> None:
    """Before a run writes anything: the body's weight file is there (the ImageNet one downloaded now if missing),
    or a UserError says which and where."""
    if model_cfg.generator != "resunet":
        return
    if model_cfg.backbone_weights:
        if not Path(model_cfg.backbone_weights).is_file():
            raise UserError(f"--backbone-weights {model_cfg.backbone_weights}: file not found")
    elif model_cfg.pretrained and not hub_file(resnet_weights(model_cfg.backbone).url).is_file():
        imagenet_body(model_cfg.backbone)
