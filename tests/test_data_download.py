"""Downloads against a local HTTP server (127.0.0.1 only): resume, checksums, safe unzip,
dataset lookup and offline errors."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
from PIL import Image

from cyclekit.data import catalogue
from cyclekit.data.catalogue import CATALOGUE, RemoteFile, get_dataset
from cyclekit.data.download import (
    DownloadError,
    default_cache_dir,
    download_file,
    fetch_dataset,
    find_dataset,
    load_mnist,
    safe_extract_zip,
)
from cyclekit.data.folders import UnpairedFolders
from cyclekit.errors import DataError


class _Server:
    """Serves files from a folder; supports Range unless ``honour_range`` is False."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.honour_range = True
        self.truncate_to: int | None = None  # send only this many body bytes, then hang up
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                path = server.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                data = path.read_bytes()
                start = 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_to is not None:
                    body = body[: server.truncate_to]
                self.wfile.write(body)
                if server.truncate_to is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[_Server]:
    folder = tmp_path / "www"
    folder.mkdir()
    with _Server(folder) as server:
        yield server


def _png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _dataset_zip(path: Path, top: str = "tiny2set") -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for split in ("trainA", "trainB", "testA", "testB"):
            zf.writestr(f"{top}/{split}/", "")
            for i in range(2):
                zf.writestr(f"{top}/{split}/{i}.png", _png_bytes(hash((split, i)) % 1000))


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/horse2zebra.zip"


@pytest.fixture
def fake_horse2zebra(monkeypatch: pytest.MonkeyPatch, served: _Server) -> str:
    _dataset_zip(served.folder / "horse2zebra.zip", top="horse2zebra")
    url = f"{served.url}/horse2zebra.zip"
    monkeypatch.setitem(CATALOGUE, "horse2zebra", dataclasses.replace(CATALOGUE["horse2zebra"], url=url))
    return url


# ---------------------------------------------------------------------------------------------
# download_file


