"""The control channel between an attached agent's connector and the service: JSON text frames,
each an object with an ``op``. Pure definitions, shared by both ends.

Both directions are numbered so that a dropped channel resumes without losing or repeating
anything: the connector numbers what it reports (``seq``), the service numbers its commands
(``seq`` too, its own count). On every (re)connect the connector says ``hello`` with the last
command it executed; the service answers ``welcome`` with the last report it processed, then
sends again every command after the one executed. Each side skips a number it has already seen.

Connector -> service:
    hello     {executed}                       first frame of every connection
    event     {seq, event}                     a server event delivery tracking needs
    client    {seq, event}                     a control event the agent itself sent
    audio     {seq, bytes}                     decoded audio bytes the agent received since the
                                               last report (never the audio itself): at a
                                               response's first delta, before any other report,
                                               and at least every ``audio_report_interval``
                                               seconds while deltas arrive
    done      {seq, command}                   a command was executed on the agent's connection
    end       {seq, code, reason, by}          the agent's connection closed (``by`` "agent" or
                                               "upstream"), or it detached (``code`` null)
Service -> connector:
    welcome   {received,                       the last report processed, and how often (in
               audio_report_interval?}         seconds) to report audio while it flows: the
                                               service fails a response it hears nothing of for
                                               a while. Without it (an older service), every
                                               ``AUDIO_REPORT_INTERVAL``
    send      {seq, event}                     send ``event`` on the agent's connection
    ack       {seq}                            reports up to ``seq`` are processed

Fields a side does not know are ignored, so either end may be newer than the other, with one
limit: a connector older than ``audio_report_interval`` reports audio only with the next event it
tracks, so a newer service takes a phrase longer than its answer timeout
(``COMPLIANCE_DELIVERY_ANSWER_TIMEOUT``) for silence and fails it. Upgrade connectors first.
"""

from __future__ import annotations

from typing import Any

HELLO, EVENT, CLIENT, AUDIO, DONE, END = "hello", "event", "client", "audio", "done", "end"
WELCOME, SEND, ACK = "welcome", "send", "ack"
REPORTS = frozenset({EVENT, CLIENT, AUDIO, DONE, END})

# The server events delivery tracking reads (audio deltas are reported as byte counts).
TRACKED_SERVER_EVENTS = frozenset(
    {
        "session.created",
        "session.updated",
        "response.created",
        "response.output_item.added",
        "response.audio_transcript.done",
        "response.done",
        "conversation.item.truncated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "error",
    }
)
# The agent's own control events it reads (so that its responses are never taken for ours).
TRACKED_CLIENT_EVENTS = frozenset({"response.create", "conversation.item.truncate"})
AUDIO_DELTA = "response.audio.delta"
# Seconds between audio reports while audio flows, unless ``welcome`` says otherwise.
AUDIO_REPORT_INTERVAL = 1.0

# Close codes of the control WebSocket (4000-4999 are the application's).
CLOSE_REPLACED = 4000  # a newer control connection for the same session took over
CLOSE_ENDED = 4001  # the session is over: do not reconnect
CLOSE_PROTOCOL = 4002  # a frame broke this protocol


def base64_decoded_length(data: str) -> int:
    """The length of what ``data`` decodes to, without decoding it."""
    size = len(data)
    if size == 0:
        return 0
    padding = (data[-1] == "=") + (size > 1 and data[-2] == "=")
    return size // 4 * 3 - padding


def report_interval(welcome: dict[str, Any]) -> float:
    """The audio report interval ``welcome`` asks for, or the default if it names none."""
    value = welcome.get("audio_report_interval")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 60:
        return float(value)
    return AUDIO_REPORT_INTERVAL


def frame(op: str, **fields: Any) -> dict[str, Any]:
    return {"op": op, **fields}


def sequence_number(message: dict[str, Any], name: str = "seq") -> int:
    """A frame's number; ValueError if it has none."""
    value = message.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"the {message.get('op')!r} frame has no valid {name!r}")
    return value
