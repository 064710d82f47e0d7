"""Architecture registry: name + size knobs -> nn.Module, with initialisation a function of a seed.

Every builder takes `(input_shape, n_classes, **knobs)`. `build_model` seeds the construction, so
the same (name, knobs, seed) gives bit-identical initial weights; `save_init` / `load_init` keep them.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, ModelSpec
from .registry import Registry

MODELS = Registry("model")


def build_model(spec: ModelSpec | str, input_shape, n_classes: int, seed: int, **knobs) -> nn.Module:
    if isinstance(spec, str):
        spec = ModelSpec(spec, knobs)
    builder = MODELS.get(spec.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = builder(tuple(input_shape), n_classes, **spec.args)
        except TypeError as e:
            raise ConfigError(f"bad knobs {spec.args} for model {spec.name!r}: {e}") from e
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_init(model: nn.Module, path: str | Path) -> None:
    torch.save(model.state_dict(), path)


def load_init(model: nn.Module, path: str | Path) -> nn.Module:
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def _flat_dim(input_shape) -> int:
    return int(math.prod(input_shape))


# ---------------------------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    def __init__(self, input_shape, n_classes, hidden=(256, 256), dropout=0.0):
        super().__init__()
        layers, d = [nn.Flatten()], _flat_dim(input_shape)
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            d = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(d, n_classes)

    def forward(self, x):
        return self.head(self.features(x))


@MODELS.register("mlp", modalities=("image", "tabular", "speech features"), description="ReLU MLP")
def _mlp(input_shape, n_classes, hidden=(256, 256), dropout=0.0):
    return MLP(input_shape, n_classes, tuple(hidden), dropout)


# -------------------------------------------------------------------------------------------- LeNet
class LeNet(nn.Module):
    """LeNet-5 style: two conv + pool stages and two hidden dense layers; `width` scales the channels."""

    def __init__(self, input_shape, n_classes, width=1.0):
        super().__init__()
        c, h, w = input_shape
        c1, c2 = max(1, round(6 * width)), max(1, round(16 * width))
        pad = 2 if min(h, w) < 20 else 0
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            d = self.features(torch.zeros(1, *input_shape)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(d, round(120 * width)), nn.ReLU(),
                                  nn.Linear(round(120 * width), round(84 * width)), nn.ReLU(),
                                  nn.Linear(round(84 * width), n_classes))

    def forward(self, x):
        return self.head(self.features(x))


@MODELS.register("lenet", modalities=("image",), description="LeNet-5 style CNN with a width knob")
def _lenet(input_shape, n_classes, width=1.0):
    return LeNet(input_shape, n_classes, width)


# ------------------------------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet for small images: a 3x3 stem (no max-pool), stages of basic blocks, global pooling.
    `blocks` per stage and `widths` per stage set depth and width; stages are named layer1..layerN."""

    def __init__(self, input_shape, n_classes, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512)):
        super().__init__()
        if len(blocks) != len(widths):
            raise ConfigError(f"resnet: blocks {blocks} and widths {widths} must have the same length")
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.n_stages = len(blocks)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register("resnet18", modalities=("image",), description="ResNet-18 for 32x32 inputs (11M parameters)")
def _resnet18(input_shape, n_classes, width=64):
    return ResNet(input_shape, n_classes, (2, 2, 2, 2), tuple(width * m for m in (1, 2, 4, 8)))


@MODELS.register("resnet", modalities=("image",),
                 description="CIFAR ResNet family (He et al.): depth 6n+2 (8, 14, 20, 32, 56), width knob")
def _resnet_family(input_shape, n_classes, depth=20, width=16):
    if (depth - 2) % 6 or depth < 8:
        raise ConfigError(f"resnet depth must be 6n+2 >= 8 (8, 14, 20, 32, 44, 56), got {depth!r}")
    n = (depth - 2) // 6
    return ResNet(input_shape, n_classes, (n, n, n), (width, 2 * width, 4 * width))


# ---------------------------------------------------------------------------------------------- VGG
VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, input_shape, n_classes, depth=19, width=1.0):
        super().__init__()
        if depth not in VGG_CFGS:
            raise ConfigError(f"vgg depth must be one of {sorted(VGG_CFGS)}, got {depth!r}")
        layers, c = [], input_shape[0]
        for v in VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                v = max(8, round(v * width))
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


@MODELS.register("vgg19", modalities=("image",), description="VGG-19 with batch norm (20M parameters at width 1)")
def _vgg19(input_shape, n_classes, width=1.0):
    return VGG(input_shape, n_classes, 19, width)


