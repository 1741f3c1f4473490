"""What a bundle is called, who may replace it, and whether an ONNX file exported from it is stale.

- **Names.** A bundle's config.json is data from anywhere (a download, a colleague's folder), so
  no name read from it goes into a path as it is: `safe_name` keeps one path component of letters,
  digits and ``._-`` (no separators, no leading dot, never ``..``). `bundle_name` is the short name
  a bundle's outputs are named after (``results/<name>_to_<domain>/``, the web page's title, the
  ``run`` key of an ONNX export): its run, or for an import the folder it was imported into.
- **Replacing.** `check_bundle_target` lets a command replace only a bundle it wrote itself (an
  import another import, a run's own bundle/ its rebuild); any other bundle needs ``--overwrite``,
  and a file or a folder of other files is never replaced.
- **Stale exports.** An ONNX export records the step and the weights' sha256 of the bundle it came
  from; after a resumed training the bundle moves on and the exports beside it do not.
  `stale_export_note` says so in one line.

Reads config.json only, never torch: `cyclekit translate --model x.onnx` runs without it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cyclekit.errors import CyclekitError

if TYPE_CHECKING:
    from cyclekit.inference.bundle import Bundle

# How an import named its bundle's run before imports had a short name (a sentence, not a name).
IMPORTED_PREFIX = "imported from "
MAX_NAME = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: object, fallback: str = "model") -> str:
    """``text`` as one safe path component: runs of other characters become ``_``, leading and
    trailing dots, dashes and underscores go (so never ``.``, ``..`` or a hidden name), at most
    80 characters; ``fallback`` (itself made safe) when nothing is left."""
    name = _UNSAFE.sub("_", str(text)).strip("._-")[:MAX_NAME].rstrip("._-")
    if name:
        return name
    return safe_name(fallback, "model") if fallback != "model" else "model"


def folder_name(folder: str | Path) -> str:
    """The name a bundle folder stands for: the run's for RUN/bundle, else the folder's own."""
    folder = Path(folder).absolute()
    return folder.parent.name if folder.name == "bundle" else folder.name


def is_imported(bundle: Bundle) -> bool:
    """Written by `cyclekit import` or `cyclekit pretrained download` (now or before names were short)."""
    return bool(bundle.imported_from) or bundle.run.startswith(IMPORTED_PREFIX)


def bundle_name(bundle: Bundle, folder: str | Path) -> str:
    """The short safe name ``bundle`` (in ``folder``) gives its outputs: its run, or its folder's
    name where the run is empty or an older import's sentence."""
    fallback = safe_name(folder_name(folder))
    if not bundle.run or bundle.run.startswith(IMPORTED_PREFIX):
        return fallback
    return safe_name(bundle.run, fallback)


def onnx_run_name(run: str, path: str | Path) -> str:
    """The short safe name of an ONNX export from its ``run`` metadata (an older import's
    sentence, or empty: the name of the folder it lies in, else its file name)."""
    path = Path(path).absolute()
    if run and not run.startswith(IMPORTED_PREFIX):
        return safe_name(run, safe_name(path.stem))
    return safe_name(folder_name(path.parent) if (path.parent / "config.json").is_file() else path.stem)


def domain_label(name: str, letter: str) -> str:
    """A domain name as part of a folder or file name (its letter when nothing safe is left)."""
    return safe_name(name, letter)


# ---------------------------------------------------------------------------------------------
# replacing a bundle


def check_bundle_target(
    target: str | Path,
    command: str,
    *,
    ours: Callable[[Bundle], bool],
    overwrite: bool = False,
) -> None:
    """May ``command`` (``import``, ``bundle``) write a bundle into ``target``?

    A new or empty folder, or a bundle for which ``ours`` is true: yes. Another bundle (a run's
    trained bundle, another command's): only with ``overwrite``. A file, or a folder of files
    that are not a bundle: never. Raises CyclekitError naming the way out."""
    from cyclekit.atomic import recover_folder
    from cyclekit.inference.bundle import BUNDLE_FORMAT, read_bundle

    target = recover_folder(Path(target))
    if target.exists() and not target.is_dir():
        raise CyclekitError(f"{target} exists and is not a folder; choose another -o (a bundle is a folder)")
    if not target.is_dir() or not any(target.iterdir()):
        return
    config = target / "config.json"
    if not config.is_file():
        raise CyclekitError(
            f"{target} exists and is not a bundle folder (it holds files that are not a cyclekit bundle); "
            "choose another -o"
        )
    try:
        existing: Optional[Bundle] = read_bundle(target)
    except CyclekitError:
        existing = None
    if existing is None:
        try:
            text = config.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        if BUNDLE_FORMAT not in text:
            raise CyclekitError(f"{config} is not a cyclekit bundle's; choose another -o")
        if overwrite:
            return  # a damaged cyclekit bundle: replaced on request
        raise CyclekitError(
            f"{target} holds a cyclekit bundle that cannot be read; "
            "pass --overwrite to replace it, or choose another -o"
        )
    if overwrite or ours(existing):
        return
    if is_imported(existing):
        what = "an imported bundle"
    else:
        what = f"the bundle of run {existing.run or folder_name(target)!r} (step {existing.step})"
    raise CyclekitError(
        f"{target} holds {what}, which `cyclekit {command}` did not write; "
        "pass --overwrite to replace it, or choose another -o"
    )


