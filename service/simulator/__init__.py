"""A built-in Voice Live simulator: a real WebSocket server that speaks the Voice Live realtime
protocol well enough that the official ``azure-ai-voicelive`` SDK parses every event into its typed
class. It is the service's default upstream and the real peer of the relay's tests.

What it does, on ``ws://HOST:PORT/<any prefix>/voice-live/realtime``:

- Handshake: refuses with HTTP 503 when told to refuse, HTTP 401 when a key is configured and the
  client presents no matching one (``api-key`` header, ``Authorization: Bearer``, or ``api-key``
  query parameter), HTTP 404 off the realtime path.
- ``session.created`` on connect (``sess_...`` id, the service's defaults: server VAD, pcm16);
  ``session.update`` -> ``session.updated`` with the merged effective session.
- ``response.create`` -> the full sequence: ``response.created``, ``response.output_item.added``,
  ``conversation.item.created``, ``response.content_part.added``, transcript delta(s),
  ``response.audio.delta`` chunks, ``response.audio.done``, ``response.audio_transcript.done``,
  ``response.content_part.done``, ``response.output_item.done``, ``response.done``. A
  ``pre_generated_assistant_message`` is spoken exactly (one transcript delta with the whole text,
  ``usage.input_tokens`` 0); a bare request speaks a fixed generated reply (word deltas). Audio is
  deterministic PCM16 24 kHz mono (or the session's format) lasting ``len(text) /
  chars_per_second``, sent in ``chunk_ms`` chunks paced at ``speed`` times real time. Text-only
  sessions get ``response.text.*`` instead.
- ``response.cancel`` -> ``response.done`` cancelled, reason ``client_cancelled`` (an error
  ``response_cancel_not_active`` when nothing plays). A second ``response.create`` while one is
  active: ``cancel_previous: false`` -> error ``conversation_already_has_active_response``;
  otherwise the active one is cancelled first.
- Caller audio (``input_audio_buffer.append``) louder than ``vad_threshold`` with turn detection
  on -> ``input_audio_buffer.speech_started``; with ``interrupt_response`` the playing response is
  cancelled (reason ``turn_detected``) and, with ``auto_truncate``, ``conversation.item.truncated``
  follows at the heard position. Silence for ``silence_duration_ms`` -> ``speech_stopped``,
  ``input_audio_buffer.committed``, the user item, and (``create_response``) a generated reply.
- ``conversation.item.create|retrieve|delete|truncate``, ``input_audio_buffer.commit|clear``,
  ``output_audio_buffer.clear`` answered as the service does.
- Unknown, unsupported or malformed client events -> an ``error`` event
  (``invalid_request_error``); the connection stays open.
- ``metadata`` of ``response.create`` is echoed in ``response.created``/``response.done`` unless
  ``echo_metadata`` is off. Every server event has a unique ``event_id``.

Knobs (``SimulatorConfig``): ``host``, ``port``, ``api_key``, ``refuse_connections``,
``drop_after_events`` and ``drop_abruptly``, ``echo_metadata``, ``answer_delay``, ``speed``,
``chunk_ms``, ``chars_per_second``, ``vad_threshold``, ``interrupt_response_default``,
``max_text_chars``, ``generated_reply``, ``default_model``, ``record_audio``,
``max_message_bytes``, ``stamp_events`` (send times in ``event_id``s, one-way latencies of
stamped caller audio in ``sim.latencies``, and when each ``response.create`` arrived and its first
audio left in ``sim.response_timings``, for benchmarks). For fault tests: ``mute_after_events``
(a stall: nothing more is sent, everything is still read), ``deaf_after_messages`` (nothing more
is read, so the client's writes back up; ``stop`` cuts such a connection at once), and
``inject_after_events`` with ``inject_frames`` (garbage: text or binary frames sent as they are).

Use: ``async with Simulator(SimulatorConfig(speed=0)) as sim:`` then the SDK's
``connect(endpoint=sim.endpoint, ...)``; ``sim.sessions`` records what each connection sent and
received. Standalone: ``compliance-service simulator --port 8100``.
"""

from service.simulator.config import SimulatorConfig
from service.simulator.server import Simulator
from service.simulator.session import SimulatorSession

__all__ = ["Simulator", "SimulatorConfig", "SimulatorSession"]
