"""`cyclekit export --web`: the static page that translates in the browser with onnxruntime-web.

No test reaches the network. By default an export copies onnxruntime-web from cyclekit's cache,
downloading the npm tarball once: here every test gets an empty cache and a stand-in tarball
(file names only) served from 127.0.0.1, with the pinned integrity patched to match it. The
browser test serves a tarball of the real onnxruntime-web from npm (scripts/test.sh installs it
into .cache/npm), exports by default, and runs the page offline in Debian's chromium (every request
off 127.0.0.1 is blocked), checking its pixels against onnxruntime in Python.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from cyclekit.export import ortweb
from cyclekit.export.ortweb import ORT_NPM_INTEGRITY, ORT_NPM_TARBALL, URL_ENV
from cyclekit.export.web import (
    MANIFEST,
    ORT_CDN_BASE,
    ORT_CDN_INTEGRITY,
    ORT_CDN_SCRIPT,
    ORT_WEB_VERSION,
)
from cyclekit.inference import Translator
from tests.bundles import REPO, make_bundle, make_pix2pix_bundle, photo
from tests.helpers import BROWSER_FLAGS, chromium_or_skip, cli, one_error, skip_or_fail_in_ci

# Where scripts/test.sh installs onnxruntime-web; CYCLEKIT_ORT_WEB_DIR names another dist folder.
NPM_DIST = REPO / ".cache" / "npm" / "node_modules" / "onnxruntime-web" / "dist"
JSEP = "ort-wasm-simd-threaded.jsep"


def fake_ort_dist(folder: Path, complete: bool = True) -> Path:
    """A stand-in for onnxruntime-web's dist folder: the file names and the banner the export reads."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ort.min.js").write_text(
        f'/*!\n * ONNX Runtime Web v{ORT_WEB_VERSION}\n */\nvar ort=1;import("{JSEP}.mjs");\n'
    )
    (folder / f"{JSEP}.mjs").write_text("export default 1;\n")
    if complete:
        (folder / f"{JSEP}.wasm").write_bytes(b"\0asm\1\0\0\0")
    return folder


def export(*args: str) -> tuple[int, str, str]:
    return cli("export", *args, "--opset", "17")  # opset 17: the TorchScript exporter, fast


@contextlib.contextmanager
def serve(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``root`` over http from 127.0.0.1: (its URL, the paths requested so far)."""
    hits: list[str] = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            super().do_GET()

    root.mkdir(parents=True, exist_ok=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port_url() -> str:
    """A URL nothing answers: as offline as it gets, and at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/onnxruntime-web-{ORT_WEB_VERSION}.tgz"


def npm_tarball(dist: Path, target: Path, names: tuple[str, ...] | None = None) -> str:
    """An npm-style tarball (package/package.json, package/dist/...) of ``dist``'s files (or
    ``names`` of them); returns its sha512 integrity as npm writes it."""
    files = names or tuple(sorted(p.name for p in dist.iterdir() if p.is_file()))
    package = json.dumps({"name": "onnxruntime-web", "version": ORT_WEB_VERSION}).encode()
    with tarfile.open(target, "w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("package/package.json")
        info.size = len(package)
        tf.addfile(info, io.BytesIO(package))
        for name in files:
            tf.add(dist / name, f"package/dist/{name}")
    return "sha512-" + base64.b64encode(hashlib.sha512(target.read_bytes()).digest()).decode()


@dataclass
class Registry:
    """The stand-in npm registry every test gets (see the module docstring)."""

    url: str  # the tarball's URL ($CYCLEKIT_ORT_WEB_URL)
    tarball: Path
    hits: list[str]
    cache: Path  # where the export keeps onnxruntime-web

    def publish(self, dist: Path, monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...] | None = None) -> None:
        monkeypatch.setattr(ortweb, "ORT_NPM_INTEGRITY", npm_tarball(dist, self.tarball, names))


@pytest.fixture(autouse=True)
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    with serve(tmp_path / "npm") as (url, hits):
        reg = Registry(
            url + "ort.tgz",
            tmp_path / "npm" / "ort.tgz",
            hits,
            tmp_path / "cache" / "onnxruntime-web" / ORT_WEB_VERSION,
        )
        reg.publish(fake_ort_dist(tmp_path / "npm-src"), monkeypatch)
        monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv(URL_ENV, reg.url)
        yield reg


def without_download_note(err: str) -> str:
    return "\n".join(line for line in err.splitlines() if not line.startswith("downloading onnxruntime-web"))


@pytest.fixture(scope="module")
def cyclegan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("cyclegan") / "bundle").parent


