"""Multi-process training (torchrun + DDP) on CPU: 2 processes on the gloo backend, one intra-op
thread each. Every run goes through `cyclekit train --nproc 2`, the real launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from cyclekit.train.distributed import Distributed
from tests import helpers
from tests.conftest import write_images
from tests.helpers import TINY_CYCLEGAN, cli, one_error
from tests.test_pix2pix import args as p2p_args
from tests.test_pix2pix import write_pairs

TINY = [
    *TINY_CYCLEGAN,
    "train.log_every=1",
    "train.sample_every=0",
    "cyclegan.pool_size=0",  # pools are per process: a 1-process batch-2 run would draw differently
]


def run_cli(*args: str, marker: str = "", timeout: float = 240) -> subprocess.CompletedProcess:
    cmd, kw = _popen_args(args, marker)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _popen_args(args: tuple[str, ...], marker: str) -> tuple[list[str], dict]:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1", "CYCLEKIT_TEST_MARK": marker}
    return [sys.executable, "-m", "cyclekit", *args], {"env": env}


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return helpers.train_args("horse2zebra", root, out, TINY, *extra)


def weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    return {f"{net}.{k}": v for net in ("G_AtoB", "G_BtoA", "D_A", "D_B") for k, v in state["recipe"][net].items()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].numel())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp") / "data"
    write_images(root / "trainA", 8, seed=1)
    write_images(root / "trainB", 6, seed=2)
    return root


@pytest.fixture(scope="module")
def two_process_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp2")
    done = run_cli(*train_args(data, out, "train.epochs=3", "data.batch_size=1"), "--nproc", "2")
    assert done.returncode == 0, done.stderr
    return out / "horse2zebra"


# -- the data shards ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, world", [(8, 2), (7, 2), (10, 3), (1, 4)])
def test_shards_are_disjoint_cover_the_epoch_and_are_equal_in_length(n: int, world: int):
    plan = list(range(n))
    shards = [Distributed(rank, world).shard(plan) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
    per_rank = -(-n // world)
    assert len(shards[0]) == per_rank
    seen = [x for s in shards for x in s]
    assert set(seen) == set(plan)  # everything is seen
    assert len(seen) - len(set(seen)) == per_rank * world - n  # only the padding repeats
    # step k of the job = items k*world .. k*world+world-1 of the plan: a 1-process batch of world
    assert [shards[r][0] for r in range(world)] == plan[:world] or n < world
    assert Distributed().shard(plan) == plan


# -- the 2-process run -------------------------------------------------------------------------


def test_two_processes_hold_identical_weights(two_process_run: Path):
    state = torch.load(two_process_run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["step"] == 12  # 3 epochs of max(8, 6) = 8 items, 4 per rank
    # The largest difference of any weight or buffer between the ranks, measured at every
    # checkpoint (element-wise all-reduced max - min): none at all.
    assert state["rank_weight_spread"] == 0.0
    # The ranks drew their own noise and keep their own random states.
    assert not torch.equal(state["ranks"][0]["rng"]["torch"], state["ranks"][1]["rng"]["torch"])


def test_two_processes_at_batch_one_match_one_process_at_batch_two(data: Path, tmp_path: Path):
    """Instance norm is per sample, DDP averages the ranks' gradients and the shards interleave,
    so each step sees the same two images: equal in exact arithmetic. What remains is float32
    summation order (a batch-2 mean vs the all-reduced mean of two batch-1 means). Measured over
    one epoch (4 steps): losses within 5e-7 (relative), weights within 3.4e-7; the only larger
    differences (1.3e-3) are conv biases right before an instance norm, whose exact gradient is
    zero: Adam turns their rounding-noise gradients into lr-sized steps, and the norm removes them
    again, so the networks' outputs still agree (measured 2e-6). Beyond ~6 steps GAN training
    amplifies the rounding differences chaotically (5% apart by step 12), as any two runs that
    sum in a different order do."""
    from cyclekit.inference.bundle import load_network, read_bundle

    extra = ("train.epochs=1",)
    code, _, err = cli(*train_args(data, tmp_path / "one", *extra, "data.batch_size=2"))
    assert code == 0, err
    done = run_cli(*train_args(data, tmp_path / "two", *extra, "data.batch_size=1"), "--nproc", "2")
    assert done.returncode == 0, done.stderr
    one, two = tmp_path / "one" / "horse2zebra", tmp_path / "two" / "horse2zebra"

    rows = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (one, two)]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] == [1, 2, 3, 4]
    for a, b in zip(*rows, strict=True):
        for key in (k for k in a if k.startswith("loss")):
            assert abs(a[key] - b[key]) <= 5e-6 * max(abs(a[key]), 1e-3), (a["step"], key, a[key], b[key])

    w1, w2 = weights(one), weights(two)
    assert (
        max_diff(
            {k: v for k, v in w1.items() if not k.endswith("bias")},
            {k: v for k, v in w2.items() if not k.endswith("bias")},
        )
        < 1e-5
    )
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    outputs = []
    for run in (one, two):
        bundle = read_bundle(run / "bundle")
        net = load_network(run / "bundle", bundle, "G_AtoB")
        with torch.no_grad():
            outputs.append(net(x))
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-4


def test_only_rank_zero_writes_and_the_result_translates(two_process_run: Path, tmp_path: Path):
    files = sorted(str(p.relative_to(two_process_run)) for p in two_process_run.rglob("*") if p.is_file())
    assert "config.yaml" in files and "checkpoints/last.pt" in files and "bundle/config.json" in files
    assert not [f for f in files if "cyclekit-tmp" in f]
    write_images(tmp_path / "in", 1, size=32)
    code, out, err = cli("translate", str(tmp_path / "in"), "--model", str(two_process_run), "-o", str(tmp_path / "o"))
    assert code == 0, err


def test_resume_with_another_process_count_is_refused_in_one_line(two_process_run: Path, data: Path):
    before = (two_process_run / "config.yaml").read_bytes()
    code, _, err = cli(
        *train_args(data, two_process_run.parent, "train.epochs=3", "data.batch_size=1"), "--resume", "auto"
    )
    assert code == 1
    assert err.strip().count("\n") == 0 and "written by a run of 2 processes, this run has 1" in err
    assert "--nproc 2" in err
    assert (two_process_run / "config.yaml").read_bytes() == before


@pytest.mark.slow  # killing one rank of a 2-process job; two-process equality and resume refusal run by default
def test_kill_one_rank_then_resume_reproduces_the_uninterrupted_run(two_process_run: Path, data: Path, tmp_path: Path):
    """SIGKILL rank 1 mid-run: the job stops with one line naming it and the checkpoint; the
    checkpoint is intact; `--resume auto --nproc 2` ends with the weights of the uninterrupted run."""
    marker = uuid.uuid4().hex
    args = [*train_args(data, tmp_path, "train.epochs=3", "data.batch_size=1", "train.checkpoint_every=2")]
    cmd, kw = _popen_args((*args, "--nproc", "2"), marker)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    ckpt = tmp_path / "horse2zebra" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rank1 = _worker_pid(marker, rank=1)
    os.kill(rank1, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: rank 1 (pid {rank1}) was killed by SIGKILL; the job stopped."), err
    assert f"Last checkpoint: {ckpt} (step " in lines[-1] and "--resume auto" in lines[-1]
    killed_at = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]
    assert 0 < killed_at < 12
    assert "Traceback" not in err

    done = run_cli(*args, "--resume", "auto", "--nproc", "2")
    assert done.returncode == 0, done.stderr
    assert max_diff(weights(tmp_path / "horse2zebra"), weights(two_process_run)) == 0.0


def _worker_pid(marker: str, rank: int, timeout: float = 60) -> int:
    """The pid of the worker with this RANK among the processes carrying our marker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"CYCLEKIT_TEST_MARK={marker}".encode() in env and f"RANK={rank}".encode() in env:
                return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no worker of rank {rank} found")


