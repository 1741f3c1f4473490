"""Model zoo: reference parameter counts, shapes, gradients, registry validation, init."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cyclekit.errors import ConfigError
from cyclekit.models import (
    MODELS,
    PatchGAN,
    PatchGANOptions,
    ResnetGenerator,
    build_model,
    count_parameters,
    init_weights,
    list_models,
    model_options,
)
from cyclekit.nn import NORMS, PADDINGS, ResnetBlock, norm_layer, padding_layers

# Tiny options per registered model, with the input each one takes and the output shape it gives.
TINY: dict[str, tuple[dict, tuple[int, ...], tuple[int, ...]]] = {
    "resnet": ({"ngf": 4, "n_blocks": 1}, (2, 3, 16, 16), (2, 3, 16, 16)),
    "patchgan": ({"ndf": 4, "n_layers": 2}, (2, 3, 32, 32), (2, 1, 6, 6)),
    "dcgan_g": ({"image_size": 32, "ngf": 4, "latent_dim": 8}, (2, 8), (2, 3, 32, 32)),
    "dcgan_d": ({"image_size": 32, "ndf": 4}, (2, 3, 32, 32), (2,)),
    "mlp_g": ({"latent_dim": 3, "hidden": [8, 8]}, (4, 3), (4, 2)),
    "mlp_d": ({"hidden": [8]}, (4, 2), (4,)),
    # Salimans et al. 2016's MNIST networks (the semi-supervised GAN): flat layers over the image
    "improved_g": ({"latent_dim": 5, "image_shape": [1, 8, 8], "hidden": [6, 6]}, (4, 5), (4, 1, 8, 8)),
    "improved_d": ({"image_shape": [1, 8, 8], "n_classes": 3, "hidden": [6, 5]}, (4, 1, 8, 8), (4, 3)),
    "unet": ({"n_downs": 5, "ngf": 4, "dropout": 0.5}, (2, 3, 32, 32), (2, 3, 32, 32)),
    # Conditional: the second input is the class label of each sample.
    "cond_g": ({"image_size": 16, "channels": 1, "ngf": 4, "latent_dim": 8, "n_classes": 3}, (2, 8), (2, 1, 16, 16)),
    "cond_d": ({"image_size": 16, "channels": 1, "ndf": 4, "n_classes": 3}, (2, 1, 16, 16), (2,)),
    # BEGAN: D is an autoencoder (its output has the input's shape); G has the shape of its decoder.
    "began_g": ({"image_size": 32, "n": 4, "latent_dim": 8}, (2, 8), (2, 3, 32, 32)),
    "began_d": ({"image_size": 32, "n": 4, "h": 8}, (2, 3, 32, 32), (2, 3, 32, 32)),
    # StackGAN: the extra inputs are the condition embedding (and stage II's stage-I image), see EXTRA.
    "stackgan_g1": ({"image_size": 16, "embed_dim": 6, "c_dim": 4, "z_dim": 8, "ngf": 4}, (2, 12), (2, 3, 16, 16)),
    "stackgan_g2": (
        {"in_size": 16, "scale": 2, "embed_dim": 6, "c_dim": 4, "ngf": 4, "n_res": 1},
        (2, 3, 16, 16),
        (2, 3, 32, 32),
    ),
    "stackgan_d": ({"image_size": 16, "embed_dim": 6, "cond_dim": 4, "ndf": 4}, (2, 3, 16, 16), (2,)),
    "stackgan_chain": (
        {
            "stage1": {"image_size": 16, "embed_dim": 6, "c_dim": 4, "z_dim": 8, "ngf": 4},
            "stage2": {"in_size": 16, "scale": 2, "embed_dim": 6, "c_dim": 4, "ngf": 4, "n_res": 1},
        },
        (2, 16),
        (2, 3, 32, 32),
    ),
}
# Inputs after the first: a class label for the conditional GAN's networks, the condition embedding
# (after stage II's noise) for StackGAN's.
EXTRA = {
    "cond_g": lambda: (torch.tensor([0, 2]),),
    "cond_d": lambda: (torch.tensor([0, 2]),),
    "stackgan_g1": lambda: (_randn(2, 6),),
    "stackgan_g2": lambda: (_randn(2, 4), _randn(2, 6)),
    "stackgan_d": lambda: (_randn(2, 6),),
    "stackgan_chain": lambda: (_randn(2, 6),),
}


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_seeded())


def test_every_registered_model_has_tiny_options() -> None:
    assert sorted(TINY) == list_models() == sorted(MODELS)
    generators = ["began_g", "cond_g", "dcgan_g", "improved_g", "mlp_g", "resnet"]
    generators += ["stackgan_chain", "stackgan_g1", "stackgan_g2"]
    assert list_models("generator") == [*generators, "unet"]
    discriminators = ["began_d", "cond_d", "dcgan_d", "improved_d", "mlp_d", "patchgan", "stackgan_d"]
    assert list_models("discriminator") == discriminators


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward_every_model(name: str) -> None:
    options, in_shape, out_shape = TINY[name]
    net = build_model(name, options)
    out = net(_randn(*in_shape), *EXTRA.get(name, lambda: ())())
    if isinstance(out, tuple):  # StackGAN's generators: (image, mu, log_sigma)
        out = out[0]
    assert out.shape == out_shape
    out.square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


def test_reference_parameter_counts() -> None:
    # Reference CycleGAN networks (junyanz/pytorch-CycleGAN-and-pix2pix, resnet_9blocks / basic).
    assert count_parameters(build_model("resnet")) == 11_378_179
    assert count_parameters(build_model("patchgan")) == 2_764_737


def test_pix2pix_reference_parameter_counts() -> None:
    """Counted from the reference pix2pix code (networks.py UnetGenerator / NLayerDiscriminator)."""
    assert count_parameters(build_model("unet")) == 54_413_955  # unet_256, batch norm
    assert count_parameters(build_model("unet", {"norm": "instance"})) == 54_409_603
    assert count_parameters(build_model("unet", {"n_downs": 7})) == 41_828_995  # unet_128
    # the 70x70 PatchGAN judging concat(A, B): 6 input channels, batch norm
    assert count_parameters(build_model("patchgan", {"in_channels": 6, "norm": "batch"})) == 2_768_705


def test_unet_layout_matches_the_reference() -> None:
    """State dict keys of the reference UnetGenerator (nested `model.1.model.3...`), dropout in the
    n_downs - 5 blocks below the 8*ngf level, skips doubling the decoder inputs, 2**n_downs sizes."""
    net = build_model("unet", {"n_downs": 6, "ngf": 8})
    keys = list(net.state_dict())
    assert keys[0] == "model.model.0.weight"  # the outermost down conv: no bias, batch norm follows
    assert "model.model.1.model.3.model.3.model.3.model.3.model.1.weight" in keys  # the innermost down conv
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 1  # n_downs - 5
    assert net.size_multiple == 64 and net.min_size == 64
    assert build_model("unet").size_multiple == 256
    assert net(torch.zeros(1, 3, 64, 128)).shape == (1, 3, 64, 128)
    with pytest.raises(ConfigError, match="n_downs: must be >= 5"):
        build_model("unet", {"n_downs": 4})
    with pytest.raises(ConfigError, match="norm: the U-Net takes batch or instance"):
        build_model("unet", {"norm": "layer"})


def test_count_parameters_trainable_only() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    net[0].requires_grad_(False)
    assert count_parameters(net) == 16 + 5
    assert count_parameters(net, trainable_only=True) == 5


def test_models_keep_resolved_config() -> None:
    net = build_model("resnet", {"ngf": 4})
    assert net.config.ngf == 4 and net.config.n_blocks == 9


@pytest.mark.parametrize("size", [32, 36])
def test_resnet_keeps_size_for_multiples_of_4(size: int) -> None:
    net = ResnetGenerator(build_model("resnet", {"ngf": 4, "n_blocks": 2}).config)
    out = net(_randn(1, 3, size, size + 8))
    assert out.shape == (1, 3, size, size + 8)
    assert out.abs().max() <= 1  # tanh output


def test_resnet_channels() -> None:
    net = build_model("resnet", {"ngf": 4, "n_blocks": 1, "in_channels": 1, "out_channels": 2})
    assert net(_randn(1, 1, 16, 16)).shape == (1, 2, 16, 16)


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_resnet_upsample_and_padding_variants(upsample: str, padding: str) -> None:
    net = build_model("resnet", {"ngf": 4, "n_blocks": 1, "upsample": upsample, "padding": padding})
    assert net(_randn(1, 3, 20, 20)).shape == (1, 3, 20, 20)
    has_transpose = any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())
    assert has_transpose == (upsample == "transpose")


def test_resize_upsample_has_same_parameter_count() -> None:
    # A 3x3 conv has as many weights as a 3x3 transposed conv with the same channels.
    base = {"ngf": 8, "n_blocks": 2}
    resize = build_model("resnet", {**base, "upsample": "resize"})
    assert count_parameters(resize) == count_parameters(build_model("resnet", base))


@pytest.mark.parametrize("norm", NORMS)
def test_norm_variants(norm: str) -> None:
    for name, options in (("resnet", {"ngf": 4, "n_blocks": 1}), ("patchgan", {"ndf": 4})):
        net = build_model(name, {**options, "norm": norm})
        out = net(_randn(2, 3, 32, 32))
        assert torch.isfinite(out).all()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    # First and last conv always have a bias; the others only without an affine norm (reference).
    assert all(c.bias is not None for c in (convs[0], convs[-1]))
    assert all((c.bias is not None) == (norm in ("instance", "none")) for c in convs[1:-1])


def test_norm_factory() -> None:
    inst = norm_layer("instance", 8)
    assert isinstance(inst, nn.InstanceNorm2d) and not inst.affine and not inst.track_running_stats
    batch = norm_layer("batch", 8)
    assert isinstance(batch, nn.BatchNorm2d) and batch.affine
    assert isinstance(norm_layer("none", 8), nn.Identity)
    with pytest.raises(ConfigError, match="norm: unknown norm 'group'; valid: instance, batch"):
        norm_layer("group", 8)


def test_padding_factory() -> None:
    assert isinstance(padding_layers("reflect", 2)[0][0], nn.ReflectionPad2d)
    assert isinstance(padding_layers("replicate", 2)[0][0], nn.ReplicationPad2d)
    assert padding_layers("zero", 2) == ([], 2)
    with pytest.raises(ConfigError, match="padding: unknown padding 'circular'"):
        padding_layers("circular", 1)


def test_resnet_block_is_residual() -> None:
    block = ResnetBlock(4, norm="none")
    for p in block.parameters():
        nn.init.zeros_(p)
    x = _randn(1, 4, 8, 8)
    assert torch.equal(block(x), x)


def test_dropout_adds_dropout_modules() -> None:
    def dropouts(net: nn.Module) -> list[nn.Dropout]:
        return [m for m in net.modules() if isinstance(m, nn.Dropout)]

    assert dropouts(build_model("resnet", {"ngf": 4, "n_blocks": 3})) == []
    found = dropouts(build_model("resnet", {"ngf": 4, "n_blocks": 3, "dropout": 0.5}))
    assert len(found) == 3 and all(m.p == 0.5 for m in found)
    assert len(dropouts(build_model("mlp_d", {"hidden": [8, 8], "dropout": 0.3}))) == 2


@pytest.mark.parametrize(("size", "expected"), [(24, 1), (32, 2), (64, 6), (256, 30)])
def test_patchgan_output_size(size: int, expected: int) -> None:
    net = PatchGAN(PatchGANOptions(ndf=4))  # ndf does not change the geometry
    assert net(_randn(1, 3, size, size)).shape == (1, 1, expected, expected)


def test_patchgan_receptive_field_is_70() -> None:
    # One output pixel depends on a 70x70 input window: Zhu et al. 2017, appendix 7.2.
    net = PatchGAN(PatchGANOptions(ndf=4, norm="none"))
    x = torch.zeros(1, 3, 128, 128, requires_grad=True)
    net(x)[0, 0, 7, 7].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    assert rows.max() - rows.min() + 1 == 70


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_sizes_and_channels(size: int, channels: int) -> None:
    g = build_model("dcgan_g", {"image_size": size, "channels": channels, "ngf": 4, "latent_dim": 6})
    d = build_model("dcgan_d", {"image_size": size, "channels": channels, "ndf": 4})
    fake = g(_randn(3, 6))
    assert fake.shape == (3, channels, size, size)
    assert g(_randn(3, 6, 1, 1)).shape == fake.shape
    assert d(fake).shape == (3,)


def test_dcgan_rejects_wrong_shapes() -> None:
    g = build_model("dcgan_g", {"image_size": 28, "ngf": 4, "latent_dim": 6})
    with pytest.raises(ValueError, match="expected z of shape"):
        g(_randn(2, 5))
    d = build_model("dcgan_d", {"image_size": 28, "ndf": 4})
    with pytest.raises(ValueError, match=r"\(N, 3, 28, 28\)"):
        d(_randn(2, 3, 32, 32))


def test_dcgan_norms_follow_radford() -> None:
    g = build_model("dcgan_g", {"image_size": 32, "ngf": 4})
    d = build_model("dcgan_d", {"image_size": 32, "ndf": 4})
    # No batch norm on the generator output or the discriminator input (Radford et al. 2016).
    assert isinstance(g.net[-1], nn.Tanh) and isinstance(g.net[-2], nn.ConvTranspose2d)
    assert isinstance(d.net[1], nn.LeakyReLU)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 2
    nobn = build_model("dcgan_d", {"image_size": 32, "ndf": 4, "norm": "none"})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())


def test_mlp_images_and_output() -> None:
    assert build_model("mlp_g").config.output == "linear"  # 2-D toy data is unbounded
    g = build_model("mlp_g", {"latent_dim": 4, "hidden": [16], "image_shape": [1, 28, 28]})
    assert g.config.out_features == 784 and g.config.output == "tanh"
    img = g(_randn(5, 4))
    assert img.shape == (5, 1, 28, 28) and img.abs().max() <= 1
    d = build_model("mlp_d", {"hidden": [16], "image_shape": [1, 28, 28]})
    assert d(img).shape == (5,)
    with pytest.raises(ConfigError, match="model.out_features: 10 does not match image_shape"):
        build_model("mlp_g", {"out_features": 10, "image_shape": [1, 28, 28]})


def test_unknown_model_lists_names() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("vnet", key="model.generator")
    assert str(err.value) == ("model.generator: unknown model 'vnet'; known: " + ", ".join(list_models()))


def test_unknown_option_names_dotted_key() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^model\.generator\.nblocks: unknown option for 'resnet' \(did you mean n_blocks\?\); valid: ",
    ):
        build_model("resnet", {"nblocks": 6}, key="model.generator")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("resnet", {"ngf": "64"}, "model.ngf: expected an integer, got str '64'"),
        ("resnet", {"ngf": 64.0}, "model.ngf: expected an integer"),
        ("resnet", {"n_blocks": True}, "model.n_blocks: expected an integer"),
        ("resnet", {"norm": 1}, "model.norm: expected one of instance, batch, layer, none"),
        ("resnet", {"dropout": "half"}, "model.dropout: expected a number"),
        ("mlp_g", {"hidden": 128}, "model.hidden: expected a list"),
        ("mlp_g", {"hidden": [128, "x"]}, r"model.hidden\[1\]: expected an integer"),
    ],
)
def test_bad_option_types(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        build_model(name, options)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("resnet", {"norm": "group"}, "model.norm: expected one of"),
        ("resnet", {"upsample": "bilinear"}, "model.upsample: expected one of transpose, resize"),
        ("resnet", {"n_blocks": -1}, "model.n_blocks: must be >= 0"),
        ("resnet", {"ngf": 0}, "model.ngf: must be > 0"),
        ("resnet", {"dropout": 1.0}, r"model.dropout: must be in \[0, 1\)"),
        ("patchgan", {"n_layers": 0}, "model.n_layers: must be > 0"),
        ("dcgan_g", {"image_size": 48}, "model.image_size: expected one of 16, 28, 32, 64"),
        ("dcgan_d", {"image_size": 28.0}, "model.image_size: expected one of"),
        ("dcgan_g", {"channels": 2}, "model.channels: expected one of 1, 3"),
        ("dcgan_d", {"channels": 0}, "model.channels: must be > 0"),  # any count: PacGAN packs samples
        ("mlp_g", {"hidden": [8, 0]}, "model.hidden: widths must be > 0"),
        ("mlp_g", {"output": "sigmoid"}, "model.output: expected one of auto, linear, tanh"),
        ("resnet", {"name": "patchgan"}, "model.name: 'patchgan' does not match model 'resnet'"),
    ],
)
def test_bad_option_values(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        build_model(name, options)


def test_int_accepted_for_float_and_name_key_ignored() -> None:
    net = build_model("resnet", {"name": "resnet", "ngf": 4, "n_blocks": 1, "dropout": 0})
    assert net.config.dropout == 0.0 and isinstance(net.config.dropout, float)


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_options_round_trip(name: str) -> None:
    options = TINY[name][0]
    resolved = model_options(name, options)
    assert json.loads(json.dumps(resolved)) == resolved  # JSON-safe
    assert set(resolved) == {f for f in MODELS[name].options.__dataclass_fields__}
    first, again = build_model(name, options), build_model(name, json.loads(json.dumps(resolved)))
    shapes = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in again.state_dict().items()}
    assert again.config == first.config
    assert model_options(name, resolved) == resolved


def test_model_options_fills_defaults() -> None:
    assert model_options("patchgan") == {"in_channels": 3, "ndf": 64, "n_layers": 3, "norm": "instance"}


def test_init_weights_normal_statistics() -> None:
    net = nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.Linear(256, 256))
    init_weights(net, "normal", 0.02)
    for layer in (net[0], net[2]):
        assert abs(layer.weight.std().item() - 0.02) < 0.002
        assert abs(layer.weight.mean().item()) < 0.002
        assert torch.count_nonzero(layer.bias) == 0
    assert abs(net[1].weight.mean().item() - 1.0) < 0.01 and torch.count_nonzero(net[1].bias) == 0


@pytest.mark.parametrize("kind", ["xavier", "kaiming", "orthogonal"])
def test_init_weights_other_kinds(kind: str) -> None:
    net = build_model("patchgan", {"ndf": 4, "norm": "batch"})
    assert init_weights(net, kind) is net
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            assert torch.isfinite(m.weight).all() and m.weight.std() > 0
            assert m.bias is None or torch.count_nonzero(m.bias) == 0


def test_init_weights_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="model.init: unknown init 'uniform'; valid: normal, xavier"):
        init_weights(nn.Linear(2, 2), "uniform")


def test_nn_does_not_import_models() -> None:
    import ast
    from pathlib import Path

    import cyclekit.nn

    for path in Path(cyclekit.nn.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("cyclekit.models"), path
