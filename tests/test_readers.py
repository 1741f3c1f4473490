"""Every reader of a file that a user, a crash or another tool can damage gives one line, never a
traceback: fuzzed with generated bad files (hypothesis), from the user's side where a command reads
them (`cyclekit compare`, `cyclekit report`, `cyclekit translate`, a resumed training run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cyclekit.errors import CyclekitError
from cyclekit.records import load_json_object, read_json_lines, scores_by_direction
from tests.bundles import make_bundle
from tests.helpers import cli

# JSON values of every shape: what a damaged or foreign file may hold where an object belongs.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
# Whole file contents: JSON of any shape, JSON with its keys in the right places but values of the
# wrong kind, bytes that are not UTF-8, text that is not JSON, and deep nesting.
SCORES = st.fixed_dictionaries(
    {"directions": JSON | st.dictionaries(st.sampled_from(["AtoB", "BtoA"]), JSON, max_size=2)},
    optional={"epoch": JSON, "step": JSON, "baselines": JSON, "palettes": JSON, "value": JSON, "seconds": JSON},
)
CONTENT = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    SCORES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40),
    st.just(b"\xff\xfe\x00not utf-8"),
    st.just(b"[" * 5_000 + b"]" * 5_000),  # deeper than Python's recursion limit
    st.just(b'{"directions": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
)
LINES = st.lists(CONTENT, max_size=4).map(lambda parts: b"\n".join(parts) + b"\n")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Through the CLI, where each example runs a whole command (the report draws its plots).
FUZZ_CLI = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(content=CONTENT)
def test_json_readers_raise_one_clear_error_or_return_the_shape_asked_for(tmp_path: Path, content: bytes):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    try:
        value = load_json_object(path)
        table = scores_by_direction(value.get("directions"), f"{path}: directions")
    except CyclekitError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert isinstance(value, dict) and all(isinstance(v, dict) for v in table.values())


@pytest.mark.parametrize("depth", [1_000, 200_000])
def test_deep_nesting_is_one_line(tmp_path: Path, depth: int):
    from cyclekit.inference.bundle import read_bundle

    (tmp_path / "config.json").write_bytes(b"[" * depth + b"]" * depth)
    with pytest.raises(CyclekitError, match="nested too deeply"):
        read_bundle(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"format": "cyclekit-bundle", "x": ' + b"{" * depth + b"}" * depth)
    with pytest.raises(CyclekitError, match="config.json"):
        read_bundle(tmp_path)


@FUZZ
@given(content=LINES)
def test_json_lines_are_objects_up_to_the_first_damaged_line(tmp_path: Path, content: bytes):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(content)
    assert all(isinstance(row, dict) for row in read_json_lines(path))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run with every score file (evaluated each epoch, and by `cyclekit eval`)."""
    out = tmp_path_factory.mktemp("runs")
    settings_ = [
        "data.demo_train=4",
        "data.demo_test=2",
        "data.demo_size=32",
        "data.load_size=32",
        "data.crop_size=32",
        "model.generator.ngf=4",
        "model.generator.n_blocks=1",
        "model.discriminator.ndf=4",
        "train.epochs=1",
        "train.decay_epochs=0",
        "train.eval_every=1",
    ]
    args = ["train", "demo", "--out", str(out), "--quiet"]
    for item in settings_:
        args += ["--set", item]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CYCLEKIT_CACHE", str(out / "cache"))
        code, _, err = cli(*args)
        assert code == 0, err
        code, _, err = cli("eval", str(out / "demo"), "--no-fid")
        assert code == 0, err
    return out / "demo"


def _one_line_or_success(code: int, err: str) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 0 and not lines or code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err


@pytest.mark.parametrize("name", ["results.json", "evals.jsonl", "eval.json", "best.json", "timing.json"])
@FUZZ_CLI
@given(content=CONTENT)
def test_compare_and_report_on_damaged_score_files(finished_run: Path, tmp_path: Path, name: str, content: bytes):
    run = tmp_path / "run"
    if run.exists():
        shutil.rmtree(run)
    # Without the finished run's report.html: the page checked below is the one this report writes.
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("checkpoints", "bundle*", "report.html"))
    (run / name).write_bytes(content)
    if name != "results.json":
        (run / "results.json").unlink()  # so compare reads the damaged file
    _one_line_or_success(*cli("compare", str(run))[::2])
    code, _, err = cli("report", str(run))
    assert code == 0, err  # a damaged score file is a note on the page, never the end of the report
    page = (run / "report.html").read_text()
    assert page.rstrip().endswith("</html>") and 'id="losses"' in page and 'id="results"' in page, page[-300:]


@pytest.mark.parametrize("name", ["metrics.jsonl", "config.yaml"])
@FUZZ_CLI
@given(content=CONTENT)
def test_report_on_a_damaged_log_or_config(finished_run: Path, tmp_path: Path, name: str, content: bytes):
    run = tmp_path / "run"
    if run.exists():
        shutil.rmtree(run)
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("checkpoints", "bundle*", "report.html"))
    (run / name).write_bytes(content)
    code, _, err = cli("report", str(run))
    _one_line_or_success(code, err)
    assert (run / "report.html").is_file() == (code == 0)  # a page when it succeeds, none when it fails


@FUZZ_CLI
@given(content=CONTENT)
def test_a_damaged_bundle_config_is_one_line(tmp_path_factory: pytest.TempPathFactory, content: bytes):
    bundle = make_bundle(tmp_path_factory.mktemp("bundle"))
    (bundle / "config.json").write_bytes(content)
    (bundle.parent / "x.png").write_bytes(b"")
    code, _, err = cli("translate", str(bundle.parent / "x.png"), "--model", str(bundle), "-o", str(bundle.parent))
    assert code == 1 and err.count("error:") >= 1 and "Traceback" not in err
    code, _, err = cli("export", str(bundle))
    _one_line_or_success(code, err)
    assert code == 1


@FUZZ
@given(content=LINES)
def test_a_resumed_run_reads_a_damaged_metrics_log(finished_run: Path, tmp_path: Path, content: bytes):
    """The loop cuts metrics.jsonl back to its checkpoint on resume: damage there is not fatal."""
    from cyclekit.records import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(content)
    MetricsLog(path, keep_until_step=3)
    assert all(isinstance(r, dict) for r in read_json_lines(path))
