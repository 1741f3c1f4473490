"""`cyclekit export RUN --web DIR`: a static web page that translates images in the browser.

DIR gets ``index.html``, ``cyclekit-web.js`` (the page's code), the exported ``.onnx`` files and
``cyclekit-web.json``: each model's ONNX ``metadata_props`` copied at export time (onnxruntime-web
has no API to read custom metadata), the size cap, where onnxruntime-web comes from, and the
sha256 of every file written, so that a later export replaces only files cyclekit wrote.

onnxruntime-web, at the pinned version :data:`ORT_WEB_VERSION`, is copied next to the page so that
it works offline: by default from cyclekit's cache, where :mod:`cyclekit.export.ortweb` fetches the
npm package once (verified against its pinned integrity); with ``ort_dir`` from a local ``dist``
folder; with ``cdn`` the page loads it from jsDelivr instead (with a subresource-integrity hash).
The page pre- and post-processes exactly as `cyclekit translate`
does (see ``webpage/cyclekit-web.js``). Browsers do not let a page opened from ``file://`` fetch
the model: serve DIR, e.g. ``python -m http.server -d DIR``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cyclekit import __version__
from cyclekit.atomic import atomic_path, atomic_write, check_output_folder
from cyclekit.errors import CyclekitError
from cyclekit.export.ortweb import ORT_WEB_VERSION, Note, ensure_ort_web
from cyclekit.inference.bundle import bundle_dir, read_bundle
from cyclekit.inference.provenance import bundle_name

if TYPE_CHECKING:
    from cyclekit.export.onnx import ExportResult

# The onnxruntime-web release the page uses (pinned in cyclekit.export.ortweb, with the npm
# tarball's integrity). Changing it: update ORT_CDN_INTEGRITY too (test_web_export checks it
# against the npm package's dist/ort.min.js).
ORT_CDN_BASE = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_WEB_VERSION}/dist/"
ORT_CDN_SCRIPT = "ort.min.js"
ORT_CDN_INTEGRITY = "sha384-N94xSNjPDbfBJj4+QINst0nbHpcCm8kc1qNlIP/wA0muqjR3aVyIuDkMeccPrLvQ"
# The scripts a local copy can use, preferred first: ort.min.js runs on WebGPU and WebAssembly
# (its wasm build is ~28 MB), ort.wasm.min.js on WebAssembly only (~14 MB).
ORT_SCRIPTS = ("ort.min.js", "ort.wasm.min.js")

PAGE, SCRIPT, MANIFEST = "index.html", "cyclekit-web.js", "cyclekit-web.json"
MANIFEST_FORMAT = "cyclekit-web"
MANIFEST_VERSION = 1
DEFAULT_MAX_SIDE = 1024
MIN_MAX_SIDE, MAX_MAX_SIDE = 16, 8192
SERVE_HINT = "python -m http.server -d {dir}"


@dataclass(frozen=True)
class OrtRuntime:
    """Where the page loads onnxruntime-web from."""

    version: str
    script: str  # the <script src>: a CDN URL, or a file name next to the page
    wasm_paths: str  # where its .mjs/.wasm files are: the CDN folder, or "./"
    integrity: str = ""  # subresource integrity of the CDN script
    source: Path | None = None  # the local dist folder copied from; None: the CDN
    files: tuple[str, ...] = ()  # the files copied from ``source``
    webgpu: bool = True  # the script can run on WebGPU (falls back to WebAssembly)


@dataclass
class WebPlan:
    """A checked --web export: everything that could go wrong before the (slow) ONNX export did not."""

    folder: Path
    ort: OrtRuntime
    max_side: int
    title: str
    texts: dict[str, str]  # index.html and cyclekit-web.js, as they will be written
    previous: dict[str, str] = field(default_factory=dict)  # file -> sha256 of the last page written here


@dataclass
class WebPage:
    """What `write_web_page` wrote."""

    page: Path
    directions: list[str]
    ort: OrtRuntime
    max_side: int
    files: list[Path]
    removed: list[Path]

    @property
    def serve_command(self) -> str:
        return SERVE_HINT.format(dir=shlex.quote(str(self.page.parent)))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cdn_runtime() -> OrtRuntime:
    return OrtRuntime(ORT_WEB_VERSION, ORT_CDN_BASE + ORT_CDN_SCRIPT, ORT_CDN_BASE, ORT_CDN_INTEGRITY)


def find_ort(ort_dir: str | Path | None = None, *, cdn: bool = False, note: Note | None = None) -> OrtRuntime:
    """Where the page's onnxruntime-web comes from: the CDN (``cdn``); the files a local
    onnxruntime-web ``dist`` folder (or the package folder holding it) needs, a script and the
    ``.mjs``/``.wasm`` pair it loads (``ort_dir``); by default those of the pinned release in
    cyclekit's cache, downloaded once from the npm registry (``note`` hears about a download)."""
    if cdn and ort_dir is not None:
        raise CyclekitError("--cdn and --ort-dir both say where onnxruntime-web comes from; pass one of them")
    if cdn:
        return cdn_runtime()
    if ort_dir is None:
        folder = ensure_ort_web(note=note)
        return _local_runtime(folder, f"onnxruntime-web in the cache {folder}")
    given = Path(ort_dir)
    if not given.exists():
        raise CyclekitError(f"--ort-dir {given}: no such folder")
    if not given.is_dir():
        raise CyclekitError(f"--ort-dir {given}: not a folder (pass onnxruntime-web's dist folder)")
    folder = given
    if not any((folder / s).is_file() for s in ORT_SCRIPTS) and (folder / "dist").is_dir():
        folder = folder / "dist"  # node_modules/onnxruntime-web itself
    return _local_runtime(folder, f"--ort-dir {given}")


