"""The shared training substrate in one process: sampler, gathers, precision, schedules, the loop's
resume / NaN / max_steps / early-stopping behaviour, and atomic checkpoints under a full disk."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from radzoo.errors import ArtifactError, InputError
from radzoo.training import distributed as D
from radzoo.training.data import view_generator
from radzoo.training.loop import Phase, Settings, Trainer, TrainingError, loader_options
from radzoo.training.precision import Precision, resolve_precision
from radzoo.training.resume import load_training_state, read_training_meta, save_training_state
from radzoo.training.run_log import read_metrics
from radzoo.training.schedules import cosine_annealing, linear_warmup_cosine, step_decay

from .ddp_worker import PairMethod, Pairs

CPU = D.DistContext(0, 1, 0, torch.device("cpu"), None)


# ------------------------------------------------------------------------------ distributed


def test_global_batches_do_not_depend_on_the_world_size():
    data = list(range(23))
    one = list(D.ResumableDistributedSampler(data, 6, num_replicas=1, rank=0, seed=5))
    assert len(one) == 18 and len(set(one)) == 18  # 3 whole global batches, the rest dropped
    for world in (2, 3):
        ranks = [list(D.ResumableDistributedSampler(data, 6, num_replicas=world, rank=r, seed=5)) for r in range(world)]
        local = 6 // world
        for k in range(3):  # global batch k = the union of every rank's k-th local batch
            merged = sorted(i for r in ranks for i in r[k * local : (k + 1) * local])
            assert merged == sorted(one[k * 6 : (k + 1) * 6])
    resumed = D.ResumableDistributedSampler(data, 6, num_replicas=2, rank=1, seed=5)
    resumed.set_start(12)  # two global batches already trained
    assert sorted(list(resumed) + list(_rank0_from(data, 12))) == sorted(one[12:])
    s = D.ResumableDistributedSampler(data, 6, num_replicas=1, rank=0, seed=5)
    s.set_epoch(1)
    assert list(s) != one  # a new permutation each epoch
    with pytest.raises(InputError, match="batch_size 6 is the global batch and must be divisible by the world size 4"):
        D.ResumableDistributedSampler(data, 6, num_replicas=4, rank=0)


def _rank0_from(data, start):
    s = D.ResumableDistributedSampler(data, 6, num_replicas=2, rank=0, seed=5)
    s.set_start(start)
    return s


def test_gathers_are_no_ops_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert D.gather_global_batch(x) is x and D.gather_no_grad(x) is x
    shuffled, inverse = D.shuffle_batch(x, torch.Generator().manual_seed(0))
    assert shuffled is x and torch.equal(D.unshuffle_batch(x, inverse), x)
    assert D.all_agree(True) and not D.all_agree(False)
    assert D.mean_over_ranks({"a": 2.0}) == {"a": 2.0}
    assert D.current_world_size() == 1 and D.current_rank() == 0


def test_setup_reads_the_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    ctx = D.setup("cpu")
    assert (ctx.world_size, ctx.rank, ctx.backend, ctx.device.type) == (1, 0, None, "cpu") and ctx.is_main
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(InputError, match="inconsistent launch environment"):
        D.setup("cpu")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match="dist_backend"):
        D.setup("cpu", backend="mpi")


# ------------------------------------------------------------------------------- precision


def test_precision_resolution_and_bf16_autocast_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, paper="fp16") == "32"  # fp16 AMP does not exist on CPU
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("16-mixed", torch.device("cuda")) == "fp16"
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(InputError, match="precision must be one of"):
        resolve_precision("fp8", cpu)
    p = Precision("bf16", cpu)
    lin = nn.Linear(4, 4)
    with p.autocast():
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    assert lin.weight.dtype == torch.float32 and p.state_dict() == {}
    with Precision("32", cpu).autocast():
        assert lin(torch.randn(2, 4)).dtype == torch.float32


# ------------------------------------------------------------------------------- schedules


def test_schedules_match_torch_and_pl_bolts_formulas():
    lr = step_decay(1e-4, (12, 18), 0.1)
    assert lr(0, 11) == 1e-4 and lr(0, 12) == pytest.approx(1e-5) and lr(0, 18) == pytest.approx(1e-6)
    # LoVT: CosineAnnealingLR(T_max = steps per epoch), stepped per optimiser step; periodic
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5, eta_min=0)
    ours = cosine_annealing(1e-4, 5)
    for step in range(15):
        assert ours(step, 0) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        opt.step()
        sched.step()
    assert ours(5, 0) == pytest.approx(0.0, abs=1e-15) and ours(10, 0) == pytest.approx(1e-4)
    # PRIOR: linear warm-up from start to base over W steps, then cosine to eta_min over T - W
    warm = linear_warmup_cosine(1e-5, 4, 20, warmup_start_lr=1e-7, eta_min=0.0)
    expected = [1e-7 + s * (1e-5 - 1e-7) / 3 for s in range(4)]
    expected += [0.5 * 1e-5 * (1 + math.cos(math.pi * (s - 4) / 16)) for s in range(4, 21)]
    assert [warm(s, 0) for s in range(21)] == pytest.approx(expected, rel=1e-12, abs=1e-20)
    assert warm(3, 0) == pytest.approx(1e-5) and warm(20, 0) == pytest.approx(0.0, abs=1e-20)
    assert linear_warmup_cosine(1e-5, 1, 5, 1e-7)(0, 0) == 1e-7  # W = 1 divides by zero in pl_bolts


# ------------------------------------------------------------------------------------ loop


def _phases(lr: float = 0.5):
    def build(steps: int) -> list[Phase]:
        return [Phase("one", 2, lambda p: torch.optim.SGD(p, lr=lr), cosine_annealing(lr, steps))]

    return build


def _settings(**kw) -> Settings:
    base = {"epochs": 2, "batch_size": 8, "seed": 3, "accumulate": 2, "progress": False}
    return Settings(**{**base, **kw})


def test_resumed_mid_epoch_run_equals_an_uninterrupted_one(tmp_path):
    full = PairMethod()
    Trainer(full, Pairs(40), _phases(), _settings(), CPU, Precision("32", CPU.device), tmp_path / "full").fit()

    part = PairMethod()
    r1 = Trainer(part, Pairs(40), _phases(), _settings(max_steps=2), CPU, Precision("32", CPU.device), tmp_path / "part").fit()
    assert r1.stopped_by_max_steps and r1.global_step == 2
    meta = read_training_meta(tmp_path / "part")["loop"]
    assert (meta["epoch"], meta["step"], meta["sample_in_epoch"]) == (0, 2, 32)  # stopped mid-epoch
    again = PairMethod()  # a fresh process: weights come from the checkpoint
    r2 = Trainer(again, Pairs(40), _phases(), _settings(), CPU, Precision("32", CPU.device), tmp_path / "part").fit(resume=True)
    assert r2.global_step == 6
    for (k, a), (_, b) in zip(full.state_dict().items(), again.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=k)
    steps = [r["step"] for r in read_metrics(tmp_path / "part")]
    assert steps == [1, 2, 3, 4, 5, 6]  # the JSONL log continues across the resume
    lrs = [r["lr"] for r in read_metrics(tmp_path / "full")]
    assert lrs == pytest.approx([cosine_annealing(0.5, 3)(s, 0) for s in range(6)])
    with pytest.raises(InputError, match="nothing to train"):
        Trainer(PairMethod(), Pairs(40), _phases(), _settings(), CPU, Precision("32", CPU.device), tmp_path / "part").fit(resume=True)


class _AugPairs(Pairs):
    """Pairs with an ``(epoch, index)``-seeded augmentation, as the real datasets have, plus the
    worker id and one draw from the worker's own global RNG (to see the workers' seeds)."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        x = self.x[i] + 0.1 * torch.randn(6, generator=view_generator(3, self.epoch, i, 0))
        info = torch.utils.data.get_worker_info()
        return x, self.y[i], torch.tensor(-1 if info is None else info.id), torch.rand(())


