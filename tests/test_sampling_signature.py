"""One sampling signature: a bundle declares what its generator takes (noise, a class index with its
names, an embedding with what made it) and gives (one image per declared stage), and `cyclekit
sample`, the ONNX sampler export and the torch-free scripts/onnx_sample.py are all driven by it.

Bundles are built from tiny configs without training (the recipe's build_networks + make_bundle)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torch import nn

from cyclekit.export.onnx import export_bundle
from cyclekit.inference.bundle import (
    Bundle,
    NetworkEntry,
    SampleInput,
    SampleOutput,
    Sampling,
    Signature,
    read_bundle,
    signature_from_metadata,
    write_bundle,
)
from cyclekit.inference.sampling import sample_stages
from cyclekit.models import MODELS, build_model, model_options
from cyclekit.models.registry import ModelEntry
from cyclekit.recipes import get_recipe, load_config
from tests.helpers import cli, one_error

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "onnx_sample.py"

TINY = {
    "dcgan": ["data.load_size=32", "data.crop_size=32", "model.generator.ngf=4", "model.discriminator.ndf=4"],
    "gan-ring": ["gan.latent_dim=2"],
    "digits-cgan": ["model.generator.ngf=4", "model.discriminator.ndf=4"],
    "scenes-stackgan": ["model.stage1_generator.ngf=4", "model.stage2_generator.ngf=4",
                        "model.stage1_discriminator.ndf=4", "model.stage2_discriminator.ndf=4"],
}  # fmt: skip

DIGITS = tuple(str(k) for k in range(10))
EXPECTED = {
    "dcgan": Signature((SampleInput("z", "noise", 100),), (SampleOutput("output", "image", 32),)),
    "gan-ring": Signature((SampleInput("z", "noise", 2),), (SampleOutput("output", "points", 2),)),
    "digits-cgan": Signature(
        (SampleInput("z", "noise", 64), SampleInput("label", "class", 10, "int64", classes=DIGITS)),
        (SampleOutput("output", "image", 16),),
    ),
    "scenes-stackgan": Signature(
        (
            SampleInput("z", "noise", 0),  # the chain's noise size: filled in below
            SampleInput("embedding", "embedding", 128, model="cyclekit-words-128", source="text"),
        ),
        (SampleOutput("stage1", "image", 16), SampleOutput("output", "image", 32)),
    ),
}


def recipe_bundle(preset: str, folder: Path) -> Bundle:
    """The bundle ``preset``'s recipe writes, from its untrained networks (no data read)."""
    cfg = load_config(preset, TINY[preset])
    spec = get_recipe(cfg.recipe)
    torch.manual_seed(0)
    bundle, modules = spec.make_bundle(cfg, spec.build_networks(cfg), 3, 1)
    return write_bundle(folder, bundle, modules)


def onnx_meta(model: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(model)).metadata_props}


@pytest.mark.parametrize("preset", sorted(TINY))
def test_each_recipe_declares_its_signature_and_it_round_trips_through_config_json(preset: str, tmp_path: Path):
    written = recipe_bundle(preset, tmp_path / "b")
    signature = read_bundle(tmp_path / "b").samples.signature
    assert signature == written.samples.signature
    expected = EXPECTED[preset]
    if preset == "scenes-stackgan":
        noise = dataclasses.replace(expected.inputs[0], size=written.samples.latent_dim)
        expected = dataclasses.replace(expected, inputs=(noise, *expected.inputs[1:]))
    assert signature == expected
    raw = json.loads((tmp_path / "b" / "config.json").read_text())["samples"]
    assert "class_feed" not in raw and raw["stages"] == [o.size for o in expected.outputs if o.kind == "image"]


@pytest.mark.parametrize("preset", ["dcgan", "digits-cgan", "scenes-stackgan"])
def test_the_exported_sampler_carries_the_same_signature(preset: str, tmp_path: Path):
    bundle = recipe_bundle(preset, tmp_path / "b")
    signature = bundle.samples.signature
    (result,) = export_bundle(tmp_path / "b", out_dir=tmp_path / "onnx")
    assert result.path.name == "G.onnx" and max(c.max_abs_diff for c in result.checks) < 1e-4
    assert signature_from_metadata(onnx_meta(result.path)) == signature
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in signature.inputs]
    assert [o.name for o in session.get_outputs()] == signature.output_names()


