"""Each model's forward shape, seeded initialisation, saved initial weights, pinned initial weights of the
models the default study trains, and the paper's architectures (ResNet-50, VGG, ViT with SPT + LSA,
a GPT-2-style classifier)."""
import hashlib
import inspect
import math

import pytest
import torch
import torch.nn as nn

from kdlib.config import ConfigError
from kdlib.models import MODELS, build_model, classifier_of, load_init, n_params, save_init

SHAPES = {"mlp": (1, 8, 8), "lenet": (1, 28, 28), "resnet18": (3, 32, 32), "resnet": (3, 32, 32),
          "resnet50": (3, 32, 32), "vgg19": (3, 32, 32), "vgg11": (3, 32, 32), "vit": (3, 32, 32),
          "audio_cnn": (1, 40, 101), "seq_cnn": (12, 29), "text_cnn": (200,), "text_transformer": (200,),
          "gpt2_classifier": (64,), "cifar_cnn": (3, 32, 32), "airbench_cnn": (3, 32, 32)}
TEXT = {"text_cnn", "text_transformer", "gpt2_classifier"}
SMALL = {"resnet18": {"width": 8}, "resnet": {"depth": 8, "width": 8}, "resnet50": {"width": 4},
         "vgg19": {"width": 0.125}, "vgg11": {"width": 0.125},
         "vit": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 16},
         "text_cnn": {"vocab_size": 1000}, "text_transformer": {"vocab_size": 1000},
         "gpt2_classifier": {"vocab_size": 1000, "n_embd": 32, "n_layer": 1, "n_head": 2},
         "cifar_cnn": {"widths": [8, 16, 32], "stem": 8}, "airbench_cnn": {"widths": [8, 16, 16]}}


def _small(name, n_classes=7, seed=0):
    return build_model(name, SHAPES[name], n_classes, seed=seed, **SMALL.get(name, {}))


def _inputs(name, n=3):
    g = torch.Generator().manual_seed(0)
    if name in TEXT:
        return torch.randint(1, 1000, (n,) + SHAPES[name], generator=g)
    return torch.randn(n, *SHAPES[name], generator=g)


def _fingerprint(model):
    """(float64 sum, sha256 over names, shapes, dtypes and bytes) of the state dict."""
    h, s = hashlib.sha256(), 0.0
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
        h.update(v.numpy().tobytes())
        s += float(v.double().sum())
    return s, h.hexdigest()


def test_every_registered_model_is_covered():
    assert set(MODELS.names()) == set(SHAPES)
    for name in MODELS.names():
        meta = MODELS.meta(name)
        assert meta["modalities"] and meta["description"], name


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_forward_shape(name):
    m = _small(name).eval()
    with torch.no_grad():
        assert m(_inputs(name)).shape == (3, 7)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_classifier_of_takes_the_penultimate_representation(name):
    m = _small(name).eval()
    head = classifier_of(m)
    assert isinstance(head, nn.Linear) and head.out_features == 7
    seen = {}
    handle = head.register_forward_hook(lambda mod, inp, out: seen.update(inp=inp[0], out=out))
    with torch.no_grad():
        y = m(_inputs(name))
    handle.remove()
    assert seen["inp"].dim() == 2 and seen["inp"].shape == (3, head.in_features)
    assert torch.equal(seen["out"], y)  # it is the last layer: its output is the model's output


def test_classifier_of_unwraps_and_fails_clearly():
    m = _small("mlp")
    assert classifier_of(nn.DataParallel(m)) is m.head
    with pytest.raises(TypeError, match="no final linear classifier"):
        classifier_of(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_model_init_is_a_function_of_the_seed(name):
    a, b, c = _small(name, seed=1), _small(name, seed=1), _small(name, seed=2)
    assert _fingerprint(a) == _fingerprint(b)
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_init_is_a_function_of_the_seed(tmp_path):
    a = build_model("lenet", (1, 28, 28), 10, seed=1)
    b = build_model("lenet", (1, 28, 28), 10, seed=1)
    c = build_model("lenet", (1, 28, 28), 10, seed=2)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))
    save_init(a, tmp_path / "init.pt")
    load_init(c, tmp_path / "init.pt")
    assert all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))
    # building a model does not disturb the global random stream
    torch.manual_seed(0)
    r1 = torch.rand(1)
    torch.manual_seed(0)
    build_model("mlp", (4,), 2, seed=5)
    assert torch.equal(torch.rand(1), r1)


