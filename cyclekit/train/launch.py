"""`cyclekit train --nproc N`: start N training processes on this machine with torchrun's engine
(torch.distributed.elastic, the same one the `torchrun` command runs), one per GPU, or several
on a CPU. For several machines, the same command runs on each with ``--nnodes`` and a shared
``--rdzv-endpoint HOST:PORT`` (the c10d rendezvous: the first machine's address).

The launcher reports the job's end in one line: a worker that failed with an error has already
printed it; a worker killed by a signal or crashed is named here, with the checkpoint a
``--resume auto`` continues from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from cyclekit.errors import CyclekitError


def under_torchrun() -> bool:
    """True inside a process torchrun started (it sets WORLD_SIZE and LOCAL_RANK)."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def job_rank() -> int:
    """This process's rank in a torchrun job (0 otherwise), read from the environment: known
    before torch.distributed is set up, and without importing torch."""
    return _env_int("RANK", 0)


def in_job() -> bool:
    """A worker of a multi-process (torchrun) job."""
    return _env_int("WORLD_SIZE", 1) > 1


_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL", "is killed by signal")


def lost_peer(exc: BaseException) -> bool:
    """In a multi-process job: a collective failed because another process went away, or this one's
    data-loading processes were stopped with the job."""
    return in_job() and any(s in str(exc) for s in _LOST)


def launch(
    args: Sequence[str],
    nproc: int,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    run_id: str | None = None,
    checkpoint: Path | None = None,
) -> int:
    """Run ``python -m cyclekit <args>`` as ``nproc`` processes per machine on ``nnodes`` machines.

    Returns 0 when every process finished, or the exit code of a worker that has already printed
    why it stopped (1: an error, 130: Ctrl-C, after checkpointing). Raises CyclekitError with one
    line when a worker was killed or crashed without a word."""
    if nproc < 1:
        raise CyclekitError(f"--nproc: must be >= 1, got {nproc}")
    if nnodes < 1:
        raise CyclekitError(f"--nnodes: must be >= 1, got {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise CyclekitError(
            "--nnodes > 1 needs --rdzv-endpoint HOST:PORT: an address of the first machine that every machine "
            "reaches, the same on each"
        )
    if rdzv_endpoint is not None and (":" not in rdzv_endpoint or not rdzv_endpoint.rsplit(":", 1)[1].isdigit()):
        raise CyclekitError(f"--rdzv-endpoint: expected HOST:PORT, got {rdzv_endpoint!r}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torchrun's default: without a setting, N processes x all cores of intra-op threads would
    # fight over the cores (5-10x slower steps on a small CPU). Split the cores between them.
    saved_env = dict(os.environ)  # the workers inherit these; the caller's environment is restored
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ["CYCLEKIT_LAUNCHER"] = "1"  # workers leave "a peer went away" to the launcher's line
    # The one line below says what happened: quiet torch's own agent logs (set per logger, as
    # torch configures its loggers individually).
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc,
        run_id=run_id or str(uuid.uuid4()),
        rdzv_endpoint=rdzv_endpoint or "localhost:0",
        rdzv_backend="c10d",
        max_restarts=0,
        monitor_interval=0.1,
        # Ctrl-C is passed on to the workers (each runs in its own session), which agree to stop
        # after the same step and checkpoint it; the agent must not kill them meanwhile.
        signals_to_handle="SIGTERM,SIGHUP,SIGQUIT",
    )
    previous = signal.signal(signal.SIGINT, _forward_to_workers)
    try:
        elastic_launch(config, sys.executable)("-m", "cyclekit", *args)
        return 0
    except SignalException as exc:
        raise CyclekitError(f"the job was stopped by signal {exc.sigval.name}. {_where(checkpoint)}") from None
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        # A rank killed by a signal is the cause; the others then fail on the lost connection.
        # SIGTERM is the agent's own way of stopping the rest of the job, so it is never the cause.
        killed = [(r, f) for r, f in exc.failures.items() if f.exitcode < 0 and -f.exitcode != signal.SIGTERM]
        if killed:
            rank, failure = min(killed, key=lambda rf: (rf[1].timestamp, rf[0]))
        if failure.exitcode > 0:
            return failure.exitcode
        how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited ({failure.exitcode})"
        raise CyclekitError(f"rank {rank} (pid {failure.pid}) {how}; the job stopped. {_where(checkpoint)}") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        os.environ.clear()
        os.environ.update(saved_env)


def _forward_to_workers(signum: int, frame: object) -> None:
    """Ctrl-C in the launcher: send SIGINT to each worker's process group (the worker and its
    data-loading processes), as the terminal would if they shared the launcher's."""
    for pid in _children(os.getpid()):
        try:
            os.killpg(pid, signal.SIGINT)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGINT)


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc on Linux, else `pgrep -P`)."""
    proc = Path("/proc")
    if proc.is_dir():
        out = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
        return out
    try:
        found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [int(x) for x in found.split()]


def _where(checkpoint: Path | None) -> str:
    """The checkpoint a resume continues from, with its step, read without loading the weights."""
    if checkpoint is None or not checkpoint.is_file():
        return "No checkpoint was written yet."
    step = "?"
    try:
        import torch

        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        step = str(state.get("step", "?"))
    except Exception:  # noqa: BLE001 - the message is best effort; the file is named either way
        pass
    return f"Last checkpoint: {checkpoint} (step {step}); continue with --resume auto"