def test_download_resumes_from_part(tmp_path: Path, served: _Server) -> None:
    data = os.urandom(200_000)
    (served.folder / "blob.bin").write_bytes(data)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    Path(str(dest) + ".part").write_bytes(data[:80_000])
    seen: list[tuple[int, int | None]] = []
    out = download_file(
        f"{served.url}/blob.bin",
        dest,
        sha256=hashlib.sha256(data).hexdigest(),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert out == dest and dest.read_bytes() == data
    assert not Path(str(dest) + ".part").exists()
    assert served.requests == [("/blob.bin", "bytes=80000-")]
    assert seen[-1] == (200_000, 200_000) and seen[0][0] > 80_000
    # Already there and verified: no new request.
    download_file(f"{served.url}/blob.bin", dest, sha256=hashlib.sha256(data).hexdigest())
    assert len(served.requests) == 1


def test_download_restarts_when_server_ignores_range(tmp_path: Path, served: _Server) -> None:
    data = os.urandom(50_000)
    (served.folder / "blob.bin").write_bytes(data)
    served.honour_range = False
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(b"stale bytes from another version")
    download_file(f"{served.url}/blob.bin", dest, md5=hashlib.md5(data).hexdigest())
    assert dest.read_bytes() == data
    assert served.requests[0][1] is not None  # we asked for a range, got the whole file


def test_download_part_already_complete(tmp_path: Path, served: _Server) -> None:
    data = os.urandom(10_000)
    (served.folder / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    Path(str(dest) + ".part").write_bytes(data)  # 416 from the server: start over
    download_file(f"{served.url}/blob.bin", dest)
    assert dest.read_bytes() == data


def test_checksum_mismatch(tmp_path: Path, served: _Server) -> None:
    (served.folder / "blob.bin").write_bytes(b"x" * 1000)
    dest = tmp_path / "blob.bin"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download_file(f"{served.url}/blob.bin", dest, sha256="0" * 64)
    assert not isinstance(info.value, DownloadError)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_connection_dropped_keeps_part(tmp_path: Path, served: _Server) -> None:
    data = os.urandom(30_000)
    (served.folder / "blob.bin").write_bytes(data)
    served.truncate_to = 10_000
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError):
        download_file(f"{served.url}/blob.bin", dest, timeout=5)
    part = Path(str(dest) + ".part")
    assert not dest.exists() and part.read_bytes() == data[:10_000]
    served.truncate_to = None
    download_file(f"{served.url}/blob.bin", dest)
    assert dest.read_bytes() == data and served.requests[-1][1] == "bytes=10000-"


def test_unreachable_and_404(tmp_path: Path, served: _Server) -> None:
    url = _closed_port_url()
    dest = tmp_path / "x.zip"
    with pytest.raises(DownloadError) as info:
        download_file(url, dest, timeout=5)
    msg = str(info.value)
    assert url in msg and str(dest) in msg and "\n" not in msg
    with pytest.raises(DataError, match="HTTP 404"):
        download_file(f"{served.url}/missing.zip", dest)
    assert not dest.exists()


# ---------------------------------------------------------------------------------------------
# safe_extract_zip


def test_safe_extract(tmp_path: Path) -> None:
    zpath = tmp_path / "ok.zip"
    _dataset_zip(zpath)
    target = tmp_path / "out"
    assert safe_extract_zip(zpath, target) == target
    assert (target / "tiny2set" / "trainA" / "0.png").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    with pytest.raises(DataError, match="not empty"):
        safe_extract_zip(zpath, target)


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "/tmp/cyclekit-abs-evil.txt", "C:/evil.txt", "a/../../evil.txt", "link"]
)
def test_safe_extract_refuses_malicious(tmp_path: Path, evil: str) -> None:
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("fine/first.txt", "ok")
        if evil == "link":
            info = zipfile.ZipInfo("fine/link")
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "../../etc/passwd")
        else:
            zf.writestr(evil, "pwned")
    box = tmp_path / "box"
    box.mkdir()
    before = set(tmp_path.rglob("*"))
    with pytest.raises(DataError, match="refusing") as info:
        safe_extract_zip(zpath, box / "target")
    assert "bad.zip" in str(info.value)
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even "fine/first.txt"
    assert not Path("/tmp/cyclekit-abs-evil.txt").exists()


def test_safe_extract_corrupt_zip(tmp_path: Path) -> None:
    zpath = tmp_path / "corrupt.zip"
    zpath.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="corrupt.zip"):
        safe_extract_zip(zpath, tmp_path / "t")
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------------------------
# catalogue, fetch, find


