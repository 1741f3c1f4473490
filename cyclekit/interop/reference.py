"""Generator weights of the reference code (junyanz/pytorch-CycleGAN-and-pix2pix) into bundles.

The reference saves a bare state dict per network (``latest_net_G_A.pth``; its published
pretrained models, ``horse2zebra.pth``, are one generator each) and nothing about the
architecture that made it. The key names and shapes say most of it: cyclekit's ResNet and U-Net
generators are built layer for layer as the reference's (same ``model`` / ``conv_block`` names),
so the architecture is read off the keys, rebuilt, and checked by loading the weights strictly.
What the weights cannot say (the training size; a U-Net's dropout, which has no parameters) is
named, with the reference's default used.

Loading is ``torch.load(weights_only=True)``: a file holding anything but tensors and plain
containers (a pickled class, a function) is refused before any of it runs.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cyclekit.errors import CyclekitError
from cyclekit.inference.bundle import Bundle, NetworkEntry, TestTime, write_bundle
from cyclekit.inference.provenance import check_bundle_target, is_imported, safe_name
from cyclekit.models import build_model

REFERENCE_TRAIN_SIZE = 256  # --crop_size of the reference's train.py (load 286, crop 256)


@dataclass(frozen=True)
class Architecture:
    """A generator read off a state dict: cyclekit network name and options, and what was assumed."""

    arch: str
    options: dict[str, Any]
    assumed: tuple[str, ...] = ()  # what the weights cannot say, with the value taken


@dataclass(frozen=True)
class Imported:
    """One generator file, read and rebuilt."""

    path: Path
    direction: str
    architecture: Architecture
    network: nn.Module
    dropped: tuple[str, ...] = field(default=())  # keys dropped as the reference's loader drops them


# ---------------------------------------------------------------------------------------------
# reading


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A reference ``.pth``: a flat mapping of names to tensors, loaded with ``weights_only=True``.
    Anything else is refused in one line."""
    if not path.is_file():
        raise CyclekitError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:
            detail = re.search(r"WeightsUnpickler error: ([^\n]+)", str(exc))
            reason = detail.group(1).strip() if detail else "unreadable pickle"
            raise CyclekitError(f"{path}: not a PyTorch weights file ({reason})") from None
        raise CyclekitError(
            f"{path}: refused: it holds more than tensors ({found.group(1)}), which loading it would run; "
            "import reads weights only"
        ) from None
    except OSError as exc:
        if exc.errno is not None and exc.strerror:  # unreadable (permissions, a device error), not malformed
            raise CyclekitError(f"{path}: cannot read it ({exc.strerror})") from None
        raise CyclekitError(f"{path}: not a PyTorch weights file ({_reason(exc)})") from None
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler raises KeyError, EOFError,
        # RuntimeError, ValueError, IndexError, zipfile.BadZipFile, ... on files that are not weights
        raise CyclekitError(f"{path}: not a PyTorch weights file ({_reason(exc)})") from None
    if not isinstance(obj, Mapping):
        raise CyclekitError(f"{path}: expected a state dict (names -> tensors), got a {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            what = type(value).__name__ if isinstance(key, str) else f"key {key!r}"
            raise CyclekitError(
                f"{path}: expected a state dict of tensors, found {key!s}: {what} (a training checkpoint? "
                "import takes the reference's saved networks, e.g. latest_net_G_A.pth)"
            )
        state[key] = value
    if not state:
        raise CyclekitError(f"{path}: the state dict is empty")
    # DataParallel saves prefix every key with `module.` (the reference saves with it even on a CPU).
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _reason(exc: BaseException) -> str:
    """A short reason from an exception of the loader (a bare KeyError says only a number)."""
    text = " ".join(str(exc).split())[:120]
    if isinstance(exc, (KeyError, IndexError)) or not text:
        return f"unreadable pickle: {type(exc).__name__}" + (f" {text}" if text else "")
    return text


# ---------------------------------------------------------------------------------------------
# the architecture, from the keys


def infer_architecture(state: Mapping[str, torch.Tensor], dropout: float | None = None) -> Architecture:
    """ResNet or U-Net generator options that rebuild ``state``'s keys and shapes exactly.

    ``dropout``: a U-Net's dropout rate (its Dropout layers hold no weights); None takes the
    reference pix2pix default (0.5) and says so."""
    keys = set(state)
    if any(".conv_block." in k for k in keys) and "model.1.weight" in keys:
        return _resnet(state)
    if "model.model.0.weight" in keys:
        return _unet(state, dropout)
    if any(re.match(r"model\.\d+\.weight$", k) for k in keys) and state.get("model.0.weight") is not None:
        if state["model.0.weight"].shape[-1] == 4 and state["model.0.weight"].shape[0] != 1:
            raise CyclekitError("these are discriminator weights (a PatchGAN); import takes generators")
    sample = ", ".join(sorted(keys)[:3])
    raise CyclekitError(f"not a reference ResNet or U-Net generator (its keys begin {sample})")


def _resnet(state: Mapping[str, torch.Tensor]) -> Architecture:
    stem = state["model.1.weight"]  # Conv2d(in, ngf, 7)
    ngf, in_channels = int(stem.shape[0]), int(stem.shape[1])
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    head = max((int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.weight$", k))), default=-1)
    out_channels = int(state[f"model.{head}.weight"].shape[0])
    norm = "batch" if "model.2.weight" in state else "instance"
    first = blocks[0] if blocks else None
    options: dict[str, Any] = {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "ngf": ngf,
        "n_blocks": len(blocks),
        "norm": norm,
    }
    candidates = []
    for padding in ("reflect", "zero"):
        for block_dropout in (0.0, 0.5):
            for upsample in ("transpose", "resize"):
                candidates.append({**options, "padding": padding, "dropout": block_dropout, "upsample": upsample})
    arch = _first_fit("resnet", candidates, state)
    assumed = []
    if first is not None and arch.options["padding"] == "reflect":
        assumed.append("block padding reflect (replicate has the same weights; the reference's default is reflect)")
    if arch.options["upsample"] == "resize":
        assumed.append("resize upsampling with nearest neighbours (cyclekit's; a fork's bilinear resize differs)")
    return dataclasses.replace(arch, assumed=tuple(assumed))


def _unet(state: Mapping[str, torch.Tensor], dropout: float | None) -> Architecture:
    first = state["model.model.0.weight"]  # Conv2d(in, ngf, 4, 2)
    ngf, in_channels = int(first.shape[0]), int(first.shape[1])
    n_downs = max(k.count("model.") for k in state) - 1
    out_channels = int(state["model.model.3.weight"].shape[1]) if "model.model.3.weight" in state else 3
    norm = "batch" if any(re.search(r"\.model\.2\.weight$", k) for k in state) else "instance"
    assumed = []
    if dropout is None:
        dropout = 0.5
        if n_downs > 5:
            assumed.append("dropout 0.5 in the inner decoder blocks (not in the weights; the reference pix2pix's)")
    options = {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "ngf": ngf,
        "n_downs": n_downs,
        "norm": norm,
        "dropout": dropout,
    }
    arch = _first_fit("unet", [options], state)
    return dataclasses.replace(arch, assumed=tuple(assumed))


def _first_fit(arch: str, candidates: Sequence[dict[str, Any]], state: Mapping[str, torch.Tensor]) -> Architecture:
    """The first candidate whose network has exactly ``state``'s keys (old instance-norm running
    statistics aside) and shapes."""
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    closest: tuple[int, str] | None = None
    for options in candidates:
        try:
            net = build_model(arch, options, key="import")
        except Exception:  # noqa: BLE001 - a candidate that cannot be built is simply not it
            continue
        have = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        extra = {k for k in wanted if k not in have and not _instance_norm_stat(net, k)}
        missing = set(have) - set(wanted)
        wrong = {k for k in have.keys() & wanted.keys() if have[k] != wanted[k]}
        if not extra and not missing and not wrong:
            return Architecture(arch, dict(options))
        problems = len(extra) + len(missing) + len(wrong)
        first = sorted(extra | missing | wrong)[0]
        if closest is None or problems < closest[0]:
            closest = (problems, first)
    detail = f" (first mismatch at {closest[1]})" if closest else ""
    raise CyclekitError(f"the weights look like a reference {arch} generator, but no such network fits them{detail}")


def _instance_norm_stat(net: nn.Module, key: str) -> bool:
    """Whether ``key`` is a running statistic of an instance norm: PyTorch before 0.4 saved them,
    and the reference's loader drops them (its __patch_instance_norm_state_dict)."""
    module_name, _, leaf = key.rpartition(".")
    if leaf not in ("running_mean", "running_var", "num_batches_tracked"):
        return False
    try:
        module = net.get_submodule(module_name)
    except AttributeError:
        return False
    return isinstance(module, nn.InstanceNorm2d)


# ---------------------------------------------------------------------------------------------
# files -> networks -> a bundle


def direction_of(path: Path) -> str | None:
    """AtoB for the reference's G_A (its netG_A maps A to B), BtoA for G_B; None when the name says neither."""
    name = path.stem
    if re.search(r"(^|_)G_A$", name):
        return "AtoB"
    if re.search(r"(^|_)G_B$", name):
        return "BtoA"
    if re.search(r"(^|_)D(_[AB])?$", name):
        raise CyclekitError(f"{path}: a discriminator (by its name); import takes generators (G, G_A, G_B)")
    return None


def import_generator(path: Path, direction: str, dropout: float | None = None) -> Imported:
    state = read_state_dict(path)
    try:
        arch = infer_architecture(state, dropout)
    except CyclekitError as exc:
        raise CyclekitError(f"{path}: {exc}") from None
    net = build_model(arch.arch, arch.options, key="import")
    dropped = tuple(k for k in state if _instance_norm_stat(net, k))
    net.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=True)
    net.eval()
    return Imported(path, direction, arch, net, dropped)


def domains_from_name(name: str) -> dict[str, str] | None:
    """``horse2zebra`` -> {A: horse, B: zebra} (the reference's model and dataset names)."""
    parts = name.split("2")
    if len(parts) == 2 and all(re.fullmatch(r"[A-Za-z][\w-]*", p) for p in parts):
        return {"A": parts[0].split("_")[-1], "B": parts[1].split("_")[0]}
    return None


def build_bundle(
    generators: Sequence[Imported],
    *,
    domains: Mapping[str, str] | None,
    train_size: int | None,
    run: str,
) -> tuple[Bundle, dict[str, nn.Module]]:
    seen = [g.direction for g in generators]
    if len(set(seen)) != len(seen):
        raise CyclekitError(f"two files translate {seen[0]}; give one generator per direction")
    networks, modules, translates = {}, {}, {}
    for g in generators:
        key = f"G_{g.direction}"
        networks[key] = NetworkEntry(g.architecture.arch, g.architecture.options)
        modules[key] = g.network
        translates[g.direction] = key
    nets = list(modules.values())
    unet = any(g.architecture.arch == "unet" for g in generators)
    batch_norm = any(g.architecture.options.get("norm") == "batch" for g in generators)
    bundle = Bundle(
        recipe="pix2pix" if unet else "cyclegan",
        networks=networks,
        translates=translates,
        channels=int(generators[0].architecture.options["in_channels"]),
        size_multiple=max(int(n.size_multiple) for n in nets),
        min_size=max(int(n.min_size) for n in nets),
        domains=dict(domains or {"A": "A", "B": "B"}),
        # The reference's test.py runs the networks in training mode unless --eval: dropout on, and
        # batch norm with the test image's own statistics (Isola et al. 2017, Sec. 3.3).
        test_time=TestTime(dropout=unet, batch_norm="sample" if batch_norm else "running"),
        train_size=train_size,
        load_size=None,
        preprocess=None,
        run=run,
    )
    return bundle, modules


def import_files(
    paths: Sequence[Path],
    output: Path,
    *,
    domains: Mapping[str, str] | None = None,
    direction: str | None = None,
    train_size: int | None = None,
    dropout: float | None = None,
    overwrite: bool = False,
    check: Callable[[Sequence[Imported]], None] | None = None,
) -> tuple[Bundle, list[Imported]]:
    """Import one generator (``direction``, default AtoB) or a G_A/G_B pair into the bundle ``output``.

    ``output`` may hold an earlier import (replaced); another bundle only with ``overwrite``
    (`refuse_foreign_folder`). ``check``: raises CyclekitError for generators that are not the
    ones expected, before anything is written. The bundle's name (its ``run``) is ``output``'s
    folder name, made safe: outputs and web pages are named after it."""
    if not paths:
        raise CyclekitError("give one generator file, or the G_A and G_B files of a CycleGAN")
    if len(paths) > 2:
        raise CyclekitError(f"give at most two generator files (G_A and G_B), got {len(paths)}")
    refuse_foreign_folder(output, overwrite)
    named = [direction_of(p) for p in paths]
    if len(paths) == 2:
        if sorted(d or "" for d in named) != ["AtoB", "BtoA"]:
            raise CyclekitError(
                "with two files, name them as the reference does: ..._G_A.pth (A -> B) and ..._G_B.pth (B -> A)"
            )
        if direction is not None:
            raise CyclekitError("--direction is for a single generator file; a G_A/G_B pair has both")
        directions = [d or "" for d in named]
    else:
        directions = [direction or named[0] or "AtoB"]
    imported = [import_generator(p, d, dropout) for p, d in zip(paths, directions, strict=True)]
    if domains is None:
        stem = paths[0].parent.name if paths[0].stem.startswith(("latest_net_", "best_net_")) else paths[0].stem
        domains = domains_from_name(re.sub(r"_(pretrained|cyclegan|pix2pix)$", "", stem))
        if domains is not None and directions == ["BtoA"] and len(paths) == 1:
            domains = {"A": domains["B"], "B": domains["A"]}  # zebra2horse.pth given as --direction BtoA
    if check is not None:
        check(imported)
    run = safe_name(Path(output).absolute().name, safe_name(paths[0].stem))
    bundle, modules = build_bundle(imported, domains=domains, train_size=train_size, run=run)
    bundle = dataclasses.replace(bundle, imported_from=tuple(p.name for p in paths))
    written = write_bundle(output, bundle, modules)
    return written, imported


def refuse_foreign_folder(output: Path, overwrite: bool = False) -> None:
    """Write only into a new folder, an empty one, or a bundle an import wrote; another bundle (a
    run's trained one) only with ``overwrite``; never over a file or a folder of other files."""
    if output.exists() and not output.is_dir():
        raise CyclekitError(f"{output} exists and is not a folder; choose another -o")
    if output.is_dir() and any(output.iterdir()) and not (output / "config.json").is_file():
        raise CyclekitError(f"{output} holds files that are not a cyclekit bundle; choose another -o")
    check_bundle_target(output, "import", ours=is_imported, overwrite=overwrite)
