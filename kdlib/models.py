"""Architecture registry: name + size knobs -> nn.Module, with initialisation a function of a seed.

Every builder takes `(input_shape, n_classes, **knobs)`. `build_model` seeds the construction, so
the same (name, knobs, seed) gives bit-identical initial weights; `save_init` / `load_init` keep them.
Every model exposes its final classifier (`head`, or `head[-1]` for LeNet) through `classifier_of`, whose
input is the model's penultimate representation, a (batch, features) tensor.

The construction of the models the default study trains (mlp, lenet, text_cnn, seq_cnn) and of the
resnet / resnet18 family is pinned by tests/test_models.py: same module names, parameter order and
initial weights for a given seed. Change them only by adding a new registered name.

Each registration names the architecture's `family` (ResNet, VGG, ViT, CNN, MLP, Transformer): the
claims read it (claim 5 on the ResNet and VGG families, claim 6 ViT against convolutional networks).
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
CONVOLUTIONAL = ("CNN", "ResNet", "VGG")  # families that count as CNNs for claim 6


def family(name: str) -> str:
    return MODELS.meta(name)["family"]


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


def classifier_of(model: nn.Module) -> nn.Linear:
    """The model's final linear layer; its input is the penultimate representation (batch, features).

    Looks for a `classifier` (torchvision's name, for models added from outside) or `head` (every model
    registered here) attribute that is an nn.Linear, or a Sequential ending in one (LeNet's head). Wrappers that keep the model as `module` (DataParallel) or `_orig_mod`
    (torch.compile) are unwrapped."""
    for wrapped in ("_orig_mod", "module"):
        inner = getattr(model, wrapped, None)
        if isinstance(inner, nn.Module):
            return classifier_of(inner)
    for attr in ("classifier", "head"):
        m = getattr(model, attr, None)
        if isinstance(m, nn.Linear):
            return m
        if isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], nn.Linear):
            return m[-1]
    raise TypeError(f"{type(model).__name__} has no final linear classifier (`classifier` or `head`)")


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


@MODELS.register("mlp", family="MLP", modalities=("image", "tabular", "speech features"), description="ReLU MLP")
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


@MODELS.register("lenet", family="CNN", modalities=("image",), description="LeNet-5 style CNN with a width knob")
def _lenet(input_shape, n_classes, width=1.0):
    return LeNet(input_shape, n_classes, width)


# ------------------------------------------------------------------------------------------- ResNet
def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Identity, or a 1x1 projection with batch norm where the block changes the shape."""
    if stride != 1 or cin != cout:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return nn.Sequential()


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """The CIFAR ResNet-50 bottleneck: 1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, each with
    batch norm; a 1x1 projection shortcut when the shape changes."""
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        cout = self.expansion * planes
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet for small images: a 3x3 stem (no max-pool), stages of residual blocks, global pooling.
    `blocks` per stage and `widths` per stage set depth and width; stages are named layer1..layerN.
    `block` is BasicBlock (ResNet-18 and the 6n+2 family) or Bottleneck (ResNet-50: a stage of width w
    outputs 4w channels)."""

    def __init__(self, input_shape, n_classes, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), block=BasicBlock):
        super().__init__()
        if len(blocks) != len(widths):
            raise ConfigError(f"resnet: blocks {blocks} and widths {widths} must have the same length")
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                layers.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.n_stages = len(blocks)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@MODELS.register("resnet18", family="ResNet", modalities=("image",), description="ResNet-18 for 32x32 inputs (11M parameters)")
def _resnet18(input_shape, n_classes, width=64):
    return ResNet(input_shape, n_classes, (2, 2, 2, 2), tuple(width * m for m in (1, 2, 4, 8)))


@MODELS.register("resnet", family="ResNet", modalities=("image",),
                 description="CIFAR ResNet family (He et al.): depth 6n+2 (8, 14, 20, 32, 56), width knob")
def _resnet_family(input_shape, n_classes, depth=20, width=16):
    if (depth - 2) % 6 or depth < 8:
        raise ConfigError(f"resnet depth must be 6n+2 >= 8 (8, 14, 20, 32, 44, 56), got {depth!r}")
    n = (depth - 2) // 6
    return ResNet(input_shape, n_classes, (n, n, n), (width, 2 * width, 4 * width))


@MODELS.register("resnet50", family="ResNet", modalities=("image",),
                 description="CIFAR ResNet-50, reconstructed from the authors' sibling code: 3x3 stem conv "
                             "(stride 1, no max-pool), bottleneck blocks [3, 4, 6, 3] with expansion 4, stage "
                             "widths 64/128/256/512 (x `width`/64), global average pool, linear classifier; "
                             "23.5M parameters for 10 classes at width 64")
def _resnet50(input_shape, n_classes, width=64):
    return ResNet(input_shape, n_classes, (3, 4, 6, 3), tuple(width * m for m in (1, 2, 4, 8)), block=Bottleneck)


class CifarCNN(nn.Module):
    """A small, fast CNN for 32x32 images in the spirit of airbench (Keller Jordan): a conv stem at full
    resolution, then per stage max-pool -> conv -> BN -> GELU -> conv -> BN -> GELU (pooling first keeps
    the costly convolutions off the full-size maps), global max pooling and a linear head. Sized by
    `widths`; channels-last memory, which the CPU's convolution kernels run about 1.5x faster."""

    def __init__(self, input_shape, n_classes, widths=(32, 64, 128), stem=24):
        super().__init__()
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.GELU())
        stages, cin = [], stem
        for w in widths:
            stages.append(nn.Sequential(
                nn.MaxPool2d(2), nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.GELU(),
                nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.GELU()))
            cin = w
        self.layers = nn.Sequential(*stages)
        self.head = nn.Linear(cin, n_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, x):
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        return self.head(torch.flatten(F.adaptive_max_pool2d(self.layers(x), 1), 1))


