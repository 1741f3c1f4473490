"""GAN core: every loss against hand-computed values, the gradient penalty against autograd on
known functions, the image pool's statistics, the LR schedule and the freezing helper."""

from __future__ import annotations

import math

import pytest
import torch

from cyclekit.errors import ConfigError
from cyclekit.gan.losses import d_loss, g_loss, gradient_penalty
from cyclekit.gan.pool import ImagePool
from cyclekit.gan.schedule import LinearDecay, linear_decay_scheduler
from cyclekit.gan.steps import discriminator_loss, frozen, generator_adversarial_loss

REAL = torch.tensor([0.0, 2.0])
FAKE = torch.tensor([-1.0, 1.0])


def softplus(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_vanilla_loss_by_hand():
    # -log sigmoid(x) = softplus(-x);  -log(1 - sigmoid(x)) = softplus(x)
    expected_d = (softplus(-0.0) + softplus(-2.0)) / 2 + (softplus(-1.0) + softplus(1.0)) / 2
    assert d_loss(REAL, FAKE, "vanilla").item() == pytest.approx(expected_d, abs=1e-6)
    expected_g = (softplus(1.0) + softplus(-1.0)) / 2  # non-saturating -log sigmoid(fake)
    assert g_loss(FAKE, "vanilla").item() == pytest.approx(expected_g, abs=1e-6)


def test_lsgan_loss_by_hand():
    # real: ((0-1)^2 + (2-1)^2)/2 = 1;  fake: ((-1)^2 + 1^2)/2 = 1
    assert d_loss(REAL, FAKE, "lsgan").item() == pytest.approx(2.0)
    # generator: ((-1-1)^2 + (1-1)^2)/2 = 2
    assert g_loss(FAKE, "lsgan").item() == pytest.approx(2.0)


def test_hinge_loss_by_hand():
    # real: (relu(1-0) + relu(1-2))/2 = 0.5;  fake: (relu(1-1) + relu(1+1))/2 = 1
    assert d_loss(REAL, FAKE, "hinge").item() == pytest.approx(1.5)
    assert g_loss(torch.tensor([-1.0, 3.0]), "hinge").item() == pytest.approx(-1.0)


def test_wgan_loss_by_hand():
    assert d_loss(REAL, FAKE, "wgan-gp").item() == pytest.approx(0.0 - 1.0)
    assert g_loss(torch.tensor([0.5, 1.5]), "wgan-gp").item() == pytest.approx(-1.0)


def test_unknown_loss_names_the_key():
    with pytest.raises(ConfigError, match="loss.gan_mode.*known: vanilla"):
        d_loss(REAL, FAKE, "wasserstein")


def test_gradient_penalty_linear_critic():
    # f(x) = w.x has gradient w everywhere: penalty = (|w| - 1)^2 = (5 - 1)^2 = 16.
    w = torch.tensor([3.0, 4.0])
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    gp = gradient_penalty(lambda x: x @ w, real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-5)


def test_gradient_penalty_matches_autograd_on_quadratic():
    # f(x) = 0.5 |x|^2 has gradient x: with real == fake the interpolate is x itself,
    # so the penalty is mean((|x_i| - 1)^2), computed here without the helper.
    x = torch.tensor([[3.0, 4.0], [0.6, 0.8], [0.0, 2.0]])
    gp = gradient_penalty(lambda v: 0.5 * (v**2).sum(dim=1), x, x.clone())
    expected = ((torch.tensor([5.0, 1.0, 2.0]) - 1) ** 2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradient_penalty_is_differentiable_wrt_critic():
    critic = torch.nn.Linear(3, 1)
    gp = gradient_penalty(lambda v: critic(v).squeeze(1), torch.randn(4, 3), torch.randn(4, 3))
    gp.backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_pool_size_zero_returns_input():
    pool = ImagePool(0)
    x = torch.randn(3, 2, 4, 4)
    assert pool.query(x) is x
    assert len(pool) == 0


def test_pool_fills_then_returns_history_half_the_time():
    pool = ImagePool(50, seed=0)
    first = torch.arange(50, dtype=torch.float32).view(50, 1)
    assert torch.equal(pool.query(first), first)  # filling: every new image comes back
    seen_old, n = 0, 4000
    for i in range(n):
        new = torch.tensor([[1000.0 + i]])
        out = pool.query(new)
        if out.item() != new.item():
            seen_old += 1
            assert out.item() < 1000.0 + i  # an older fake, never an invented one
    share = seen_old / n
    # Binomial(4000, 0.5): sd = 0.0079, so 0.5 +- 0.04 is a 5-sigma band.
    assert abs(share - 0.5) < 0.04
    assert len(pool) == 50


def test_pool_state_round_trip_repeats_choices():
    pool = ImagePool(4, seed=3)
    for i in range(6):
        pool.query(torch.full((2, 1), float(i)))
    clone = ImagePool(4, seed=99)
    clone.load_state_dict(pool.state_dict())
    for i in range(20):
        x = torch.full((2, 1), 100.0 + i)
        assert torch.equal(pool.query(x), clone.query(x))


def test_linear_decay_schedule():
    f = LinearDecay(constant=10, decay=10)
    assert [f(s) for s in (0, 9, 10, 15, 20, 25)] == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = linear_decay_scheduler(opt, 2, 4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_frozen_blocks_gradients_and_restores_flags():
    disc = torch.nn.Linear(2, 1)
    disc.bias.requires_grad_(False)
    fake = torch.randn(4, 2, requires_grad=True)
    with frozen(disc):
        assert not any(p.requires_grad for p in disc.parameters())
        loss = disc(fake).pow(2).mean()
    loss.backward()
    assert fake.grad is not None and disc.weight.grad is None
    assert disc.weight.requires_grad and not disc.bias.requires_grad


def test_generator_loss_reaches_fake_not_disc():
    disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 1))
    fake = torch.randn(4, 2, requires_grad=True)
    generator_adversarial_loss(disc, fake, "vanilla").backward()
    assert fake.grad is not None and disc[1].weight.grad is None


def test_discriminator_loss_detaches_fake_and_scales():
    disc = torch.nn.Linear(2, 1)
    real, fake = torch.randn(4, 2), torch.randn(4, 2, requires_grad=True)
    full, _ = discriminator_loss(disc, real, fake, "lsgan", scale=1.0)
    half, parts = discriminator_loss(disc, real, fake, "lsgan", scale=0.5)
    assert half.item() == pytest.approx(full.item() / 2)
    half.backward()
    assert fake.grad is None and disc.weight.grad is not None
    assert set(parts) == {"real", "fake"}
    # Tensors, not numbers: no .item() (a device sync) inside the core; nothing to backprop into.
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in parts.values())
    _, parts_gp = discriminator_loss(disc, real, fake, "wgan-gp")
    assert "gp" in parts_gp and isinstance(parts_gp["gp"], torch.Tensor)
