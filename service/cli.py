"""``compliance-service`` (also ``python -m service``): run, migrate and operate the service."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from service.access import service as access
from service.access.roles import Role
from service.access.schemas import ApiKeyCreate
from service.audit import export as audit_export
from service.audit import keys, signing
from service.audit import service as audit
from service.audit.chain import Verification
from service.kit import migrate
from service.kit.actor import Actor
from service.kit.db import create_engine, create_sessionmaker, missing_sqlite_file
from service.kit.errors import InvalidInput, ProblemError, validation_problems
from service.kit.logs import configure_logging
from service.phrases import transfer
from service.settings import Settings

T = TypeVar("T")


def _cli_actor() -> Actor:
    """Changes made from the command line are attributed to the operating-system user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER (some containers)
        user = "unknown"
    return Actor(f"cli:{user}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compliance-service", description="Approved compliance wording for voice agents."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)

    commands.add_parser("migrate", help="apply pending database migrations")

    demo = commands.add_parser(
        "demo", help="run the whole story on a temporary database and the built-in simulator"
    )
    demo.add_argument(
        "--wav", default="demo-agent-audio.wav", help="where to write the audio the agent heard"
    )
    demo.add_argument(
        "--speed", type=float, default=2.0, help="simulator audio pacing (1 = real time)"
    )

    simulator = commands.add_parser(
        "simulator", help="run the built-in Voice Live simulator alone (no database)"
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8100, help="0 picks a free port")

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="create a key and print it alone on stdout")
    create.add_argument("--principal", required=True)
    create.add_argument(
        "--role", dest="roles", action="append", required=True, choices=[r.value for r in Role]
    )
    create.add_argument("--name")

    audit_cmd = commands.add_parser("audit", help="audit trail")
    audit_sub = audit_cmd.add_subparsers(dest="audit", required=True)
    verify = audit_sub.add_parser(
        "verify",
        help="recompute the hash chain and check the signed checkpoints; exit 1 if it is broken",
    )
    verify.add_argument(
        "--public-key",
        dest="public_keys",
        action="append",
        default=[],
        metavar="FILE_OR_VALUE",
        help="a trusted checkpoint key: a file holding it, or the key (PEM, base64 of its 32 raw "
        "bytes, or GET /v1/audit/public-key's answer); repeat for earlier keys. Default: the "
        "service's own key from the settings",
    )
    verify.add_argument(
        "--file",
        metavar="EXPORT",
        help="verify this file of `audit export` instead of the database (no database needed)",
    )
    verify.add_argument(
        "--signed-through",
        type=int,
        metavar="SEQ",
        help="fail unless a good checkpoint vouches for event SEQ or later (the newest signed "
        "event you have seen before, e.g. in an earlier export: checkpoints removed since are "
        "then found). With --public-key and no --signed-through, a chain that is not empty "
        "fails when no checkpoint at all vouches for it",
    )
    audit_export = audit_sub.add_parser(
        "export", help="write every event and checkpoint to FILE (JSON Lines; - = stdout)"
    )
    audit_export.add_argument("file")

    phrases = commands.add_parser("phrases", help="phrases as code")
    phrases_sub = phrases.add_subparsers(dest="phrases", required=True)
    export = phrases_sub.add_parser("export", help="write approved phrases to FILE (- = stdout)")
    export.add_argument("file")
    export.add_argument("--format", choices=["yaml", "json"], help="default: by file extension")
    imp = phrases_sub.add_parser("import", help="import FILE as drafts (never approvals)")
    imp.add_argument("file")
    imp.add_argument(
        "--principal",
        required=True,
        help="the editor the drafts are written by (a principal with an active editor key); "
        "four eyes: they cannot approve them",
    )
    return parser


async def _with_db(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, writes: bool = True
) -> T:
    """Run ``work`` in one transaction. Commands that only read never create or migrate a
    database: pointed at the wrong place they say so, instead of checking an empty new one."""
    if not writes:
        missing = missing_sqlite_file(settings.database_url)
        if missing is not None:
            raise RuntimeError(f"no database at {missing}: set COMPLIANCE_DATABASE_URL")
    engine = create_engine(settings.database_url)
    try:
        await migrate.prepare(engine, auto=settings.auto_migrate and writes)
        async with create_sessionmaker(engine, read_only=not writes).begin() as db:
            return await work(db)
    finally:
        await engine.dispose()


def _serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from service.app import create_app
    from service.kit.serving import server_options

    uvicorn.run(create_app(settings), host=host, port=port, **server_options(settings))
    return 0


def _simulator(host: str, port: int) -> int:
    from service.simulator import Simulator, SimulatorConfig
    from service.simulator.server import run_until_stopped

    def ready(sim: Simulator) -> None:
        # The endpoint alone on stdout, so that a script can start it on port 0 and read it.
        print(sim.endpoint, flush=True)

    asyncio.run(run_until_stopped(SimulatorConfig(host=host, port=port), ready))
    return 0


def _migrate(settings: Settings) -> int:
    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate.upgrade(engine)
            print(f"database at revision {await migrate.current_revision(engine)}")
        finally:
            await engine.dispose()

    asyncio.run(run())
    return 0


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    # The API's rules: four eyes compares principals, so "alice " must not pass for someone new.
    try:
        request = ApiKeyCreate(principal=args.principal, roles=args.roles, name=args.name)
    except ValidationError as exc:
        raise InvalidInput("the key cannot be created", problems=validation_problems(exc)) from exc

    async def work(db: AsyncSession) -> str:
        actor = _cli_actor()
        _, plain = await access.create_key(
            db, actor, principal=request.principal, roles=request.roles, name=request.name
        )
        return plain

    print(asyncio.run(_with_db(settings, work)))
    return 0