@MODELS.register("cifar_cnn", family="CNN", modalities=("image",),
                 description="airbench-style small CNN for 32x32 images (CPU-sized; widths knob); this project's own")
def _cifar_cnn(input_shape, n_classes, widths=(32, 64, 128), stem=24):
    if len(input_shape) != 3 or min(input_shape[1:]) < 2 ** len(widths):
        raise ConfigError(f"cifar_cnn needs images of at least {2 ** len(widths)} pixels a side, got {input_shape}")
    return CifarCNN(input_shape, n_classes, tuple(widths), stem)


class AirbenchCNN(nn.Module):
    """The airbench network (Jordan, "94 % on CIFAR-10 in 3.29 seconds", 2024) as a plain model: a 2x2 conv stem
    (24 channels, GELU), three stages of conv -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU at `widths`
    (airbench93: 64/128/128, airbench94: 64/256/256), global max pooling and a linear head. Without the
    airbench training tricks that change what a model learns from its labels (label smoothing) or how it is
    evaluated (test-time augmentation). With `whiten`, the stem is airbench's frozen whitening layer: its
    2 x 3 x 2 x 2 = 24 filters are the eigenvectors of the covariance of the training images' 2x2 patches,
    scaled by 1 / sqrt(eigenvalue) and negated in the second half (`init_from_data`, which the trainer calls
    before training on the run's own training set); only its bias trains."""

    WHITEN_IMAGES = 5000  # training images whose patches set the whitening (airbench's choice)

    def __init__(self, input_shape, n_classes, widths=(64, 128, 128), stem=24, whiten=False, bn_scale=True,
                 head_scale=1.0):
        super().__init__()
        self.whiten = bool(whiten)
        self.head_scale = float(head_scale)  # airbench multiplies its logits by 1/9
        self.stem = nn.Sequential(nn.Conv2d(input_shape[0], stem, 2, bias=True), nn.GELU())
        if self.whiten:
            if stem != 2 * input_shape[0] * 4:
                raise ConfigError(f"airbench_cnn with whiten needs stem = {2 * input_shape[0] * 4} (two signs of each "
                                  f"2x2 patch eigenvector), got {stem}")
            self.stem[0].weight.requires_grad_(False)
        stages, cin = [], stem
        for w in widths:
            stages.append(nn.Sequential(
                nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(w), nn.GELU(),
                nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.GELU()))
            cin = w
        self.layers = nn.Sequential(*stages)
        self.head = nn.Linear(cin, n_classes)
        if not bn_scale:  # airbench: batch norm without a learned scale (only its bias trains)
            for m in self.layers.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the whitening filters from the first WHITEN_IMAGES training images (no-op without `whiten`)."""
        if not self.whiten:
            return
        conv = self.stem[0]
        c, k = x.shape[1], conv.kernel_size[0]
        patches = x[: self.WHITEN_IMAGES].float().unfold(2, k, 1).unfold(3, k, 1)  # n, c, h', w', k, k
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        cov = flat.T @ flat / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + 5e-4)[:, None]).flip(0).reshape(-1, c, k, k)
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))

    def forward(self, x):
        out = self.head(torch.flatten(F.adaptive_max_pool2d(self.layers(self.stem(x)), 1), 1))
        return out * self.head_scale if self.head_scale != 1.0 else out


@MODELS.register("airbench_cnn", family="CNN", modalities=("image",),
                 description="the airbench CIFAR-10 network without its training tricks (widths knob; 64/128/128 is "
                             "airbench93's)")
def _airbench_cnn(input_shape, n_classes, widths=(64, 128, 128), stem=24, whiten=False, bn_scale=True, head_scale=1.0):
    if len(input_shape) != 3 or min(input_shape[1:]) < 2 ** len(widths) + 1:
        raise ConfigError(f"airbench_cnn needs images of at least {2 ** len(widths) + 1} pixels a side, got {input_shape}")
    return AirbenchCNN(input_shape, n_classes, tuple(widths), stem, whiten, bn_scale, head_scale)


# ---------------------------------------------------------------------------------------------- VGG
VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm in the authors' layout: per conv, Conv2d 3x3 (with bias) + BatchNorm2d + ReLU;
    2x2 max-pools; the conv stack is flattened (512 x 1 x 1 for 32x32 inputs), then a fully connected
    block `fc` = Linear(d, 512) + BatchNorm1d(512) + ReLU, then the classifier `head` = Linear(512, n).
    `width` scales every channel count (and the fc width), with a minimum of 8."""

    def __init__(self, input_shape, n_classes, depth=19, width=1.0):
        super().__init__()
        if depth not in VGG_CFGS:
            raise ConfigError(f"vgg depth must be one of {sorted(VGG_CFGS)}, got {depth!r}")
        c, h, w = input_shape
        layers = []
        for v in VGG_CFGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                h, w = h // 2, w // 2
            else:
                v = max(8, round(v * width))
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                c = v
        if h < 1 or w < 1:
            raise ConfigError(f"vgg{depth}: input {tuple(input_shape)} is too small for its 5 max-pools "
                              "(needs >= 32x32)")
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c * h * w, c), nn.BatchNorm1d(c), nn.ReLU())
        self.head = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.head(self.fc(torch.flatten(self.features(x), 1)))