@pytest.fixture(scope="module")
def pix2pix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pix2pix_bundle(tmp_path_factory.mktemp("pix2pix") / "bundle").parent


# --- the files --------------------------------------------------------------------------------------


def test_web_export_files_and_metadata(cyclegan: Path, tmp_path: Path):
    dist = fake_ort_dist(tmp_path / "node_modules" / "onnxruntime-web" / "dist")
    web = tmp_path / "web"
    code, out, err = export(str(cyclegan), "--web", str(web), "--ort-dir", str(dist.parent))  # the package folder
    assert code == 0, err
    assert sorted(p.name for p in web.iterdir()) == sorted(
        [
            "G_AtoB.onnx",
            "G_BtoA.onnx",
            "index.html",
            "cyclekit-web.js",
            MANIFEST,
            "ort.min.js",
            f"{JSEP}.mjs",
            f"{JSEP}.wasm",
        ]
    )
    assert f"wrote {web / 'index.html'} (AtoB, BtoA; onnxruntime-web {ORT_WEB_VERSION} copied from {dist}" in out
    assert f"python -m http.server -d {web}" in out

    manifest = json.loads((web / MANIFEST).read_text())
    assert manifest["max_side"] == 1024 and manifest["title"] == "tiny: horse \u2194 zebra"
    assert manifest["onnxruntime_web"] == {
        "version": ORT_WEB_VERSION, "script": "ort.min.js", "wasm_paths": "./", "source": "local", "webgpu": True,
    }  # fmt: skip
    assert [m["direction"] for m in manifest["models"]] == ["AtoB", "BtoA"]
    for entry in manifest["models"]:
        model = onnx.load(str(web / entry["file"]))
        assert entry["metadata"] == {p.key: p.value for p in model.metadata_props}  # copied as written
        assert entry["metadata"]["size_multiple"] == "4" and entry["metadata"]["min_size"] == "8"
        assert (
            entry["input"] == "input"
            and entry["sha256"] == hashlib.sha256((web / entry["file"]).read_bytes()).hexdigest()
        )
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((web / name).read_bytes()).hexdigest() == sha, name
    assert set(manifest["files"]) == {"index.html", "cyclekit-web.js", "ort.min.js", f"{JSEP}.mjs", f"{JSEP}.wasm"}
    page = (web / "index.html").read_text()
    assert '<script src="ort.min.js"></script>' in page and "cdn.jsdelivr" not in page
    assert "<title>tiny: horse \u2194 zebra</title>" in page

    # Again, from the CDN and with another cap: its own files are replaced, the local copy removed.
    code, out, err = export(str(cyclegan), "--web", str(web), "--web-max-side", "640", "--cdn")
    assert code == 0, err
    assert "from the jsDelivr CDN; images over 640 px are scaled down" in out
    assert not (web / "ort.min.js").exists() and not (web / f"{JSEP}.wasm").exists()
    page = (web / "index.html").read_text()
    url = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_WEB_VERSION}/dist/ort.min.js"
    assert f'<script src="{url}" integrity="{ORT_CDN_INTEGRITY}" crossorigin="anonymous"></script>' in page
    manifest = json.loads((web / MANIFEST).read_text())
    assert manifest["max_side"] == 640 and manifest["onnxruntime_web"]["wasm_paths"] == ORT_CDN_BASE
    assert manifest["far_larger"] == 2  # as `cyclekit translate` (cyclekit.inference.files.FAR_LARGER)


