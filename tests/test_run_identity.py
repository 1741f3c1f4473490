"""Which run a training command means is decided in one place (`cyclekit.run.folder.RunIdentity`),
and the config migrations live in `cyclekit.migrate`, not in the recipes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cyclekit import migrate
from cyclekit.errors import CyclekitError
from cyclekit.recipe import Recipe
from cyclekit.recipes import RECIPES, load_config
from cyclekit.run import RunIdentity, identify_run


def _run_folder(tmp_path: Path, name: str = "x", checkpoint: bool = True) -> Path:
    run = tmp_path / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("recipe: gan\n")
    if checkpoint:
        (run / "checkpoints" / "last.pt").write_bytes(b"")
    return run


def test_a_config_names_the_run_by_its_name_under_out(tmp_path: Path):
    config = load_config("gan-ring", ["name=mine"])
    run = identify_run("gan-ring", out=tmp_path).settled(config)
    assert (run.run_dir, run.resume, run.by_name) == (tmp_path / "mine", None, False)
    assert run.checkpoint == tmp_path / "mine" / "checkpoints" / "last.pt"
    assert not run.continues()
    # without --out: the config's train.out_dir
    assert identify_run("gan-ring").settled(config).run_dir == Path(config.train.out_dir) / "mine"


def test_resuming_by_the_run_folder_alone_takes_its_config_folder_and_name(tmp_path: Path):
    folder = _run_folder(tmp_path)
    for resume in (str(folder), str(folder / "checkpoints" / "last.pt")):
        run = identify_run(None, resume=resume)
        assert run.by_name and run.config == str(folder / "config.yaml")
        assert (run.out, run.name, run.resumed_dir) == (folder.parent, "x", folder)
        assert run.continues() and run.settings_of == folder
        assert run.start() == folder / "checkpoints" / "last.pt"


def test_what_cannot_name_a_run_is_one_error_line(tmp_path: Path):
    folder = _run_folder(tmp_path)
    with pytest.raises(CyclekitError, match="train needs a preset or config file"):
        identify_run(None)
    with pytest.raises(CyclekitError, match="train needs a preset or config file"):
        identify_run(None, resume="auto")
    with pytest.raises(CyclekitError, match="--name y: --resume .* continues the run named x"):
        identify_run(None, resume=str(folder), name="y")


def test_a_fresh_run_into_a_folder_with_a_checkpoint_is_refused_and_overwrite_starts_over(tmp_path: Path):
    folder = _run_folder(tmp_path)
    run = RunIdentity(out=folder.parent, name="x")
    with pytest.raises(CyclekitError, match="already has a checkpoint"):
        run.start()
    assert dataclasses.replace(run, overwrite=True).start() is None
    assert dataclasses.replace(run, resume="auto").start() == folder / "checkpoints" / "last.pt"
    # --resume auto without a checkpoint, in a folder that holds only what a run writes first: afresh
    assert RunIdentity(out=tmp_path, name="new", resume="auto").start() is None
    early = _run_folder(tmp_path, "early", checkpoint=False)  # config.yaml and checkpoints/ only
    assert RunIdentity(out=early.parent, name="early", resume="auto").start() is None


def test_recipes_declare_no_migrations_and_the_tables_name_real_options():
    for name in (*migrate.MOVED_KEYS, *migrate.DROPPED_KEYS, *migrate.RECORDED_OPTIONS):
        assert name in RECIPES, name
    for name, spec in RECIPES.items():
        assert not hasattr(spec, "moved_keys") and not hasattr(spec, "dropped_keys"), name
        fields = {f.name for f in dataclasses.fields(spec.Options)}
        assert set(migrate.moved_keys(name).values()) <= fields, name
        assert set(migrate.RECORDED_OPTIONS.get(name, {})) <= fields, name
        for old in (*migrate.moved_keys(name), *migrate.dropped_keys(name)):
            assert old.split(".")[0] in ("loss", "train", "model", "optim"), old
    assert not any(k in vars(Recipe) for k in ("moved_keys", "dropped_keys"))