def test_catalogue() -> None:
    for name in ("horse2zebra", "apple2orange", "maps", "facades", "cityscapes", "grumpifycat", "mnist"):
        assert get_dataset(name).name == name
    assert CATALOGUE["horse2zebra"].url == "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    assert (CATALOGUE["horse2zebra"].domain_a, CATALOGUE["horse2zebra"].domain_b) == ("horse", "zebra")
    md5s = {f.filename: f.md5 for f in CATALOGUE["mnist"].files}
    assert md5s["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    with pytest.raises(DataError, match="horse2zebra") as info:
        get_dataset("horse2giraffe")
    assert "horse2giraffe" in str(info.value)


def test_the_catalogue_knows_no_fetching_and_fetching_knows_no_catalogue() -> None:
    import ast

    import cyclekit.fetch

    for module, banned in ((catalogue, "download"), (cyclekit.fetch, "catalogue")):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(banned in name for name in imported), (module.__name__, imported)


def test_cityscapes_not_downloadable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cityscapes-dataset.com"):
        fetch_dataset("cityscapes", tmp_path)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CYCLEKIT_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "cyclekit"


def test_fetch_dataset(tmp_path: Path, served: _Server, fake_horse2zebra: str) -> None:
    cache = tmp_path / "cache"
    path = fetch_dataset("horse2zebra", cache)
    assert path == cache / "horse2zebra"
    assert sorted(p.name for p in path.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert sorted(p.name for p in cache.iterdir()) == ["horse2zebra"]  # zip and staging removed
    assert fetch_dataset("horse2zebra", cache) == path and len(served.requests) == 1
    assert find_dataset("horse2zebra", None, cache) == path
    ds = UnpairedFolders(path)
    assert len(ds.paths_a) == 2 and len(ds.paths_b) == 2


def test_find_dataset_order(tmp_path: Path, served: _Server, fake_horse2zebra: str) -> None:
    direct = tmp_path / "direct"
    for split in ("trainA", "trainB"):
        (direct / split).mkdir(parents=True)
    assert find_dataset("horse2zebra", direct, tmp_path / "cache") == direct
    nested = tmp_path / "datasets"
    for split in ("trainA", "trainB"):
        (nested / "horse2zebra" / split).mkdir(parents=True)
    assert find_dataset("horse2zebra", nested, tmp_path / "cache") == nested / "horse2zebra"
    # A data root is used as given: one that does not hold the dataset is an error, never the cache.
    with pytest.raises(DataError, match="empty is not a horse2zebra dataset folder: it does not exist"):
        find_dataset("horse2zebra", tmp_path / "empty", tmp_path / "cache")
    with pytest.raises(DataError, match="not found"):
        find_dataset("horse2zebra", None, tmp_path / "cache", download=False)
    with pytest.raises(DataError, match="not a downloadable dataset"):
        find_dataset("my_photos", None, tmp_path / "cache")
    assert served.requests == []
    # No data root, not cached: downloaded.
    assert find_dataset("horse2zebra", None, tmp_path / "cache") == tmp_path / "cache" / "horse2zebra"


def test_fetch_offline_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = _closed_port_url()
    monkeypatch.setitem(CATALOGUE, "horse2zebra", dataclasses.replace(CATALOGUE["horse2zebra"], url=url))
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        find_dataset("horse2zebra", None, cache)
    msg = str(info.value)
    assert msg.startswith(f"could not download horse2zebra from {url} (")
    assert f"put its trainA/ and trainB/ folders in {cache / 'horse2zebra'} or pass --data-root DIR" in msg
    assert "\n" not in msg


def test_fetch_with_malicious_zip(tmp_path: Path, served: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    with zipfile.ZipFile(served.folder / "evil.zip", "w") as zf:
        zf.writestr("horse2zebra/trainA/0.png", _png_bytes(0))
        zf.writestr("../evil.txt", "pwned")
    url = f"{served.url}/evil.zip"
    monkeypatch.setitem(CATALOGUE, "horse2zebra", dataclasses.replace(CATALOGUE["horse2zebra"], url=url))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="refusing"):
        fetch_dataset("horse2zebra", cache)
    assert not (tmp_path / "evil.txt").exists() and not (cache / "evil.txt").exists()
    assert not (cache / "horse2zebra").exists()


def _idx_gz(path: Path, arr: np.ndarray, code: int) -> str:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_load_mnist_from_local_mirror(tmp_path: Path, served: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    files = []
    for prefix, n in (("train", 6), ("t10k", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, arr, code in (
            (f"{prefix}-images-idx3-ubyte.gz", images, 8),
            (f"{prefix}-labels-idx1-ubyte.gz", labels, 8),
        ):
            md5 = _idx_gz(served.folder / name, arr, code)
            # First mirror is dead: the second one must be used.
            files.append(RemoteFile(name, (_closed_port_url(), f"{served.url}/{name}"), md5=md5))
    monkeypatch.setitem(CATALOGUE, "mnist", dataclasses.replace(CATALOGUE["mnist"], files=tuple(files)))
    x, y = load_mnist(tmp_path / "cache", "train")
    assert x.shape == (6, 28, 28) and x.dtype == np.uint8 and y.shape == (6,)
    xt, yt = load_mnist(tmp_path / "cache", "test")
    assert xt.shape == (3, 28, 28) and len(yt) == 3
    assert len(served.requests) == 4
    assert catalogue.MNIST_MIRRORS[0].startswith("https://ossci-datasets")


# ---------------------------------------------------------------------------------------------
# pix2pix archives (.tar.gz of train/ val/ test/ holding A|B images)


def _ab_tar(path: Path, top: str = "facades", members: list[tuple[str, bytes | None]] | None = None) -> None:
    import tarfile

    with tarfile.open(path, "w:gz") as tf:
        for split in ("train", "val"):
            d = tarfile.TarInfo(f"{top}/{split}")
            d.type = tarfile.DIRTYPE
            tf.addfile(d)
            for i in range(2):
                data = _png_bytes(i)
                info = tarfile.TarInfo(f"{top}/{split}/{i}.png")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        for name, data in members or []:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def test_pix2pix_catalogue_entries() -> None:
    info = CATALOGUE["pix2pix-facades"]
    assert info.url == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
    assert info.kind == "paired" and (info.domain_a, info.domain_b) == ("photo", "label")
    assert CATALOGUE["pix2pix-maps"].url.endswith("/pix2pix/datasets/maps.tar.gz")


def test_fetch_pix2pix_tar(tmp_path: Path, served: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _ab_tar(served.folder / "facades.tar.gz")
    url = f"{served.url}/facades.tar.gz"
    monkeypatch.setitem(CATALOGUE, "pix2pix-facades", dataclasses.replace(CATALOGUE["pix2pix-facades"], url=url))
    cache = tmp_path / "cache"
    path = find_dataset("pix2pix-facades", None, cache)
    assert path == cache / "pix2pix-facades"
    assert sorted(p.name for p in path.iterdir()) == ["train", "val"]
    assert sorted(p.name for p in cache.iterdir()) == ["pix2pix-facades"]  # archive and staging removed
    # A copy in the CycleGAN layout (trainA/ + trainB/, paired by name) counts as present too.
    other = tmp_path / "facades"
    (other / "trainA").mkdir(parents=True)
    (other / "trainB").mkdir()
    assert find_dataset("pix2pix-facades", other, cache) == other


@pytest.mark.parametrize(
    "member, why",
    [
        (("../evil.txt", b"pwned"), "path escapes"),
        (("/abs.txt", b"x"), "absolute path"),
        (("facades/link", None), "link or special file"),
    ],
)
def test_safe_extract_tar_refuses_malicious(tmp_path: Path, member: tuple[str, bytes | None], why: str) -> None:
    from cyclekit.data.download import safe_extract_tar

    archive = tmp_path / "evil.tar.gz"
    _ab_tar(archive, members=[member])
    with pytest.raises(DataError, match=f"refusing to extract .*{why}"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar.gz"]  # no staging folder left


def test_safe_extract_tar_damaged(tmp_path: Path) -> None:
    from cyclekit.data.download import safe_extract_tar

    archive = tmp_path / "bad.tar.gz"
    _ab_tar(archive)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="bad.tar.gz"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_a_complete_but_damaged_archive_never_blocks_later_downloads(
    tmp_path: Path, served: _Server, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A truncated archive with a valid signature (no checksum known): deleted when it fails to
    extract, so the next call downloads it again; one that was already in the cache is named."""
    name = "horse2zebra" if kind == "zip" else "pix2pix-facades"
    archive = served.folder / f"set.{kind}"
    _dataset_zip(archive, top="horse2zebra") if kind == "zip" else _ab_tar(archive)
    good = archive.read_bytes()
    archive.write_bytes(good[: len(good) // 2])
    url = f"{served.url}/set.{kind}"
    monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(CATALOGUE[name], url=url, sha256=None, md5=None))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="the downloaded file was deleted, so the next try downloads it again"):
        fetch_dataset(name, cache)
    assert not (cache / f"{name}.{kind}").exists()
    archive.write_bytes(good)  # the server has the whole file now
    assert fetch_dataset(name, cache) == cache / name
    # A damaged archive someone put in the cache by hand is named, never deleted.
    cached = tmp_path / "cache2"
    cached.mkdir()
    (cached / f"{name}.{kind}").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=f"delete {cached / (name + '.' + kind)} to download it again"):
        fetch_dataset(name, cached)
    assert (cached / f"{name}.{kind}").exists()