# ---------------------------------------------------------------------------------------------
# stale exports


def stale_export_note(
    path: str | Path, props: Mapping[str, str], bundle_folder: str | Path | None = None
) -> str | None:
    """One line when the ONNX export ``path`` (its metadata ``props``) is older than the bundle
    it came from: ``bundle_folder``, default the folder ``path`` lies in when it holds a bundle.
    None when it is current, or when there is no bundle to compare with."""
    from cyclekit.inference.bundle import read_bundle

    path = Path(path)
    folder = Path(bundle_folder) if bundle_folder is not None else path.parent
    if not (folder / "config.json").is_file():
        return None
    try:
        bundle = read_bundle(folder)
        step = int(props.get("step", ""))
    except (CyclekitError, ValueError):
        return None
    sha = props.get("source_weights_sha256", "")
    current = {e.sha256 for e in bundle.networks.values() if e.sha256}
    if step < bundle.step:
        why = f"was exported at step {step}; its bundle {folder} is at step {bundle.step} now"
    elif sha and current and sha not in current:
        why = f"was exported from other weights than those of its bundle {folder} (step {bundle.step})"
    else:
        return None
    again = f"cyclekit export {folder}" + (" --int8 --calibrate DIR" if ".int8." in path.name else "")
    return f"{path} {why}: it is out of date (re-export with `{again}`)"


def stale_exports(
    folder: str | Path, bundle_folder: str | Path, skip: Iterable[str | Path] = (), runs: Iterable[str] | None = None
) -> list[str]:
    """`stale_export_note` for every cyclekit ONNX file in ``folder`` but ``skip`` (just written);
    ``runs``: only files whose ``run`` metadata is one of these (a folder shared by several models)."""
    import onnx

    wanted = None if runs is None else set(runs)
    skipped = {Path(p).resolve() for p in skip}
    notes = []
    for path in sorted(Path(folder).glob("*.onnx")):
        if path.resolve() in skipped or not path.is_file():
            continue
        try:
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception:  # noqa: BLE001 (a foreign or damaged file: not ours to judge)
            continue
        if "cyclekit_format" not in props or (wanted is not None and props.get("run", "") not in wanted):
            continue
        note = stale_export_note(path, props, bundle_folder)
        if note is not None:
            notes.append(note)
    return notes


def stale_exports_after(model: str | Path, folder: str | Path | None, written: Iterable[str | Path]) -> list[str]:
    """After exporting ``model``'s bundle (a run or bundle folder) into ``folder`` (None: the bundle's
    own folder): `stale_exports` there but the files just ``written``, so that an ONNX file an older
    step exported (before a resumed training) is not used without a word. A folder elsewhere may hold
    other models' exports too: only this bundle's are judged there."""
    from cyclekit.inference.bundle import bundle_dir, read_bundle

    source = bundle_dir(model)
    target = Path(folder) if folder is not None else source
    if not target.is_dir():
        return []
    runs = None
    if target.resolve() != source.resolve():
        bundle = read_bundle(source)
        runs = {bundle_name(bundle, source), bundle.run}
    return stale_exports(target, source, skip=written, runs=runs)


# ---------------------------------------------------------------------------------------------
# what an older bundle lacks


def train_size_fix(bundle: Bundle) -> str:
    """What to do about a bundle that does not record its training size: an import made before
    imports took the reference's 256 is imported again; a trained one is rebuilt from its run."""
    if is_imported(bundle):
        return "re-import it with --train-size N (the size it was trained at; the reference trains at 256)"
    return "rebuild it with `cyclekit bundle RUN` (a current cyclekit records it) or retrain it"
