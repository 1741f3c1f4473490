"""The `cyclekit` command as a package (issue 24, item 6): one module per command group, and the
library logic the commands used to hold, now in the library where other callers can use it."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from cyclekit.errors import CyclekitError
from tests.bundles import make_bundle, make_sampler_bundle

COMMANDS = {  # module of cyclekit.cli -> the commands it registers
    "train": {"train", "bundle", "presets", "recipes"},
    "sample": {"sample"},
    "data": {"list", "download", "check", "demo"},
    "interop": {"import", "list", "download"},
    "translate": {"translate", "export"},
    "bench": {"bench"},
    "evaluate": {"eval", "compare", "report"},
}


def test_every_command_lives_in_its_group_module_and_help_lists_them_in_order():
    import typer

    from cyclekit.cli import app

    root = typer.main.get_command(app)
    found: dict[str, set[str]] = {}

    def walk(cmd, name: str) -> None:
        if hasattr(cmd, "commands"):
            for sub, child in cmd.commands.items():
                walk(child, sub)
            return
        module = cmd.callback.__wrapped__.__module__ if hasattr(cmd.callback, "__wrapped__") else None
        module = module or cmd.callback.__module__
        found.setdefault(module.removeprefix("cyclekit.cli."), set()).add(name)

    walk(root, "")
    assert found == COMMANDS
    assert list(root.commands) == [
        *("train", "bundle", "presets", "recipes", "sample", "import", "translate", "export", "bench", "eval"),
        *("compare", "report", "data", "pretrained"),
    ]


def test_the_entry_points_still_resolve():
    import cyclekit.__main__  # noqa: F401  (python -m cyclekit)
    import cyclekit.cli.__main__  # noqa: F401  (python -m cyclekit.cli)
    from cyclekit.cli import EXIT_ERROR, EXIT_INTERRUPTED, OUT_OF_MEMORY, app, fail, friendly, main

    assert callable(main) and callable(fail) and callable(friendly) and app is not None
    assert (EXIT_ERROR, EXIT_INTERRUPTED) == (1, 130) and OUT_OF_MEMORY.startswith("out of memory")
    text = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'cyclekit = "cyclekit.cli:main"' in text


# ---------------------------------------------------------------------------------------------
# the job's rank, from the environment (cyclekit.train.launch)


def test_rank_and_job_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    from cyclekit.cli.common import rank_prefix
    from cyclekit.train.launch import in_job, job_rank, lost_peer

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (job_rank(), in_job(), rank_prefix()) == (0, False, "")
    assert not lost_peer(RuntimeError("Connection reset by peer"))  # alone, no peer to lose
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (job_rank(), in_job(), rank_prefix()) == (2, True, "rank 2: ")
    assert lost_peer(RuntimeError("NCCL error: remote process exited"))
    assert not lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    monkeypatch.setenv("RANK", "x")  # garbage: treated as the default, never a traceback
    assert job_rank() == 0


# ---------------------------------------------------------------------------------------------
# score records (cyclekit.evaluation.results)


def test_score_records_and_where_they_may_be_written(tmp_path: Path):
    from cyclekit.evaluation.results import check_score_output, is_score_record

    record = tmp_path / "results.json"
    record.write_text(json.dumps({"directions": {}}))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"rows": [], "columns": []}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"name": "not scores"}))
    (tmp_path / "broken.json").write_bytes(b"\xff{")
    assert is_score_record(record) and is_score_record(table)
    assert not is_score_record(other) and not is_score_record(tmp_path / "broken.json")
    assert not is_score_record(tmp_path / "absent.json")
    check_score_output(record, overwrite=False)
    check_score_output(tmp_path / "new.json", overwrite=False)
    check_score_output(other, overwrite=True)
    with pytest.raises(CyclekitError, match="not a score record cyclekit wrote"):
        check_score_output(other, overwrite=False)
    with pytest.raises(CyclekitError, match="must end in .json"):
        check_score_output(tmp_path / "scores.csv", overwrite=False)
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(CyclekitError, match="is a folder"):
        check_score_output(tmp_path / "folder.json", overwrite=True)


def test_score_lines():
    from cyclekit.evaluation.results import format_results, format_sampling

    assert format_sampling({"accuracy": 0.91234, "covered": 10, "note": "text is left out"}) == (
        "accuracy 0.9123  covered 10"
    )
    results = {
        "directions": {"AtoB": {"l1": 0.123456, "psnr": 20.0}, "BtoA": {}},
        "counts": {
            "AtoB": {"translated": 5, "reference_split": "testB"},
            "BtoA": {"sources": 3, "reference_split": "testA", "reference": 4},
        },
        "not_scored": {"BtoA": "no reference"},
        "baselines": {"AtoB": {"identity": {"l1": 0.5}}},
        "worse_than_mean_target": {"AtoB": ["l1"]},
    }
    lines = format_results(results).splitlines()
    assert lines[0] == "AtoB: 5 images, reference testB"
    assert lines[1].split() == ["model", "l1", "0.1235", "psnr", "20"]
    assert lines[2].split() == ["identity", "l1", "0.5"]
    assert lines[3] == "BtoA: 3 images, reference testA (4 images): not scored"
    assert lines[4].startswith("  warning: AtoB scores worse than the mean-target image on l1")


def test_the_test_data_of_a_run_or_a_bare_bundle(tmp_path: Path):
    from cyclekit.evaluation.results import eval_data, run_of

    bundle = make_bundle(tmp_path / "bundle")
    assert run_of(bundle) is None
    with pytest.raises(CyclekitError, match="bundle without its run: pass --data DIR"):
        eval_data(bundle, None, None, None)
    data = eval_data(bundle, None, tmp_path / "data", 48)
    assert (data.root, data.load_size, data.crop_size, data.channels) == (tmp_path / "data", 48, 48, 3)
    (tmp_path / "config.yaml").write_text("name: x\n")
    assert run_of(bundle) == tmp_path


def test_a_new_record_refreshes_the_page_only_of_a_run_that_logged_training(tmp_path: Path):
    from cyclekit.evaluation.results import refresh_report

    assert refresh_report(tmp_path) is None and not (tmp_path / "report.html").exists()


# ---------------------------------------------------------------------------------------------
# inference and files


def test_which_models_sample(tmp_path: Path):
    from cyclekit.inference.bundle import samples

    assert samples(make_sampler_bundle(tmp_path / "gan"))
    assert not samples(make_bundle(tmp_path / "cyclegan"))
    assert not samples(tmp_path / "absent")  # the translation path reports what is wrong with it


def test_one_output_file_is_replaced_only_when_asked(tmp_path: Path):
    from cyclekit.atomic import refuse_existing

    target = tmp_path / "samples.png"
    refuse_existing(target, overwrite=False)
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a dangling link is there too
    for there in (tmp_path / "gone.png", target):
        target.write_bytes(b"x")
        refuse_existing(there, overwrite=True)
        with pytest.raises(CyclekitError, match="already exists; pass --overwrite"):
            refuse_existing(there, overwrite=False)


def test_stale_exports_of_a_folder_that_is_not_there(tmp_path: Path):
    from cyclekit.inference.provenance import stale_exports_after

    bundle = make_bundle(tmp_path / "bundle")
    assert stale_exports_after(bundle, tmp_path / "absent", []) == []
    assert stale_exports_after(bundle, None, []) == []  # nothing exported yet


def test_the_oom_spellings_stay_with_the_error_boundary():
    from cyclekit.cli.common import _is_out_of_memory

    assert _is_out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not _is_out_of_memory(RuntimeError("shapes"))
