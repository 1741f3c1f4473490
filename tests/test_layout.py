"""Imports point one way (DESIGN.md): lower layers never import higher ones, only cli/ knows typer,
and inference/export never pull in training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "cyclekit"

# module prefix -> cyclekit sub-packages it must not import
FORBIDDEN = {
    "cyclekit.config": ["nn", "models", "gan", "data", "train", "recipes", "inference", "export", "run", "cli"],
    "cyclekit.nn": ["models", "gan", "data", "train", "recipes", "inference", "export", "run", "cli"],
    "cyclekit.models": ["config", "gan", "data", "train", "recipes", "inference", "export", "run", "cli"],
    "cyclekit.gan": ["nn", "models", "data", "train", "recipes", "inference", "export", "run", "cli"],
    "cyclekit.data": ["models", "gan", "train", "recipes", "inference", "export", "run", "cli"],
    "cyclekit.train": ["models", "gan", "data", "recipes", "inference", "export", "report", "evaluation", "run", "cli"],
    "cyclekit.recipe": ["models", "gan", "data", "recipes", "export", "report", "evaluation", "run", "cli"],
    "cyclekit.recipes": ["inference", "export", "run", "cli"],
    "cyclekit.inference": ["train", "recipes", "export", "run", "cli"],
    "cyclekit.export": ["train", "recipes", "run", "cli"],
    "cyclekit.bench": ["cli"],
    # config migration sits at the config's layer (cyclekit.config imports it): it knows no recipe
    # class, only tables by recipe name, and turns old fingerprints into raw configs for the run
    "cyclekit.migrate": [
        "nn",
        "models",
        "gan",
        "data",
        "train",
        "recipes",
        "inference",
        "export",
        "evaluation",
        "report",
        "run",
        "cli",
    ],
    # the run layer wires recipes, the loop, evaluation and the report into a run; of inference only
    # the bundle (rebuilding one from a checkpoint); it never reaches up to the commands
    "cyclekit.run": ["inference", "export", "bench", "cli"],
    "cyclekit.evaluation": ["train", "recipes", "export", "run", "cli"],
    "cyclekit.report": ["nn", "models", "gan", "data", "recipes", "inference", "export", "evaluation", "run", "cli"],
    "cyclekit.choices": ["*"],
    "cyclekit.atomic": [
        "choices",
        "config",
        "nn",
        "models",
        "gan",
        "data",
        "train",
        "recipes",
        "inference",
        "export",
        "run",
        "cli",
    ],
    "cyclekit.errors": ["*"],
    # a recipe's players are declarations read when a config loads: no torch, nothing above errors
    "cyclekit.players": [
        "choices",
        "config",
        "typed",
        "nn",
        "models",
        "gan",
        "data",
        "train",
        "recipe",
        "recipes",
        "inference",
        "export",
        "evaluation",
        "report",
        "run",
        "cli",
    ],
    # every config is read through it; it knows nothing of cyclekit
    "cyclekit.yamltext": ["*"],
    # importing weights builds networks and bundles; it trains nothing
    "cyclekit.interop": ["train", "recipes", "gan", "export", "evaluation", "report", "run", "cli"],
    # fetching knows no catalogue: datasets, FID weights and pretrained models come through it
    "cyclekit.fetch": [
        "choices",
        "config",
        "nn",
        "models",
        "gan",
        "data",
        "train",
        "recipes",
        "inference",
        "export",
        "evaluation",
        "report",
        "run",
        "cli",
    ],
    # the typed loader is the bottom layer: config, models and bundles read with it
    "cyclekit.typed": [
        "choices",
        "config",
        "atomic",
        "nn",
        "models",
        "gan",
        "data",
        "train",
        "recipes",
        "inference",
        "export",
        "run",
        "cli",
    ],
}
# The bundle format is the contract between training and inference: recipes write bundles with its
# one writer, so `cyclekit.inference.bundle` (and nothing else of inference) is allowed to them.
ALLOWED = {
    "cyclekit.recipes": ["cyclekit.inference.bundle"],
    # The run layer (cyclekit/run/) wires evaluation (train.eval_every) and the report into a run, and
    # rebuilds bundles: the bundle's writer and who may replace a bundle folder (cyclekit bundle -o).
    "cyclekit.run": ["cyclekit.inference.bundle", "cyclekit.inference.provenance"],
    # The recipe contract names what a recipe is given to train on: the run's data, as the typed
    # datasets of `cyclekit.data.protocol` (which finds and reads nothing itself).
    "cyclekit.recipe": ["cyclekit.data.protocol"],
}


def modules() -> dict[str, set[str]]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
        out[name] = imported
    return out


MODULES = modules()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_one_way(name: str):
    for prefix, banned in FORBIDDEN.items():
        if name == prefix or name.startswith(prefix + "."):
            for imp in MODULES[name]:
                if imp in ALLOWED.get(prefix, []):
                    continue
                for b in banned:
                    if b == "*":  # the bottom modules import nothing of cyclekit
                        assert not imp.startswith("cyclekit"), f"{name} imports {imp}"
                        continue
                    target = f"cyclekit.{b}"
                    assert not (imp == target or imp.startswith(target + ".")), f"{name} imports {imp}"


def test_only_cli_knows_typer():
    users = sorted(n for n, imps in MODULES.items() if any(i == "typer" or i.startswith("typer.") for i in imps))
    assert users and all(n == "cyclekit.cli" or n.startswith("cyclekit.cli.") for n in users), users
    assert "cyclekit.cli.common" in users  # the app and the error boundary the commands share