def test_default_copies_onnxruntime_web_fetched_once(cyclegan: Path, registry: Registry, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    # No --ort-dir, no --cdn: the npm tarball is downloaded into the cache (once), verified, and
    # the page's three files copied next to it.
    web = tmp_path / "web"
    code, out, err = export(str(cyclegan), "--web", str(web), "--direction", "AtoB")
    assert code == 0, err
    assert registry.hits == ["/ort.tgz"] and f"downloading onnxruntime-web {ORT_WEB_VERSION}" in err
    runtime = ["ort.min.js", f"{JSEP}.mjs", f"{JSEP}.wasm"]
    assert sorted(p.name for p in web.iterdir()) == sorted(
        ["G_AtoB.onnx", "index.html", "cyclekit-web.js", MANIFEST, *runtime]
    )
    fake = tmp_path / "npm-src"
    assert all((web / n).read_bytes() == (fake / n).read_bytes() for n in runtime)
    assert f"onnxruntime-web {ORT_WEB_VERSION} copied from {registry.cache}" in out
    manifest = json.loads((web / MANIFEST).read_text())
    assert manifest["onnxruntime_web"]["source"] == "local" and manifest["onnxruntime_web"]["script"] == "ort.min.js"
    page = (web / "index.html").read_text()
    assert '<script src="ort.min.js"></script>' in page and "cdn.jsdelivr" not in page and "http" not in page
    # the cache keeps only what the page needs (and package.json); the tarball is gone
    assert sorted(p.name for p in registry.cache.parent.iterdir()) == [ORT_WEB_VERSION]
    assert sorted(p.name for p in registry.cache.iterdir()) == sorted(
        [*runtime, "package.json", "cyclekit-ort-web.json"]
    )

    # Offline now: the cache serves a second page, with no request.
    monkeypatch.setenv(URL_ENV, closed_port_url())
    code, out, err = export(str(cyclegan), "--web", str(tmp_path / "web2"), "--direction", "AtoB")
    assert code == 0, err
    assert registry.hits == ["/ort.tgz"] and "downloading" not in err
    assert (tmp_path / "web2" / f"{JSEP}.wasm").read_bytes() == (fake / f"{JSEP}.wasm").read_bytes()

    # A damaged cache is not used: fetched again (here: offline, so one line says what to do).
    (registry.cache / f"{JSEP}.wasm").write_bytes(b"damaged")
    code, out, err = export(str(cyclegan), "--web", str(tmp_path / "web3"), "--direction", "AtoB")
    line = one_error(without_download_note(err))
    assert code == 1 and "could not be downloaded" in line and "--ort-dir" in line and "--cdn" in line, err
    monkeypatch.setenv(URL_ENV, registry.url)
    code, out, err = export(str(cyclegan), "--web", str(tmp_path / "web3"), "--direction", "AtoB")
    assert code == 0 and registry.hits == ["/ort.tgz"] * 2, err
    assert (registry.cache / f"{JSEP}.wasm").read_bytes() == (fake / f"{JSEP}.wasm").read_bytes()


def test_runtime_from_a_local_tarball(registry: Registry, monkeypatch: pytest.MonkeyPatch):
    # $CYCLEKIT_ORT_WEB_URL may name a .tgz file (e.g. from `npm pack`); `python -m cyclekit.export.ortweb`
    # (what scripts/setup.sh runs) fetches ahead of time.
    monkeypatch.setenv(URL_ENV, str(registry.tarball))
    assert ortweb.tarball_url() == registry.tarball.resolve().as_uri()
    assert ortweb.main() == 0 and ortweb.cached() == registry.cache and registry.hits == []
    assert ortweb.main() == 0  # again: from the cache


def test_pix2pix_page_offers_its_one_direction(pix2pix: Path, tmp_path: Path):
    code, out, err = export(str(pix2pix), "--web", str(tmp_path / "web"))
    assert code == 0, err
    manifest = json.loads((tmp_path / "web" / MANIFEST).read_text())
    assert [m["file"] for m in manifest["models"]] == ["G_BtoA.onnx"]
    assert manifest["title"] == "p2p: label \u2192 photo" and manifest["models"][0]["metadata"]["size_multiple"] == "32"


def _sampler_bundle(folder: Path) -> Path:
    from cyclekit.inference.bundle import Bundle, NetworkEntry, Sampling, write_bundle
    from cyclekit.models import build_model, model_options

    opts = model_options("dcgan_g", {"image_size": 32, "latent_dim": 8, "ngf": 4})
    bundle = Bundle(recipe="gan", networks={"G": NetworkEntry("dcgan_g", opts)}, samples=Sampling("G", 8), run="g")
    write_bundle(folder, bundle, {"G": build_model("dcgan_g", opts)})
    return folder


@pytest.mark.parametrize(
    "case",
    ["empty-ort-dir", "no-wasm", "missing-ort-dir", "sampler", "foreign-page", "foreign-manifest", "edited-page",
     "ort-dir-alone", "cdn-alone", "cdn-and-ort-dir", "o-and-web", "tiny-cap", "offline", "wrong-tarball",
     "tarball-without-wasm"],
)  # fmt: skip
def test_web_errors_are_one_line_before_any_work(case: str, cyclegan: Path, tmp_path: Path, registry: Registry,
                                                 monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    web = tmp_path / "web"
    run, extra, expected = str(cyclegan), ["--web", str(web)], ""
    if case == "empty-ort-dir":
        (tmp_path / "empty").mkdir()
        extra += ["--ort-dir", str(tmp_path / "empty")]
        expected = (
            f"--ort-dir {tmp_path / 'empty'}: not an onnxruntime-web dist folder (no ort.min.js; no ort.wasm.min.js)"
        )
    elif case == "no-wasm":
        extra += ["--ort-dir", str(fake_ort_dist(tmp_path / "dist", complete=False))]
        expected = f"ort.min.js loads {JSEP}.wasm, not there"
    elif case == "missing-ort-dir":
        extra += ["--ort-dir", str(tmp_path / "nope")]
        expected = f"--ort-dir {tmp_path / 'nope'}: no such folder"
    elif case == "sampler":
        run = str(_sampler_bundle(tmp_path / "gan"))
        expected = "holds a generator that samples, not translates; the web page translates images"
    elif case == "foreign-page":
        web.mkdir()
        (web / "index.html").write_text("my own page")
        expected = f"{web / 'index.html'} already exists and was not written by cyclekit; move it"
    elif case == "foreign-manifest":
        web.mkdir()
        (web / MANIFEST).write_text('{"mine": 1}')
        expected = f"{web / MANIFEST} already exists and was not written by `cyclekit export --web`"
    elif case == "edited-page":
        code, _, err = export(run, "--web", str(web), "--direction", "AtoB")
        assert code == 0, err
        (web / "index.html").write_text((web / "index.html").read_text() + "<!-- my edit -->")
        (web / "G_AtoB.onnx").unlink()
        expected = "index.html already exists and was changed since `cyclekit export --web` wrote it"
    elif case == "ort-dir-alone":
        extra = ["--ort-dir", str(tmp_path)]
        expected = "--ort-dir, --cdn and --web-max-side go with --web DIR"
    elif case == "cdn-alone":
        extra = ["--cdn"]
        expected = "--ort-dir, --cdn and --web-max-side go with --web DIR"
    elif case == "cdn-and-ort-dir":
        extra += ["--cdn", "--ort-dir", str(fake_ort_dist(tmp_path / "dist"))]
        expected = "--cdn and --ort-dir both say where onnxruntime-web comes from; pass one of them"
    elif case == "offline":  # an empty cache and no network
        monkeypatch.setenv(URL_ENV, closed_port_url())
        expected = (
            f"the web page needs onnxruntime-web {ORT_WEB_VERSION}, which is not in the cache ({registry.cache}) and "
            "could not be downloaded from http://127.0.0.1:"
        )
    elif case == "wrong-tarball":  # not the pinned package
        monkeypatch.setattr(ortweb, "ORT_NPM_INTEGRITY", ORT_NPM_INTEGRITY)
        expected = f"onnxruntime-web {ORT_WEB_VERSION} from {registry.url} does not match the pinned integrity"
    elif case == "tarball-without-wasm":
        registry.publish(tmp_path / "npm-src", monkeypatch, names=("ort.min.js", f"{JSEP}.mjs"))
        expected = f"ort.min.js loads {JSEP}.wasm, which the package does not have"
    elif case == "o-and-web":
        extra += ["-o", str(tmp_path / "elsewhere")]
        expected = "-o and --web both name the folder for the .onnx files"
    elif case == "tiny-cap":
        extra += ["--web-max-side", "8"]
        expected = "--web-max-side 8: use 16..8192 px"
    before = time.perf_counter()
    code, out, err = export(run, *extra)
    assert code == 1 and expected in one_error(without_download_note(err)), err
    if case in ("offline", "wrong-tarball"):  # and says what to do instead
        assert "pass --ort-dir DIR" in err and "or --cdn" in err
    if case in ("offline", "wrong-tarball", "tarball-without-wasm"):
        assert not registry.cache.parent.exists() or not any(registry.cache.parent.iterdir())  # nothing kept
        assert not web.exists()
    assert time.perf_counter() - before < 5  # refused before the export's work
    assert not list(web.glob("*.onnx")) and not list(tmp_path.glob("*/*.onnx"))
    if case.endswith("-page"):
        assert "my" in (web / "index.html").read_text()  # never overwritten


def test_pins_match_the_npm_package_and_the_test_setup():
    assert ORT_CDN_BASE == f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_WEB_VERSION}/dist/"
    assert ORT_NPM_TARBALL == f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    assert re.fullmatch(r"\d+\.\d+\.\d+", ORT_WEB_VERSION)  # an exact release, never a range or a tag
    setup = (REPO / "scripts" / "test.sh").read_text()
    assert "from cyclekit.export.web import ORT_WEB_VERSION" in setup and "--prefix .cache/npm" in setup
    assert "-m cyclekit.export.ortweb >/dev/null 2>&1 || true" in (REPO / "scripts" / "setup.sh").read_text()
    dist = _npm_dist_or_skip()
    version = json.loads((dist.parent / "package.json").read_text())["version"]
    assert version == ORT_WEB_VERSION, f"{dist} holds onnxruntime-web {version}; the page pins {ORT_WEB_VERSION}"
    digest = base64.b64encode(hashlib.sha384((dist / ORT_CDN_SCRIPT).read_bytes()).digest()).decode()
    assert ORT_CDN_INTEGRITY == f"sha384-{digest}"  # what jsDelivr serves is the npm file
    lock = dist.parent.parent / ".package-lock.json"  # npm records the integrity it verified
    if lock.is_file():
        integrity = json.loads(lock.read_text())["packages"]["node_modules/onnxruntime-web"]["integrity"]
        assert ORT_NPM_INTEGRITY == integrity


# --- a real browser ---------------------------------------------------------------------------------


def _npm_dist_or_skip() -> Path:
    dist = Path(os.environ.get("CYCLEKIT_ORT_WEB_DIR") or NPM_DIST)
    if not (dist / "ort.min.js").is_file():
        skip_or_fail_in_ci(f"onnxruntime-web is not installed in {dist} (bash scripts/test.sh installs it with npm)")
    return dist


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(folder, its http://127.0.0.1:PORT/ URL), served by a thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    root = tmp_path / "site"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


READ_CANVAS = """id => { const c = document.getElementById(id);
  return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }"""


def _canvas(page, which: str) -> np.ndarray:  # noqa: ANN001 (playwright's Page)
    w, h, data = page.evaluate(READ_CANVAS, which)
    return np.array(data, dtype=np.uint8).reshape(h, w, 4)


def _translate(page, image: Path, direction: str) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Pick ``image``, wait for the translation; (input canvas, output canvas) as RGBA arrays."""
    page.evaluate("document.body.dataset.state = 'waiting'")
    page.set_input_files("#file", str(image))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=20_000)
    assert page.evaluate("document.body.dataset.state") == "done", page.inner_text("#status")
    assert page.get_attribute("#output", "data-direction") == direction
    return _canvas(page, "input"), _canvas(page, "output")


def _max_diff(browser: np.ndarray, model: Path) -> int:
    """Largest per-channel difference between the page's output and onnxruntime in Python (the
    same .onnx, `cyclekit translate`'s pre- and post-processing) on the page's own input."""
    expected = Translator.load(model)(np.ascontiguousarray(browser[0][:, :, :3]))
    got = browser[1]
    assert got.shape[:2] == expected.shape[:2] and (got[:, :, 3] == 255).all()
    return int(np.abs(got[:, :, :3].astype(int) - expected.astype(int)).max())


def test_web_page_in_chromium(cyclegan: Path, pix2pix: Path, server: tuple[Path, str], tmp_path: Path,
                              registry: Registry, monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    chromium = chromium_or_skip()
    dist = _npm_dist_or_skip()
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    root, url = server
    # The real onnxruntime-web, as the npm registry would send it; the exports take it by default.
    registry.publish(dist, monkeypatch, names=("ort.min.js", f"{JSEP}.mjs", f"{JSEP}.wasm"))
    # CycleGAN with a 64 px cap (a 45x37 image fits, a 100x70 one is scaled down); Pix2Pix at the default.
    code, _, err = export(str(cyclegan), "--web", str(root / "cyclegan"), "--web-max-side", "64")
    assert code == 0, err
    code, _, err = export(str(pix2pix), "--web", str(root / "pix2pix"))
    assert code == 0, err
    assert registry.hits == ["/ort.tgz"]  # downloaded once, then from the cache
    for site in ("cyclegan", "pix2pix"):
        assert (root / site / f"{JSEP}.wasm").read_bytes() == (dist / f"{JSEP}.wasm").read_bytes()
    odd = tmp_path / "odd.png"  # 45x37: padded to 48x40 (ResNet) and 64x64 (U-Net, min 32)
    photo(37, 45, seed=3).save(odd)
    big = tmp_path / "big.png"
    photo(70, 100, seed=4).save(big)

    requests: list[str] = []
    errors: list[str] = []
    diffs: dict[str, int] = {}
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a new, empty user-data-dir
            executable_path=chromium,
            headless=True,
            args=BROWSER_FLAGS,
            viewport={"width": 900, "height": 500},
            accept_downloads=True,
        )
        try:
            # Offline: anything but this server is refused (and would be listed below).
            context.route(
                re.compile(r"^https?://"),
                lambda route: route.continue_() if route.request.url.startswith(url) else route.abort(),
            )
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(url + "cyclegan/index.html")
            page.wait_for_function("document.body.dataset.state === 'ready'", timeout=20_000)
            assert page.locator("#directions label").all_inner_texts() == ["horse \u2192 zebra", "zebra \u2192 horse"]
            assert "64 px on the long side" in page.inner_text("#note")
            assert "from a copy next to this page" in page.inner_text("#note")
            # Before an image is chosen the panes show their hint, not an empty (checkerboard) canvas.
            for canvas, hint in (("#input", "#input-empty"), ("#output", "#output-empty")):
                assert page.eval_on_selector(canvas, "c => getComputedStyle(c).display") == "none"
                assert page.locator(canvas).bounding_box() is None and page.locator(canvas).is_hidden()
                assert page.locator(hint).is_visible()
            assert page.locator("#large").is_hidden() and page.locator("#scaled").is_hidden()
            pair = _translate(page, odd, "AtoB")
            assert (pair[0][:, :, :3] == np.asarray(Image.open(odd))).all()  # read exactly, no colour change
            assert page.locator("#scaled").is_hidden() and page.locator("#large").is_hidden()
            assert page.locator("#output").is_visible() and page.locator("#output-empty").is_hidden()
            diffs["cyclegan AtoB"] = _max_diff(pair, root / "cyclegan" / "G_AtoB.onnx")

            with page.expect_download() as info:
                page.click("#download")
            saved = tmp_path / "download.png"
            info.value.save_as(saved)
            assert info.value.suggested_filename == "odd_to_zebra.png"
            assert (np.asarray(Image.open(saved).convert("RGBA")) == pair[1]).all()

            page.evaluate("document.body.dataset.state = 'waiting'")
            page.click("#directions label:has(input[data-direction=BtoA])")  # re-translates the same image
            page.wait_for_function("document.body.dataset.state === 'done'", timeout=20_000)
            assert page.get_attribute("#output", "data-direction") == "BtoA"
            diffs["cyclegan BtoA"] = _max_diff((pair[0], _canvas(page, "output")), root / "cyclegan" / "G_BtoA.onnx")

            # A grey image comes back grey, transparency is carried over: as `cyclekit translate` does.
            grey = tmp_path / "grey.png"
            photo(37, 45, seed=5, mode="L").save(grey)
            out = _translate(page, grey, "BtoA")[1]
            expected = np.asarray(Translator.load(root / "cyclegan" / "G_BtoA.onnx")(Image.open(grey)))
            assert expected.ndim == 2 and (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 0] == out[:, :, 2]).all()
            diffs["cyclegan BtoA, grey"] = int(np.abs(out[:, :, 0].astype(int) - expected).max())
            clear = tmp_path / "clear.png"
            rgba = np.array(photo(37, 45, seed=6).convert("RGBA"))
            rgba[5:20, 10:30, 3] = 0  # fully transparent: whitened before the model
            Image.fromarray(rgba).save(clear)
            out = _translate(page, clear, "BtoA")[1]
            expected = np.asarray(Translator.load(root / "cyclegan" / "G_BtoA.onnx")(Image.open(clear)))
            assert (out[:, :, 3] == rgba[:, :, 3]).all() and (expected[:, :, 3] == rgba[:, :, 3]).all()
            opaque = rgba[:, :, 3] == 255
            diffs["cyclegan BtoA, alpha"] = int(np.abs(out[opaque][:, :3].astype(int) - expected[opaque][:, :3]).max())

            pair = _translate(page, big, "BtoA")
            assert pair[0].shape[:2] == pair[1].shape[:2] == (45, 64)  # 100x70 scaled to the 64 px cap
            assert "big.png is 100 \u00d7 70 px: scaled down to 64 \u00d7 45 px" in page.inner_text("#scaled")
            diffs["cyclegan BtoA, scaled"] = _max_diff(pair, root / "cyclegan" / "G_BtoA.onnx")

            page.goto(url + "pix2pix/index.html")
            page.wait_for_function("document.body.dataset.state === 'ready'", timeout=20_000)
            pair = _translate(page, odd, "BtoA")
            assert pair[1].shape[:2] == (37, 45)
            assert page.locator("#large").is_hidden()  # 37 px: not over twice the 32 px it was trained at
            diffs["pix2pix BtoA"] = _max_diff(pair, root / "pix2pix" / "G_BtoA.onnx")
            # Far above the training scale (shorter side 70 > 2 x 32 px): warned, as `cyclekit translate` does.
            pair = _translate(page, big, "BtoA")
            assert pair[1].shape[:2] == (70, 100) and page.locator("#large").is_visible()
            assert (
                "big.png is 100 \u00d7 70 px, far larger than the 32 px G_BtoA.onnx was trained at"
                in page.inner_text("#large")
            )
            diffs["pix2pix BtoA, large"] = _max_diff(pair, root / "pix2pix" / "G_BtoA.onnx")
            pair = _translate(page, odd, "BtoA")
            assert page.locator("#large").is_hidden()  # gone with the next image
            backend = page.get_attribute("#output", "data-backend")

            page.goto((root / "pix2pix" / "index.html").as_uri())  # as a file: says how to serve it
            page.wait_for_function("document.body.dataset.state === 'error'", timeout=10_000)
            assert "python -m http.server -d FOLDER" in page.inner_text("#status")
        finally:
            context.close()
    print(f"\nbrowser vs Python, max per-channel difference: {diffs} (on {backend}); "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    assert not errors, errors
    assert all(d <= 2 for d in diffs.values()), diffs  # within 2/255
    remote = [u for u in requests if not u.startswith((url, "file:", "data:", "blob:"))]
    assert not remote, remote  # a local copy of onnxruntime-web: nothing is fetched from elsewhere
