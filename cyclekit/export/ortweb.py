"""onnxruntime-web for the exported web page (`cyclekit export --web`): a local copy, fetched once.

The page runs the model with onnxruntime-web, at the pinned release :data:`ORT_WEB_VERSION`. By
default its files are copied next to the page, so that the page works offline. They come from the
npm registry's tarball of that release (:data:`ORT_NPM_TARBALL`, verified against the pinned
:data:`ORT_NPM_INTEGRITY`, npm's own ``dist.integrity``), downloaded once with
:func:`cyclekit.fetch.download_file` (resumable) into ``$CYCLEKIT_CACHE/onnxruntime-web/VERSION/``
and reused afterwards. Only the files the page loads are kept: ``ort.min.js`` and the
``.mjs``/``.wasm`` pair it imports (about 29 MB), plus the package's ``package.json`` and
``LICENSE``; the tarball itself (33 MB) is deleted once unpacked.

``$CYCLEKIT_ORT_WEB_URL`` names another source for the tarball (a mirror's URL, or a local
``.tgz`` file, e.g. from ``npm pack onnxruntime-web@VERSION``); it must still match the pinned
integrity. ``python -m cyclekit.export.ortweb`` fetches it ahead of time (``scripts/setup.sh``
does, quietly).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from cyclekit.errors import CyclekitError, DataError

# The onnxruntime-web release the page uses (and that scripts/test.sh installs from npm for the
# browser test). Changing it: update ORT_NPM_INTEGRITY (`npm view onnxruntime-web@VERSION
# dist.integrity`) and ORT_CDN_INTEGRITY in cyclekit/export/web.py; test_web_export checks both
# against the npm package that scripts/test.sh installs.
ORT_WEB_VERSION = "1.30.0"
ORT_NPM_TARBALL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
ORT_NPM_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="
URL_ENV = "CYCLEKIT_ORT_WEB_URL"
# The script the page loads from a local copy: runs on WebGPU and on WebAssembly.
ORT_SCRIPT = "ort.min.js"
WASM_MODULES = re.compile(r"ort-wasm-simd-threaded[\w.]*?\.mjs")
EXTRAS = ("package.json", "LICENSE")  # kept in the cache (provenance, licence), not copied to pages
STAMP = "cyclekit-ort-web.json"

Note = Callable[[str], None]


def cache_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the pinned release's files are kept: ``<cache>/onnxruntime-web/<version>``."""
    from cyclekit.data.catalogue import default_cache_dir

    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "onnxruntime-web" / ORT_WEB_VERSION


def tarball_url() -> str:
    """The tarball's URL: ``$CYCLEKIT_ORT_WEB_URL`` (a URL or a local .tgz file), else the npm registry."""
    given = os.environ.get(URL_ENV, "").strip()
    if not given:
        return ORT_NPM_TARBALL
    if "://" in given:
        return given
    return Path(given).expanduser().resolve().as_uri()


