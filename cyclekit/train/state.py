"""The training state of a recipe: its networks, optimizers, schedulers and other stateful parts
(image pools), under fixed names, saved and restored as one flat dict.

Every recipe keeps one `TrainingState`, so checkpoints of every recipe have the same shape and a
checkpoint missing a part is refused with one line naming it, before any shape error can happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import nn

from cyclekit.errors import CyclekitError
from cyclekit.nn.weights import load_weights


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class TrainingState:
    """Named nets, optimizers, schedulers and extras (anything with state_dict/load_state_dict).

    The first optimizer's learning rate is the one the loop logs.

    ``forward`` holds what a training step calls for the passes it trains: the networks themselves,
    or their DistributedDataParallel wrappers in a multi-process run (set by the loop). Everything
    else (frozen passes, samples, bundles, checkpoints) uses ``nets``. ``extras`` (image pools) are
    per process; nets, optimizers and schedulers are the same on every process.
    """

    def __init__(
        self,
        nets: Mapping[str, nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        schedulers: Mapping[str, Any] | None = None,
        extras: Mapping[str, Stateful] | None = None,
        config_keys: Mapping[str, str] | None = None,
    ) -> None:
        self.nets = dict(nets)
        # net name -> the config section it is built from ("G_AtoB" -> "model.generator"), named
        # when a checkpoint does not fit.
        self.config_keys = dict(config_keys or {})
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers or {})
        self.extras = dict(extras or {})
        self.forward: dict[str, nn.Module] = dict(self.nets)
        # Set by the loop for fp16 training (see cyclekit.train.precision); saved when present.
        self.scaler: torch.amp.GradScaler | None = None
        names = [*self.nets, *self.optimizers, *self.schedulers, *self.extras]
        if len(set(names)) != len(names):
            raise ValueError(f"training state names must be unique, got {names}")

    def compile_forward(self) -> None:
        """`train.compile`: torch.compile the trained passes (compiled on first use); the frozen
        passes, samples and bundles stay eager on ``nets``."""
        self.forward = {k: torch.compile(v) for k, v in self.forward.items()}

    def parts(self) -> dict[str, Stateful]:
        return {**self.nets, **self.optimizers, **self.schedulers, **self.extras}

    def state_dict(self) -> dict[str, Any]:
        state = {name: part.state_dict() for name, part in self.parts().items()}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any], source: str = "checkpoint") -> None:
        """Restore every part from ``state`` (read from ``source``, named in errors)."""
        parts = self.parts()
        missing = [name for name in parts if name not in state]
        if missing:
            raise CyclekitError(
                f"checkpoint has no {', '.join(missing)} (it has {', '.join(map(str, state)) or 'nothing'}); "
                "it was written by another recipe or configuration"
            )
        for name, net in self.nets.items():
            load_weights(net, state[name], f"{source} ({name})", self.config_keys.get(name))
        for name, part in parts.items():
            if name in self.nets:
                continue
            try:
                part.load_state_dict(state[name])
            except (RuntimeError, ValueError, KeyError, TypeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise CyclekitError(f"{source}: its {name} does not fit this configuration: {first}") from None
        # Resuming across precisions: a missing scaler state starts a fresh scaler; an unused one is ignored.
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])

    def step_schedulers(self) -> None:
        """The end of a training step: update the fp16 loss scale (once, after every optimizer
        stepped), then advance the learning-rate schedules."""
        if self.scaler is not None:
            self.scaler.update()
        for scheduler in self.schedulers.values():
            scheduler.step()

    def lr(self) -> float:
        return next(iter(self.optimizers.values())).param_groups[0]["lr"]