def _local_runtime(folder: Path, label: str) -> OrtRuntime:
    """The script and the ``.mjs``/``.wasm`` files a local ``dist`` folder gives the page."""
    problems = []
    for script in ORT_SCRIPTS:
        path = folder / script
        if not path.is_file():
            problems.append(f"no {script}")
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CyclekitError(f"{label}: cannot read {path}: {exc.strerror or exc}") from None
        found = re.search(r"ONNX Runtime Web v(\d+\.\d+\.\d+[\w.+-]*)", text[:4000])
        modules = sorted(set(re.findall(r"ort-wasm-simd-threaded[\w.]*?\.mjs", text)))
        if found is None or not modules:
            problems.append(f"{script} is not onnxruntime-web 1.19 or newer")
            continue
        needed = [n for m in modules for n in (m, m[: -len(".mjs")] + ".wasm")]
        missing = [n for n in needed if not (folder / n).is_file()]
        if missing:
            problems.append(f"{script} loads {', '.join(missing)}, not there")
            continue
        return OrtRuntime(
            found.group(1), script, "./", source=folder, files=(script, *needed), webgpu=script == "ort.min.js"
        )
    raise CyclekitError(
        f"{label}: not an onnxruntime-web dist folder ({'; '.join(problems)}); "
        f"`npm install onnxruntime-web@{ORT_WEB_VERSION}` gives one in node_modules/onnxruntime-web/dist"
    )


def _read_manifest(folder: Path) -> dict[str, str]:
    """file -> sha256 of what the previous `--web` export into ``folder`` wrote ({} if none)."""
    path = folder / MANIFEST
    if not path.exists():
        return {}
    foreign = CyclekitError(
        f"{path} already exists and was not written by `cyclekit export --web`; move it, or pick another --web folder"
    )
    if not path.is_file():
        raise foreign
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise foreign from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        raise foreign
    return {str(k): str(v) for k, v in data["files"].items()}


def _check_replaceable(path: Path, previous: dict[str, str], new_sha: str | None) -> None:
    """``path`` may be (re)written: absent, identical to the new content, or as cyclekit last wrote it."""
    if not path.exists():
        return
    if path.is_dir():
        raise CyclekitError(f"cannot write {path}: it is a folder")
    sha = sha256_file(path)
    if sha == new_sha or previous.get(path.name) == sha:
        return
    how = (
        "was changed since `cyclekit export --web` wrote it" if path.name in previous else "was not written by cyclekit"
    )
    raise CyclekitError(f"{path} already exists and {how}; move it, or pick another --web folder")


def _template(name: str) -> str:
    return resources.files("cyclekit.export").joinpath("webpage", name).read_text(encoding="utf-8")


