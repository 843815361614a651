"""Initial schema: API keys, the phrase library, and the append-only audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

PG_APPEND_ONLY = [
    """CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
           RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
               USING ERRCODE = 'insufficient_privilege';
       END
       $$""",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change()""",
]

SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END""",
]


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("roles", JSON, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_principal", "api_keys", ["principal"])

    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("action", sa.String(80), nullable=False),
        sa.Column("subject_type", sa.String(40), nullable=False),
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
        sa.UniqueConstraint("hash", name="uq_audit_events_hash"),
    )
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_index("ix_audit_events_subject", "audit_events", ["subject_type", "subject_id"])

    op.create_table(
        "phrases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("default_locale", sa.String(35), nullable=False),
        sa.Column("cross_language_fallback", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_phrases"),
        sa.UniqueConstraint("key", name="uq_phrases_key"),
    )
    op.create_index("ix_phrases_category", "phrases", ["category"])

    op.create_table(
        "phrase_tags",
        sa.Column("phrase_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(50), nullable=False),
        sa.ForeignKeyConstraint(
            ["phrase_id"],
            ["phrases.id"],
            name="fk_phrase_tags_phrase_id_phrases",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("phrase_id", "tag", name="pk_phrase_tags"),
    )
    op.create_index("ix_phrase_tags_tag", "phrase_tags", ["tag"])

    op.create_table(
        "phrase_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phrase_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("variables", JSON, nullable=False),
        sa.Column("change_note", sa.Text(), nullable=True),
        sa.Column("effective_from", TS, nullable=True),
        sa.Column("effective_until", TS, nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("editors", JSON, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("submitted_by", sa.String(200), nullable=True),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("rejected_at", TS, nullable=True),
        sa.Column("rejected_by", sa.String(200), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("retired_at", TS, nullable=True),
        sa.Column("retired_by", sa.String(200), nullable=True),
        sa.Column("retirement_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["phrase_id"], ["phrases.id"], name="fk_phrase_versions_phrase_id_phrases"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_phrase_versions"),
        sa.UniqueConstraint("phrase_id", "number", name="uq_phrase_versions_phrase_id_number"),
    )
    op.create_index("ix_phrase_versions_phrase_id", "phrase_versions", ["phrase_id"])
    op.create_index("ix_phrase_versions_status", "phrase_versions", ["status"])

    op.create_table(
        "version_texts",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["phrase_versions.id"],
            name="fk_version_texts_version_id_phrase_versions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "locale", name="pk_version_texts"),
    )

    op.create_table(
        "version_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["phrase_versions.id"],
            name="fk_version_approvals_version_id_phrase_versions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_version_approvals"),
        sa.UniqueConstraint(
            "version_id", "principal", name="uq_version_approvals_version_id_principal"
        ),
    )
    op.create_index("ix_version_approvals_version_id", "version_approvals", ["version_id"])

    # The audit trail is append-only in the database itself, not only by the service's good manners.
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG_APPEND_ONLY if postgres else SQLITE_APPEND_ONLY:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("version_approvals")
    op.drop_table("version_texts")
    op.drop_table("phrase_versions")
    op.drop_table("phrase_tags")
    op.drop_table("phrases")
    op.drop_table("audit_events")  # drops its triggers with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_events_refuse_change()")
    op.drop_table("api_keys")
