"""A run folder: what cyclekit writes there, which run a command means (`RunIdentity`: the one
place where a training command's folder, and whether it starts afresh, continues a checkpoint or
starts over, is decided), and the settings that make a run the same run (`fingerprint`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclekit import migrate
from cyclekit.config import Config
from cyclekit.errors import CyclekitError
from cyclekit.recipes import config_from_dict
from cyclekit.train.loop import checkpoint_path, describe_differences

# What a run leaves in its folder (see README "train"); anything else there is not cyclekit's.
RUN_FILES = (
    "config.yaml",
    "checkpoints",
    "metrics.jsonl",
    "loss.png",
    "samples",
    "bundle",
    "bundle-best",
    "best.json",
    "eval.json",
    "evals.jsonl",
    "results.json",
    "report.html",
    "timing.json",
    "tensorboard",
)
# What a run writes before its first checkpoint: a run killed that early is started over by --resume auto.
EARLY_FILES = ("config.yaml", "checkpoints", "metrics.jsonl", "loss.png", "samples", "tensorboard")


# --------------------------------------------------------------------------------------------
# which run


@dataclass(frozen=True)
class RunIdentity:
    """Which run a training command means, and how it starts: built by `identify_run` from what the
    command names, then `settled` with the loaded config (its name and train.out_dir fill in what the
    command left out). Every training path asks it: `cyclekit train` (one process or a torchrun
    launch) and `train_run`."""

    # the preset or file the settings load from (the run's own config.yaml, resuming by name)
    config: str | None = None
    resume: str | None = None  # --resume as given: auto, a run folder or a checkpoint file
    overwrite: bool = False  # --overwrite: start over in a folder that holds a run
    out: Path | None = None  # the folder of run folders (--out; settled: else train.out_dir)
    name: str | None = None  # the run's name, its folder's (--name; settled: else the config's name)
    resumed_dir: Path | None = None  # the run folder --resume names (None: auto, or a checkpoint elsewhere)

    @property
    def by_name(self) -> bool:
        """Resuming a run by its folder alone: its own config.yaml, nothing else."""
        return self.resumed_dir is not None and self.config == str(self.resumed_dir / "config.yaml")

    def settled(self, config: Config) -> RunIdentity:
        """With the loaded ``config``'s name and train.out_dir where the command named none."""
        out = self.out if self.out is not None else Path(config.train.out_dir)
        return dataclasses.replace(self, out=out, name=config.name)

    @property
    def run_dir(self) -> Path:
        """Where the run's files go: OUT/NAME."""
        if self.out is None or self.name is None:
            raise RuntimeError("RunIdentity.run_dir before settled()")  # a programming error
        return self.out / self.name

    @property
    def checkpoint(self) -> Path:
        return checkpoint_path(self.run_dir)

    @property
    def settings_of(self) -> Path:
        """The run whose settings a resume continues: the folder --resume names, else the run's own."""
        return self.resumed_dir or self.run_dir

    def continues(self) -> bool:
        """Whether the command continues a run that has a checkpoint (then its settings must be the
        run's: `adopt_run_settings`)."""
        run = self.settings_of
        return self.resume is not None and (run / "config.yaml").is_file() and checkpoint_path(run).exists()

    def start(self) -> Path | None:
        """Where the run starts: None = afresh, else the checkpoint to continue (`resolve_resume`)."""
        return resolve_resume(self.run_dir, self.resume, self.overwrite)


def identify_run(
    config: str | None,
    resume: str | None = None,
    name: str | None = None,
    out: Path | None = None,
    overwrite: bool = False,
) -> RunIdentity:
    """The run a training command means, from what it names: a preset or file (``config``), or with
    none, the run folder ``resume`` names (resumed by name: its own config.yaml, folder and name).
    One error line when they do not fit together."""
    resumed_dir = run_dir_of(resume) if resume is not None else None
    if config is not None:
        return RunIdentity(config, resume, overwrite, out, name, resumed_dir)
    if resumed_dir is None:
        raise CyclekitError(
            "train needs a preset or config file (see `cyclekit presets`), or --resume RUN_DIR to continue a run"
        )
    if name is not None and name != resumed_dir.name:
        raise CyclekitError(f"--name {name}: --resume {resume} continues the run named {resumed_dir.name}")
    return RunIdentity(
        str(resumed_dir / "config.yaml"), resume, overwrite, resumed_dir.parent, resumed_dir.name, resumed_dir
    )