class _Recording(PairMethod):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, batch):
        x, y, worker, stray = batch
        self.seen.append((x.clone(), worker.clone(), stray.clone()))
        return super().forward((x, y))


def test_worker_processes_change_no_batch_and_resume_exactly(tmp_path):
    def run(name: str, workers: int, resume: bool = False, method: _Recording | None = None, **kw) -> _Recording:
        method = method or _Recording()
        Trainer(method, _AugPairs(40), _phases(), _settings(num_workers=workers, **kw), CPU,
                Precision("32", CPU.device), tmp_path / name).fit(resume=resume)
        return method

    inline, workers, again = run("w0", 0), run("w2", 2), run("w2b", 2)
    assert len(inline.seen) == len(workers.seen) == 10  # 2 epochs x 5 micro-batches
    for (a, _, _), (b, _, _) in zip(inline.seen, workers.seen, strict=True):
        assert torch.equal(a, b)  # epoch 1 too: persistent workers learnt the new epoch
    assert {int(w) for _, wids, _ in workers.seen for w in wids} == {0, 1}
    # the workers' own RNGs: reproducible run to run, distinct between the two workers
    assert all(torch.equal(a[2], b[2]) for a, b in zip(workers.seen, again.seen, strict=True))
    strays = {w: {float(v) for _, wids, vals in workers.seen for ww, v in zip(wids, vals, strict=True) if int(ww) == w} for w in (0, 1)}
    assert not strays[0] & strays[1]
    for (k, a), (_, b) in zip(inline.state_dict().items(), workers.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)

    part = run("part", 2, max_steps=2)  # stops mid-epoch 0, then resumes with workers
    rest = run("part", 2, resume=True)
    resumed = [x for x, _, _ in part.seen + rest.seen]
    assert len(resumed) == 10 and all(torch.equal(a, b) for a, (b, _, _) in zip(resumed, inline.seen, strict=True))
    for (k, a), (_, b) in zip(inline.state_dict().items(), rest.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=k)


