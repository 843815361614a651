"""Voice activity detection on caller audio: a level threshold over fixed windows of audio time.

Audio time, not wall time: the result depends only on the bytes the caller sent, so a test that
sends 300 ms of loud audio then 600 ms of silence gets the same events however fast it sends.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Literal

from service.simulator.audio import rms_level

WINDOW_MS = 20


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: Literal["speech_started", "speech_stopped"]
    audio_ms: int
    """``audio_start_ms`` (including the prefix padding) or ``audio_end_ms`` (including the
    silence that ended the turn), counted from the first audio of the session."""


class VoiceActivityDetector:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.position_ms = 0.0
        self.speaking = False
        self._silence_ms = 0.0
        self._pending = array("h")

    def reset(self) -> None:
        """Forget a turn in progress (turn detection changed); the audio clock keeps running."""
        self.speaking = False
        self._silence_ms = 0.0

    def feed(
        self,
        samples: array[int],
        sample_rate: int,
        *,
        prefix_padding_ms: int,
        silence_duration_ms: int,
    ) -> list[VadEvent]:
        """Analyse more caller audio; return what it started or stopped, in order."""
        audio = self._pending + samples
        window = max(sample_rate * WINDOW_MS // 1000, 1)
        found: list[VadEvent] = []
        offset = 0
        while len(audio) - offset >= window:
            frame = audio[offset : offset + window]
            offset += window
            start_ms = self.position_ms
            self.position_ms += WINDOW_MS
            loud = _loud(frame, self.threshold)
            if not self.speaking:
                if loud:
                    self.speaking = True
                    self._silence_ms = 0.0
                    found.append(
                        VadEvent("speech_started", int(max(start_ms - prefix_padding_ms, 0)))
                    )
            elif loud:
                self._silence_ms = 0.0
            else:
                self._silence_ms += WINDOW_MS
                if self._silence_ms >= silence_duration_ms:
                    self.speaking = False
                    found.append(VadEvent("speech_stopped", int(self.position_ms)))
        self._pending = audio[offset:]
        return found


def _loud(frame: array[int], threshold: float) -> bool:
    # The RMS never exceeds the peak: a quiet frame (the usual case) skips the sum of squares.
    if max(max(frame), -min(frame)) < threshold * 32768:
        return False
    return rms_level(frame) >= threshold
