"""The conversation of one session: its items in order, as the service would hold them, and the
rules of the client events that touch them (create, retrieve, delete, truncate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.simulator.client_events import ClientEventError
from service.simulator.events import new_id


@dataclass(slots=True)
class StoredItem:
    item: dict[str, Any]
    """The item as the server shows it (``conversation.item.retrieved`` sends it)."""
    audio_ms: float = 0.0
    """Duration of the item's audio (assistant audio messages), for truncation checks."""
    text: str = ""
    """The full text the item speaks, before any truncation."""
    truncated_ms: int | None = None
    """Where ``conversation.item.truncate`` (or auto truncation) cut the audio."""

    def truncate(self, audio_end_ms: int) -> None:
        self.truncated_ms = audio_end_ms

    def view(self) -> dict[str, Any]:
        """The item as retrieved: after a truncation, the transcript holds only what was heard
        (the text cut in proportion to the audio, since the synthesized speech rate is even)."""
        if self.truncated_ms is None or self.audio_ms <= 0:
            return self.item
        heard = self.text[: round(len(self.text) * min(self.truncated_ms / self.audio_ms, 1.0))]
        content = [
            {**part, "transcript": heard} if part.get("type") == "audio" else part
            for part in self.item.get("content", [])
        ]
        return {**self.item, "content": content}


class Conversation:
    def __init__(self) -> None:
        self._items: dict[str, StoredItem] = {}  # insertion order is conversation order

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    @property
    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def add(self, item: dict[str, Any], *, audio_ms: float = 0.0, text: str = "") -> str | None:
        """Append ``item`` (which has an ``id``); return the id of the item before it."""
        previous = self.last_id
        self._items[item["id"]] = StoredItem(item, audio_ms, text)
        return previous

    def get(self, item_id: str) -> StoredItem | None:
        return self._items.get(item_id)

    # --- client requests (raise ClientEventError, which the session answers) ---------------

    def require(self, item_id: str) -> StoredItem:
        stored = self._items.get(item_id)
        if stored is None:
            raise ClientEventError(
                "invalid_value", f"Item '{item_id}' does not exist.", param="item_id"
            )
        return stored

    def create(
        self, item: dict[str, Any], previous_item_id: str | None
    ) -> tuple[str | None, dict[str, Any]]:
        """``conversation.item.create``: the item is appended (the simulator does not honour an
        insertion point, but refuses one that does not exist); returns (previous id, item)."""
        if previous_item_id is not None and previous_item_id not in self._items:
            raise ClientEventError(
                "invalid_value",
                f"Item '{previous_item_id}' does not exist.",
                param="previous_item_id",
            )
        item_id = item.get("id") or new_id("item")
        if item_id in self._items:
            raise ClientEventError(
                "invalid_value", f"Item '{item_id}' already exists.", param="item.id"
            )
        stored = {**item, "id": item_id, "object": "realtime.item", "status": "completed"}
        return self.add(stored), stored

    def remove(self, item_id: str) -> None:
        self.require(item_id)
        del self._items[item_id]

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> None:
        """``conversation.item.truncate`` of an assistant audio message, within its audio."""
        stored = self.require(item_id)
        if stored.item.get("role") != "assistant" or stored.audio_ms <= 0:
            raise ClientEventError(
                "invalid_value",
                "Only assistant messages with audio can be truncated.",
                param="item_id",
            )
        if content_index != 0:
            raise ClientEventError(
                "invalid_value", "The item has no such content part.", param="content_index"
            )
        if audio_end_ms > stored.audio_ms:
            raise ClientEventError(
                "invalid_value",
                f"audio_end_ms {audio_end_ms} is beyond the item's audio "
                f"({int(stored.audio_ms)} ms).",
                param="audio_end_ms",
            )
        stored.truncate(audio_end_ms)
