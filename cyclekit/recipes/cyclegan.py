"""CycleGAN (Zhu et al. 2017): two generators, two PatchGAN discriminators, unpaired data.

Naming: G_AtoB maps domain A to B and D_B judges domain B (real B vs G_AtoB(A)); the reference
code calls these netG_A and netD_A. The objective (Sec. 3, Eq. 3):

    L = L_GAN(G_AtoB, D_B) + L_GAN(G_BtoA, D_A) + lambda * L_cyc + lambda * lambda_id * L_identity

with L_cyc = |G_BtoA(G_AtoB(a)) - a|_1 + |G_AtoB(G_BtoA(b)) - b|_1 (Eq. 2) and the identity term
|G_AtoB(b) - b|_1 + |G_BtoA(a) - a|_1 (Sec. 5.2, from Taigman et al. 2017).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cyclekit.bundle import save_bundle
from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.device import resolve_device
from cyclekit.errors import DataError
from cyclekit.gan.losses import check_mode
from cyclekit.gan.pool import ImagePool
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss
from cyclekit.models import build_model, init_weights, model_options
from cyclekit.recipes.common import adam_with_schedule, n_batches, plan_batches, schedule_steps

N_FIXED = 4  # test images per side in the sample grids


class CycleGanRecipe:
    def __init__(self, config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> None:
        from cyclekit.data.folders import UnpairedFolders
        from cyclekit.data.transforms import build_eval_transform, build_transform

        self.config = config
        cfg, data = config, config.data
        check_mode(cfg.loss.gan_mode)
        self.device = resolve_device(cfg.train.device)
        self.root = find_unpaired_root(config, data_root, cache_dir)
        transform = build_transform(data.preprocess, data.load_size, data.crop_size, data.flip, data.channels)
        self.dataset = UnpairedFolders(
            self.root, "train", transform, channels=data.channels, strict=data.strict, seed=cfg.seed
        )
        self.eval_transform = build_eval_transform(data.preprocess, data.load_size, data.crop_size, data.channels)
        self.fixed_a, self.fixed_b = self._fixed_images()

        self.g_arch, self.g_opts = _net_spec(cfg, "generator")
        self.d_arch, self.d_opts = _net_spec(cfg, "discriminator")
        self.G_AtoB = build_model(self.g_arch, self.g_opts, key="model.generator").to(self.device)
        self.G_BtoA = build_model(self.g_arch, self.g_opts, key="model.generator").to(self.device)
        self.D_A = build_model(self.d_arch, self.d_opts, key="model.discriminator").to(self.device)
        self.D_B = build_model(self.d_arch, self.d_opts, key="model.discriminator").to(self.device)
        for net in self.nets.values():
            init_weights(net, cfg.model.init, cfg.model.init_gain)
        constant, decay = schedule_steps(cfg, self.steps_per_epoch())
        # One Adam for both generators and one for both discriminators, as the reference does.
        self.opt_g, self.sched_g = adam_with_schedule(
            itertools.chain(self.G_AtoB.parameters(), self.G_BtoA.parameters()),
            cfg.optim.lr,
            cfg.optim,
            constant,
            decay,
        )
        self.opt_d, self.sched_d = adam_with_schedule(
            itertools.chain(self.D_A.parameters(), self.D_B.parameters()),
            cfg.optim.lr_d or cfg.optim.lr,
            cfg.optim,
            constant,
            decay,
        )
        # Separate histories of generated A and B images for D_A and D_B.
        self.pool_a = ImagePool(cfg.train.pool_size, seed=derive_seed(cfg.seed, 11))
        self.pool_b = ImagePool(cfg.train.pool_size, seed=derive_seed(cfg.seed, 12))

    @property
    def nets(self) -> dict[str, torch.nn.Module]:
        return {"G_AtoB": self.G_AtoB, "G_BtoA": self.G_BtoA, "D_A": self.D_A, "D_B": self.D_B}

    # -- loop protocol --------------------------------------------------------------------------

    def steps_per_epoch(self) -> int:
        n = max(len(self.dataset.paths_a), len(self.dataset.paths_b))
        return n_batches(n, self.config.data.batch_size, drop_last=False)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        return plan_batches(self.dataset, plan, data.batch_size, start, data.workers, drop_last=False)

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        loss_cfg = self.config.loss
        mode, lam = loss_cfg.gan_mode, loss_cfg.lambda_cycle
        real_a = batch["A"].to(self.device, non_blocking=True)
        real_b = batch["B"].to(self.device, non_blocking=True)

        # Generators: adversarial + cycle (+ identity); the discriminators are frozen inside the
        # adversarial helper so no gradient reaches them here.
        fake_b = self.G_AtoB(real_a)
        rec_a = self.G_BtoA(fake_b)
        fake_a = self.G_BtoA(real_b)
        rec_b = self.G_AtoB(fake_a)
        adv_b = generator_adversarial_loss(self.D_B, fake_b, mode)
        adv_a = generator_adversarial_loss(self.D_A, fake_a, mode)
        cyc_a = F.l1_loss(rec_a, real_a) * lam
        cyc_b = F.l1_loss(rec_b, real_b) * lam
        loss_g = adv_a + adv_b + cyc_a + cyc_b
        out = {}
        if loss_cfg.lambda_identity > 0:
            idt_b = F.l1_loss(self.G_AtoB(real_b), real_b) * lam * loss_cfg.lambda_identity
            idt_a = F.l1_loss(self.G_BtoA(real_a), real_a) * lam * loss_cfg.lambda_identity
            loss_g = loss_g + idt_a + idt_b
            out.update(loss_idt_A=idt_a.item(), loss_idt_B=idt_b.item())
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()

        # Discriminators, each on its real domain vs. a fake drawn from the history pool; the same
        # core helper as DCGAN, with the loss halved (Zhu et al. 2017, Sec. 4).
        loss_d_b, parts_b = discriminator_loss(
            self.D_B, real_b, self.pool_b.query(fake_b), mode, loss_cfg.gp_weight, scale=loss_cfg.d_scale
        )
        loss_d_a, parts_a = discriminator_loss(
            self.D_A, real_a, self.pool_a.query(fake_a), mode, loss_cfg.gp_weight, scale=loss_cfg.d_scale
        )
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        self.opt_d.step()
        self.sched_g.step()
        self.sched_d.step()
        return {
            "loss_G": loss_g.item(),
            "loss_G_A": adv_a.item(),
            "loss_G_B": adv_b.item(),
            "loss_cycle_A": cyc_a.item(),
            "loss_cycle_B": cyc_b.item(),
            **out,
            "loss_D_A": loss_d_a.item(),
            "loss_D_B": loss_d_b.item(),
        }

    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {
            **{k: v.state_dict() for k, v in self.nets.items()},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "pool_a": self.pool_a.state_dict(),
            "pool_b": self.pool_b.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, net in self.nets.items():
            net.load_state_dict(state[key])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])
        self.pool_a.load_state_dict(state["pool_a"], self.device)
        self.pool_b.load_state_dict(state["pool_b"], self.device)

    # -- outputs --------------------------------------------------------------------------------

    def _fixed_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first few test images per side (training images when there is no test split)."""
        from cyclekit.data.images import list_images, load_image

        out = []
        for side, paths in (("A", self.dataset.paths_a), ("B", self.dataset.paths_b)):
            test = self.root / f"test{side}"
            files = list_images(test) if test.is_dir() else []
            picked = []
            for path in files + list(paths):
                try:
                    picked.append(self.eval_transform(load_image(path, self.config.data.channels)))
                except DataError:
                    continue
                if len(picked) == N_FIXED:
                    break
            out.append(torch.stack(picked))
        return out[0], out[1]

    @torch.no_grad()
    def _translate(self, net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        was = net.training
        net.eval()
        try:
            return torch.cat([net(x.unsqueeze(0).to(self.device)).cpu() for x in images])
        finally:
            net.train(was)

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        """One grid per call: rows of real A | fake B | rec A, then real B | fake A | rec B."""
        from cyclekit.data.images import save_grid

        fake_b = self._translate(self.G_AtoB, self.fixed_a)
        rec_a = self._translate(self.G_BtoA, fake_b)
        fake_a = self._translate(self.G_BtoA, self.fixed_b)
        rec_b = self._translate(self.G_AtoB, fake_a)
        rows = []
        for i in range(len(self.fixed_a)):
            rows += [self.fixed_a[i], fake_b[i], rec_a[i]]
        for i in range(len(self.fixed_b)):
            rows += [self.fixed_b[i], fake_a[i], rec_b[i]]
        if len({tuple(t.shape) for t in rows}) > 1:  # preprocess none: sizes differ; pad to the largest
            h = max(t.shape[1] for t in rows)
            w = max(t.shape[2] for t in rows)
            rows = [F.pad(t, (0, w - t.shape[2], 0, h - t.shape[1]), value=-1.0) for t in rows]
        path = folder / f"step_{step:07d}.png"
        folder.mkdir(parents=True, exist_ok=True)
        save_grid([torch.stack(rows)], path, nrow=3)
        return [path]

    def bundle_meta(self, step: int, epoch: int) -> dict[str, Any]:
        data = self.config.data
        return {
            "kind": "cyclegan",
            "channels": data.channels,
            "domains": {"A": data.domain_a, "B": data.domain_b},
            "train_size": data.crop_size,
            "preprocess": data.preprocess,
            "step": step,
            "epoch": epoch,
            "run": self.config.name,
        }

    def write_bundle(self, folder: Path, step: int, epoch: int) -> None:
        save_bundle(
            folder,
            self.bundle_meta(step, epoch),
            {"G_AtoB": (self.g_arch, self.g_opts, self.G_AtoB), "G_BtoA": (self.g_arch, self.g_opts, self.G_BtoA)},
        )

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """Demo data only: error of G_AtoB(testA) against the true testB, next to the identity
        baseline |testA - testB| (mean absolute error in [0, 1] pixel units)."""
        if self.config.data.kind != "demo":
            return {}
        from cyclekit.data.images import image_to_tensor, list_images, load_image

        errors, baseline = [], []
        for path_a in list_images(self.root / "testA"):
            real_a = image_to_tensor(load_image(path_a, self.config.data.channels))
            true_b = image_to_tensor(load_image(self.root / "testB" / path_a.name, self.config.data.channels))
            fake_b = self._translate(self.G_AtoB, real_a.unsqueeze(0))[0]
            # Tensors are in [-1, 1]: halve the difference for [0, 1] units.
            errors.append((fake_b - true_b).abs().mean().item() / 2)
            baseline.append((real_a - true_b).abs().mean().item() / 2)
        mae, base = sum(errors) / len(errors), sum(baseline) / len(baseline)
        result = {
            "test_images": len(errors),
            "mae_G_AtoB": round(mae, 4),
            "mae_identity_baseline": round(base, 4),
            "improvement": round(base / max(mae, 1e-8), 2),
        }
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        return result


def find_unpaired_root(config: Config, data_root: Path | None, cache_dir: Path | None) -> Path:
    """--data-root, then data.root, then (demo) the generated demo set or (catalogue) the cache /
    a download."""
    data = config.data
    if data.kind == "demo":
        from cyclekit.data.catalogue import default_cache_dir
        from cyclekit.data.demo import demo_dir_name, generate_demo

        if data_root is not None:
            return data_root
        cache = cache_dir or default_cache_dir()
        name = demo_dir_name(data.demo_train, data.demo_test, data.demo_size, config.seed)
        return generate_demo(cache / name, data.demo_train, data.demo_test, data.demo_size, config.seed)
    root = data_root or (Path(data.root) if data.root else None)
    if data.dataset:
        from cyclekit.data.catalogue import find_dataset

        return find_dataset(data.dataset, root, cache_dir)
    if root is None:
        raise DataError("no dataset given: pass --data-root DIR with trainA/ and trainB/ (or set data.dataset)")
    return root


def _net_spec(config: Config, part: str) -> tuple[str, dict]:
    spec = dict(getattr(config.model, part))
    arch = spec.pop("name")
    channels = config.data.channels
    if part == "generator":
        spec.setdefault("in_channels", channels)
        spec.setdefault("out_channels", channels)
    else:
        spec.setdefault("in_channels", channels)
    return arch, model_options(arch, spec, key=f"model.{part}")
