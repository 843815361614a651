"""The trail as a file, and verification with the public key alone: `GET /v1/audit/export`,
`compliance-service audit export`, and `audit verify --public-key [--file]`, against someone who
rewrites the database behind the service's back, consistently enough to fool the chain."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from service.audit.chain import event_hash, verify_chain
from service.audit.export import verify_file
from service.audit.keys import parse_public_key, trusted
from service.settings import Settings
from tests.audit.signed import (
    checkpoint,
    cut_tail,
    forged_checkpoint,
    public_key,
    replace_checkpoints,
    rewrite_chain,
)
from tests.audit.support import Event, all_events, verify
from tests.helpers import Api, assert_problem, cli_environment, run_cli_async

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ("ok", "checked", "head_seq", "head_hash", "first_bad_seq", "problem")
Lines = list[dict[str, Any]]


async def history(api: Api) -> list[Event]:
    await api.create_phrase()
    await api.approved_version()
    await api.create_version(texts={"en-US": "A second wording."})
    return await all_events(api)


async def exported(api: Api) -> list[dict[str, Any]]:
    response = await api.http.get("/v1/audit/export", headers=api.as_("audrey"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/jsonl")
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def write(path: Path, lines: Lines) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


async def pem_file(api: Api, path: Path) -> Path:
    return write_text(path, (await public_key(api))["pem"])


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def cli(*args: str, database_url: str | None, cwd: Path, **env: str) -> tuple[int, Any, str]:
    """Exit code, stdout as JSON (None when it is none), stderr."""
    process = await run_cli_async(*args, env=cli_environment(database_url, **env), cwd=cwd)
    try:
        printed = json.loads(process.stdout)
    except ValueError:
        printed = None
    return process.returncode, printed, process.stderr


def same_time(one: str, other: str) -> bool:
    return datetime.fromisoformat(one) == datetime.fromisoformat(other)


def contract(result: dict[str, Any]) -> dict[str, Any]:
    return {name: result[name] for name in CONTRACT}


class TestExport:
    async def test_the_export_holds_every_event_and_checkpoint_in_order(self, api: Api) -> None:
        events = await history(api)
        made = await checkpoint(api)

        lines = await exported(api)

        header, *records, end = lines
        assert (header["format"], header["version"]) == ("compliance-service audit export", 1)
        kinds = [r.pop("type") for r in records]
        assert kinds == ["checkpoint"] + ["event"] * len(events)
        signed = records[0]
        assert same_time(signed.pop("signed_at"), made.pop("signed_at"))
        assert signed == {k: v for k, v in made.items() if k != "id"}
        for line, event in zip(records[1:], events, strict=True):
            assert same_time(line.pop("at"), event["at"])
            assert line == {k: v for k, v in event.items() if k != "at"}
        assert end == {"type": "end", "events": len(events), "checkpoints": 1}

    @pytest.mark.parametrize("who", ["admin", "alice", "agent-1"])
    async def test_only_auditors_export(self, api: Api, who: str) -> None:
        response = await api.http.get("/v1/audit/export", headers=api.as_(who))
        assert_problem(response, 403, "forbidden")

    async def test_the_command_line_writes_the_same_file(
        self, api: Api, database_url: str, tmp_path: Path
    ) -> None:
        events = await history(api)
        await checkpoint(api)
        out = tmp_path / "out"
        out.mkdir()
        target = out / "trail.jsonl"

        code, _, stderr = await cli(
            "audit", "export", str(target), database_url=database_url, cwd=ROOT
        )

        assert code == 0, stderr
        assert f"exported {len(events)} events and 1 checkpoints to {target}" in stderr
        written = [json.loads(line) for line in target.read_text().splitlines()]
        served = await exported(api)
        assert written[1:] == served[1:]  # all but the header's time of export
        assert names(out) == ["trail.jsonl"]  # nothing partial left


class TestAnAuditorWithThePublicKeyAlone:
    async def test_verifies_an_export_without_any_database(self, api: Api, tmp_path: Path) -> None:
        events = await history(api)
        made = await checkpoint(api)
        await api.create_phrase("later")  # after the checkpoint: vouched for by the chain alone
        trail = write(tmp_path / "trail.jsonl", await exported(api))
        key = await pem_file(api, tmp_path / "service.pem")
        desk = tmp_path / "auditor"
        desk.mkdir()

        code, printed, stderr = await cli(
            "audit", "verify", "--file", str(trail), "--public-key", str(key),
            database_url=None, cwd=desk,
        )  # fmt: skip

        assert code == 0, stderr
        assert printed["ok"] is True
        assert printed["checked"] == len(events) + 1
        assert (printed["checkpoints_checked"], printed["last_signed_seq"]) == (1, made["seq"])
        assert printed["public_key_ids"] == [made["key_id"]]
        assert names(desk) == []  # no database was made or looked for

    async def test_a_file_whose_checkpoints_were_all_removed_fails(
        self, api: Api, tmp_path: Path
    ) -> None:
        """Deleting every checkpoint leaves a chain that is intact by itself: with the key in
        hand, an auditor is told that nothing vouches for it."""
        await history(api)
        await checkpoint(api)
        lines = [line for line in await exported(api) if line.get("type") != "checkpoint"]
        end = lines[-1]
        lines[-1] = {**end, "checkpoints": 0}
        trail = write(tmp_path / "trail.jsonl", lines)
        key = await pem_file(api, tmp_path / "service.pem")

        code, printed, _ = await cli(
            "audit", "verify", "--file", str(trail), "--public-key", str(key),
            database_url=None, cwd=tmp_path,
        )  # fmt: skip

        assert code == 1
        assert printed["ok"] is False
        assert "no checkpoint signed by the given keys" in printed["problem"]

    async def test_signed_through_finds_checkpoints_removed_since_an_earlier_export(
        self, api: Api, tmp_path: Path
    ) -> None:
        await history(api)
        first = await checkpoint(api)
        await api.create_phrase("later")
        second = await checkpoint(api)
        lines = await exported(api)
        # The newer checkpoint removed: the older one still vouches for the start.
        without = [
            line
            for line in lines
            if not (line.get("type") == "checkpoint" and line.get("seq") == second["seq"])
        ]
        without[-1] = {**without[-1], "checkpoints": without[-1]["checkpoints"] - 1}
        trail = write(tmp_path / "trail.jsonl", without)
        key = await pem_file(api, tmp_path / "service.pem")
        args = ("audit", "verify", "--file", str(trail), "--public-key", str(key))

        plain, _, _ = await cli(*args, database_url=None, cwd=tmp_path)
        pinned, printed, _ = await cli(
            *args, "--signed-through", str(second["seq"]), database_url=None, cwd=tmp_path
        )

        assert plain == 0  # the chain and the checkpoint left are intact
        assert pinned == 1
        assert printed["last_signed_seq"] == first["seq"]
        assert "checkpoints were removed" in printed["problem"]

    async def test_a_key_given_as_its_value_works_like_a_file(
        self, api: Api, tmp_path: Path
    ) -> None:
        await checkpoint(api)
        trail = write(tmp_path / "trail.jsonl", await exported(api))
        published = await public_key(api)
        for value in (published["public_key"], published["pem"], json.dumps(published)):
            code, printed, stderr = await cli(
                "audit", "verify", "--file", str(trail), "--public-key", value,
                database_url=None, cwd=tmp_path,
            )  # fmt: skip
            assert code == 0, stderr
            assert printed["checkpoints_checked"] == 1

    async def test_another_key_does_not_vouch_for_the_file(self, api: Api, tmp_path: Path) -> None:
        made = await checkpoint(api)
        trail = write(tmp_path / "trail.jsonl", await exported(api))
        other = Ed25519PrivateKey.generate().public_key()
        raw = other.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

        code, printed, stderr = await cli(
            "audit", "verify", "--file", str(trail),
            "--public-key", base64.b64encode(raw).decode(),
            database_url=None, cwd=tmp_path,
        )  # fmt: skip

        assert code == 1, stderr
        assert printed["ok"] is False
        assert made["key_id"] in printed["problem"]
        assert "not trusted" in printed["problem"]

    async def test_without_a_key_only_the_chain_is_checked_and_it_says_so(
        self, api: Api, tmp_path: Path
    ) -> None:
        await checkpoint(api)
        trail = write(tmp_path / "trail.jsonl", await exported(api))

        code, printed, stderr = await cli(
            "audit", "verify", "--file", str(trail), database_url=None, cwd=tmp_path
        )

        assert code == 0, stderr
        assert (printed["checkpoints_checked"], printed["public_key_ids"]) == (0, [])
        assert "signatures were not checked" in stderr

    async def test_a_file_that_is_no_export_is_refused(self, tmp_path: Path) -> None:
        other = tmp_path / "phrases.json"
        other.write_text('{"phrases": []}\n')

        code, printed, stderr = await cli(
            "audit", "verify", "--file", str(other), database_url=None, cwd=tmp_path
        )

        assert (code, printed) == (2, None)
        assert "not an audit export" in stderr

    async def test_a_key_that_is_no_public_key_is_refused_without_repeating_it(
        self, tmp_path: Path
    ) -> None:
        private = base64.b64encode(b"\x01" * 31).decode()  # one byte short of a key

        code, printed, stderr = await cli(
            "audit", "verify", "--file", "x.jsonl", "--public-key", private,
            database_url=None, cwd=tmp_path,
        )  # fmt: skip

        assert (code, printed) == (2, None)
        assert "--public-key 1" in stderr
        assert private not in stderr


def edit_event(seq: int, **values: Any) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        return [
            {**r, **values} if r.get("seq") == seq and r["type"] == "event" else r for r in lines
        ]

    return edit


def rehash_from(seq: int, **values: Any) -> Callable[[Lines], Lines]:
    """Change event ``seq`` and recompute every hash after it: the chain alone is consistent."""

    def edit(lines: Lines) -> Lines:
        result, previous = [], None
        for record in lines:
            if record.get("type") == "event" and record["seq"] >= seq:
                record = {**record, **(values if record["seq"] == seq else {})}
                record["prev_hash"] = previous or record["prev_hash"]
                record["hash"] = previous = event_hash(record)
            result.append(record)
        return result

    return edit


def drop_events_from(seq: int, *, fix_end: bool) -> Callable[[Lines], Lines]:
    def edit(lines: Lines) -> Lines:
        kept = [r for r in lines if not (r.get("type") == "event" and r["seq"] >= seq)]
        if fix_end:
            kept[-1] = {**kept[-1], "events": kept[-1]["events"] - (len(lines) - len(kept))}
        return kept

    return edit


def checkpoint_moved_to_the_rewritten_head(lines: Lines) -> Lines:
    """The checkpoint's hash changed to the rewritten chain's, its signature kept."""
    rewritten = rehash_from(2, principal="mallory")(lines)
    head = [r for r in rewritten if r.get("type") == "event"][-1]
    return [
        {**r, "head_hash": head["hash"]} if r.get("type") == "checkpoint" else r for r in rewritten
    ]


class TestAnEditedFile:
    """What an auditor's verification of an export finds when the file was changed."""

    @pytest.mark.parametrize(
        ("edit", "first_bad", "words"),
        [
            pytest.param(edit_event(3, principal="mallory"), 3, "event 3 was altered", id="event"),
            pytest.param(rehash_from(2, principal="mallory"), 1, "rewritten", id="rewritten"),
            pytest.param(
                checkpoint_moved_to_the_rewritten_head, 1, "does not verify", id="re-signed"
            ),
            pytest.param(drop_events_from(5, fix_end=False), 5, "records were removed", id="cut"),
            pytest.param(drop_events_from(5, fix_end=True), 5, "cut off", id="cut-and-recount"),
            pytest.param(lambda lines: lines[:-1], None, "cut off", id="no-end-line"),
        ],
    )
    async def test_is_found(
        self,
        api: Api,
        tmp_path: Path,
        edit: Callable[[Lines], Lines],
        first_bad: int | None,
        words: str,
    ) -> None:
        await history(api)
        made = await checkpoint(api)
        lines = await exported(api)
        keys = trusted([parse_public_key((await public_key(api))["public_key"])])
        assert verify_file(write(tmp_path / "intact.jsonl", lines), keys).ok

        result = verify_file(write(tmp_path / "edited.jsonl", edit(lines)), keys)

        assert result.ok is False
        assert result.first_bad_seq == (first_bad or made["seq"] + 1)
        assert result.problem is not None
        assert words in result.problem, result.problem

    async def test_a_line_that_is_no_record_is_found(self, api: Api, tmp_path: Path) -> None:
        await checkpoint(api)
        trail = write(tmp_path / "trail.jsonl", await exported(api))
        text = trail.read_text().splitlines(keepends=True)
        trail.write_text("".join([*text[:4], "not json\n", *text[4:]]))
        keys = trusted([parse_public_key((await public_key(api))["public_key"])])

        result = verify_file(trail, keys)

        assert (result.ok, result.first_bad_seq) == (False, 3)
        assert "line 5 is not a record" in (result.problem or "")


