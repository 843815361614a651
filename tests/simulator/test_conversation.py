"""Conversation items and the input audio buffer, driven by the SDK's own helpers."""

from __future__ import annotations

from azure.ai.voicelive.models import (
    InputTextContentPart,
    ResponseAudioContentPart,
    ResponseMessageItem,
    ServerEventConversationItemCreated,
    ServerEventConversationItemDeleted,
    ServerEventConversationItemRetrieved,
    ServerEventConversationItemTruncated,
    ServerEventError,
    ServerEventInputAudioBufferCleared,
    ServerEventInputAudioBufferCommitted,
    ServerEventOutputAudioBufferCleared,
    ServerEventResponseDone,
    ServerEventSessionUpdated,
    UserMessageItem,
)

from service.simulator import Simulator
from tests.simulator.helpers import Peer, caller_audio, peer, say

PHRASE = "Thirty characters, exactly so."  # two seconds of speech


async def spoken_item(client: Peer, text: str) -> str:
    """Have ``text`` spoken to the end; the id of the assistant item it became."""
    await client.send(say(text))
    _, done = await client.until(ServerEventResponseDone)
    assert done.response.output is not None
    item_id = done.response.output[0].id
    assert item_id is not None
    return item_id


async def test_client_truncation_is_confirmed_and_cuts_the_transcript(sim: Simulator) -> None:
    async with peer(sim) as client:
        item_id = await spoken_item(client, PHRASE)
        await client.conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=1000
        )
        truncated = await client.expect(ServerEventConversationItemTruncated)
        await client.conn.conversation.item.retrieve(item_id=item_id)
        retrieved = await client.expect(ServerEventConversationItemRetrieved)
    assert (truncated.item_id, truncated.content_index, truncated.audio_end_ms) == (
        item_id,
        0,
        1000,
    )
    assert retrieved.item is not None
    assert isinstance(retrieved.item, ResponseMessageItem)
    part = retrieved.item.content[0]
    assert isinstance(part, ResponseAudioContentPart)
    assert part.transcript == PHRASE[:15]  # half the audio heard, half the text kept


async def test_truncation_beyond_the_audio_is_an_error(sim: Simulator) -> None:
    async with peer(sim) as client:
        item_id = await spoken_item(client, PHRASE)
        await client.conn.conversation.item.truncate(
            item_id=item_id, content_index=0, audio_end_ms=2001
        )
        error = await client.expect(ServerEventError)
        await client.conn.conversation.item.truncate(
            item_id="item_nope", content_index=0, audio_end_ms=10
        )
        missing = await client.expect(ServerEventError)
    assert (error.error.code, error.error.param) == ("invalid_value", "audio_end_ms")
    assert (missing.error.code, missing.error.param) == ("invalid_value", "item_id")


async def test_items_can_be_created_retrieved_and_deleted(sim: Simulator) -> None:
    async with peer(sim) as client:
        # The SDK's item.create only takes typed items (a mapping trips its constructor).
        await client.conn.conversation.item.create(
            item=UserMessageItem(content=[InputTextContentPart(text="Hello")])
        )
        created = await client.expect(ServerEventConversationItemCreated)
        assert created.item is not None
        assert created.item.id is not None
        item_id = created.item.id
        await client.conn.conversation.item.retrieve(item_id=item_id)
        retrieved = await client.expect(ServerEventConversationItemRetrieved)
        await client.conn.conversation.item.delete(item_id=item_id)
        deleted = await client.expect(ServerEventConversationItemDeleted)
        await client.conn.conversation.item.delete(item_id=item_id)
        error = await client.expect(ServerEventError)
    assert retrieved.item is not None
    assert retrieved.item["content"][0]["text"] == "Hello"
    assert deleted.item_id == item_id
    assert error.error.code == "invalid_value"


async def test_a_spoken_phrase_becomes_the_next_items_predecessor(sim: Simulator) -> None:
    async with peer(sim) as client:
        await client.send(say(PHRASE))
        _, done = await client.until(ServerEventResponseDone)
        await client.conn.conversation.item.create(
            item=UserMessageItem(content=[InputTextContentPart(text="?")])
        )
        created = await client.expect(ServerEventConversationItemCreated)
    assert done.response.output is not None
    assert created.previous_item_id == done.response.output[0].id


async def test_input_buffer_commit_and_clear(sim: Simulator) -> None:
    async with peer(sim) as client:
        await client.send({"type": "session.update", "session": {"turn_detection": None}})
        await client.expect(ServerEventSessionUpdated)
        await client.conn.input_audio_buffer.commit()
        empty = await client.expect(ServerEventError)
        await client.send(caller_audio(100, level=0.2))
        await client.conn.input_audio_buffer.commit()
        committed = await client.expect(ServerEventInputAudioBufferCommitted)
        item = await client.expect(ServerEventConversationItemCreated)
        await client.send(caller_audio(100, level=0.2))
        await client.conn.input_audio_buffer.clear()
        await client.expect(ServerEventInputAudioBufferCleared)
        await client.conn.input_audio_buffer.commit()
        cleared_then_empty = await client.expect(ServerEventError)
        await client.conn.output_audio_buffer.clear()
        await client.expect(ServerEventOutputAudioBufferCleared)
    assert empty.error.code == cleared_then_empty.error.code == "input_audio_buffer_commit_empty"
    assert item.item is not None
    assert item.item.id == committed.item_id


async def test_session_update_merges_and_echoes_the_effective_session(sim: Simulator) -> None:
    async with peer(sim) as client:
        created = client.events[0]
        await client.conn.session.update(
            session={
                "instructions": "Be brief.",
                "voice": {"type": "azure-standard", "name": "en-US-Ava:DragonHDLatestNeural"},
                "turn_detection": {
                    "type": "azure_semantic_vad",
                    "interrupt_response": True,
                    "auto_truncate": True,
                },
            }
        )
        first = await client.expect(ServerEventSessionUpdated)
        await client.conn.session.update(session={"output_audio_format": "pcm16_16000hz"})
        second = await client.expect(ServerEventSessionUpdated)
    assert created["session"]["id"] == first.session.id == second.session.id
    assert first.session.id is not None
    assert first.session.id.startswith("sess_")
    assert second.session.instructions == "Be brief."
    assert second.session.voice == {
        "type": "azure-standard",
        "name": "en-US-Ava:DragonHDLatestNeural",
    }
    assert second.session.turn_detection is not None
    assert second.session.turn_detection["type"] == "azure_semantic_vad"
    assert second.session.output_audio_format == "pcm16_16000hz"
    assert second.session.model == "gpt-realtime"