def integrity_hex(integrity: str) -> str:
    """npm's ``sha512-<base64>`` integrity as a hex digest."""
    algorithm, _, digest = integrity.partition("-")
    if algorithm != "sha512" or not digest:
        raise ValueError(f"not a sha512 integrity: {integrity!r}")
    return base64.b64decode(digest).hex()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cached(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The cache folder if it holds the pinned release's page files intact (checked against the
    sha256 recorded when they were unpacked), else None."""
    folder = cache_folder(cache_dir)
    try:
        stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
        if stamp.get("version") != ORT_WEB_VERSION or stamp.get("integrity") != ORT_NPM_INTEGRITY:
            return None
        files = stamp["files"]
        if ORT_SCRIPT not in files or not all(_sha256(folder / name) == sha for name, sha in files.items()):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return folder


def _unpack(tgz: Path, folder: Path) -> None:
    """The page's files (and EXTRAS) from the npm tarball into ``folder`` (as a whole: staged)."""
    from cyclekit.atomic import staged_folder

    errors = (tarfile.TarError, OSError, EOFError, zlib.error, UnicodeDecodeError)
    try:
        with tarfile.open(tgz, "r:gz") as tf:

            def member(name: str) -> bytes | None:
                try:
                    info = tf.getmember(f"package/{name}")
                except KeyError:
                    return None
                src = tf.extractfile(info) if info.isfile() else None
                return None if src is None else src.read()

            script = member(f"dist/{ORT_SCRIPT}")
            if script is None:
                raise DataError(f"{tgz}: no package/dist/{ORT_SCRIPT}; not an onnxruntime-web package")
            modules = sorted(set(WASM_MODULES.findall(script.decode("utf-8", errors="replace"))))
            if not modules:
                raise DataError(f"{tgz}: {ORT_SCRIPT} loads no ort-wasm-simd-threaded*.mjs; not onnxruntime-web 1.19+")
            contents = {ORT_SCRIPT: script}
            for name in [n for m in modules for n in (m, m[: -len(".mjs")] + ".wasm")]:
                data = member(f"dist/{name}")
                if data is None:
                    raise DataError(f"{tgz}: {ORT_SCRIPT} loads {name}, which the package does not have")
                contents[name] = data
            extras = {name: data for name in EXTRAS if (data := member(name)) is not None}
    except errors as exc:
        raise DataError(f"cannot unpack {tgz}: {exc}") from exc
    with staged_folder(folder) as tmp:
        for name, data in {**contents, **extras}.items():
            (tmp / name).write_bytes(data)
        stamp = {
            "version": ORT_WEB_VERSION,
            "integrity": ORT_NPM_INTEGRITY,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
        }
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def ensure_ort_web(cache_dir: str | os.PathLike[str] | None = None, note: Note | None = None) -> Path:
    """The local folder holding the pinned onnxruntime-web's page files: from the cache, or
    downloaded (once) from the npm registry, verified and unpacked there. Raises one-line
    CyclekitErrors that say what to do instead (``--ort-dir``, ``--cdn``) when that fails."""
    from cyclekit.fetch import DownloadError, download_file

    folder = cache_folder(cache_dir)
    found = cached(cache_dir)
    if found is not None:
        return found
    url = tarball_url()
    tgz = folder.parent / f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    instead = (
        "pass --ort-dir DIR (an onnxruntime-web dist folder, e.g. from "
        f"`npm install onnxruntime-web@{ORT_WEB_VERSION}`), or --cdn (the page then loads it from jsDelivr)"
    )
    if note is not None:
        note(f"downloading onnxruntime-web {ORT_WEB_VERSION} (33 MB, once) from {url} into {folder}")
    try:
        download_file(url, tgz, sha512=integrity_hex(ORT_NPM_INTEGRITY), kind="gzip")
    except DownloadError as exc:
        raise CyclekitError(
            f"the web page needs onnxruntime-web {ORT_WEB_VERSION}, which is not in the cache ({folder}) and could not "
            f"be downloaded from {url} ({exc.reason}); connect to the internet once, or {instead}"
        ) from None
    except DataError as exc:  # a checksum mismatch: the partial file is already deleted
        raise CyclekitError(
            f"onnxruntime-web {ORT_WEB_VERSION} from {url} does not match the pinned integrity ({exc}); {instead}"
        ) from None
    try:
        _unpack(tgz, folder)
    finally:
        tgz.unlink(missing_ok=True)
    found = cached(cache_dir)
    if found is None:  # unpacked but unreadable right away: a broken cache folder
        raise CyclekitError(f"cannot use onnxruntime-web in {folder} after unpacking it; remove that folder and retry")
    return found


def main() -> int:
    """``python -m cyclekit.export.ortweb``: fetch the pinned onnxruntime-web into the cache now."""
    import sys

    try:
        folder = ensure_ort_web(note=lambda line: print(line, file=sys.stderr))
    except CyclekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"onnxruntime-web {ORT_WEB_VERSION}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
