"""The optimisation both trainers share: AdamW under a one-cycle schedule, a
class-weighted, label-smoothed loss, and an exponential moving average of the weights.

The average (batch-norm statistics included) is what gets validated and exported:
single-epoch weights swing by several points of validation accuracy from one epoch to
the next on held-out speakers; the average is steadier and better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim import swa_utils


@dataclass
class Optimisation:
    model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.OneCycleLR
    loss_fn: nn.Module
    ema: swa_utils.AveragedModel
    total_steps: int

    def step(self, logits: torch.Tensor, target: torch.Tensor) -> float:
        """One update on one batch; returns the batch's loss."""
        loss = self.loss_fn(logits, target)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.ema.update_parameters(self.model)
        if self.sched.last_epoch + 1 < self.total_steps:
            self.sched.step()
        return float(loss.item())

    @property
    def averaged(self) -> nn.Module:
        return self.ema.module


def optimisation(model: nn.Module, n_clips: int, class_weights: np.ndarray, *, lr: float, weight_decay: float,
                 batch_size: int, epochs: int, label_smoothing: float, ema_decay: float,
                 warmup: float) -> Optimisation:
    """``warmup``: the share of all steps over which the learning rate climbs to ``lr``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * -(-n_clips // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=warmup)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32),
                                  label_smoothing=label_smoothing)
    ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    return Optimisation(model, opt, sched, loss_fn, ema, total)