def plan_web_page(
    run: str | Path,
    folder: str | Path,
    *,
    ort_dir: str | Path | None = None,
    cdn: bool = False,
    max_side: int = DEFAULT_MAX_SIDE,
    note: Note | None = None,
) -> WebPlan:
    """Check everything a --web export needs before the ONNX export starts: a model that
    translates, the size cap, the onnxruntime-web files (see `find_ort`; by default they are
    downloaded into the cache if not there yet, after the other checks), and that no file
    cyclekit did not write would be replaced in ``folder`` (created if needed)."""
    if not MIN_MAX_SIDE <= max_side <= MAX_MAX_SIDE:
        raise CyclekitError(f"--web-max-side {max_side}: use {MIN_MAX_SIDE}..{MAX_MAX_SIDE} px")
    source = bundle_dir(Path(run))
    bundle = read_bundle(source)
    if bundle.samples is not None or not bundle.translates:
        raise CyclekitError(
            f"--web: {source} holds a generator that samples, not translates; "
            "the web page translates images (CycleGAN, Pix2Pix)"
        )
    ort = find_ort(ort_dir, cdn=cdn) if cdn or ort_dir is not None else None  # no download yet
    existed = Path(folder).exists()
    out = check_output_folder(Path(folder))
    previous = _read_manifest(out)
    script = _template(SCRIPT)
    _check_replaceable(out / SCRIPT, previous, hashlib.sha256(script.encode("utf-8")).hexdigest())
    if ort is None:
        try:
            ort = find_ort(note=note)  # the cache, or a download into it
        except CyclekitError:
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # leave no empty folder behind
            raise
    name = bundle_name(bundle, source)  # short and safe: an import's folder name, not a sentence
    a, b = bundle.domains.get("A", "A"), bundle.domains.get("B", "B")
    ways = set(bundle.translates)
    pair = f"{a} \u2192 {b}" if ways == {"AtoB"} else f"{b} \u2192 {a}" if ways == {"BtoA"} else f"{a} \u2194 {b}"
    title = f"{name}: {pair}"
    texts = {SCRIPT: script, PAGE: _page_html(title, ort)}
    for file, text in texts.items():
        _check_replaceable(out / file, previous, hashlib.sha256(text.encode("utf-8")).hexdigest())
    for file in ort.files:
        assert ort.source is not None
        _check_replaceable(out / file, previous, sha256_file(ort.source / file))
    return WebPlan(out, ort, max_side, title, texts, previous)


def _model_entry(result: ExportResult) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(result.path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props}
    inputs = [i.name for i in model.graph.input]
    return {
        "file": result.path.name,
        "direction": result.direction,
        "precision": result.precision,
        "bytes": result.bytes,
        "sha256": sha256_file(result.path),
        "input": inputs[0] if inputs else "input",
        "metadata": props,
    }


def _page_html(title: str, ort: OrtRuntime) -> str:
    src = html.escape(ort.script, quote=True)
    if ort.integrity:
        tag = f'<script src="{src}" integrity="{ort.integrity}" crossorigin="anonymous"></script>'
    else:
        tag = f'<script src="{src}"></script>'
    page = _template(PAGE)
    return page.replace("__TITLE__", html.escape(title)).replace("__ORT_SCRIPT__", tag)


def write_web_page(plan: WebPlan, results: Sequence[ExportResult]) -> WebPage:
    """Write the page for the exported ``results`` (their .onnx files in ``plan.folder``)."""
    from cyclekit.inference.files import FAR_LARGER

    out, ort = plan.folder, plan.ort
    models = [_model_entry(r) for r in results if r.path.parent.resolve() == out.resolve()]
    if not models:
        raise CyclekitError(f"--web: no exported model in {out}")

    written: list[Path] = []
    files: dict[str, str] = {}
    for name in ort.files:  # the big ones first; the manifest last
        assert ort.source is not None
        target = out / name
        with atomic_path(target) as tmp:
            shutil.copyfile(ort.source / name, tmp)
        files[name] = sha256_file(target)
        written.append(target)
    for name, text in plan.texts.items():
        written.append(atomic_write(out / name, text))
        files[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    # Files an earlier export here wrote (unchanged since) that this page no longer uses, e.g. a
    # local onnxruntime-web after switching to the CDN.
    removed = []
    for name, sha in plan.previous.items():
        stale = out / name
        if name not in files and Path(name).name == name and stale.is_file() and sha256_file(stale) == sha:
            stale.unlink()
            removed.append(stale)

    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "cyclekit_version": __version__,
        "title": plan.title,
        "max_side": plan.max_side,
        # the page warns, as `cyclekit translate` does, when an image's shorter side is more than
        # this many times the model's training scale (its metadata's load_size, else train_size)
        "far_larger": FAR_LARGER,
        "onnxruntime_web": {
            "version": ort.version,
            "script": ort.script,
            "wasm_paths": ort.wasm_paths,
            "source": "cdn" if ort.source is None else "local",
            "webgpu": ort.webgpu,
        },
        "models": models,
        "files": files,
    }
    written.append(atomic_write(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"))
    return WebPage(out / PAGE, [m["direction"] for m in models], ort, plan.max_side, written, removed)