@pytest.mark.slow  # a second recipe under DDP; CycleGAN's DDP tests cover the shared loop by default
def test_pix2pix_trains_on_two_processes_through_the_shared_loop(tmp_path: Path):
    """Pix2Pix's discriminator uses batch norm: on a CPU each rank normalises with its own batch
    (a warning says so; SyncBatchNorm is CUDA-only) and DDP keeps the weights identical."""
    root = write_pairs(tmp_path / "pairs", n_train=6, n_test=2)
    a = p2p_args(root, tmp_path / "runs", "train.epochs=2", "data.batch_size=1", "name=p2p")
    done = run_cli(*a, "--nproc", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("G, D use batch norm: on a CPU each process normalises") == 1  # rank 0 only
    state = torch.load(tmp_path / "runs" / "p2p" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["rank_weight_spread"] == 0.0 and state["step"] == 6
    assert (tmp_path / "runs" / "p2p" / "results.json").is_file()


def test_launcher_options_are_checked_in_one_line(data: Path, tmp_path: Path):
    code, _, err = cli(*train_args(data, tmp_path), "--nproc", "0")
    assert code == 1 and "--nproc: must be >= 1" in err
    code, _, err = cli(*train_args(data, tmp_path), "--nproc", "1", "--nnodes", "2")
    assert code == 1 and "--rdzv-endpoint HOST:PORT" in err
    code, _, err = cli(*train_args(data, tmp_path), "--nproc", "2", "--rdzv-endpoint", "nohost")
    assert code == 1 and "expected HOST:PORT" in err
    assert not (tmp_path / "horse2zebra").exists()


@pytest.mark.slow  # two launchers on one CPU; the one-machine DDP tests cover the training itself
def test_two_machines_meet_at_a_rendezvous_endpoint(data: Path, tmp_path: Path):
    """The multi-node path, on one machine: two launchers (`--nnodes 2 --nproc 1`, as on two
    machines) meet at the same c10d endpoint; rank 0's node writes the run."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for node in range(2):
        a = train_args(data, tmp_path / f"node{node}", "train.epochs=1", "data.batch_size=1")
        cmd, kw = _popen_args((*a, "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"), "")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw))
        time.sleep(0.5)
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    written = [n for n in range(2) if (tmp_path / f"node{n}" / "horse2zebra" / "checkpoints" / "last.pt").is_file()]
    assert len(written) == 1
    state = torch.load(tmp_path / f"node{written[0]}" / "horse2zebra" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and state["step"] == 4 and state["rank_weight_spread"] == 0.0
    assert "on the machine that ran rank 0" in results[1 - written[0]][0]


@pytest.mark.slow
def test_compiled_training_passes_compute_the_same_step(data: Path, tmp_path: Path):
    """train.compile: the first steps' losses match eager ones to float tolerance (later steps drift
    apart chaotically, as any change of summation order does in GAN training). About 45 s of compiling."""
    runs = {}
    for flag in ("false", "true"):
        args = train_args(data, tmp_path / flag, "train.epochs=1", "train.max_steps=2", f"train.compile={flag}")
        code, _, err = cli(*args)
        assert code == 0, err
        runs[flag] = [
            json.loads(x) for x in (tmp_path / flag / "horse2zebra" / "metrics.jsonl").read_text().splitlines()
        ]
    for eager, compiled in zip(runs["false"], runs["true"], strict=True):
        for key in (k for k in eager if k.startswith("loss")):
            # measured: 1.5e-6 at step 1, 3.1e-5 at step 2 (relative)
            assert abs(eager[key] - compiled[key]) <= 2e-4 * max(abs(eager[key]), 1e-2), (eager["step"], key)


@pytest.mark.slow  # Ctrl-C of a 2-process job; single-process Ctrl-C is in test_first_hour
def test_ctrl_c_stops_every_rank_after_the_same_step_with_a_checkpoint(data: Path, tmp_path: Path):
    """SIGINT to the launcher (as Ctrl-C in a terminal): it passes it on, both ranks agree on the
    step, rank 0 checkpoints it, and the job ends with one line and exit code 130."""
    args = train_args(data, tmp_path, "train.epochs=500", "data.batch_size=1", "train.checkpoint_every=100000")
    cmd, kw = _popen_args((*args, "--nproc", "2"), "")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    metrics = tmp_path / "horse2zebra" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 6):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = one_error(err)
    assert line.startswith("error: interrupted at step "), err
    stopped = int(line.split("step ")[1].split(";")[0])
    state = torch.load(tmp_path / "horse2zebra" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["step"] == stopped and state["rank_weight_spread"] == 0.0
    assert stopped < 2000  # long before the 500 epochs end