@MODELS.register("vgg19", family="VGG", modalities=("image",),
                 description="VGG-19 with batch norm, reconstructed from the authors' sibling code: biased 3x3 "
                             "convs + BN + ReLU, max-pools, flatten, FC 512 + BN1d + ReLU, linear classifier; "
                             "20.3M parameters for 10 classes at width 1")
def _vgg19(input_shape, n_classes, width=1.0):
    return VGG(input_shape, n_classes, 19, width)


@MODELS.register("vgg11", family="VGG", modalities=("image",),
                 description="VGG-11 with batch norm in the same layout as vgg19 (a smaller VGG); "
                             "9.5M parameters for 10 classes at width 1")
def _vgg11(input_shape, n_classes, width=1.0):
    return VGG(input_shape, n_classes, 11, width)


# ---------------------------------------------------------------------------------------------- ViT
class ShiftedPatchTokens(nn.Module):
    """Shifted Patch Tokenization (Lee et al., 2021) as lucidrains writes it: the image and four copies
    shifted by one pixel along one axis each (F.pad with (1,-1,0,0), (-1,1,0,0), (0,0,1,-1), (0,0,-1,1):
    right, left, down, up, zero-filled; the paper itself shifts diagonally) are concatenated along
    channels (5c channels), cut into p x p patches flattened as (p1 p2 c), then LayerNorm(patch_dim)
    and Linear(patch_dim, dim)."""

    SHIFTS = ((1, -1, 0, 0), (-1, 1, 0, 0), (0, 0, 1, -1), (0, 0, -1, 1))

    def __init__(self, channels, patch, dim):
        super().__init__()
        self.patch = patch
        patch_dim = patch * patch * 5 * channels
        self.norm = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)

    @classmethod
    def shifted(cls, x):
        """(b, c, h, w) -> (b, 5c, h, w): the image followed by its four shifted copies."""
        return torch.cat([x] + [F.pad(x, s) for s in cls.SHIFTS], 1)

    @staticmethod
    def patchify(x, p):
        """'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' without einops."""
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, x):
        return self.proj(self.norm(self.patchify(self.shifted(x), self.patch)))


