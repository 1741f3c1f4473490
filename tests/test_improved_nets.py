"""The MNIST networks of Salimans et al. 2016 (`improved_g`, `improved_d`; cyclekit.models.improved),
used by the mnist-sgan preset: shapes, weight normalisation with a fixed or trained scale, the
data-dependent initialisation, noise only in training, and G's normal-to-uniform input."""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from cyclekit.models import build_model, capabilities
from cyclekit.recipes import load_config
from cyclekit.run import build_recipe
from tests.helpers import cli, one_error


def test_discriminator_is_the_papers_mlp_with_fixed_hidden_scales():
    D = build_model("improved_d", {"image_shape": [1, 28, 28]})
    widths = [(layer.theta.shape[1], layer.theta.shape[0]) for layer in [*D.hidden, D.out]]
    assert widths == [(784, 1000), (1000, 500), (500, 250), (250, 250), (250, 250), (250, 10)]
    trained = {name for name, _ in D.named_parameters()}
    # hidden layers: direction and bias trained, scale fixed (improved-gan's nn.DenseLayer); the last: scale trained
    assert "hidden.0.scale" not in trained and "hidden.0.scale" in D.state_dict() and "out.scale" in trained
    assert capabilities("improved_d", {}).heads == ("classes",)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    assert D(x).shape == (8, 10) and D.features(x).shape == (8, 250)
    D.eval()
    assert torch.equal(D(x), D(x))  # no noise at test time
    D.train()
    assert not torch.equal(D(x), D(x))  # Gaussian noise in training


def test_weight_norm_layer_normalises_each_output_unit():
    D = build_model("improved_d", {"image_shape": [1, 8, 8], "hidden": [16]})
    layer = D.hidden[0]
    with torch.no_grad():
        layer.theta.mul_(7.0)  # the direction's length does not matter
        layer.scale.fill_(2.0)
    assert torch.allclose(layer.weight().norm(dim=1), torch.full((16,), 2.0), atol=1e-5)


def test_data_init_gives_unit_variance_zero_mean_pre_activations():
    torch.manual_seed(0)
    D = build_model("improved_d", {"image_shape": [1, 28, 28], "input_noise": 0.0, "hidden_noise": 0.0})
    x = torch.rand(256, 1, 28, 28) * 2 - 1
    D.data_init(x)
    h = (x.flatten(1) + 1) / 2
    for layer in D.hidden:
        a = layer(h)
        assert torch.allclose(a.mean(0), torch.zeros_like(a[0]), atol=1e-4)
        assert torch.allclose(a.std(0, unbiased=False), torch.ones_like(a[0]), atol=1e-3)
        h = F.relu(a)
    logits = D.out(h)
    assert torch.allclose(logits.std(0, unbiased=False), torch.ones(10), atol=1e-3)


def test_generator_maps_normal_noise_to_the_papers_uniform_input_and_images_to_minus_one_one():
    G = build_model("improved_g", {"latent_dim": 100, "image_shape": [1, 28, 28]})
    z = torch.randn(4096, 100)
    u = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005  # U(0, 1)
    out = G(z[:16])
    assert out.shape == (16, 1, 28, 28) and out.min() >= -1 and out.max() <= 1
    trained = {name for name, _ in G.named_parameters()}
    assert "out.scale" in trained  # improved-gan's l2normalize: a trained scale on the output layer


def test_sgan_initialises_the_weight_normalised_d_from_data(tmp_path):
    # the dcgan_g / cond_d options of the digits preset do not apply: whole sections replace them
    nets = ["model.generator={name: improved_g}", "model.discriminator={name: improved_d}"]
    config = load_config("digits-sgan", nets)
    torch.manual_seed(0)  # the loop seeds before building; here the test does
    D = build_recipe(config).state.nets["D"]
    assert not torch.allclose(D.hidden[0].scale, torch.ones(1000))  # set by the data, not left at 1
    torch.manual_seed(0)
    again = build_recipe(config).state.nets["D"]
    assert torch.equal(D.hidden[0].scale, again.hidden[0].scale)  # the same init for the same seed


def test_improved_d_refuses_a_wrong_image_shape_in_one_line(tmp_path):
    code, _, err = cli(
        "train", "digits-sgan", "--out", str(tmp_path), "--set", "model.discriminator={name: improved_d, hidden: [0]}"
    )
    assert code != 0 and "hidden" in one_error(err)


def test_the_papers_networks_learn_to_classify_the_digits_from_ten_labels_per_class(tmp_path):
    """A reduced mnist-sgan on the scikit-learn digits (16 px, 1,438 training images of which 100
    labelled, 20 epochs of 14 steps, Adam's epsilon 1e-4 as mnist-sgan): D's test accuracy, measured
    at seed 0, is 0.8942 (with PyTorch's epsilon 1e-8: 0.9109); chance is 0.1. The threshold 0.85
    leaves 0.044 of margin."""
    nets = ["model.generator={name: improved_g}", "model.discriminator={name: improved_d}"]
    paper = ["data.batch_size=100", "sgan.labelled_batch=100", "sgan.shift=0", "sgan.lambda_supervised=2"]
    budget = ["optim.lr=0.003", "optim.eps=0.0001", "train.epochs=20", "train.decay_epochs=0", "train.progress=false"]
    args = ["train", "digits-sgan", "--out", str(tmp_path), "--quiet"]
    for item in nets + paper + budget:
        args += ["--set", item]
    code, _, err = cli(*args)
    assert code == 0, err
    scores = json.loads((tmp_path / "digits-sgan" / "results.json").read_text())["sampling"]
    assert scores["discriminator_test_accuracy"] >= 0.85, scores


def test_weight_average_follows_the_weights_and_swaps_in_and_out():
    from cyclekit.recipes.sgan import WeightAverage

    net = torch.nn.Linear(3, 2)
    start = net.weight.detach().clone()
    average = WeightAverage(net, 0.25)
    with torch.no_grad():
        net.weight.add_(4.0)
    average.update(net)  # avg += 0.25 (w - avg): one quarter of the way
    assert torch.allclose(average.values["weight"], start + 1.0)
    current = net.weight.detach().clone()
    with average.swapped_in(net):
        assert torch.allclose(net.weight, start + 1.0)
    assert torch.equal(net.weight, current)
    again = WeightAverage(torch.nn.Linear(3, 2), 0.25)
    again.load_state_dict(average.state_dict())
    assert torch.equal(again.values["weight"], average.values["weight"])
    try:
        WeightAverage(torch.nn.Linear(4, 2), 0.25).load_state_dict(average.state_dict())
    except ValueError as exc:
        assert "does not match" in str(exc)
    else:
        raise AssertionError("a mismatched average was loaded")


def test_sgan_reports_the_averaged_discriminator_too(tmp_path):
    args = ["train", "digits-sgan", "--out", str(tmp_path), "--quiet"]
    for item in ["model.generator.ngf=8", "model.discriminator.ndf=8", "train.epochs=1", "train.decay_epochs=0"]:
        args += ["--set", item]
    code, _, err = cli(*args, "--set", "sgan.average=0.1")
    assert code == 0, err
    scores = json.loads((tmp_path / "digits-sgan" / "results.json").read_text())["sampling"]
    assert 0 <= scores["discriminator_averaged_test_accuracy"] <= 1 and "discriminator_test_accuracy" in scores
    code, _, err = cli(*args, "--name", "bad", "--set", "sgan.average=1.5")
    assert code == 1 and "sgan.average" in one_error(err)
