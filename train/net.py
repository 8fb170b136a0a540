"""A compact CNN over MFCC(+delta) sequences of any length.

Three 1-D convolutions (time is the conv axis; dilations widen the context to ~0.2 s)
then mean+std statistics pooling over time and a small classifier. Padded frames in a
training batch are zeroed after every layer and left out of the pooling, so a clip
scores the same alone (as the daemon runs it) as inside a padded batch.
"""

from __future__ import annotations

import torch
from torch import nn


class EmotionCNN(nn.Module):
    def __init__(self, n_features: int, n_labels: int, width: int = 160, dropout: float = 0.3,
                 clip_norm: bool = False) -> None:
        super().__init__()
        # Per-clip mean normalisation (CMN) inside the graph: removes the constant
        # offsets a voice and a microphone put on every frame, which otherwise let the
        # network recognise speakers instead of emotions.
        self.clip_norm = clip_norm
        self.convs = nn.ModuleList([
            nn.Conv1d(n_features, width, 5, padding=2),
            nn.Conv1d(width, width, 5, padding=4, dilation=2),
            nn.Conv1d(width, width, 3, padding=3, dilation=3),
        ])
        self.norms = nn.ModuleList([nn.BatchNorm1d(width) for _ in self.convs])
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(
            nn.Linear(2 * width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, n_labels)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [batch, time, features]; mask: [batch, time] (1 = real frame). Returns logits."""
        h = x.transpose(1, 2)
        m = None if mask is None else mask.unsqueeze(1)
        if self.clip_norm:
            if m is None:
                h = h - h.mean(dim=2, keepdim=True)
            else:
                h = (h - (h * m).sum(dim=2, keepdim=True) / m.sum(dim=2, keepdim=True).clamp(min=1.0)) * m
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = torch.relu(norm(conv(h)))
            if m is not None:
                h = h * m
        h = self.drop(h)
        if m is None:
            mean = h.mean(dim=2)
            var = ((h - mean.unsqueeze(2)) ** 2).mean(dim=2)
        else:
            n = m.sum(dim=2).clamp(min=1.0)
            mean = h.sum(dim=2) / n
            var = (((h - mean.unsqueeze(2)) * m) ** 2).sum(dim=2) / n
        stats = torch.cat([mean, torch.sqrt(var + 1e-5)], dim=1)
        return self.head(stats)


class Probabilities(nn.Module):
    """What is exported: softmax over the labels, one clip per row, no mask."""

    def __init__(self, net: EmotionCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(features), dim=-1)