def test_worker_count_defaults_from_the_cores_per_process(monkeypatch):
    assert [D.auto_num_workers(c) for c in (1, 2, 3, 4, 9, 64)] == [0, 1, 2, 3, 8, 8]
    cores = len(__import__("os").sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # torchrun: the node's cores are shared
    assert D.cores_per_process() == 1 and loader_options(-1, torch.device("cpu"))["num_workers"] == 0
    assert loader_options(3, torch.device("cuda")) == {"num_workers": 3, "pin_memory": True, "persistent_workers": True}
    assert loader_options(0, torch.device("cpu")) == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}


class _NaNAfter(PairMethod):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.calls, self.n = 0, n

    def forward(self, batch):
        loss, m = super().forward(batch)
        self.calls += 1
        return (loss * float("nan") if self.calls > self.n else loss), m


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    trainer = Trainer(_NaNAfter(3), Pairs(40), _phases(), _settings(), CPU, Precision("32", CPU.device), tmp_path)
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 0, micro-batch 3, step 1 \(rank 0\).*precision=32"):
        trainer.fit()


def test_too_little_data_and_bad_accumulation_are_named(tmp_path):
    two = D.DistContext(0, 2, 0, torch.device("cpu"), "gloo")  # as a rank of a 2-process run sees itself
    with pytest.raises(InputError, match="batch_size 9 is the global batch and must be divisible by the world size 2"):
        Trainer(PairMethod(), Pairs(40), _phases(), _settings(batch_size=9), two, Precision("32", CPU.device), tmp_path)
    with pytest.raises(InputError, match="only 5 training samples for the global batch_size 8"):
        Trainer(PairMethod(), Pairs(5), _phases(), _settings(), CPU, Precision("32", CPU.device), tmp_path)
    with pytest.raises(InputError, match="accumulate must be >= 1"):
        Trainer(PairMethod(), Pairs(40), _phases(), _settings(accumulate=0), CPU, Precision("32", CPU.device), tmp_path)


def test_early_stopping_keeps_the_best_weights(tmp_path):
    def frozen(steps: int) -> list[Phase]:  # lr 0: the validation loss never improves after epoch 0
        return [Phase("one", 6, lambda p: torch.optim.SGD(p, lr=0.0), cosine_annealing(0.0, steps))]

    settings = _settings(epochs=6, early_stop_patience=2, early_stop_min_delta=1e-5, accumulate=1)
    trainer = Trainer(PairMethod(), Pairs(40), frozen, settings, CPU, Precision("32", CPU.device), tmp_path, val_set=Pairs(16))
    result = trainer.fit()
    assert result.state.stopped_early and [h["epoch"] for h in result.history] == [0, 1, 2]
    assert result.state.best_epoch == 0 and result.best_weights == tmp_path / "best.safetensors"
    assert all("val_loss" in h for h in result.history)
    assert result.replicas["in_sync"] and result.replicas["world_size"] == 1


# ------------------------------------------------------------------------------ checkpoints


def test_full_disk_mid_checkpoint_keeps_the_previous_one(tmp_path):
    """A real write failure: the kernel refuses writes past RLIMIT_FSIZE in a child process."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys, torch
        from torch import nn
        from radzoo.training.resume import save_training_state
        from radzoo.errors import ArtifactError
        small = nn.Linear(2, 2)
        save_training_state({str(tmp_path)!r}, small, torch.optim.SGD(small.parameters(), lr=1), {{"n": 1}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        big = nn.Linear(200, 200)
        try:
            save_training_state({str(tmp_path)!r}, big, torch.optim.SGD(big.parameters(), lr=1), {{"n": 2}})
        except ArtifactError as exc:
            print("ERROR", exc)
            sys.exit(0)
        sys.exit(3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "could not write checkpoint file" in proc.stdout and "File too large" in proc.stdout
    assert "the previous checkpoint in" in proc.stdout and "is intact" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-00000001.safetensors", "state.json"]
    lin = nn.Linear(2, 2)
    assert load_training_state(tmp_path, lin, torch.optim.SGD(lin.parameters(), lr=1)) == {"n": 1}


def test_checkpoint_replaces_atomically_and_refuses_damage(tmp_path):
    lin = nn.Linear(2, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=1)
    save_training_state(tmp_path, lin, opt, {"n": 1})
    save_training_state(tmp_path, lin, opt, {"n": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-00000002.safetensors", "state.json"]
    assert load_training_state(tmp_path, lin, opt) == {"n": 2}
    (tmp_path / "state-00000002.safetensors").unlink()
    with pytest.raises(ArtifactError, match="which is missing"):
        load_training_state(tmp_path, lin, opt)