class LSA(nn.Module):
    """Locality Self-Attention, pre-norm: qkv without bias to heads*dim_head*3, a learnable temperature
    (initialised to log(dim_head ** -0.5), used as exp(temperature)), the diagonal of the logits masked
    with -finfo.max (no token attends to itself), softmax, output Linear(heads*dim_head, dim)."""

    def __init__(self, dim, heads, dim_head, dropout=0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.temperature = nn.Parameter(torch.log(torch.tensor(dim_head ** -0.5)))
        self.norm = nn.LayerNorm(dim)
        self.attn_drop = nn.Dropout(dropout)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(self.norm(x)).chunk(3, -1))
        dots = q @ k.transpose(-1, -2) * self.temperature.exp()
        eye = torch.eye(n, device=x.device, dtype=torch.bool)
        dots = dots.masked_fill(eye, -torch.finfo(dots.dtype).max)
        out = self.attn_drop(dots.softmax(-1)) @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class ViTBlock(nn.Module):
    """x + LSA(x), then x + MLP(x) with MLP = LayerNorm, Linear(dim, mlp_dim), GELU, Linear(mlp_dim, dim)."""

    def __init__(self, dim, heads, dim_head, mlp_dim, dropout=0.0):
        super().__init__()
        self.attn = LSA(dim, heads, dim_head, dropout)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        x = self.attn(x) + x
        return self.ff(x) + x


