"""``python -m train fit``: data -> model kind's trainer -> one ONNX file -> scores -> card.

The steps every model kind shares live here (data preparation, export checks, scoring
through the daemon's own :meth:`serstream.model.EmotionModel.classify`, the model card);
what differs lives in :mod:`train.fit_whisper` (the default: a frozen Whisper-base encoder
under a trained head) and :mod:`train.fit_cnn` (the light MFCC CNN).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from serstream.features import FeatureConfig
from serstream.model import ModelMetadata
from train import card as model_card
from train.corpora import LABELS
from train.evaluate import evaluate_model, plot_confusion
from train.export import export, max_difference, write_metadata
from train.fit_cnn import CnnConfig, train_cnn
from train.fit_whisper import (
    WHISPER_NORM,
    WhisperConfig,
    build_model,
    check_normalisation,
    cross_validate,
    encode_training_data,
    export_graph,
    quantize_int8,
    store_float16,
    train_head,
)
from train.fit_whisper import max_difference as whisper_difference
from train.prepare import DataConfig, Prepared, prepare, val_score

log = logging.getLogger(__name__)

KINDS = ("whisper", "mfcc")
# The bar issue 9 (the Whisper model) set, per corpus, on test speakers: shown beside
# the results in the card, never used to choose anything.
TARGETS = {"ravdess": 0.76, "cremad": 0.70, "savee": 0.75, "tess": 0.995}


@dataclass(frozen=True)
class FitConfig:
    kind: str = "whisper"
    name: str = "serstream-whisper"
    data: DataConfig = field(default_factory=DataConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
    cnn: CnnConfig = field(default_factory=CnnConfig)
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))
    seen_speakers: bool = True  # also score the training clips (clean), for the seen/unseen gap
    cv_folds: int = 4  # whisper: speaker-grouped cross-validation of the chosen head, for the card (0: skip)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.features.sr != self.data.sr:  # refused before any work, not after training
            raise ValueError(f"features at {self.features.sr} Hz but data prepared at {self.data.sr} Hz")
        if self.data.split.refit:
            # a refit has no validation speakers: nothing may be left for it to choose
            if self.kind != "whisper":
                raise ValueError("--refit is for the whisper kind (the MFCC CNN chooses its epoch on validation)")
            if self.whisper.quantize == "auto":
                raise ValueError("--refit leaves no validation speakers to choose the precision on: "
                                 "give --quantize int8 or fp32")

    @property
    def features(self) -> FeatureConfig:
        """The features the model of this kind is fed (and carries in its metadata)."""
        return self.whisper.features if self.kind == "whisper" else self.cnn.features


def _metadata(config: FitConfig, mean: np.ndarray, std: np.ndarray, model_id: str, **extra) -> ModelMetadata:
    features = config.features
    return ModelMetadata(
        labels=LABELS, features=features, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
        sample_rate=features.sr, vad=config.data.vad, model_id=model_id,
        provenance={
            "kind": config.kind,
            "trained_on": "RAVDESS, CREMA-D, TESS, SAVEE (speaker-independent split; see model card)",
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "command": " ".join(["python -m train", *sys.argv[1:]]),
            "split": f"{config.name}.split.json",
            **extra,
        },
        **({"max_frames": config.whisper.max_frames} if config.kind == "whisper" else {}),
    )


def _model_id(config: FitConfig, epoch: int) -> str:
    return f"{config.name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d}-e{epoch}"


def _fit_whisper(prep: Prepared, out_dir: Path, cache_dir: Path, config: FitConfig) -> dict:
    from train.whisper import WEIGHTS, licence_text

    wc = config.whisper
    if not prep.val.clips and wc.quantize == "auto":  # found before any encoding or training
        raise ValueError("this data has no validation speakers to choose the precision on: "
                         "give --quantize int8 or fp32")
    enc, cache_s = encode_training_data(prep, cache_dir, wc)
    result = train_head(prep, enc, wc, cache_s)
    model = build_model(result.head, result.voice_head)
    n_mels = wc.features.n_static
    meta = _metadata(config, np.full(n_mels, WHISPER_NORM[0]), np.full(n_mels, WHISPER_NORM[1]),
                     _model_id(config, result.best_epoch),
                     encoder=f"Whisper base (OpenAI, MIT licence), blocks 1-{max(wc.layers)} of 6",
                     weights_sha256=WEIGHTS.sha256, weights_licence=licence_text().strip())
    work = cache_dir / "models"
    work.mkdir(parents=True, exist_ok=True)
    exported = export_graph(model, work / f"{config.name}.export.onnx", result.default_voice)
    # float32 compute, the encoder's weights stored in float16 as they are published: half
    # the file, not one output bit changed
    fp32 = write_metadata(store_float16(exported, work / f"{config.name}.fp32.onnx"), meta)
    diff = whisper_difference(model, fp32)
    log.info("exported %s (%.1f MB); max |onnx - torch| over the whole graph = %.2e", fp32,
             fp32.stat().st_size / 1e6, diff)
    int8 = write_metadata(store_float16(quantize_int8(exported, work / f"{config.name}.int8-f32.onnx"),
                                        work / f"{config.name}.int8.onnx"), meta)
    variants = {"fp32": fp32, "int8": int8}
    # a refit, or data without validation speakers, has nothing to score here (and a
    # precision given: see above)
    scored = ({k: evaluate_model(p, prep.data, cache_dir, prep.split_path, "val")[0] for k, p in variants.items()}
              if prep.val.clips else {})
    if wc.quantize == "auto":
        keep = "int8" if val_score(scored["int8"]) >= val_score(scored["fp32"]) - wc.int8_tolerance else "fp32"
    else:
        keep = wc.quantize
    if scored:
        log.info("validation fp32 %.4f, int8 %.4f: shipping %s", val_score(scored["fp32"]),
                 val_score(scored["int8"]), keep)
    onnx_path = out_dir / f"{config.name}.onnx"
    shutil.copyfile(variants[keep], onnx_path)
    other = "fp32" if keep == "int8" else "int8"
    other_test = evaluate_model(variants[other], prep.data, cache_dir, prep.split_path, "test")[0]
    probe = layer_probe(prep, enc, wc) if prep.val.clips else None
    return {
        "path": onnx_path, "meta": meta, "best_epoch": result.best_epoch, "history": result.history,
        "parameters": sum(p.numel() for p in model.parameters()),
        "onnx_vs_torch_max_abs_diff": diff, "validation": scored.get(keep, {"corpora": {}}),
        "details": {
            "precision": keep,
            "refit": config.data.split.refit,
            "precision_comparison": {
                k: {"file_mb": round(p.stat().st_size / 1e6, 2),
                    "val": _accuracies(scored[k]) if scored else None,
                    "val_cost": scored[k].get("cost") if scored else None} for k, p in variants.items()},
            "other_precision_test": {"precision": other, "test": _accuracies(other_test), "cost": other_test.get("cost")},
            "heads": len(result.head.heads),
            "voice_head": None if result.voice_head is None else {
                "best_epoch": result.voice_epoch, "history": result.voice_history,
                "enrolment": "the speaker's neutral clips (a clip never in its own enrolment)"},
            "layer_probe": probe,
            "cross_validation": cross_validate(prep, enc, wc, config.cv_folds) if config.cv_folds > 1 else None,
            "encoder_cache_wall_s": round(result.cache_wall_s, 3),
            "head_fit_wall_s": round(result.train_wall_s, 3),
            "config": asdict(wc),
        },
    }


def layer_probe(prep: Prepared, enc, wc: WhisperConfig) -> dict:
    """Which hidden state carries the emotion: the same head on one state at a time,
    clean training clips only and fewer epochs (a probe, not a model), scored on the
    validation speakers."""
    out = {}
    for layer in range(7):
        probe_cfg = replace(wc, layers=(layer,), versions=("clean",), epochs=15, heads=1)
        res = train_head(prep, enc, probe_cfg)
        best = max(res.history, key=lambda h: h["val"])
        out[str(layer)] = {"val": best["val"], "val_corpora": best["val_corpora"]}
        log.info("probe: hidden state %d alone -> val %.3f %s", layer, best["val"], best["val_corpora"])
    return out


def cross_validation(data: Path, cache_dir: Path, config: FitConfig, folds: int, normalise: str = "none",
                     reference: int | str = 0) -> dict:
    """``python -m train cv``: the Whisper head's cross-validation alone (see
    :func:`train.fit_whisper.cross_validate`)."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    check_normalisation(normalise, reference)
    prep = prepare(data, cache_dir / "cv", cache_dir, config.name, config.data)
    enc, _ = encode_training_data(prep, cache_dir, config.whisper)
    return cross_validate(prep, enc, config.whisper, folds, normalise, reference)