def run_dir_of(resume: str) -> Path | None:
    """The run folder a ``--resume`` value names: the folder itself, or the one holding the
    checkpoint file (RUN/checkpoints/last.pt); None for `auto` or a file outside a run."""
    if resume == "auto":
        return None
    path = Path(resume)
    if path.is_dir():
        return path
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def run_contents(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` (sorted; temporary files of interrupted writes left out)."""
    from cyclekit.atomic import OLD_SUFFIX, TEMP_SUFFIX

    if not run_dir.is_dir():
        return []
    return sorted(
        p.name for p in run_dir.iterdir() if not p.name.endswith((TEMP_SUFFIX, OLD_SUFFIX, ".tmp", ".tmp.png"))
    )


def _listing(names: list[str], limit: int = 4) -> str:
    shown = [f"{n}/" if n in ("checkpoints", "samples", "bundle", "bundle-best", "tensorboard") else n for n in names]
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def resolve_resume(run_dir: Path, resume: str | None, overwrite: bool) -> Path | None:
    """Where a run starts: `None` = afresh, else the checkpoint to continue.

    ``resume`` None: a fresh run, into a folder that is missing or empty, unless ``overwrite``
    (then cyclekit's own files there are replaced, anyone else's left alone). `auto`: the run
    dir's checkpoint; without one, a fresh run if the folder holds at most what a run writes
    before its first checkpoint. Otherwise a path to a checkpoint (or a run dir)."""
    ckpt = checkpoint_path(run_dir)
    if resume is None:
        contents = run_contents(run_dir)
        if contents and not overwrite:
            if ckpt.exists():
                raise CyclekitError(
                    f"{run_dir} already has a checkpoint: continue it with --resume auto, "
                    "start over with --overwrite, or pick another --name"
                )
            ours = [n for n in contents if n in RUN_FILES]
            others = [n for n in contents if n not in RUN_FILES]
            held = [f"a run ({_listing(ours)})"] if ours else []
            held += [f"files cyclekit did not write ({_listing(others)})"] if others else []
            raise CyclekitError(
                f"{run_dir} already holds {' and '.join(held)}: pick another --name (or --out), or start over "
                "there with --overwrite (cyclekit's own files are replaced, any others left alone)"
            )
        return None
    if resume == "auto":
        if ckpt.exists():
            return ckpt
        later = [n for n in run_contents(run_dir) if n in RUN_FILES and n not in EARLY_FILES]
        if later and not overwrite:
            raise CyclekitError(
                f"{run_dir} has no checkpoint to continue ({ckpt} is missing) but holds a trained run "
                f"({_listing(later)}): start over with --overwrite, or pick another --name"
            )
        return None
    path = Path(resume)
    if path.is_dir():
        path = checkpoint_path(path) if checkpoint_path(path).exists() else path / "last.pt"
    if not path.is_file():
        raise CyclekitError(f"checkpoint not found: {resume}")
    return path


def clear_run(run_dir: Path) -> None:
    """Before a fresh run in ``run_dir`` (empty, or --overwrite): remove what an earlier run of
    cyclekit left (the fixed names a run writes, and the sample grids), nothing else."""

    for name in (
        "metrics.jsonl",
        "loss.png",
        "eval.json",
        "evals.jsonl",
        "results.json",
        "report.html",
        "best.json",
        "timing.json",
    ):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("last.pt", "best.pt", "outputs.json"):
        (run_dir / "checkpoints" / name).unlink(missing_ok=True)
    for grid in (run_dir / "samples").glob("step_*.png"):
        grid.unlink()
    for folder in ("bundle", "bundle-best", "tensorboard"):
        target = run_dir / folder
        if target.is_dir() and not target.is_symlink():
            # Only the bundle's own files; exports and other files stay where they are.
            owned = [p for p in target.iterdir() if p.name == "config.json" or p.suffix == ".safetensors"]
            if folder == "tensorboard":
                owned = [p for p in target.iterdir() if p.name.startswith("events.out.tfevents.")]
            for f in owned:
                f.unlink()


def same_file(a: Path | None, b: Path) -> bool:
    try:
        return a is not None and b.exists() and a.resolve() == b.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# the same run: settings


def fingerprint(config: Config) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes it (its layout's version:
    `cyclekit.migrate.FINGERPRINT_VERSION`)."""
    d = config.to_dict()
    return {
        "version": migrate.FINGERPRINT_VERSION,
        "recipe": d["recipe"],
        "seed": d["seed"],
        "model": d["model"],
        "data": {k: v for k, v in config.data.flat().items() if k not in ("root", "workers", "strict")},
        "optim": d["optim"],
        "train": {k: d["train"][k] for k in ("epochs", "decay_epochs")},
        "options": d.get(config.recipe, {}),
    }


def upgrade_fingerprint(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's fingerprint in today's layout (`cyclekit.migrate.upgrade_fingerprint`)."""
    return migrate.upgrade_fingerprint(stored, lambda raw: fingerprint(config_from_dict(raw)))


def load_run_config(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A run folder's config.yaml, ready for this machine: ``train.device`` auto (a run trained
    on a GPU is evaluated or rebuilt on a CPU just as well) unless ``overrides`` say otherwise."""
    from cyclekit.recipes import load_config

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise CyclekitError(f"{run_dir} is not a run folder: it has no config.yaml")
    return load_config(str(path), ["train.device=auto", *overrides])


def check_own_config(config: Config, path: Path) -> None:
    """A run started from its own config.yaml must not drift from it (the file is never rewritten)."""
    from cyclekit.config import read_yaml

    raw = read_yaml(path)
    raw.setdefault("name", config.name)
    written = fingerprint(config_from_dict(raw))
    wanted = fingerprint(config)
    if written != wanted:
        diff = [f"{k}" for k in wanted if written.get(k) != wanted[k]]
        raise CyclekitError(
            f"{path} is the config this run was started from and is never rewritten, but the settings given "
            f"differ from it ({', '.join(diff)}); drop the --set overrides, or train under another --name"
        )


def adopt_run_settings(config: Config, run_dir: Path, source: Path | None = None) -> Config:
    """Resuming ``run_dir``: ``config`` (the preset or file given, with --set) must describe the run
    (else one error naming every setting that differs, with both values); the data folder the run
    recorded is used unless another is given, so a resume never looks for the data elsewhere."""
    if same_file(source, run_dir / "config.yaml"):
        check_own_config(config, run_dir / "config.yaml")
    stored = load_run_config(run_dir)
    if fingerprint(stored) != fingerprint(config):
        differences = describe_differences(fingerprint(stored), fingerprint(config))
        raise CyclekitError(
            f"{run_dir} was trained with other settings: {differences}; "
            f"continue it as it was with `cyclekit train --resume {run_dir}`, or start a new run (--name)"
        )
    if config.data.root is None and stored.data.root is not None:
        config = dataclasses.replace(config, data=config.data.with_root(stored.data.root))
    return config


def replace_train(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
