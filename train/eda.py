"""Figures that motivate the design: label balance per corpus, and what one example of
each emotion looks like as waveform, mel spectrogram and the MFCCs the model sees;
each augmentation beside its original."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from serstream.decode import load_audio
from serstream.features import FeatureConfig, FeatureExtractor
from serstream.vad import trim
from train.augment import gain, pitch_shift, polarity, time_stretch, white_noise
from train.corpora import CORPORA, LABELS, scan

log = logging.getLogger(__name__)


def _mfcc_image(ax, m: np.ndarray) -> None:
    """c1.. standardised per coefficient: c0 (loudness) would wash out the colour scale."""
    z = m[1:]
    z = (z - z.mean(axis=1, keepdims=True)) / (z.std(axis=1, keepdims=True) + 1e-9)
    ax.imshow(z, origin="lower", aspect="auto", cmap="coolwarm", vmin=-3, vmax=3)


def eda(data: Path, out: Path) -> list[Path]:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    clips = scan(data).clips
    written = []

    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.2
    for k, corpus in enumerate(CORPORA):
        counts = Counter(c.label for c in clips if c.corpus == corpus)
        ax.bar(np.arange(len(LABELS)) + k * width, [counts.get(lab, 0) for lab in LABELS], width, label=corpus)
    ax.set_xticks(np.arange(len(LABELS)) + 1.5 * width, LABELS)
    ax.set_ylabel("clips")
    ax.set_title("Label distribution per corpus")
    ax.legend()
    fig.tight_layout()
    written.append(out / "label_distribution.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    cfg = FeatureConfig()
    fx = FeatureExtractor(cfg)
    rng = np.random.default_rng(0)
    examples = {}
    for lab in LABELS:
        pool = [c for c in clips if c.label == lab and c.corpus == "ravdess"] or [c for c in clips if c.label == lab]
        if pool:
            examples[lab] = pool[rng.integers(len(pool))]
    fig, axes = plt.subplots(3, len(examples), figsize=(2.6 * len(examples), 7))
    for j, (lab, clip) in enumerate(examples.items()):
        y = load_audio(clip.path).samples
        t = np.arange(y.size) / cfg.sr
        axes[0, j].plot(t, y, lw=0.4)
        axes[0, j].set_title(f"{lab}\n{clip.path.name}", fontsize=7)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(
            y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length, n_mels=cfg.n_mels))
        axes[1, j].imshow(mel, origin="lower", aspect="auto", cmap="magma")
        _mfcc_image(axes[2, j], fx.mfcc(trim(y)))
        for i in range(3):
            axes[i, j].tick_params(labelsize=6)
    axes[0, 0].set_ylabel("waveform")
    axes[1, 0].set_ylabel("mel spectrogram (dB)")
    axes[2, 0].set_ylabel("MFCC c1.. (VAD-trimmed,\nstandardised per coefficient)")
    fig.tight_layout()
    written.append(out / "emotions_waveform_mel_mfcc.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    clip = examples.get("angry") or next(iter(examples.values()))
    y = trim(load_audio(clip.path).samples)
    augmented = {
        "original": y,
        "white noise 15 dB": white_noise(y, 15.0, rng),
        "gain -10 dB": gain(y, -10.0),
        "polarity": polarity(y),
        "time stretch x1.15": time_stretch(y, 1.15),
        "pitch +2 semitones": pitch_shift(y, cfg.sr, 2.0),
    }
    fig, axes = plt.subplots(2, len(augmented), figsize=(2.8 * len(augmented), 5))
    for j, (name, a) in enumerate(augmented.items()):
        axes[0, j].plot(np.arange(a.size) / cfg.sr, a, lw=0.4)
        axes[0, j].set_title(name, fontsize=8)
        axes[0, j].set_ylim(-1, 1)
        _mfcc_image(axes[1, j], fx.mfcc(np.clip(a, -1, 1)))
    axes[0, 0].set_ylabel("waveform")
    axes[1, 0].set_ylabel("MFCC c1.. (standardised)")
    fig.suptitle(f"Augmentations of {clip.path.name}", fontsize=9)
    fig.tight_layout()
    written.append(out / "augmentations.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