class ViT(nn.Module):
    """ViT for small datasets (lucidrains' vit_for_small_dataset design, as the authors use it): shifted
    patch tokens, a learned position embedding and class token (both N(0, 1) at init), `depth` blocks of
    locality self-attention + GELU MLP, class-token pooling, a final LayerNorm `norm`, classifier `head`.
    Parameters are created in the reference's order, so the seeded init consumes the RNG the same way."""

    def __init__(self, input_shape, n_classes, patch=4, dim=512, depth=6, heads=6, dim_head=64, mlp_dim=256,
                 dropout=0.0, emb_dropout=0.0):
        super().__init__()
        c, h, w = input_shape
        if h % patch or w % patch:
            raise ConfigError(f"vit: image size {h}x{w} is not divisible by patch {patch}")
        self.to_patch_embedding = ShiftedPatchTokens(c, patch, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, (h // patch) * (w // patch) + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.emb_drop = nn.Dropout(emb_dropout)
        self.blocks = nn.ModuleList(ViTBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, img):
        x = self.to_patch_embedding(img)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1) + self.pos_embedding[:, : x.shape[1] + 1]
        x = self.emb_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


@MODELS.register("vit", family="ViT", modalities=("image",),
                 description="ViT for small datasets (shifted patch tokenization + locality self-attention, "
                             "lucidrains' vit_for_small_dataset), reconstructed from the authors' sibling code: "
                             "patch 4, dim 512, depth 6, 6 heads of 64, MLP 256; 6.48M parameters for 10 "
                             "classes on 3x32x32")
def _vit(input_shape, n_classes, patch=4, dim=512, depth=6, heads=6, dim_head=64, mlp_dim=256, dropout=0.0,
         emb_dropout=0.0):
    return ViT(input_shape, n_classes, patch, dim, depth, heads, dim_head, mlp_dim, dropout, emb_dropout)


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


@MODELS.register("audio_cnn", family="CNN", modalities=("audio",), description="2-D CNN on log-mel spectrograms")
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


@MODELS.register("seq_cnn", family="CNN", modalities=("speech features", "audio"), description="1-D CNN over feature frames")
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


@MODELS.register("text_cnn", family="CNN", modalities=("text",), description="embedding + 1-D CNN + max pooling")
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


@MODELS.register("text_transformer", family="Transformer", modalities=("text",), description="small Transformer encoder for text")
def _text_transformer(input_shape, n_classes, vocab_size=10000, dim=64, depth=2, heads=4):
    return TextTransformer(vocab_size, input_shape[0], n_classes, dim, depth, heads)


class GPT2Block(nn.Module):
    """GPT-2 block: x + attn(ln_1(x)), then x + mlp(ln_2(x)); causal multi-head attention through
    F.scaled_dot_product_attention(is_causal=True); MLP 4x with GPT-2's tanh GELU."""

    def __init__(self, n_embd, n_head, dropout=0.0):
        super().__init__()
        if n_embd % n_head:
            raise ConfigError(f"gpt2_classifier: n_embd {n_embd} is not divisible by n_head {n_head}")
        self.n_head, self.dropout = n_head, dropout
        self.ln_1 = nn.LayerNorm(n_embd)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.attn_proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * n_embd, n_embd))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.n_head, -1).transpose(1, 2) for t in self.c_attn(self.ln_1(x)).split(d, -1))
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        x = x + self.resid_drop(self.attn_proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.resid_drop(self.mlp(self.ln_2(x)))


class GPT2Classifier(nn.Module):
    """A small GPT-2-style sequence classifier over token ids (0 = padding): token + learned position
    embeddings, `n_layer` pre-norm causal blocks, final LayerNorm `ln_f`, and a bias-free linear `head`
    (GPT-2's score head) on the hidden state of the last non-padding token of each row, as HuggingFace's
    GPT2ForSequenceClassification pools. Causal attention + last-token pooling make right padding
    invisible; an all-padding row reads position 0. Weights use GPT-2's init: N(0, 0.02) for linear and
    embedding weights, zero biases, N(0, 0.02 / sqrt(2 n_layer)) for the residual output projections."""

    def __init__(self, vocab_size, max_len, n_classes, n_embd=128, n_layer=4, n_head=4, dropout=0.0):
        super().__init__()
        self.max_len = max_len
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(max_len, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(GPT2Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, n_classes, bias=False)
        for name, m in self.named_modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                residual_out = name.endswith("attn_proj") or name.endswith("mlp.2")
                nn.init.normal_(m.weight, 0.0, 0.02 / math.sqrt(2 * n_layer) if residual_out else 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def hidden_states(self, x):
        """(batch, length) token ids -> (batch, length, n_embd) after the final LayerNorm."""
        n = x.shape[1]
        if n > self.max_len:
            raise ValueError(f"gpt2_classifier: sequence length {n} exceeds the {self.max_len} learned positions")
        h = self.drop(self.wte(x) + self.wpe(torch.arange(n, device=x.device)))
        for block in self.h:
            h = block(h)
        return self.ln_f(h)

    @staticmethod
    def last_token(x):
        """Index of the last non-padding token of each row (0 for an all-padding row)."""
        pos = torch.arange(x.shape[1], device=x.device)
        return (pos * (x != 0)).argmax(-1)

    def forward(self, x):
        h = self.hidden_states(x)
        return self.head(h[torch.arange(len(x), device=x.device), self.last_token(x)])


@MODELS.register("gpt2_classifier", family="Transformer", modalities=("text",),
                 description="small GPT-2-style causal Transformer classifier (pools the last non-padding "
                             "token, as HuggingFace's GPT2ForSequenceClassification), reconstructed from the "
                             "authors' sibling code: n_embd 128, 4 layers, 4 heads; 2.11M parameters for "
                             "vocab 10000, length 256 and 2 classes (1.28M of them the token embedding)")
def _gpt2_classifier(input_shape, n_classes, vocab_size=10000, n_embd=128, n_layer=4, n_head=4, dropout=0.0):
    return GPT2Classifier(vocab_size, input_shape[0], n_classes, n_embd, n_layer, n_head, dropout)
