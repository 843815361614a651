"""The pure rules of the chain (service.audit.chain): no database, no HTTP."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.audit.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    ChainCheck,
    canonical_bytes,
    event_hash,
    verify_chain,
)

Event = dict[str, Any]
START = datetime(2026, 11, 24, 9, 30, 0, 123456, tzinfo=UTC)


def link(previous: Event | None, **fields: Any) -> Event:
    seq = previous["seq"] + 1 if previous else 1
    event: Event = {
        "seq": seq,
        "at": START + timedelta(seconds=seq),
        "principal": "alice",
        "key_id": "k-alice",
        "action": "version.updated",
        "subject_type": "phrase_version",
        "subject_id": f"recording/{seq}",
        "details": {"texts": {"en-US": f"Text number {seq}, naïve café"}, "n": seq},
        "prev_hash": previous["hash"] if previous else GENESIS_HASH,
        **fields,
    }
    event["hash"] = event_hash(event)
    return event


def chain(length: int) -> list[Event]:
    events: list[Event] = []
    for _ in range(length):
        events.append(link(events[-1] if events else None))
    return events


def rehash(event: Event) -> Event:
    return {**event, "hash": event_hash(event)}


class TestCanonicalForm:
    def test_hash_is_sha256_of_sorted_compact_utf8_json_of_the_hashed_fields(self) -> None:
        event = chain(1)[0]
        expected = json.dumps(
            {
                "seq": 1,
                "at": "2026-11-24T09:30:01.123456+00:00",
                "principal": "alice",
                "key_id": "k-alice",
                "action": "version.updated",
                "subject_type": "phrase_version",
                "subject_id": "recording/1",
                "details": {"n": 1, "texts": {"en-US": "Text number 1, naïve café"}},
                "prev_hash": GENESIS_HASH,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        assert canonical_bytes(event) == expected
        assert event["hash"] == hashlib.sha256(expected).hexdigest()

    def test_the_stored_hash_and_unknown_fields_are_not_part_of_the_hash(self) -> None:
        event = chain(1)[0]
        assert event_hash({**event, "hash": "x" * 64, "extra": 1}) == event["hash"]
        assert set(HASHED_FIELDS) == set(event) - {"hash"}

    def test_key_order_of_details_does_not_matter(self) -> None:
        event = chain(1)[0]
        shuffled = {**event, "details": {"n": 1, "texts": event["details"]["texts"]}}
        assert list(shuffled["details"]) != list(event["details"])
        assert event_hash(shuffled) == event["hash"]

    def test_the_same_instant_in_another_zone_hashes_the_same(self) -> None:
        event = chain(1)[0]
        elsewhere = event["at"].astimezone(timezone(timedelta(hours=-5)))
        assert event_hash({**event, "at": elsewhere}) == event["hash"]

    def test_times_keep_microseconds_even_when_they_are_zero(self) -> None:
        event = link(None, at=datetime(2026, 1, 1, tzinfo=UTC))
        assert b'"at":"2026-01-01T00:00:00.000000+00:00"' in canonical_bytes(event)

    def test_an_iso_string_time_hashes_like_the_datetime_it_names(self) -> None:
        """Events read back from JSON (the API, an export, a log line) carry ``at`` as a string;
        the hash must not depend on how the instant is spelled."""
        event = link(None, at=datetime(2026, 1, 1, tzinfo=UTC))
        for spelling in ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00.000000+01:00"):
            assert event_hash({**event, "at": spelling}) == event["hash"], spelling

    @pytest.mark.parametrize("spelling", ["2026-01-01T00:00:00", "yesterday", ""])
    def test_a_time_that_names_no_zoned_instant_does_not_match(self, spelling: str) -> None:
        event = link(None, at=datetime(2026, 1, 1, tzinfo=UTC))
        assert event_hash({**event, "at": spelling}) != event["hash"]

    @pytest.mark.parametrize(
        "details",
        [
            {"b": 1, "a": [True, False, None], "B": {"z": "", "y": 0}},
            {"floats": [0.1, 1e100, -0.0, 2.5e-308], "big": 2**70, "neg": -(2**63)},
            {"text": 'quote " backslash \\ newline \n tab \t nul \x00 emoji \U0001f600 é'},
            {"ключ": "значение", "键": ["值"], "": "empty key"},
        ],
    )
    def test_the_canonical_form_is_json_dumps_with_the_documented_arguments(
        self, details: dict[str, Any]
    ) -> None:
        event = link(None, details=details)
        fields = {name: event[name] for name in HASHED_FIELDS}
        fields["at"] = "2026-11-24T09:30:01.123456+00:00"
        expected = json.dumps(
            fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
        assert canonical_bytes(event) == expected

    def test_a_value_json_cannot_carry_exactly_is_refused(self) -> None:
        with pytest.raises(ValueError, match="JSON compliant"):
            event_hash(link(None, details={"x": float("nan")}))

    @pytest.mark.parametrize(
        "zone", [ZoneInfo("UTC"), timezone(timedelta(0), "Z"), timezone(timedelta(hours=14))]
    )
    def test_any_zone_object_gives_the_utc_spelling(self, zone: tzinfo) -> None:
        event = chain(1)[0]
        assert event_hash({**event, "at": event["at"].astimezone(zone)}) == event["hash"]

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("seq", 2),
            ("at", START + timedelta(microseconds=1)),
            ("principal", "mallory"),
            ("key_id", None),
            ("action", "version.approved"),
            ("subject_type", "phrase"),
            ("subject_id", "recording/2"),
            ("details", {"texts": {"en-US": "Text number 1, naive cafe"}, "n": 1}),
            ("prev_hash", "f" * 64),
        ],
    )
    def test_every_hashed_field_changes_the_hash(self, name: str, value: Any) -> None:
        event = chain(1)[0]
        assert event_hash({**event, name: value}) != event["hash"]


class TestVerifyChain:
    def test_a_good_chain_verifies(self) -> None:
        events = chain(5)
        result = verify_chain(events)
        assert result.ok is True
        assert result.checked == 5
        assert result.head_seq == 5
        assert result.head_hash == events[-1]["hash"]
        assert result.first_bad_seq is None
        assert result.problem is None

    def test_an_empty_chain_verifies_with_the_genesis_head(self) -> None:
        result = verify_chain([])
        assert (result.ok, result.checked, result.head_seq) == (True, 0, 0)
        assert result.head_hash == GENESIS_HASH

    def test_the_first_event_must_link_to_genesis(self) -> None:
        events = chain(3)
        events[0] = rehash({**events[0], "prev_hash": "1" * 64})
        result = verify_chain(events)
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 1, 0)

    def test_a_chain_must_start_at_one(self) -> None:
        result = verify_chain(chain(4)[1:])
        assert result.ok is False
        assert result.first_bad_seq == 1
        assert result.problem is not None
        assert "missing" in result.problem

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("principal", "mallory"),
            ("details", {"texts": {"en-US": "Something else"}, "n": 3}),
            ("at", START),
            ("key_id", "k-mallory"),
            ("action", "version.rejected"),
        ],
    )
    def test_an_altered_field_is_found_at_its_event(self, name: str, value: Any) -> None:
        events = chain(6)
        events[2] = {**events[2], name: value}
        result = verify_chain(events)
        assert result.ok is False
        assert result.first_bad_seq == 3
        assert result.checked == 2
        assert result.head_seq == 2
        assert result.head_hash == events[1]["hash"]
        assert result.problem is not None
        assert "event 3" in result.problem
        assert "altered" in result.problem

    def test_an_altered_hash_is_found_at_its_event(self) -> None:
        events = chain(4)
        events[1] = {**events[1], "hash": "a" * 64}
        result = verify_chain(events)
        assert (result.ok, result.first_bad_seq) == (False, 2)

    def test_a_missing_event_is_reported_as_the_gap(self) -> None:
        events = chain(6)
        del events[3]  # seq 4
        result = verify_chain(events)
        assert result.ok is False
        assert result.first_bad_seq == 4
        assert result.checked == 3
        assert result.problem is not None
        assert "event 4 is missing" in result.problem

    def test_a_missing_event_hidden_by_renumbering_breaks_the_link(self) -> None:
        events = chain(6)
        del events[3]
        renumbered = events[:3] + [rehash({**e, "seq": e["seq"] - 1}) for e in events[3:]]
        result = verify_chain(renumbered)
        assert (result.ok, result.first_bad_seq) == (False, 4)
        assert result.problem is not None
        assert "does not link" in result.problem

    def test_an_inserted_event_with_renumbered_successors_is_found(self) -> None:
        events = chain(5)
        forged = link(events[1], principal="mallory", action="version.approved")
        assert forged["seq"] == 3
        later = [{**e, "seq": e["seq"] + 1} for e in events[2:]]
        result = verify_chain([*events[:2], forged, *later])
        # The forgery itself is well formed; the event after it no longer links.
        assert result.ok is False
        assert result.first_bad_seq == 4
        assert result.checked == 3
        assert result.problem is not None
        assert "event 4 does not link to event 3" in result.problem

    def test_an_inserted_event_without_renumbering_is_a_sequence_break(self) -> None:
        events = chain(4)
        duplicate = link(events[1])  # a second seq 3
        result = verify_chain([*events[:3], duplicate, events[3]])
        assert (result.ok, result.first_bad_seq) == (False, 4)

    def test_a_rehashed_event_breaks_the_next_link(self) -> None:
        events = chain(6)
        events[2] = rehash({**events[2], "principal": "mallory"})
        result = verify_chain(events)
        assert result.ok is False
        assert result.first_bad_seq == 4
        assert result.checked == 3
        assert result.problem is not None
        assert "event 4 does not link" in result.problem

    def test_reordered_events_are_found(self) -> None:
        events = chain(5)
        events[1], events[2] = events[2], events[1]
        result = verify_chain(events)
        assert (result.ok, result.first_bad_seq) == (False, 2)

    def test_only_the_first_problem_is_reported(self) -> None:
        events = chain(8)
        events[6] = {**events[6], "principal": "x"}
        events[2] = {**events[2], "principal": "y"}
        assert verify_chain(events).first_bad_seq == 3

    def test_an_unreadable_event_is_reported_as_altered(self) -> None:
        events = chain(5)
        check = ChainCheck()
        assert all(check.feed(e) for e in events[:3])
        assert check.feed_unreadable(4) is False
        result = check.result()
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 4, 3)
        assert result.problem is not None
        assert "event 4 was altered" in result.problem

    def test_an_unreadable_event_after_a_gap_reports_the_gap(self) -> None:
        check = ChainCheck()
        assert check.feed(chain(1)[0])
        assert check.feed_unreadable(3) is False
        result = check.result()
        assert result.first_bad_seq == 2
        assert result.problem is not None
        assert "event 2 is missing" in result.problem

    def test_events_read_back_from_json_still_verify(self) -> None:
        events = chain(4)
        as_json = json.loads(json.dumps(events, default=lambda t: t.isoformat()))
        assert verify_chain(as_json).ok is True
