"""The simulator's knobs: one frozen value, snapshotted by each connection when it opens."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_GENERATED_REPLY = "Hello, this is the Voice Live simulator. How can I help you today?"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulator behaves. Every field has a default that mimics the live service.

    Times are seconds. ``speed`` scales audio pacing only; ``answer_delay`` is wall-clock time.
    """

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; ``Simulator.port`` tells which."""

    api_key: str | None = None
    """When set, a connection must present it (``api-key`` header, ``Authorization: Bearer``, or
    ``api-key`` query parameter) or is refused with HTTP 401 before the WebSocket opens."""

    refuse_connections: bool = False
    """Refuse every handshake with HTTP 503, as an unreachable or overloaded service would."""

    drop_after_events: int | None = None
    """Close the connection right after sending this many server events (``session.created``
    counts as the first)."""

    drop_abruptly: bool = False
    """How ``drop_after_events`` drops: False sends a close frame (1011), True cuts the TCP
    connection without one, like a network failure."""

    mute_after_events: int | None = None
    """Go silent right after sending this many server events: the connection stays open and
    client events are still read and handled, but nothing more is sent (later events are
    dropped, counted in ``SimulatorSession.events_muted``), as a stalled backend behind a live
    front end would. Pings are still answered."""

    deaf_after_messages: int | None = None
    """Stop reading the connection right after receiving this many client messages (audio
    included): nothing more is handled, and once the socket's buffers fill the client's writes
    wait, as behind an upstream whose reader hung. The connection stays open until the client
    or ``Simulator.stop`` (which cuts it) ends it."""

    inject_after_events: int | None = None
    """Send ``inject_frames`` right after sending this many server events (``session.created``
    counts as the first); None sends them never."""

    inject_frames: tuple[str | bytes, ...] = ()
    """Frames sent as they are, once, where ``inject_after_events`` says: garbage a broken
    upstream could send (text that is not JSON, JSON that is no event, events of unknown types,
    known events with missing or mistyped fields, binary frames). ``str`` goes as a text frame,
    ``bytes`` as a binary frame; neither counts as a server event."""

    echo_metadata: bool = True
    """Echo ``response.create``'s ``metadata`` in ``response.created``/``response.done``. Whether
    the live service does is unverified; set False to test the other answer."""

    answer_delay: float = 0.0
    """Wait this long after ``response.create`` before ``response.created``. The response counts as
    active (collisions, cancels) from the moment the request arrives."""

    speed: float = 1.0
    """Audio pacing: 1 is real time, 10 is ten times faster, 0 sends as fast as possible."""

    chunk_ms: int = 20
    """Duration of the audio in one ``response.audio.delta``."""

    chars_per_second: float = 15.0
    """Speech rate of the synthesized audio: its duration is ``len(text) / chars_per_second``."""

    vad_threshold: float = 0.02
    """RMS level (0..1 of full scale) above which caller PCM16 audio counts as speech."""

    interrupt_response_default: bool = True
    """``turn_detection.interrupt_response`` when the session leaves it out (the how-to says the
    service defaults to true; the spec disagrees: clients should send it explicitly)."""

    max_text_chars: int | None = None
    """Refuse a pre-generated message longer than this (the live limit is unverified)."""

    generated_reply: str = DEFAULT_GENERATED_REPLY
    """What a ``response.create`` without a pre-generated message answers, every time."""

    default_model: str = "gpt-realtime"
    """The session's model when the connection names none (``model`` query parameter)."""

    record_audio: bool = False
    """Keep every caller audio byte received (``SimulatorSession.received_audio``); off by
    default because a long benchmark would hold it all in memory."""

    max_message_bytes: int = 16 * 1024 * 1024
    """Largest client frame accepted (the service documents 15 MiB of audio per append)."""

    stamp_events: bool = False
    """For latency benchmarks (``bench/relay.py``): every server event's ``event_id`` becomes
    ``event_<monotonic_ns>_<n>``, stamped just before the send, and every received
    ``input_audio_buffer.append`` whose ``event_id`` is ``<prefix>_<monotonic_ns>_<anything>`` adds
    its one-way latency to ``Simulator.latencies`` (CLOCK_MONOTONIC is system-wide on Linux, so
    stamps compare across processes). Each ``response.create`` answered also gets a
    ``ResponseTiming`` in ``Simulator.response_timings``: its request's ``metadata``, when its
    frame was received and the stamp of its first audio delta (``bench/delivery.py``). Off by
    default: ids then look like the service's."""

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append("port must be 0..65535")
        if self.drop_after_events is not None and self.drop_after_events < 1:
            problems.append("drop_after_events must be at least 1")
        for name in ("mute_after_events", "deaf_after_messages", "inject_after_events"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be at least 1")
        if self.inject_frames and self.inject_after_events is None:
            problems.append("inject_frames needs inject_after_events")
        if self.answer_delay < 0:
            problems.append("answer_delay must not be negative")
        if self.speed < 0:
            problems.append("speed must not be negative")
        if self.chunk_ms < 1:
            problems.append("chunk_ms must be at least 1")
        if self.chars_per_second <= 0:
            problems.append("chars_per_second must be positive")
        if not 0 < self.vad_threshold < 1:
            problems.append("vad_threshold must be between 0 and 1")
        if self.max_text_chars is not None and self.max_text_chars < 1:
            problems.append("max_text_chars must be at least 1")
        if not self.generated_reply:
            problems.append("generated_reply must not be empty")
        if problems:
            raise ValueError("; ".join(problems))

    def scaled(self, seconds: float) -> float:
        """A simulated duration in wall-clock seconds under ``speed`` (0: no wait at all)."""
        return 0.0 if self.speed == 0 else seconds / self.speed