# ---------------------------------------------------------------------------------------------
# a class is one thing: its index, whatever form the network takes it in


def stack_chain(n_classes: int) -> tuple[dict, nn.Module]:
    opts = model_options(
        "stackgan_chain",
        {
            "stage1": {"image_size": 16, "embed_dim": n_classes, "c_dim": 4, "z_dim": 8, "ngf": 4},
            "stage2": {"in_size": 16, "scale": 2, "embed_dim": n_classes, "c_dim": 4, "ngf": 4, "n_res": 1},
        },
    )
    torch.manual_seed(1)
    return opts, build_model("stackgan_chain", opts)


def test_an_old_class_conditioned_stackgan_bundle_loads_with_a_class_index(tmp_path: Path):
    """Before the signature, a StackGAN on classes wrote its class as a one-hot condition vector."""
    opts, chain = stack_chain(3)
    names = ["circle", "square", "triangle"]
    bundle = Bundle(
        recipe="stackgan",
        networks={"G": NetworkEntry("stackgan_chain", opts)},
        samples=Sampling("G", chain.noise_dim, "image", classes=tuple(names), stages=(16, 32), class_feed="onehot"),
        train_size=32,
        run="old",
    )
    write_bundle(tmp_path / "old", bundle, {"G": chain})
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["samples"]["class_feed"]
    config["samples"]["condition"] = {"kind": "onehot", "dim": 3, "model": ""}  # as the code before wrote it
    (tmp_path / "old" / "config.json").write_text(json.dumps(config, indent=2))

    samples = read_bundle(tmp_path / "old").samples
    assert samples == bundle.samples  # migrated: the class index, fed to the chain as its one-hot vector
    assert samples.signature.inputs[1] == SampleInput("label", "class", 3, "int64", classes=tuple(names))

    low, high = sample_stages(tmp_path / "old", 6, seed=2, labels=[0, 1, 2, 2, 1, 0])
    z = torch.randn(6, chain.noise_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want_low, want_high = chain.eval().stages(z, torch.eye(3)[[0, 1, 2, 2, 1, 0]])
    assert torch.allclose(low, want_low, atol=1e-6) and torch.allclose(high, want_high, atol=1e-6)

    code, out, err = cli("sample", str(tmp_path / "old"), "--class", "square", "-n", "4", "-o", str(tmp_path / "s.png"))
    assert code == 0 and "wrote 4 samples (16 px and 32 px)" in out, err
    code, _, err = cli("sample", str(tmp_path / "old"), "--text", "a red circle", "-o", str(tmp_path / "t.png"))
    assert code == 1 and "not conditioned on text (it takes a class: use --class)" in one_error(err)

    (result,) = export_bundle(tmp_path / "old", out_dir=tmp_path / "onnx")  # the same label input as a cgan's
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("z", "tensor(float)"), ("label", "tensor(int64)")]
    got_high, got_low = session.run(None, {"z": z.numpy(), "label": np.array([0, 1, 2, 2, 1, 0], dtype=np.int64)})
    assert np.abs(got_high - want_high.numpy()).max() < 1e-4 and np.abs(got_low - want_low.numpy()).max() < 1e-4
    assert json.loads(onnx_meta(result.path)["classes"]) == names

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(result.path), str(tmp_path / "all.png"), "-n", "2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "wrote 6 samples" in done.stdout, done.stderr


