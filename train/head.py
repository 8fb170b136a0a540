"""What sits on the Whisper encoder: per-layer statistics pooling and a small head.

Emotion is spread over the encoder's depth (prosody and voice quality early, more
abstract cues later), so the head sees the mean and standard deviation over time of
several hidden states, standardised per layer and concatenated, and classifies them
with a two-layer MLP. Concatenation beat a learned softmax-weighted sum of the layers
(SUPERB's mix) in speaker-grouped cross-validation: the weighted sum collapsed onto one
layer, while the layers carry complementary cues. Pooling per layer first is what makes
a frozen-encoder head cheap to train: the pooled statistics of every training clip (and
its augmented versions) are cached once, and a head trains on them in a minute.

Several heads, trained from different seeds and sample orders, are averaged: on held-out
speakers single heads disagree by a few points, their average is steadier, and a head
costs microseconds beside the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from train.whisper import WhisperEncoder

__all__ = ["pooled_stats", "LayerStats", "EmotionHead", "HeadEnsemble", "WhisperEmotion"]


def pooled_stats(states: list[torch.Tensor]) -> torch.Tensor:
    """Mean and standard deviation over time of each state: ``[batch, layers, 2 * d]``."""
    out = []
    for h in states:
        mean = h.mean(dim=1)
        std = torch.sqrt(((h - mean.unsqueeze(1)) ** 2).mean(dim=1) + 1e-6)
        out.append(torch.cat([mean, std], dim=-1))
    return torch.stack(out, dim=1)


class LayerStats(nn.Module):
    """Encoder -> pooled statistics of every hidden state: what the training cache holds."""

    def __init__(self, encoder: WhisperEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return pooled_stats(self.encoder(features))


class EmotionHead(nn.Module):
    """Pooled statistics of ``layers`` -> logits.

    ``center`` and ``scale`` (``[len(layers), 2 * d]``, training-set statistics) put every
    layer's statistics on one scale before they are concatenated; they are buffers, so
    the exported graph carries them.
    """

    def __init__(self, layers: tuple[int, ...], d: int, n_labels: int, hidden: int = 256,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.register_buffer("center", torch.zeros(len(layers), 2 * d))
        self.register_buffer("scale", torch.ones(len(layers), 2 * d))
        self.drop_in = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(len(layers) * 2 * d, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_labels))

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """``stats``: ``[batch, len(layers), 2 * d]``, already restricted to ``layers``."""
        z = (stats - self.center) / self.scale
        return self.mlp(self.drop_in(z.flatten(1)))


class HeadEnsemble(nn.Module):
    """The mean of several heads' probabilities (heads reading the same layers)."""

    def __init__(self, heads: list[EmotionHead]) -> None:
        super().__init__()
        if not heads or len({h.layers for h in heads}) != 1:
            raise ValueError("an ensemble needs at least one head, all reading the same layers")
        self.heads = nn.ModuleList(heads)
        self.layers = heads[0].layers

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[batch, labels]``."""
        return torch.stack([torch.softmax(h(stats), dim=-1) for h in self.heads]).mean(dim=0)


class WhisperEmotion(nn.Module):
    """The served graph: normalised log-mel ``[1, time, 80]`` -> probabilities ``[1, labels]``.

    The encoder is cut after the deepest layer the head uses, so blocks that earn
    nothing cost nothing.

    With a ``voice_head`` the graph also adapts to the speaker: it takes a second input,
    ``voice`` (the mean statistics of that speaker's neutral speech, an enrolment), and
    answers three things: the global head's probabilities (what serves before, or
    without, an enrolment), the voice head's probabilities on the statistics less the
    voice (how this clip departs from how this speaker sounds when calm), and the pooled
    statistics themselves, from which an enrolment is made with this same graph.
    """

    def __init__(self, encoder: WhisperEncoder, head: HeadEnsemble, voice_head: HeadEnsemble | None = None) -> None:
        super().__init__()
        if len(encoder.blocks) < max(head.layers):
            raise ValueError(f"head reads layer {max(head.layers)}, encoder has {len(encoder.blocks)} blocks")
        if voice_head is not None and voice_head.layers != head.layers:
            raise ValueError("the voice head must read the layers the global head reads")
        self.encoder = encoder
        self.head = head
        self.voice_head = voice_head

    def forward(self, features: torch.Tensor, voice: torch.Tensor | None = None):
        states = self.encoder(features)
        stats = pooled_stats([states[i] for i in self.head.layers])
        if self.voice_head is None:
            return self.head(stats)
        if voice is None:
            raise ValueError("a graph with a voice head needs the voice statistics")
        return self.head(stats), self.voice_head(stats - voice), stats