# The initial weights (seed 0) of the models the default study trains, at the study's own knobs, and of
# the small ResNets the tests use. Recorded from the code before the paper's architectures were added;
# a change here changes every existing result: add a new registered name instead.
PINNED = [
    ("mlp", (1, 8, 8), 10, {"hidden": [128]}, 0.8952868834894616,
     "2a9210fd3d948b11b3ca0ccda511ebc65fe014e2e2a39def0892d7c606088f90"),
    ("mlp", (1, 8, 8), 10, {"hidden": [512, 512]}, 16.6027795111619,
     "477348322c49b3ba96b21e782d48815a9025c70dbc522e12f1a87520b42709c9"),
    ("mlp", (1, 8, 8), 10, {"hidden": [32]}, -1.006877193460241,
     "4b0f935b67fd8c0d4dd0a1c729d94f4d3a2fa9f46a3b03c945d6a8000d1a73e6"),
    ("lenet", (1, 28, 28), 10, {"width": 1.0}, 5.3914150398686616,
     "fee924a396d96c6b704979462e5d61a2e3cfb4c7bea70e837889d91f0539df82"),
    ("lenet", (1, 28, 28), 10, {"width": 2.0}, 15.328276551408806,
     "64d0c996c1c390eca91aa853b06d94d77357cc543f2e1f6b4ac89aa3df232635"),
    ("lenet", (1, 28, 28), 10, {"width": 0.5}, 3.3889990990428487,
     "cf3905b83beb3c3584845d0cb6382410903b7337097ad6a3df1dbdeb3e57da6b"),
    ("text_cnn", (200,), 2, {"vocab_size": 10000, "embed_dim": 32, "filters": 32, "kernels": [3]}, -1236.3629898794284,
     "dc808f0d37a1ae37e0ef466a5f02af6bde1a1f2d6d273de3965dc5b0f5682e56"),
    ("seq_cnn", (12, 29), 9, {"width": 16, "layers": 2}, 62.225260496161354,
     "521a3653f480522aa13293bec26fac28f7a59d311e981d57467d0cddec0dfa88"),
    ("resnet", (3, 32, 32), 10, {"depth": 8, "width": 8}, 338.6552064918192,
     "8c16078b408c57d2d204032842af01488b24eeeaef7f4397861b311fe2cf3a1b"),
    ("resnet18", (3, 32, 32), 10, {"width": 8}, 1212.3825682008764,
     "a4f2115260f8fcc4dfbf94510ec082dbcd5522b0204684c5292b7d4a951904fa"),
]


@pytest.mark.parametrize("name, shape, n_classes, knobs, total, sha", PINNED,
                         ids=[f"{p[0]}-{'-'.join(f'{k}{v}' for k, v in p[3].items())}" for p in PINNED])
def test_initial_weights_are_pinned(name, shape, n_classes, knobs, total, sha):
    s, h = _fingerprint(build_model(name, shape, n_classes, seed=0, **knobs))
    assert s == total  # tolerance 0
    assert h == sha


def test_bad_knobs():
    with pytest.raises(ConfigError, match="6n\\+2"):
        build_model("resnet", (3, 32, 32), 10, seed=0, depth=21)
    with pytest.raises(ConfigError, match="bad knobs"):
        build_model("mlp", (4,), 2, seed=0, layers=3)
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        build_model("alexnet", (3, 32, 32), 10, seed=0)
    with pytest.raises(ConfigError, match="not divisible by patch"):
        build_model("vit", (3, 30, 30), 10, seed=0, **SMALL["vit"])
    with pytest.raises(ConfigError, match="too small"):
        build_model("vgg11", (1, 28, 28), 10, seed=0, width=0.125)
    with pytest.raises(ConfigError, match="not divisible by n_head"):
        build_model("gpt2_classifier", (16,), 2, seed=0, vocab_size=50, n_embd=30, n_head=4)


