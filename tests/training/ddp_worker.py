"""Run under ``torchrun`` (or alone) by test_torchrun.py: train a tiny paired model with the real
Trainer and save this rank's final parameters, so the test can compare ranks and world sizes.

The model has no BatchNorm, so one process holding the whole batch and two processes holding
half each must take exactly the same optimiser steps: the contrastive term goes through
``gather_global_batch`` and a per-sample term is averaged by DDP, with gradient accumulation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from radzoo.training import distributed as D
from radzoo.training.loop import Phase, Settings, Trainer
from radzoo.training.losses import clip_loss
from radzoo.training.precision import Precision
from radzoo.training.schedules import cosine_annealing


class Pairs(Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 6, generator=g)
        self.y = torch.randn(n, 5, generator=g)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class PairMethod(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(6, 4)
        self.b = nn.Linear(5, 4)

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        x, y = batch
        za, zb = self.a(x), self.b(y)
        contrastive = clip_loss(D.gather_global_batch(za), D.gather_global_batch(zb), 10.0)
        per_sample = (za - zb).pow(2).mean()
        return contrastive + 0.1 * per_sample, {"per_sample": per_sample.detach()}


def main(out: str) -> None:
    ctx = D.setup("cpu", "auto")
    try:
        method = PairMethod()
        settings = Settings(epochs=2, batch_size=8, seed=3, accumulate=2, progress=False, checkpoint_every=0)

        def phases(steps: int) -> list[Phase]:
            return [Phase("one", 2, lambda p: torch.optim.SGD(p, lr=0.5), cosine_annealing(0.5, steps))]

        run_dir = Path(out) / f"run_ws{ctx.world_size}"
        trainer = Trainer(method, Pairs(40), phases, settings, ctx, Precision("32", ctx.device), run_dir)
        result = trainer.fit()
        state = {k: v.detach().clone() for k, v in method.state_dict().items()}
        save_file(state, str(Path(out) / f"ws{ctx.world_size}_rank{ctx.rank}.safetensors"))
        if ctx.is_main:
            (Path(out) / f"ws{ctx.world_size}_steps.txt").write_text(f"{result.global_step}\n")
    finally:
        D.teardown(ctx)


if __name__ == "__main__":
    main(sys.argv[1])