@MODELS.register("vgg11", modalities=("image",), description="VGG-11 with batch norm, a smaller VGG")
def _vgg11(input_shape, n_classes, width=1.0):
    return VGG(input_shape, n_classes, 11, width)


# ---------------------------------------------------------------------------------------------- ViT
class ViT(nn.Module):
    """Vision Transformer for small images: patch embedding, class token, pre-norm encoder blocks."""

    def __init__(self, input_shape, n_classes, patch=4, dim=192, depth=6, heads=3, mlp_ratio=2.0, dropout=0.0):
        super().__init__()
        c, h, w = input_shape
        if h % patch or w % patch:
            raise ConfigError(f"vit: image size {h}x{w} is not divisible by patch {patch}")
        self.patch_embed = nn.Conv2d(c, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (h // patch) * (w // patch), dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.encoder(x))[:, 0])


@MODELS.register("vit", modalities=("image",), description="ViT for 32x32 images (patch 4)")
def _vit(input_shape, n_classes, patch=4, dim=192, depth=6, heads=3, mlp_ratio=2.0, dropout=0.0):
    return ViT(input_shape, n_classes, patch, dim, depth, heads, mlp_ratio, dropout)


# -------------------------------------------------------------------------------------------- audio
class AudioCNN(nn.Module):
    """2-D CNN on log-mel spectrograms (1 x mels x frames): conv-BN-ReLU-pool stages, global pooling."""

    def __init__(self, input_shape, n_classes, width=16, stages=3):
        super().__init__()
        layers, c = [], input_shape[0]
        for i in range(stages):
            layers += [nn.Conv2d(c, width * 2 ** i, 3, padding=1, bias=False), nn.BatchNorm2d(width * 2 ** i),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c = width * 2 ** i
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


@MODELS.register("audio_cnn", modalities=("audio",), description="2-D CNN on log-mel spectrograms")
def _audio_cnn(input_shape, n_classes, width=16, stages=3):
    return AudioCNN(input_shape, n_classes, width, stages)


class SeqCNN(nn.Module):
    """1-D CNN over (channels x time) feature sequences, e.g. cepstral frames; global average pooling."""

    def __init__(self, input_shape, n_classes, width=32, layers=2, kernel=3):
        super().__init__()
        mods, c = [], input_shape[0]
        for _ in range(layers):
            mods += [nn.Conv1d(c, width, kernel, padding=kernel // 2), nn.BatchNorm1d(width), nn.ReLU()]
            c = width
        self.features = nn.Sequential(*mods)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(-1))


@MODELS.register("seq_cnn", modalities=("speech features", "audio"), description="1-D CNN over feature frames")
def _seq_cnn(input_shape, n_classes, width=32, layers=2, kernel=3):
    return SeqCNN(input_shape, n_classes, width, layers, kernel)


# --------------------------------------------------------------------------------------------- text
class TextCNN(nn.Module):
    """Kim-style text CNN: embedding, parallel 1-D convolutions, max-over-time pooling."""

    def __init__(self, vocab_size, n_classes, embed_dim=64, filters=64, kernels=(3, 5), dropout=0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, k, padding=k // 2) for k in kernels)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(filters * len(kernels), n_classes)

    def forward(self, x):
        e = self.embed(x).transpose(1, 2)
        h = torch.cat([F.relu(c(e)).amax(-1) for c in self.convs], 1)
        return self.head(self.dropout(h))


@MODELS.register("text_cnn", modalities=("text",), description="embedding + 1-D CNN + max pooling")
def _text_cnn(input_shape, n_classes, vocab_size=10000, embed_dim=64, filters=64, kernels=(3, 5), dropout=0.0):
    return TextCNN(vocab_size, n_classes, embed_dim, filters, tuple(kernels), dropout)


class TextTransformer(nn.Module):
    """A small Transformer encoder over tokens with learned positions and mean pooling over non-padding."""

    def __init__(self, vocab_size, max_len, n_classes, dim=64, depth=2, heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, 0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        pad = x == 0
        h = self.encoder(self.embed(x) + self.pos[:, : x.shape[1]], src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).float()
        return self.head((h * keep).sum(1) / keep.sum(1).clamp_min(1.0))


@MODELS.register("text_transformer", modalities=("text",), description="small Transformer encoder for text")
def _text_transformer(input_shape, n_classes, vocab_size=10000, dim=64, depth=2, heads=4):
    return TextTransformer(vocab_size, input_shape[0], n_classes, dim, depth, heads)
