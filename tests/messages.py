"""Message bodies for tests that publish or stamp messages themselves."""

from __future__ import annotations

from serstream.events import EmotionEvent, FileHealth, MicHealth, Stats


def event(segment: int = 0, confidence: float = 0.9, probabilities: dict[str, float] | None = None) -> EmotionEvent:
    """A final event; ``segment`` tells messages apart."""
    return EmotionEvent(source="test", segment=segment, final=True, start=0.0, end=1.0, wall_start=1.0,
                        wall_end=2.0, label="sad", confidence=confidence,
                        probabilities=probabilities or {"sad": 0.9, "angry": 0.1}, model="m", voice=None,
                        vad_delay_ms=0.0, processing_ms=1.0, features_ms=0.5, inference_ms=0.5)


def mic_health() -> MicHealth:
    return MicHealth(device="lost", device_name="vmic", device_samplerate=16000, callbacks=10,
                     reconnects=0, lost_for_s=1.5)


def stats(health: MicHealth | FileHealth | None = None, level: float | None = None) -> Stats:
    return Stats(source="test", uptime_s=1.0, stream_s=1.0, frames_captured=16000, overflows=0, buffered_s=0.0,
                 segments=0, partials=0, events=0, errors=0, unprocessed_s=0.0, subscriptions=1,
                 subscriptions_refused=0, peers_cut=0, handshakes_failed=0, level_rms_dbfs=level,
                 level_peak_dbfs=None, in_speech=False, health=health or FileHealth(non_finite_samples=0))
