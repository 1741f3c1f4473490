"""`cyclekit import` and `cyclekit pretrained`: reference-code generator weights into bundles.

The state dicts come from tests/reference_nets.py, the reference's networks written from its
layer lists, so key names and shapes are the reference's, not cyclekit's by construction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cyclekit.inference.bundle import load_network, read_bundle
from tests import reference_nets as ref
from tests.helpers import cli, one_error

REPO = Path(__file__).resolve().parent.parent


def _save(net: nn.Module, path: Path, *, data_parallel: bool = False, old_instance_stats: bool = False) -> Path:
    state = (nn.DataParallel(net) if data_parallel else net).state_dict()
    if old_instance_stats:  # PyTorch < 0.4 saved running statistics of InstanceNorm2d too
        for name, module in net.named_modules():
            if isinstance(module, nn.InstanceNorm2d):
                prefix = ("module." if data_parallel else "") + name
                state[f"{prefix}.running_mean"] = torch.zeros(module.num_features)
                state[f"{prefix}.running_var"] = torch.ones(module.num_features)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def _resnet(norm: str = "instance", dropout: bool = False, blocks: int = 3, padding: str = "reflect") -> nn.Module:
    net = ref.ResnetGenerator(3, 3, ngf=8, norm_layer=ref.get_norm_layer(norm), use_dropout=dropout, n_blocks=blocks,
                              padding_type=padding)  # fmt: skip
    return ref.randomise(net).eval()


def _unet(norm: str = "batch", downs: int = 6) -> nn.Module:
    net = ref.UnetGenerator(3, 3, downs, ngf=8, norm_layer=ref.get_norm_layer(norm), use_dropout=True)
    return ref.randomise(net).eval()


X32 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
X64 = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1


@pytest.mark.parametrize(
    "kind, options",
    [
        ("resnet", {"norm": "instance"}),
        ("resnet", {"norm": "instance", "data_parallel": True, "old_instance_stats": True}),
        ("resnet", {"norm": "batch", "dropout": True}),
        ("resnet", {"norm": "instance", "padding": "zero", "blocks": 2}),
        ("unet", {"norm": "batch"}),
        ("unet", {"norm": "instance", "data_parallel": True}),
    ],
)
def test_reference_weights_import_with_identical_outputs(tmp_path: Path, kind: str, options: dict):
    saving = {k: options.pop(k) for k in ("data_parallel", "old_instance_stats") if k in options}
    net = _resnet(**options) if kind == "resnet" else _unet(**options)
    pth = _save(net, tmp_path / "ckpt" / "latest_net_G.pth", **saving)
    code, out, err = cli("import", str(pth), "-o", str(tmp_path / "bundle"), "--domains", "photo,label")
    assert code == 0, err
    bundle = read_bundle(tmp_path / "bundle")
    entry = bundle.networks["G_AtoB"]
    assert entry.arch == kind and entry.options["ngf"] == 8 and entry.options["norm"] == options["norm"]
    if kind == "resnet":
        assert entry.options["n_blocks"] == options.get("blocks", 3)
        assert entry.options["dropout"] == (0.5 if options.get("dropout") else 0.0)
        assert entry.options["padding"] == options.get("padding", "reflect")
    else:
        assert entry.options["n_downs"] == 6 and "assumed: dropout 0.5" in out
    if saving.get("old_instance_stats"):
        norms = sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules())
        assert f"dropped {2 * norms} instance-norm running statistics" in out
    ours = load_network(tmp_path / "bundle", bundle, "G_AtoB", dropout=False)
    if bundle.test_time.batch_norm == "sample":
        # the reference's test.py runs batch norm with the image's own statistics (train mode)
        net.train()
        for m in net.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
    x = X32 if kind == "resnet" else X64
    with torch.no_grad():
        expected = torch.cat([net(x[i : i + 1]) for i in range(len(x))])
        got = ours(x)
    # float rounding of batched vs single convolutions (measured 1.2e-5); a wrong mapping gives O(1)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert bundle.translates == {"AtoB": "G_AtoB"} and bundle.domains == {"A": "photo", "B": "label"}
    assert bundle.test_time.dropout == (kind == "unet")
    assert "assumed: training size 256 px" in out and bundle.train_size == 256  # the reference's, said


def test_a_cyclegan_pair_imports_both_directions_named_by_the_reference(tmp_path: Path):
    ckpt = tmp_path / "checkpoints" / "horse2zebra_cyclegan"
    g_a, g_b = (
        _resnet(),
        ref.randomise(ref.ResnetGenerator(3, 3, ngf=8, norm_layer=ref.get_norm_layer(), n_blocks=3), 5),
    )
    _save(g_a, ckpt / "latest_net_G_A.pth", data_parallel=True)
    _save(g_b, ckpt / "latest_net_G_B.pth", data_parallel=True)
    out_dir = tmp_path / "bundle"
    code, out, err = cli("import", str(ckpt / "latest_net_G_B.pth"), str(ckpt / "latest_net_G_A.pth"), "-o",
                         str(out_dir), "--train-size", "256")  # fmt: skip
    assert code == 0, err
    bundle = read_bundle(out_dir)
    assert bundle.translates == {"BtoA": "G_BtoA", "AtoB": "G_AtoB"} or set(bundle.translates) == {"AtoB", "BtoA"}
    assert bundle.domains == {"A": "horse", "B": "zebra"} and bundle.train_size == 256  # from the folder's name
    assert "AtoB (horse -> zebra)" in out and "BtoA (zebra -> horse)" in out
    with torch.no_grad():
        for direction, net in (("AtoB", g_a), ("BtoA", g_b)):
            ours = load_network(out_dir, bundle, bundle.translates[direction])
            assert torch.allclose(ours(X32), net.eval()(X32), atol=1e-4)
    # Discriminators and misnamed pairs are refused in one line.
    torch.save({"model.0.weight": torch.zeros(8, 3, 4, 4), "model.0.bias": torch.zeros(8)}, ckpt / "latest_net_D_A.pth")
    code, _, err = cli("import", str(ckpt / "latest_net_D_A.pth"), "-o", str(tmp_path / "d"))
    assert code == 1 and "a discriminator" in one_error(err)
    code, _, err = cli("import", str(ckpt / "latest_net_G_A.pth"), str(ckpt / "latest_net_G_A.pth"), "-o",
                       str(tmp_path / "x"))  # fmt: skip
    assert code == 1 and "..._G_A.pth (A -> B) and ..._G_B.pth (B -> A)" in one_error(err)


def test_unexpected_or_malicious_files_are_refused_in_one_line(tmp_path: Path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model.1.weight": torch.zeros(1), "x": Payload()}, tmp_path / "evil.pth")
    code, _, err = cli("import", str(tmp_path / "evil.pth"), "-o", str(tmp_path / "b1"))
    assert code == 1 and "refused: it holds more than tensors (getattr)" in one_error(err) and not marker.exists()

    torch.save({"epoch": 3, "model": {"w": torch.zeros(1)}}, tmp_path / "checkpoint.pth")
    code, _, err = cli("import", str(tmp_path / "checkpoint.pth"), "-o", str(tmp_path / "b2"))
    assert code == 1 and "expected a state dict of tensors, found epoch: int" in one_error(err)

    (tmp_path / "junk.pth").write_bytes(b"\x00not a torch file" * 10)
    code, _, err = cli("import", str(tmp_path / "junk.pth"), "-o", str(tmp_path / "b3"))
    assert code == 1 and "not a PyTorch weights file" in one_error(err)

    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    code, _, err = cli("import", str(tmp_path / "other.pth"), "-o", str(tmp_path / "b4"))
    assert code == 1 and "not a reference ResNet or U-Net generator" in one_error(err)

    state = _resnet().state_dict()
    state["model.1.weight"] = torch.zeros(8, 3, 5, 5)  # a 5x5 stem: no reference network has one
    torch.save(state, tmp_path / "odd.pth")
    code, _, err = cli("import", str(tmp_path / "odd.pth"), "-o", str(tmp_path / "b5"))
    assert code == 1 and "no such network fits them (first mismatch at model.1.weight)" in one_error(err)

    code, _, err = cli("import", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "b6"))
    assert code == 1 and "no such file" in one_error(err)

    # Never writes into a folder that is not a bundle.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    good = _save(_resnet(), tmp_path / "good.pth")
    code, _, err = cli("import", str(good), "-o", str(mine))
    assert code == 1 and "not a cyclekit bundle" in one_error(err) and (mine / "notes.txt").read_text() == "keep"
    assert not any((tmp_path / f"b{i}").exists() for i in range(1, 7))


def test_import_then_export_then_the_torch_free_script_matches_pytorch(tmp_path: Path):
    pth = _save(_resnet(), tmp_path / "horse2zebra.pth")
    code, out, err = cli("import", str(pth), "-o", str(tmp_path / "bundle"))
    assert code == 0 and "AtoB (horse -> zebra)" in out, err
    code, out, err = cli("export", str(tmp_path / "bundle"), "-o", str(tmp_path / "onnx"))
    assert code == 0, err
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    code, _, err = cli("translate", str(tmp_path / "in.png"), "--model", str(tmp_path / "bundle"), "-o",
                       str(tmp_path / "torch"))  # fmt: skip
    assert code == 0, err
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "onnx_translate.py"), str(tmp_path / "onnx" / "G_AtoB.onnx"),
         str(tmp_path / "in.png"), str(tmp_path / "onnx.png")],
        check=True, capture_output=True,
    )  # fmt: skip
    torch_out = np.asarray(Image.open(next((tmp_path / "torch").rglob("*.png"))), dtype=np.int16)
    onnx_out = np.asarray(Image.open(tmp_path / "onnx.png"), dtype=np.int16)
    assert torch_out.shape == onnx_out.shape == (36, 44, 3)
    assert np.abs(torch_out - onnx_out).max() <= 1


# ---------------------------------------------------------------------------------------------
# the pretrained catalogue


def test_pretrained_download_imports_once_and_fails_offline_in_one_line(tmp_path: Path, monkeypatch):
    from cyclekit.interop import pretrained
    from tests.test_data_download import _Server

    served = tmp_path / "served"
    _save(_resnet(blocks=9), served / "horse2zebra.pth", data_parallel=False)
    _save(_unet(downs=8), served / "facades_label2photo.pth")
    cache = tmp_path / "cache"
    with _Server(served) as server:
        for key, model in list(pretrained.PRETRAINED.items()):
            monkeypatch.setitem(pretrained.PRETRAINED, key, model.__class__(**{**model.__dict__,
                                "url": f"{server.url}/{model.name}.pth"}))  # fmt: skip
        code, out, err = cli("pretrained", "download", "horse2zebra", "--cache-dir", str(cache))
        assert code == 0, err
        assert "translates AtoB (horse -> zebra), resnet generator, trained at 256 px" in out
        bundle_dir = cache / "pretrained" / "cyclegan" / "horse2zebra"
        bundle = read_bundle(bundle_dir)
        assert bundle.networks["G_AtoB"].options["n_blocks"] == 9 and bundle.train_size == 256
        code, out, _ = cli("pretrained", "download", "cyclegan/horse2zebra", "--cache-dir", str(cache))
        assert code == 0 and len(server.requests) == 1  # cached: not fetched again
        code, out, err = cli("pretrained", "download", "pix2pix/facades_label2photo", "--cache-dir", str(cache))
        assert code == 0 and "(label -> photo), unet generator" in out, err
        assert read_bundle(cache / "pretrained" / "pix2pix" / "facades_label2photo").test_time.dropout
        code, out, _ = cli("pretrained", "list", "--cache-dir", str(cache))
        assert code == 0 and "cyclegan/horse2zebra" in out and out.count("downloaded") == 2
        # A file that is not the family's generator is deleted, so the next try downloads again.
        _save(_unet(downs=8), served / "zebra2horse.pth")
        code, _, err = cli("pretrained", "download", "zebra2horse", "--cache-dir", str(cache))
        assert code == 1 and "held a unet generator, not the cyclegan model's resnet" in one_error(err)
        assert not (cache / "pretrained" / "cyclegan" / "zebra2horse.pth").exists()
    code, _, err = cli("pretrained", "download", "apple2orange", "--cache-dir", str(cache))  # server gone
    line = one_error(err)
    assert code == 1 and "could not download cyclegan/apple2orange" in line and "save it as" in line
    code, _, err = cli("pretrained", "download", "horse2zebr", "--cache-dir", str(cache))
    assert code == 1 and "unknown pretrained model 'horse2zebr' (did you mean" in one_error(err)


def test_the_catalogue_has_the_reference_urls():
    from cyclekit.interop.pretrained import PRETRAINED

    assert PRETRAINED["cyclegan/horse2zebra"].url == (
        "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/horse2zebra.pth"
    )
    assert (
        PRETRAINED["pix2pix/edges2shoes"].url
        == "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/edges2shoes.pth"
    )
    assert len([k for k in PRETRAINED if k.startswith("cyclegan/")]) == 18
    assert len([k for k in PRETRAINED if k.startswith("pix2pix/")]) == 5
