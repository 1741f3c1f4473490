"""`cyclekit bundle`: a run's inference bundle rebuilt from one of its checkpoints."""

from __future__ import annotations

from pathlib import Path

from cyclekit.errors import CyclekitError
from cyclekit.recipes import get_recipe
from cyclekit.run.folder import fingerprint, load_run_config, upgrade_fingerprint
from cyclekit.train.loop import CHECKPOINT_NAME


def rebuild_bundle(
    run_dir: Path,
    checkpoint: Path | None = None,
    best: bool = False,
    output: Path | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Write the inference bundle of a checkpoint (default: the run's last.pt, or with ``best`` its
    best.pt) into ``output`` (default: RUN/bundle, or RUN/bundle-best), replacing the bundle there
    as a whole. Needs the run's config.yaml, not its data. Returns (bundle folder, step).

    Only the run's own bundle/ and bundle-best/ are replaced as a matter of course; a bundle
    elsewhere (another run's, an import) only with ``overwrite``, and never a file or a folder of
    other files."""
    from cyclekit.atomic import recover_folder
    from cyclekit.inference.bundle import BUNDLE_FORMAT, with_class_names, write_bundle
    from cyclekit.inference.provenance import check_bundle_target
    from cyclekit.nn.weights import load_weights
    from cyclekit.train.checkpoint import load_checkpoint

    config = load_run_config(run_dir)
    ckpt = checkpoint or run_dir / "checkpoints" / ("best.pt" if best else CHECKPOINT_NAME)
    if not ckpt.is_file():
        why = "the run never had a best epoch (train.eval_every)" if best and checkpoint is None else "it is missing"
        raise CyclekitError(f"no checkpoint to rebuild the bundle from: {ckpt} ({why})")
    state = load_checkpoint(ckpt)
    stored = state.get("fingerprint") or None
    if stored is not None and upgrade_fingerprint(stored) != fingerprint(config):
        raise CyclekitError(f"{ckpt} was not written by the run of {run_dir / 'config.yaml'} (its settings differ)")
    out = output or run_dir / ("bundle-best" if best else "bundle")
    recover_folder(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise CyclekitError(f"{out} exists and is not a bundle folder; pick another -o")
    if (out / "config.json").is_file() and BUNDLE_FORMAT not in (out / "config.json").read_text(errors="replace"):
        raise CyclekitError(f"{out}/config.json is not a cyclekit bundle's; pick another -o")
    own = {(run_dir / name).resolve() for name in ("bundle", "bundle-best")}
    check_bundle_target(out, "bundle", ours=lambda _: out.resolve() in own, overwrite=overwrite)
    recipe = get_recipe(config.recipe)
    nets = recipe.build_networks(config)
    weights = state["recipe"]
    for key, net in nets.items():
        if key not in weights:
            raise CyclekitError(f"{ckpt} has no {key}; it was written by another recipe or configuration")
        load_weights(net, weights[key], f"{ckpt} ({key})")
    bundle, modules = recipe.make_bundle(config, nets, int(state["step"]), int(state["epoch"]))
    write_bundle(out, with_class_names(bundle, _recorded_class_names(out, run_dir)), modules)
    return out, int(state["step"])


def _recorded_class_names(*folders: Path) -> list[str]:
    """The class names a bundle of the run recorded from its data (the config alone does not know
    them): from the first of ``folders`` (or its bundle/ and bundle-best/) that names classes."""
    from cyclekit.inference.bundle import read_bundle

    for folder in folders:
        for candidate in (folder, folder / "bundle", folder / "bundle-best"):
            if not (candidate / "config.json").is_file():
                continue
            try:
                samples = read_bundle(candidate).samples
            except CyclekitError:
                continue
            if samples is not None and samples.classes:
                return list(samples.classes)
    return []
