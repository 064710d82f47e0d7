"""Each model's forward shape, seeded initialisation, and saved initial weights."""
import pytest
import torch

from kdlib.config import ConfigError
from kdlib.models import MODELS, build_model, load_init, save_init

SHAPES = {"mlp": (1, 8, 8), "lenet": (1, 28, 28), "resnet18": (3, 32, 32), "resnet": (3, 32, 32),
          "vgg19": (3, 32, 32), "vgg11": (3, 32, 32), "vit": (3, 32, 32), "audio_cnn": (1, 40, 101),
          "seq_cnn": (12, 29), "text_cnn": (200,), "text_transformer": (200,)}
SMALL = {"resnet18": {"width": 8}, "vgg19": {"width": 0.125}, "vgg11": {"width": 0.125}, "vit": {"dim": 32, "depth": 1, "heads": 2}}


def test_every_registered_model_is_covered():
    assert set(MODELS.names()) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_forward_shape(name):
    m = build_model(name, SHAPES[name], 7, seed=0, **SMALL.get(name, {}))
    shape = SHAPES[name]
    x = torch.randint(0, 1000, (3,) + shape) if name.startswith("text") else torch.randn(3, *shape)
    m.eval()
    assert m(x).shape == (3, 7)


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


def test_bad_knobs():
    with pytest.raises(ConfigError, match="6n\\+2"):
        build_model("resnet", (3, 32, 32), 10, seed=0, depth=21)
    with pytest.raises(ConfigError, match="bad knobs"):
        build_model("mlp", (4,), 2, seed=0, layers=3)
    with pytest.raises(ValueError, match="unknown model 'alexnet'"):
        build_model("alexnet", (3, 32, 32), 10, seed=0)


def test_resnet_family_depths():
    from kdlib.models import n_params
    sizes = [n_params(build_model("resnet", (3, 32, 32), 10, seed=0, depth=d)) for d in (8, 20, 56)]
    assert sizes == sorted(sizes)
    assert 0.26e6 < sizes[1] < 0.28e6  # ResNet-20: 0.27M parameters (He et al., 2016)