class TestTheDatabaseRewrittenBehindTheServicesBack:
    async def verify_with_the_key(
        self, api: Api, database_url: str, tmp_path: Path
    ) -> dict[str, Any]:
        """The endpoint's verdict, and the command line's with the public key agrees with it."""
        served = await verify(api)
        key = await pem_file(api, tmp_path / "service.pem")
        code, printed, stderr = await cli(
            "audit", "verify", "--public-key", str(key), database_url=database_url, cwd=ROOT
        )
        assert code == (0 if served["ok"] else 1), stderr
        assert printed == served
        return served

    async def test_a_consistently_rewritten_chain_is_found_by_its_checkpoint(
        self, api: Api, attacker: AsyncEngine, database_url: str, tmp_path: Path
    ) -> None:
        events = await history(api)
        await checkpoint(api)

        await rewrite_chain(attacker, 1, principal="mallory")

        chain_alone = verify_chain(await all_events(api))
        assert (chain_alone.ok, chain_alone.checked) == (True, len(events))  # it is fooled
        found = await self.verify_with_the_key(api, database_url, tmp_path)
        assert (found["ok"], found["first_bad_seq"], found["checked"]) == (False, 1, 0)
        assert "rewritten" in found["problem"]
        assert (found["checkpoints_checked"], found["last_signed_seq"]) == (0, None)

    async def test_a_rewrite_is_placed_after_the_last_checkpoint_that_still_matches(
        self, api: Api, attacker: AsyncEngine, database_url: str, tmp_path: Path
    ) -> None:
        await api.create_phrase()
        early = await checkpoint(api)
        await api.approved_version()
        await checkpoint(api)

        await rewrite_chain(attacker, early["seq"] + 2, details={"comment": "rewritten"})

        found = await self.verify_with_the_key(api, database_url, tmp_path)
        assert found["ok"] is False
        assert found["first_bad_seq"] == early["seq"] + 1
        assert (found["checked"], found["head_seq"]) == (early["seq"], early["seq"])
        assert found["head_hash"] == early["head_hash"]
        assert (found["checkpoints_checked"], found["last_signed_seq"]) == (1, early["seq"])

    async def test_a_checkpoint_changed_to_the_rewritten_head_no_longer_verifies(
        self, api: Api, attacker: AsyncEngine
    ) -> None:
        await history(api)
        made = await checkpoint(api)
        rewritten = await rewrite_chain(attacker, 2, principal="mallory")
        changed = {**made, "head_hash": rewritten[-1]["hash"]}
        changed["signed_at"] = datetime.fromisoformat(made["signed_at"])
        del changed["id"]

        await replace_checkpoints(attacker, changed)

        found = await verify(api)
        assert (found["ok"], found["first_bad_seq"]) == (False, 1)
        assert "does not verify" in found["problem"]

    @pytest.mark.parametrize("named", ["own", "service"])
    async def test_a_forged_checkpoint_signed_with_another_key_is_found(
        self, api: Api, attacker: AsyncEngine, database_url: str, tmp_path: Path, named: str
    ) -> None:
        await history(api)
        made = await checkpoint(api)
        rewritten = await rewrite_chain(attacker, 1, principal="mallory")
        forger = Ed25519PrivateKey.generate()
        raw = forger.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        forger_id = trusted([parse_public_key(base64.b64encode(raw).decode())]).popitem()[0]
        key_id = forger_id if named == "own" else made["key_id"]
        signed_at = datetime.fromisoformat(made["signed_at"]) + timedelta(seconds=1)

        forged = forged_checkpoint(
            forger, rewritten[-1]["seq"], rewritten[-1]["hash"], signed_at, key_id
        )
        await replace_checkpoints(attacker, forged)

        found = await self.verify_with_the_key(api, database_url, tmp_path)
        assert (found["ok"], found["first_bad_seq"]) == (False, 1)
        words = "not trusted" if named == "own" else "does not verify"
        assert words in found["problem"]

    async def test_a_tail_cut_below_the_last_checkpoint_is_found(
        self, api: Api, attacker: AsyncEngine, database_url: str, tmp_path: Path
    ) -> None:
        await history(api)
        made = await checkpoint(api)
        head = made["seq"]

        await cut_tail(attacker, head - 2)

        found = await self.verify_with_the_key(api, database_url, tmp_path)
        assert found["ok"] is False
        assert (found["first_bad_seq"], found["checked"]) == (head - 2, head - 3)
        assert f"events {head - 2} to {head} are missing" in found["problem"]
        assert "cut off" in found["problem"]

    async def test_a_tail_cut_after_the_last_checkpoint_is_not_found_but_shows_unsigned(
        self, api: Api, attacker: AsyncEngine
    ) -> None:
        """The limit of checkpoints: what came after the last one is protected by the chain
        alone, which cannot tell a cut end from a real one. Verify says how far signatures go."""
        made = await checkpoint(api)
        await history(api)
        head = (await verify(api))["head_seq"]

        await cut_tail(attacker, head - 1)

        found = await verify(api)
        assert (found["ok"], found["head_seq"]) == (True, head - 2)
        assert found["last_signed_seq"] == made["seq"] < found["head_seq"]


class TestTheCommandLineOnTheDatabase:
    @pytest.fixture
    def signing_key(self) -> str:
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw).decode()

    @pytest.fixture
    def settings(self, settings: Settings, signing_key: str) -> Settings:
        return settings.model_copy(update={"audit_signing_key": SecretStr(signing_key)})

    async def test_without_public_key_it_checks_with_the_configured_signing_key(
        self, api: Api, database_url: str, signing_key: str
    ) -> None:
        made = await checkpoint(api)

        code, printed, stderr = await cli(
            "audit", "verify", database_url=database_url, cwd=ROOT,
            COMPLIANCE_AUDIT_SIGNING_KEY=signing_key,
        )  # fmt: skip

        assert code == 0, stderr
        assert printed == await verify(api)
        assert (printed["checkpoints_checked"], printed["public_key_ids"]) == (1, [made["key_id"]])
        assert signing_key not in stderr + json.dumps(printed)
        assert "not checked" not in stderr
