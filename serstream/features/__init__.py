"""The project's only feature code: Numba-jitted framed log-mel and MFCC.

The daemon uses it for every segment and ``train/`` uses it to build the training set,
so a model never sees features computed by other code than the one that serves it.

Layers as in librosa (``mfcc`` is built on the log-mel, which is built on the mel
spectrogram, which is built on the framed FFT), and a model's metadata names the layer
it takes (:attr:`FeatureConfig.kind`): a pretrained speech encoder takes the log-mel,
the small MFCC network takes the MFCC.

Why not librosa at run time: librosa rebuilds the mel filterbank and re-validates its
input on every call, and pulls in a large dependency tree. Here the filterbank (stored
sparse), the DCT matrix, the window and the FFT tables are built once per
:class:`FeatureConfig`; each call is one jitted pass over the frames.

- :mod:`.config`: :class:`FeatureConfig`, what decides the numbers (stored in models);
- :mod:`.filters`: window, mel filters, DCT and delta weights (numpy, built once);
- :mod:`.stft`: the jitted framing / mixed-radix FFT / mel projection kernel;
- :mod:`.extractor`: :class:`FeatureExtractor`, one configuration's layers;
- :mod:`.api`: librosa-style functions (``melspectrogram``, ``log_mel_spectrogram``, ``mfcc``).
"""

from serstream.features.api import log_mel_spectrogram, melspectrogram, mfcc
from serstream.features.config import FEATURE_KINDS, FeatureConfig, FeatureConfigError
from serstream.features.extractor import FeatureExtractor
from serstream.features.filters import mel_filterbank

__all__ = [
    "FEATURE_KINDS",
    "FeatureConfig",
    "FeatureConfigError",
    "FeatureExtractor",
    "log_mel_spectrogram",
    "mel_filterbank",
    "melspectrogram",
    "mfcc",
]