def _public_key_argument(number: int, value: str) -> Ed25519PublicKey:
    path = Path(value)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a key too long (or too odd) to be a file name
        is_file = False
    try:
        text = path.read_text(encoding="utf-8") if is_file else value
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"--public-key {number}: {path} cannot be read: {exc}") from None
    try:
        return keys.parse_public_key(text)
    except ValueError as exc:  # the value is not repeated: it might be a private key by mistake
        raise InvalidInput(
            f"--public-key {number}: neither a readable file nor a key: {exc}"
        ) from None


def _audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    given = [_public_key_argument(n, v) for n, v in enumerate(args.public_keys, start=1)]
    trusted: Mapping[str, Ed25519PublicKey] = keys.trusted(given)
    if args.file is not None:
        try:
            result = audit_export.verify_file(Path(args.file), trusted)
        except (audit_export.NotAnExport, OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(str(exc)) from None
    else:
        if not trusted:  # as the service checks it: with its own key (never made here)
            own = signing.signer_for(settings, create=False)
            trusted = signing.trusted_keys(settings, own)

        async def work(db: AsyncSession) -> Verification:
            return await audit.verify(db, trusted)

        result = asyncio.run(_with_db(settings, work, writes=False))
    if not result.public_key_ids:
        print(
            "warning: no public key, so the checkpoint signatures were not checked; "
            "give --public-key",
            file=sys.stderr,
        )
    result = _signed_far_enough(result, args.signed_through, explicit_keys=bool(given))
    print(json.dumps(dataclasses.asdict(result), indent=2))
    return 0 if result.ok else 1


def _signed_far_enough(
    result: Verification, signed_through: int | None, *, explicit_keys: bool
) -> Verification:
    """An intact chain is not enough for an auditor who holds the key: someone able to delete
    the checkpoints could rewrite the chain behind them. It must be signed as far as they know
    it was (``signed_through``), or, with keys given, signed at all."""
    if not result.ok:
        return result
    signed = result.last_signed_seq
    if signed_through is not None:
        if signed is None or signed < signed_through:
            reached = "no event" if signed is None else f"event {signed}"
            problem = (
                f"a good checkpoint vouches for {reached}, but event {signed_through} was signed "
                "before (--signed-through): checkpoints were removed"
            )
            return dataclasses.replace(result, ok=False, problem=problem)
    elif explicit_keys and signed is None and result.head_seq > 0:
        problem = (
            "no checkpoint signed by the given keys vouches for any event: the chain's "
            "integrity rests on the database alone"
        )
        return dataclasses.replace(result, ok=False, problem=problem)
    return result


def _audit_export(settings: Settings, args: argparse.Namespace) -> int:
    async def write(db: AsyncSession, out: TextIO) -> str:
        last = ""
        async for line in audit_export.export_lines(db):
            out.write(line)
            last = line
        return last

    if args.file == "-":
        end = asyncio.run(_with_db(settings, lambda db: write(db, sys.stdout), writes=False))
    else:
        # Written beside and moved into place: an export that failed never looks like one.
        target = Path(args.file)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with partial.open("w", encoding="utf-8") as out:
                end = asyncio.run(_with_db(settings, lambda db: write(db, out), writes=False))
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    counts = json.loads(end)
    print(
        f"exported {counts['events']} events and {counts['checkpoints']} checkpoints to "
        f"{args.file}",
        file=sys.stderr,
    )
    return 0


def _phrases_export(settings: Settings, args: argparse.Namespace) -> int:
    fmt: transfer.Format = args.format or ("json" if args.file.endswith(".json") else "yaml")
    document = asyncio.run(_with_db(settings, transfer.export_library, writes=False))
    rendered = transfer.render_document(document, fmt)
    if args.file == "-":
        sys.stdout.write(rendered)
    else:
        Path(args.file).write_text(rendered, encoding="utf-8")
        print(f"exported {len(document['phrases'])} phrases to {args.file}", file=sys.stderr)
    return 0


def _phrases_import(settings: Settings, args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    doc = transfer.parse_document(raw, "json" if args.file.endswith(".json") else "yaml")

    async def work(db: AsyncSession) -> transfer.ImportReport:
        # The drafts' author must be a real editor, or four eyes could be dodged: a made-up
        # author would let whoever wrote the file approve it with their own key.
        principal = args.principal.lower()
        if Role.EDITOR not in await access.active_roles_of(db, principal):
            raise InvalidInput(
                f"{args.principal!r} holds no active editor key: name the editor who wrote "
                "this file with --principal"
            )
        actor = Actor(principal)
        return await transfer.import_library(db, actor, doc, max_chars=settings.max_text_chars)

    print(asyncio.run(_with_db(settings, work)).model_dump_json(indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:  # values are left out: a setting may be a secret
        print("error: the settings are not valid", file=sys.stderr)
        for problem in validation_problems(exc):
            print(f"  - {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)  # audit events of CLI changes are logged too
    try:
        match args.command:
            case "serve":
                return _serve(settings, args.host, args.port)
            case "migrate":
                return _migrate(settings)
            case "demo":
                from service.demo.story import main as demo_main

                configure_logging("WARNING")  # the narration is the output; warnings still show
                return demo_main(args.wav, args.speed)
            case "simulator":
                return _simulator(args.host, args.port)
            case "keys":
                return _keys_create(settings, args)
            case "audit" if args.audit == "export":
                return _audit_export(settings, args)
            case "audit":
                return _audit_verify(settings, args)
            case "phrases" if args.phrases == "export":
                return _phrases_export(settings, args)
            case "phrases":
                return _phrases_import(settings, args)
    except ProblemError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        for problem in exc.extra.get("problems", []):
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # refusals such as "the schema is not at head": say it plainly
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2
