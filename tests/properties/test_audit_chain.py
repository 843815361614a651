"""The audit chain (service.audit.chain): a chain built by its rules verifies; any change to one
field of one event is found at exactly that event; appending keeps it verifying; an event taken
out, or two swapped, is found where the chain first differs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from service.audit.chain import GENESIS_HASH, event_hash, verify_chain
from tests.properties.support import BOUNDED, texts

Event = dict[str, Any]
# Every field of an audit event as the API shows it (written here, not taken from the chain's
# code, so a field the hash left out would be caught).
FIELDS: tuple[str, ...] = ("seq", "at", "principal", "key_id", "action", "subject_type")
FIELDS += ("subject_id", "details", "prev_hash", "hash")
START = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=5,
)


@st.composite
def contents(draw: st.DrawFn) -> Event:
    """What one event records, before it is numbered and linked."""
    return {
        "at": START + timedelta(microseconds=draw(st.integers(0, 10**12))),
        "principal": draw(texts),
        "key_id": draw(st.none() | texts),
        "action": draw(st.sampled_from(["version.approved", "delivery.queued", "api_key.created"])),
        "subject_type": draw(texts),
        "subject_id": draw(texts),
        "details": draw(st.dictionaries(texts, json_values, max_size=4)),
    }


def append(chain: list[Event], content: Event) -> list[Event]:
    """``chain`` with ``content`` appended by the chain's rules (numbered, linked, hashed)."""
    event = {
        **content,
        "seq": len(chain) + 1,
        "prev_hash": chain[-1]["hash"] if chain else GENESIS_HASH,
    }
    event["hash"] = event_hash(event)
    return [*chain, event]


@st.composite
def chains(draw: st.DrawFn, min_size: int = 1) -> list[Event]:
    chain: list[Event] = []
    for content in draw(st.lists(contents(), min_size=min_size, max_size=6)):
        chain = append(chain, content)
    return chain


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@st.composite
def other_values(draw: st.DrawFn, field: str, old: Any) -> Any:
    """A value for ``field`` that says something else than ``old``."""
    if field == "seq":
        new: Any = old + draw(st.integers(-3, 3).filter(bool))
    elif field == "at":
        new = old + timedelta(microseconds=draw(st.integers(-(10**9), 10**9).filter(bool)))
    elif field in ("prev_hash", "hash"):
        new = draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    elif field == "details":
        new = draw(st.dictionaries(texts, json_values, max_size=4))
    elif field == "key_id":
        new = draw(st.none() | texts)
    else:
        new = draw(texts)
    assume(canonical(new) != canonical(old) if field != "at" else new != old)
    return new


class TestChain:
    @BOUNDED
    @given(chain=chains(min_size=0))
    def test_a_chain_built_by_the_rules_verifies(self, chain: list[Event]) -> None:
        result = verify_chain(chain)
        assert result.ok
        assert result.checked == result.head_seq == len(chain)
        assert result.head_hash == (chain[-1]["hash"] if chain else GENESIS_HASH)

    @BOUNDED
    @given(chain=chains(), data=st.data())
    def test_one_changed_field_is_found_at_exactly_its_event(
        self, chain: list[Event], data: st.DataObject
    ) -> None:
        index = data.draw(st.integers(0, len(chain) - 1))
        field = data.draw(st.sampled_from(FIELDS))
        altered = dict(chain[index])
        altered[field] = data.draw(other_values(field, altered[field]))
        result = verify_chain([*chain[:index], altered, *chain[index + 1 :]])
        assert not result.ok
        assert result.first_bad_seq == index + 1
        assert result.checked == index

    @BOUNDED
    @given(chain=chains(), data=st.data())
    def test_the_same_instant_in_another_zone_is_no_change(
        self, chain: list[Event], data: st.DataObject
    ) -> None:
        """Times are hashed as UTC: how a reader spells the instant does not matter."""
        index = data.draw(st.integers(0, len(chain) - 1))
        zone = timezone(timedelta(minutes=data.draw(st.integers(-14 * 60, 14 * 60))))
        event = dict(chain[index])
        event["at"] = event["at"].astimezone(zone)
        if data.draw(st.booleans()):
            event["at"] = event["at"].isoformat()  # as read back from JSON
        assert verify_chain([*chain[:index], event, *chain[index + 1 :]]).ok

    @BOUNDED
    @given(chain=chains(min_size=0), more=st.lists(contents(), min_size=1, max_size=3))
    def test_appending_keeps_it_verifying_and_moves_the_head(
        self, chain: list[Event], more: list[Event]
    ) -> None:
        before = verify_chain(chain)
        for content in more:
            chain = append(chain, content)
        after = verify_chain(chain)
        assert after.ok
        assert after.head_seq == before.head_seq + len(more)
        assert after.head_hash == chain[-1]["hash"] != before.head_hash

    @BOUNDED
    @given(chain=chains(min_size=2), data=st.data())
    def test_an_event_taken_out_is_found_where_it_was(
        self, chain: list[Event], data: st.DataObject
    ) -> None:
        index = data.draw(st.integers(0, len(chain) - 2))  # the last one can go unnoticed
        result = verify_chain(chain[:index] + chain[index + 1 :])
        assert (result.ok, result.first_bad_seq) == (False, index + 1)

    @BOUNDED
    @given(chain=chains(min_size=2), data=st.data())
    def test_two_events_swapped_are_found_at_the_first(
        self, chain: list[Event], data: st.DataObject
    ) -> None:
        first = data.draw(st.integers(0, len(chain) - 2))
        second = data.draw(st.integers(first + 1, len(chain) - 1))
        swapped = list(chain)
        swapped[first], swapped[second] = swapped[second], swapped[first]
        result = verify_chain(swapped)
        assert (result.ok, result.first_bad_seq) == (False, first + 1)

    @BOUNDED
    @given(chain=chains())
    def test_the_order_of_keys_in_details_does_not_matter(self, chain: list[Event]) -> None:
        reordered = [
            {**event, "details": dict(reversed(list(event["details"].items())))} for event in chain
        ]
        assert verify_chain(reordered).ok