def test_an_old_one_stage_bundle_loads_with_its_output_declared(tmp_path: Path):
    """Before the signature, a one-stage generator wrote no stages and no class_feed."""
    recipe_bundle("digits-cgan", tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config["samples"]["stages"] = []
    (tmp_path / "old" / "config.json").write_text(json.dumps(config, indent=2))
    assert read_bundle(tmp_path / "old").samples.signature == EXPECTED["digits-cgan"]
    (only,) = sample_stages(tmp_path / "old", 3, labels=[4, 5, 6])
    assert only.shape == (3, 1, 16, 16)


# ---------------------------------------------------------------------------------------------
# any number of stages: a fake chain of three, known to no code outside this file


@dataclass(frozen=True)
class ThreeStageOptions:
    latent_dim: int = 6
    n_classes: int = 2


class ThreeStage(nn.Module):
    """G(z, y) -> 8, 16 and 32 px images: each stage doubles the last and refines it."""

    def __init__(self, config: ThreeStageOptions) -> None:
        super().__init__()
        self.config = config
        self.fc = nn.Linear(config.latent_dim, 3 * 8 * 8)
        self.embed = nn.Embedding(config.n_classes, 3 * 8 * 8)
        self.refine = nn.ModuleList(nn.Conv2d(3, 3, 3, padding=1) for _ in range(2))

    def stages(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = [torch.tanh(self.fc(z) + self.embed(y)).view(-1, 3, 8, 8)]
        for conv in self.refine:
            up = nn.functional.interpolate(out[-1], scale_factor=2.0, mode="nearest")
            out.append(torch.tanh(up + conv(up)))
        return tuple(out)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.stages(z, y)[-1]


@pytest.fixture
def three_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(MODELS, "three_stage", ModelEntry(ThreeStageOptions, ThreeStage, "generator"))
    torch.manual_seed(3)
    opts = model_options("three_stage", {})
    bundle = Bundle(
        recipe="fake",
        networks={"G": NetworkEntry("three_stage", opts)},
        samples=Sampling("G", 6, "image", classes=("cat", "dog"), stages=(8, 16, 32)),
        train_size=32,
        run="three",
    )
    write_bundle(tmp_path / "three", bundle, {"G": build_model("three_stage", opts)})
    return tmp_path / "three"


def test_a_three_stage_chain_samples_and_exports(three_stages: Path, tmp_path: Path):
    signature = read_bundle(three_stages).samples.signature
    assert [(o.name, o.size) for o in signature.outputs] == [("stage1", 8), ("stage2", 16), ("output", 32)]

    stages = sample_stages(three_stages, 4, labels=[0, 1, 1, 0])
    assert [s.shape for s in stages] == [(4, 3, side, side) for side in (8, 16, 32)]
    code, out, err = cli("sample", str(three_stages), "-n", "2", "-o", str(tmp_path / "all.png"))
    assert code == 0 and "wrote 4 samples (8 px and 16 px and 32 px)" in out, err
    assert Image.open(tmp_path / "all.png").width > 2 * 3 * 32  # two samples a row, three stages each

    (result,) = export_bundle(three_stages, out_dir=tmp_path / "onnx")
    assert signature_from_metadata(onnx_meta(result.path)) == signature
    assert json.loads(onnx_meta(result.path)["stages"]) == [8, 16, 32]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["output", "stage1", "stage2"]
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    got = session.run(None, {"z": z.numpy(), "label": np.array([0, 1, 1, 0], dtype=np.int64)})
    assert [g.shape[-1] for g in got] == [32, 8, 16]
    assert np.abs(got[0] - stages[-1].numpy()).max() < 1e-4  # the same noise as `sample_stages` (seed 0)

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(result.path), str(tmp_path / "dogs.png"), "--class", "dog", "-n", "4"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "wrote 4 samples of class dog" in done.stdout, done.stderr
    assert Image.open(tmp_path / "dogs.png").size == (2 * 34 + 2, 2 * 34 + 2)  # the final stage, 32 px


def test_a_bundle_that_declares_more_stages_than_its_network_gives_is_one_line(three_stages: Path, tmp_path: Path):
    config = json.loads((three_stages / "config.json").read_text())
    config["samples"]["stages"] = [4, 8, 16, 32]
    (three_stages / "config.json").write_text(json.dumps(config))
    code, _, err = cli("sample", str(three_stages), "-o", str(tmp_path / "x.png"))
    assert code == 1 and "the generator gives 3 stages; its bundle declares 4" in one_error(err)


def test_the_script_refuses_a_sampler_that_takes_embeddings(tmp_path: Path):
    recipe_bundle("scenes-stackgan", tmp_path / "b")
    (result,) = export_bundle(tmp_path / "b", out_dir=tmp_path / "onnx")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(result.path), str(tmp_path / "x.png")], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stderr.strip().startswith("error: ")
    assert "takes embedding (128-d embeddings made by cyclekit-words-128)" in done.stderr