def _fit_cnn(prep: Prepared, out_dir: Path, cache_dir: Path, config: FitConfig) -> dict:
    result = train_cnn(prep, config.cnn)
    meta = _metadata(config, result.mean, result.std, _model_id(config, result.best_epoch))
    onnx_path = export(result.net, meta, out_dir / f"{config.name}.onnx")
    diff = max_difference(result.net, onnx_path)
    log.info("exported %s (%.2f MB); max |onnx - torch| = %.2e", onnx_path, onnx_path.stat().st_size / 1e6, diff)
    validation = evaluate_model(onnx_path, prep.data, cache_dir, prep.split_path, "val")[0]
    return {
        "path": onnx_path, "meta": meta, "best_epoch": result.best_epoch, "history": result.history,
        "parameters": sum(p.numel() for p in result.net.parameters()),
        "onnx_vs_torch_max_abs_diff": diff, "validation": validation,
        "details": {"train_wall_s": round(result.train_wall_s, 1), "config": asdict(config.cnn)},
    }


def _accuracies(result: dict) -> dict:
    return {c: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]} for c, r in result.get("corpora", {}).items()}


def fit(data: Path, out_dir: Path, cache_dir: Path, config: FitConfig = FitConfig()) -> dict:
    """Train ``config.kind``, export ``OUT/NAME.onnx``, score it, write the card."""
    t_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(data, out_dir, cache_dir, config.name, config.data)
    trained = (_fit_whisper if config.kind == "whisper" else _fit_cnn)(prep, out_dir, cache_dir, config)
    onnx_path: Path = trained["path"]
    # every number below comes from the exported file, through the daemon's own code
    test, _ = evaluate_model(onnx_path, data, cache_dir, prep.split_path, "test")
    seen = evaluate_model(onnx_path, data, cache_dir, prep.split_path, "train")[0] if config.seen_speakers else None
    plot_confusion(test, out_dir / f"{config.name}.confusion.png", f"{config.name}: test speakers (words for TESS)")
    wall = time.monotonic() - t_start
    meta = trained["meta"]
    meta = replace(meta, provenance={**meta.provenance, **model_card.provenance_metrics(
        test, trained["validation"], wall, config.name)})
    write_metadata(onnx_path, meta)
    card = {
        "name": config.name,
        "kind": config.kind,
        "model_id": meta.model_id,
        "file": onnx_path.name,
        "size_bytes": onnx_path.stat().st_size,
        "parameters": trained["parameters"],
        "labels": list(LABELS),
        "data": {
            "root": str(data),
            "scanned": prep.found.counts(),
            "unrecognised_files": len(prep.found.unknown),
            "parts": {p: {"clips": prep.split_doc["parts"][p]["clips"],
                          "clips_per_corpus": prep.split_doc["parts"][p]["clips_per_corpus"],
                          "groups": prep.split_doc["parts"][p]["groups"]}
                      for p in ("train", "val", "test")},
        },
        "split": asdict(config.data.split),
        "features": meta.features.to_dict(),
        "normalisation": {"mean": list(meta.mean[:3]) + ["..."], "std": list(meta.std[:3]) + ["..."]},
        "vad": asdict(config.data.vad),
        "targets": config.targets,
        "best_epoch": trained["best_epoch"],
        "history": trained["history"],
        "validation": _accuracies(trained["validation"]),
        "test": test,
        "seen_speakers": _accuracies(seen) if seen else None,
        "onnx_vs_torch_max_abs_diff": trained["onnx_vs_torch_max_abs_diff"],
        "details": trained["details"],
        "wall_time_s": round(wall, 1),
        "machine": f"{platform.processor() or platform.machine()}, {config.whisper.threads} torch threads",
        "command": meta.provenance["command"],
    }
    text = json.dumps(card, indent=1)
    (out_dir / f"{config.name}.json").write_text(text)
    # rendered from the JSON as written, so the two say the same (a tuple is a list there)
    (out_dir / f"{config.name}.md").write_text(model_card.markdown(json.loads(text)))
    log.info("fit done in %.0f s: test %s", wall,
             {k: (v["accuracy"], v["macro_f1"]) for k, v in test["corpora"].items()})
    return card