def test_resnet_family_depths():
    sizes = [n_params(build_model("resnet", (3, 32, 32), 10, seed=0, depth=d)) for d in (8, 20, 56)]
    assert sizes == sorted(sizes)
    assert 0.26e6 < sizes[1] < 0.28e6  # ResNet-20: 0.27M parameters (He et al., 2016)


# ------------------------------------------------------------------------------------- ResNet-50
def test_resnet50_size_stages_and_forward():
    m = build_model("resnet50", (3, 32, 32), 10, seed=0)
    assert n_params(m) == 23_520_842  # the common CIFAR ResNet-50: 23.5M for 10 classes
    assert [len(getattr(m, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 6, 3]
    assert m.stem[0].kernel_size == (3, 3) and m.stem[0].stride == (1, 1)
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    assert m.head.in_features == 2048 and m.layer1[0].conv3.out_channels == 256
    seen = {}
    hooks = [getattr(m, f"layer{i}").register_forward_hook(lambda mod, i, o, k=i: seen.__setitem__(k, o.shape))
             for i in (1, 2, 3, 4)]
    with torch.no_grad():
        assert m.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    for h in hooks:
        h.remove()
    assert seen == {1: (2, 256, 32, 32), 2: (2, 512, 16, 16), 3: (2, 1024, 8, 8), 4: (2, 2048, 4, 4)}


# ------------------------------------------------------------------------------------------- VGG
def test_vgg_authors_layout():
    m = build_model("vgg19", (3, 32, 32), 10, seed=0)
    assert 19.5e6 < n_params(m) < 20.5e6 and n_params(m) == 20_304_202
    convs = [x for x in m.features if isinstance(x, nn.Conv2d)]
    assert len(convs) == 16 and all(c.bias is not None for c in convs)
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.features) == 16
    assert sum(isinstance(x, nn.MaxPool2d) for x in m.features) == 5
    fc = m.fc
    assert isinstance(fc[0], nn.Linear) and (fc[0].in_features, fc[0].out_features) == (512, 512)
    assert isinstance(fc[1], nn.BatchNorm1d) and fc[1].num_features == 512 and isinstance(fc[2], nn.ReLU)
    assert classifier_of(m) is m.head and m.head.in_features == 512
    small = build_model("vgg11", (3, 32, 32), 10, seed=0, width=0.125)
    assert sum(isinstance(x, nn.Conv2d) for x in small.features) == 8
    assert small.fc[0].in_features == 64 and small.head.in_features == 64
    assert min(c.out_channels for c in small.features if isinstance(c, nn.Conv2d)) == 8  # minimum width 8


# ------------------------------------------------------------------------------------------- ViT
def _vit_params(c=3, hw=32, n_classes=10, patch=4, dim=512, depth=6, heads=6, dim_head=64, mlp_dim=256):
    patch_dim = patch * patch * 5 * c
    inner = heads * dim_head
    tokens = (hw // patch) ** 2 + 1
    spt = 2 * patch_dim + patch_dim * dim + dim
    attn = 1 + 2 * dim + dim * 3 * inner + inner * dim + dim  # temperature, LayerNorm, qkv, out
    ff = 2 * dim + dim * mlp_dim + mlp_dim + mlp_dim * dim + dim
    block = attn + ff
    return spt + tokens * dim + dim + depth * block + 2 * dim + dim * n_classes + n_classes


def test_vit_defaults_and_size():
    m = build_model("vit", (3, 32, 32), 10, seed=0)
    assert n_params(m) == _vit_params() == 6_475_248
    assert abs(n_params(m) - 6.48e6) / 6.48e6 < 0.01
    assert len(m.blocks) == 6 and m.blocks[0].attn.heads == 6
    assert m.blocks[0].attn.to_qkv.bias is None and m.blocks[0].attn.to_qkv.out_features == 3 * 6 * 64
    assert m.blocks[0].attn.to_out[0].in_features == 384 and m.blocks[0].ff[1].out_features == 256
    assert isinstance(m.blocks[0].ff[2], nn.GELU)
    assert m.pos_embedding.shape == (1, 65, 512) and m.cls_token.shape == (1, 1, 512)
    assert 0.5 < float(m.pos_embedding.detach().std()) < 1.5  # randn init
    assert 0.5 < float(m.cls_token.detach().std()) < 1.5
    assert torch.allclose(m.blocks[0].attn.temperature, torch.log(torch.tensor(64 ** -0.5)))
    assert n_params(build_model("vit", (3, 32, 32), 100, seed=0, **SMALL["vit"])) == _vit_params(
        n_classes=100, dim=32, depth=1, heads=2, dim_head=8, mlp_dim=16)


def test_vit_shifted_patch_tokenization():
    from kdlib.models import ShiftedPatchTokens
    x = torch.randn(2, 3, 8, 8)
    s = ShiftedPatchTokens.shifted(x)
    assert s.shape == (2, 15, 8, 8) and torch.equal(s[:, :3], x)
    right, left, down, up = s[:, 3:6], s[:, 6:9], s[:, 9:12], s[:, 12:15]
    assert torch.equal(right[..., 1:], x[..., :-1]) and not right[..., 0].any()
    assert torch.equal(left[..., :-1], x[..., 1:]) and not left[..., -1].any()
    assert torch.equal(down[..., 1:, :], x[..., :-1, :]) and not down[..., 0, :].any()
    assert torch.equal(up[..., :-1, :], x[..., 1:, :]) and not up[..., -1, :].any()
    p = ShiftedPatchTokens.patchify(s, 4)  # 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
    assert p.shape == (2, 4, 4 * 4 * 15)
    for i in range(2):
        for j in range(2):
            patch = s[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4]  # (b, c, p1, p2)
            assert torch.equal(p[:, 2 * i + j], patch.permute(0, 2, 3, 1).reshape(2, -1))
    spt = build_model("vit", (3, 32, 32), 10, seed=0, **SMALL["vit"]).to_patch_embedding
    assert spt.norm.normalized_shape == (240,) and (spt.proj.in_features, spt.proj.out_features) == (240, 32)
    assert spt(torch.randn(2, 3, 32, 32)).shape == (2, 64, 32)


def test_vit_locality_self_attention_masks_the_diagonal():
    from kdlib.models import LSA
    torch.manual_seed(0)
    lsa = LSA(dim=8, heads=2, dim_head=4)
    x = torch.randn(3, 2, 8)
    with torch.no_grad():
        v = lsa.to_qkv(lsa.norm(x)).chunk(3, -1)[2]
        # with two tokens and the diagonal masked, each token attends only to the other one
        assert torch.allclose(lsa(x), lsa.to_out(v[:, [1, 0]]), atol=1e-6)
        assert torch.isfinite(lsa(torch.randn(2, 1, 8))).all()  # a single token: no NaN


# ----------------------------------------------------------------------------------------- GPT-2
def _gpt2(length=12, **knobs):
    args = {"vocab_size": 50, "n_embd": 16, "n_layer": 2, "n_head": 2, **knobs}
    return build_model("gpt2_classifier", (length,), 3, seed=0, **args).eval()


def test_gpt2_builder_takes_vocab_size_and_defaults():
    params = inspect.signature(MODELS.get("gpt2_classifier")).parameters
    assert "vocab_size" in params  # the trainer passes the dataset's vocabulary size
    assert {k: params[k].default for k in ("vocab_size", "n_embd", "n_layer", "n_head", "dropout")} == \
        {"vocab_size": 10000, "n_embd": 128, "n_layer": 4, "n_head": 4, "dropout": 0.0}
    m = _gpt2(vocab_size=37, length=20)
    assert m.wte.num_embeddings == 37 and m.wpe.num_embeddings == 20
    assert m.head.bias is None and classifier_of(m) is m.head
    d, L, V, T = 128, 4, 10000, 256
    expected = V * d + T * d + L * (12 * d * d + 13 * d) + 2 * d + d * 2
    assert n_params(build_model("gpt2_classifier", (T,), 2, seed=0)) == expected == 2_106_368


@torch.no_grad()
def test_gpt2_init_follows_gpt2():
    m = _gpt2(n_embd=64, n_layer=2, vocab_size=500)
    assert abs(float(m.wte.weight.std()) - 0.02) < 0.002
    assert abs(float(m.h[0].c_attn.weight.std()) - 0.02) < 0.003 and not m.h[0].c_attn.bias.any()
    assert abs(float(m.h[0].attn_proj.weight.std()) - 0.02 / math.sqrt(4)) < 0.002
    assert abs(float(m.h[0].mlp[2].weight.std()) - 0.02 / math.sqrt(4)) < 0.002


def test_gpt2_padding_invariance_and_pooling():
    m = _gpt2(length=12)
    x = torch.tensor([[5, 6, 7, 8, 0, 0, 0, 0], [9, 3, 0, 4, 2, 0, 0, 0], [0] * 8])
    with torch.no_grad():
        y = m(x)
        assert torch.isfinite(y).all()  # the all-padding row too
        y_more = m(torch.cat([x, torch.zeros(3, 4, dtype=torch.long)], 1))  # more right padding
        assert torch.equal(y, y_more) or torch.allclose(y, y_more, atol=1e-6, rtol=0)
        assert torch.allclose(m(x[:1, :4]), y[:1], atol=1e-6, rtol=0)  # no padding at all
        # pooling reads the last non-padding token (index 4 in row 1, interior padding included)
        assert m.last_token(x).tolist() == [3, 4, 0]
        h = m.hidden_states(x)
        assert torch.allclose(y, m.head(h[torch.arange(3), torch.tensor([3, 4, 0])]), atol=1e-6)


def test_gpt2_attention_is_causal():
    m = _gpt2(length=10)
    x = torch.tensor([[5, 6, 7, 8, 9, 10, 0, 0]])
    with torch.no_grad():
        h = m.hidden_states(x)
        later = x.clone()
        later[0, 6] = 11  # a token after position 5 changes nothing before it
        h_later = m.hidden_states(later)
        assert torch.equal(h[:, :6], h_later[:, :6]) or torch.allclose(h[:, :6], h_later[:, :6], atol=1e-6, rtol=0)
        assert not torch.allclose(h[:, 6:], h_later[:, 6:])
        earlier = x.clone()
        earlier[0, 2] = 12  # an earlier token changes the pooled output
        h_earlier = m.hidden_states(earlier)
        assert torch.allclose(h[:, :2], h_earlier[:, :2], atol=1e-6, rtol=0)
        assert not torch.allclose(h[:, 2:], h_earlier[:, 2:])
        assert not torch.allclose(m(x), m(earlier))
        with pytest.raises(ValueError, match="exceeds"):
            m(torch.ones(1, 11, dtype=torch.long))


CIFAR_CNN_SHA256 = "37fb17d96f0135e9abe5b3672b8873a4c30ed22cc7a287c2e18bebb759fda684"


def test_cifar_cnn_is_pinned_and_channels_last():
    """The shipped CIFAR-10 runs (results/mid) were trained with this network: its initial weights are
    pinned, and it computes in channels-last memory."""
    m = build_model("cifar_cnn", (3, 32, 32), 10, seed=0, widths=[32, 64, 128])
    s, h = _fingerprint(m)
    assert n_params(m) == 295_490
    assert m.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert h == CIFAR_CNN_SHA256, h
