"""Training on several processes (GPUs, machines) with PyTorch's own engine: torchrun starts one
process per device and sets RANK / WORLD_SIZE / LOCAL_RANK; DistributedDataParallel (DDP) averages
the gradients of every training forward pass across processes during backward.

How cyclekit uses it:
- `setup` joins the process group torchrun prepared (NCCL on CUDA, gloo on a CPU), plus a small gloo
  group for control flags (stop requests, errors) that never waits on a GPU.
- Every process builds the same networks from the same seed; `wrap_for_ddp` puts each trainable
  network behind DDP (`TrainingState.forward`), which broadcasts rank 0's weights at the start.
  Recipes call those wrappers for the passes they train, and the plain networks for everything
  else (a frozen discriminator inside the generator's step, samples, bundles).
- Each epoch's sample plan is split into disjoint shards (`shard`), one per process, as
  DistributedSampler does: every item of an epoch (for CycleGAN an A image and its B draw) goes to
  exactly one process, and the plan is seeded, so a run is reproducible for a given world size.
- Only rank 0 writes files. A checkpoint carries the shared state once (nets, optimizers,
  schedules: identical on every rank) and each rank's own random state and image pools.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cyclekit.errors import CyclekitError, ReportedElsewhere

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Distributed:
    """Where this process stands in the job: rank, world size, local rank on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    control: Any = None  # a gloo process group for CPU-side flags and small objects
    solo: Any = None  # a process group of this rank alone (see `solo_batch_norm`)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- data -----------------------------------------------------------------------------------

    def per_rank(self, n_items: int) -> int:
        """How many items of an epoch of ``n_items`` each rank gets (the plan is padded up)."""
        return math.ceil(n_items / self.world)

    def shard(self, plan: Sequence[T]) -> list[T]:
        """This rank's disjoint share of an epoch's plan: items rank, rank + world, ... of the plan
        padded (by repeating its start) to a multiple of the world size, so every rank takes the
        same number of steps. Rank r's k-th item is the plan's item k * world + r: with batch b per
        rank, step k of the job covers exactly the items of a one-process run's step k at batch
        b * world."""
        if not self.enabled or not plan:
            return list(plan)
        total = self.per_rank(len(plan)) * self.world
        padded = list(plan) + [plan[i % len(plan)] for i in range(total - len(plan))]
        return padded[self.rank :: self.world]

    # -- agreement ------------------------------------------------------------------------------

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (one small CPU all-reduce)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result to every rank. A CyclekitError on rank 0
        is raised on rank 0 and, as `ReportedElsewhere` (printed by rank 0 only), on the others."""
        if not self.enabled:
            return fn()
        payload: list[Any] = [None]
        if self.is_main:
            try:
                payload = [("ok", fn())]
            except CyclekitError as exc:
                payload = [("error", str(exc))]
                dist.broadcast_object_list(payload, src=0, group=self.control)
                raise
        dist.broadcast_object_list(payload, src=0, group=self.control)
        status, value = payload[0]
        if status == "error":
            raise ReportedElsewhere(value)
        return value

    def everywhere(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it raises a CyclekitError on any rank, every rank stops:
        rank 0 raises one error naming what failed (and on which ranks, when they differ), the
        others raise `ReportedElsewhere`. Keeps a setup error from leaving the other ranks
        waiting in a collective."""
        if not self.enabled:
            return fn()
        error: str | None = None
        result: Any = None
        try:
            result = fn()
        except CyclekitError as exc:
            error = str(exc)
        errors: list[str | None] = [None] * self.world
        dist.all_gather_object(errors, error, group=self.control)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if not failed:
            return result
        if not self.is_main:
            raise ReportedElsewhere(error or failed[0][1])
        messages = sorted({e for _, e in failed})
        if len(messages) == 1 and (len(failed) == self.world or errors[0] is not None):
            raise CyclekitError(messages[0])
        raise CyclekitError("; ".join(f"rank {r}: {e}" for r, e in failed))

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` (CPU objects) on rank 0, in rank order; None elsewhere."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.control)
        return out

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` over ranks (e.g. the logged losses: one collective for all)."""
        if not self.enabled:
            return values
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world

    def weight_spread(self, nets: Sequence[nn.Module]) -> float:
        """The largest difference of any parameter between ranks (0 when DDP keeps them in step):
        element-wise max and min over ranks, two all-reduces. Buffers are left out: batch norm's
        running statistics are per rank between forward passes (DDP broadcasts rank 0's at each)."""
        if not self.enabled:
            return 0.0
        tensors = [p.detach().float().flatten() for net in nets for p in net.parameters()]
        tensors = [t for t in tensors if t.numel()]
        if not tensors:
            return 0.0
        flat = torch.cat(tensors)
        hi, lo = flat.clone(), flat.clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        return float((hi - lo).max())


_CURRENT = Distributed()


def current() -> Distributed:
    """The running job's context (one process, rank 0, unless `setup` joined a group)."""
    return _CURRENT


def setup(device: str = "auto", timeout_s: float = 1800) -> Distributed:
    """Join the process group torchrun prepared; a no-op (one process) when WORLD_SIZE is 1 or unset.

    On CUDA each process takes GPU ``LOCAL_RANK`` and NCCL; otherwise gloo (CPU). Returns the context,
    also available as `current()`."""
    global _CURRENT
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise CyclekitError("WORLD_SIZE / RANK / LOCAL_RANK must be integers (they are set by torchrun)") from None
    if world <= 1:
        return _CURRENT
    if dist.is_initialized():
        return _CURRENT
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise CyclekitError(f"device {device} requested but no CUDA GPU is available (use --device cpu)")
        if local_rank >= torch.cuda.device_count():
            raise CyclekitError(
                f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPU(s): "
                "start at most one process per GPU (--nproc)"
            )
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    control = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    solo, _ = dist.new_subgroups(group_size=1) if backend == "nccl" else (None, None)
    _CURRENT = Distributed(rank, world, local_rank, backend, control, solo)
    return _CURRENT


def teardown(wait_s: float = 60) -> None:
    """Leave the process group, on every way out of a run (finished, interrupted, failed).

    Left to the interpreter's exit, gloo's threads abort the process (SIGABRT, "terminate called
    without an active exception"), which would turn a clean stop into a crash. The ranks first
    meet at a barrier that gives up after ``wait_s`` (a rank that died or hangs elsewhere cannot
    hold the others), then destroy the group."""
    global _CURRENT
    gc.collect()  # DDP wrappers the caller dropped still hold the group
    if dist.is_initialized():
        if wait_s > 0:
            with contextlib.suppress(Exception):
                dist.monitored_barrier(group=_CURRENT.control, timeout=datetime.timedelta(seconds=wait_s))
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _CURRENT = Distributed()


def device_for(device: str, ctx: Distributed) -> str:
    """The device name this rank trains on: on CUDA, its own GPU (``cuda:LOCAL_RANK``)."""
    if ctx.enabled and ctx.backend == "nccl":
        return f"cuda:{ctx.local_rank}"
    return device


def wrap_for_ddp(nets: dict[str, nn.Module], device: torch.device, ctx: Distributed) -> dict[str, nn.Module]:
    """DDP wrappers of the trainable ``nets`` (the same dict, unwrapped, for one process).

    Batch norm: on CUDA the layers become SyncBatchNorm, so statistics cover the whole global batch
    (the networks keep their parameter objects, so optimizers stay valid). PyTorch's SyncBatchNorm
    runs on CUDA only; on a CPU each process normalises with its own batch's statistics (a warning
    says so) and DDP broadcasts rank 0's running statistics at every forward."""
    if not ctx.enabled:
        return dict(nets)
    out: dict[str, nn.Module] = {}
    per_rank_bn = []
    for name, net in nets.items():
        if not any(p.requires_grad for p in net.parameters()):
            out[name] = net
            continue
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        if has_bn and device.type == "cuda":
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            assert converted is net  # children are replaced in place; the network itself is no norm layer
        elif has_bn:
            per_rank_bn.append(name)
        ids = None
        if device.type == "cuda":
            ids = [device.index if device.index is not None else torch.cuda.current_device()]
        out[name] = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if per_rank_bn and ctx.is_main:
        logger.warning(
            "%s use%s batch norm: on a CPU each process normalises with its own batch's statistics "
            "(PyTorch's SyncBatchNorm needs CUDA)",
            ", ".join(per_rank_bn),
            "s" if len(per_rank_bn) == 1 else "",
        )
    return out


@contextlib.contextmanager
def solo_batch_norm(nets: dict[str, nn.Module], ctx: Distributed) -> Iterator[None]:
    """Inside the block, SyncBatchNorm layers use only this process's batch: for the outputs rank 0
    makes alone (samples, a Pix2Pix bundle's per-image statistics), where a synchronising layer would
    wait forever for the other ranks. A process group of one makes SyncBatchNorm plain batch norm."""
    layers = [m for net in nets.values() for m in net.modules() if isinstance(m, nn.SyncBatchNorm)]
    if not ctx.enabled or not layers:
        yield
        return
    saved = [m.process_group for m in layers]
    for m in layers:
        m.process_group = ctx.solo
    try:
        yield
    finally:
        for m, group in zip(layers, saved, strict=True):
            m.process_group = group


def check_world(stored: int, ctx: Distributed, path: Any) -> None:
    """A checkpoint resumes only with the world size that wrote it: steps per epoch, the lr
    schedule and the data shards all depend on it."""
    if stored != ctx.world:

        def procs(n: int) -> str:
            return f"{n} process{'es' if n != 1 else ''}"

        raise CyclekitError(
            f"checkpoint {path} was written by a run of {procs(stored)}, this run has {procs(ctx.world)}: "
            f"resume it with --nproc {stored} (the schedule and data shards depend on it) or start a new run"
        )
