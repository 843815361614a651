"""Audio: deterministic "speech" for a text, the wire formats, and the caller's level for VAD.

The synthesized audio is not speech, but it behaves like it where a client can tell: its duration
follows the text at a speech rate, every character is a short tone shaped by an envelope (spaces
and punctuation are silence), and the same text always gives the same bytes.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache

AMPLITUDE = 0.3  # of full scale: clearly audible, far from clipping


@dataclass(frozen=True, slots=True)
class AudioFormat:
    name: str
    sample_rate: int
    sample_width: int  # bytes per sample (mono)

    def bytes_for_ms(self, ms: float) -> int:
        """Whole samples' worth of bytes in ``ms`` milliseconds."""
        return int(self.sample_rate * ms / 1000) * self.sample_width

    def ms_for_bytes(self, n: int) -> float:
        return n / self.sample_width / self.sample_rate * 1000


OUTPUT_FORMATS = ("pcm16", "pcm16_8000hz", "pcm16_16000hz", "g711_ulaw", "g711_alaw")
INPUT_FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
INPUT_SAMPLE_RATES = (16000, 24000)


def output_format(name: str) -> AudioFormat:
    """The format of ``session.output_audio_format`` (validated by the caller)."""
    match name:
        case "pcm16_8000hz":
            return AudioFormat(name, 8000, 2)
        case "pcm16_16000hz":
            return AudioFormat(name, 16000, 2)
        case "g711_ulaw" | "g711_alaw":
            return AudioFormat(name, 8000, 1)
        case _:
            return AudioFormat(name, 24000, 2)


def input_format(name: str, sampling_rate: int) -> AudioFormat:
    """The format of caller audio: PCM16 at ``input_audio_sampling_rate``, or G.711 at 8 kHz."""
    if name in ("g711_ulaw", "g711_alaw"):
        return AudioFormat(name, 8000, 1)
    return AudioFormat(name, sampling_rate, 2)


# --- PCM16 <-> bytes ---------------------------------------------------------------------------


def pcm16_bytes(samples: array[int]) -> bytes:
    """Little-endian bytes of 16-bit samples, whatever the machine's byte order."""
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def pcm16_samples(data: bytes) -> array[int]:
    """16-bit samples of little-endian bytes (a trailing odd byte is ignored)."""
    samples = array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


# --- G.711 (ITU-T G.711, the classic Sun reference algorithms) ---------------------------------

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _ulaw_encode(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sign else sample, _ULAW_CLIP) + _ULAW_BIAS
    exponent = max((magnitude >> 7).bit_length() - 1, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = ((((code & 0x0F) << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return -magnitude if code & 0x80 else magnitude


def _alaw_encode(sample: int) -> int:
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = next((i for i, end in enumerate(_ALAW_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1 if segment < 2 else value >> segment) & 0x0F
    return code ^ mask


def _alaw_decode(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


@cache
def _encode_table(law: str) -> bytes:
    """Code of every 16-bit sample, indexed by the sample's unsigned value."""
    encode = _ulaw_encode if law == "g711_ulaw" else _alaw_encode
    return bytes(encode(u - 65536 if u >= 32768 else u) for u in range(65536))


@cache
def _decode_table(law: str) -> tuple[int, ...]:
    decode = _ulaw_decode if law == "g711_ulaw" else _alaw_decode
    return tuple(decode(code) for code in range(256))


def g711_encode(samples: array[int], law: str) -> bytes:
    table = _encode_table(law)
    return bytes(table[s & 0xFFFF] for s in samples)


def g711_decode(data: bytes, law: str) -> array[int]:
    table = _decode_table(law)
    return array("h", (table[b] for b in data))


# --- synthesis ----------------------------------------------------------------------------------


def _tone(char: str, length: int, sample_rate: int) -> array[int]:
    """One character's sound: silence for spaces and punctuation, else a shaped tone."""
    if length <= 0 or not char.isalnum():
        return array("h", bytes(2 * max(length, 0)))
    frequency = 140.0 + (ord(char) % 40) * 12.0  # 140..608 Hz: a voice-like band
    peak = AMPLITUDE * 32767
    step = 2 * math.pi * frequency / sample_rate
    return array(
        "h",
        (int(peak * math.sin(math.pi * n / length) * math.sin(step * n)) for n in range(length)),
    )


class Synthesizer:
    """Text to audio bytes in any output format, with a small cache of recent texts.

    Owned by one simulator (no module-level state); a cache hit makes the 100-session benchmark
    cheap for the simulator, which must not be what the benchmark measures.
    """

    def __init__(self, chars_per_second: float, cache_size: int = 64) -> None:
        self.chars_per_second = chars_per_second
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_size = cache_size

    def duration_ms(self, text: str) -> float:
        return len(text) / self.chars_per_second * 1000

    def synthesize(self, text: str, fmt: AudioFormat) -> bytes:
        key = (text, fmt.name)
        if (hit := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return hit
        audio = self._render(text, fmt)
        self._cache[key] = audio
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return audio

    def _render(self, text: str, fmt: AudioFormat) -> bytes:
        per_char = fmt.sample_rate / self.chars_per_second
        samples = array("h")
        for i, char in enumerate(text):
            # Boundaries by rounding the running total keep the whole exact: round(len * per_char).
            length = round((i + 1) * per_char) - round(i * per_char)
            samples.extend(_tone(char, length, fmt.sample_rate))
        if fmt.sample_width == 1:
            return g711_encode(samples, fmt.name)
        return pcm16_bytes(samples)


# --- level of caller audio ----------------------------------------------------------------------


def decode_input(data: bytes, fmt: AudioFormat) -> array[int]:
    """Caller audio as 16-bit samples."""
    if fmt.sample_width == 1:
        return g711_decode(data, fmt.name)
    return pcm16_samples(data)


def rms_level(samples: array[int]) -> float:
    """Root mean square of the samples, 0..1 of full scale (0 for no samples)."""
    if not samples:
        return 0.0
    energy = sum(map(operator.mul, samples, samples))
    return math.sqrt(energy / len(samples)) / 32768
