"""Live sessions, deliveries with their attempts, greeting policies and greeting guards.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "greeting_policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("phrase_key", sa.String(100), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("interruptible", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_greeting_policies"),
        sa.UniqueConstraint("name", name="uq_greeting_policies_name"),
    )
    op.create_table(
        "greeting_guards",
        sa.Column("conversation_key", sa.String(200), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("delivery_id", sa.String(40), nullable=False),
        sa.Column("claimed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("conversation_key", name="pk_greeting_guards"),
    )
    op.create_table(
        "live_sessions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("voicelive_session_id", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("conversation_key", sa.String(200), nullable=True),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("greeting_policy", sa.String(100), nullable=True),
        sa.Column("replica", sa.String(300), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_live_sessions"),
    )
    for column in ("conversation_key", "principal", "state", "voicelive_session_id"):
        op.create_index(f"ix_live_sessions_{column}", "live_sessions", [column])

    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("greeting_policy", sa.String(100), nullable=True),
        sa.Column("phrase_key", sa.String(100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("locale", sa.String(35), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("instructions", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("variables", JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(20), nullable=False),
        sa.Column("interruptible", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.String(200), nullable=True),
        sa.Column("item_id", sa.String(200), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("transcript_verified", sa.Boolean(), nullable=True),
        sa.Column("played_ms", sa.Integer(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("requested_key_id", sa.String(40), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("first_audio_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"], ["live_sessions.id"], name="fk_deliveries_session_id_live_sessions"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint(
            "requested_by", "idempotency_key", name="uq_deliveries_requested_by_idempotency_key"
        ),
    )
    op.create_index("ix_deliveries_session_id", "deliveries", ["session_id"])
    op.create_index("ix_deliveries_status", "deliveries", ["status"])

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("response_id", sa.String(200), nullable=True),
        sa.Column("item_id", sa.String(200), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("first_audio_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("played_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name="fk_delivery_attempts_delivery_id_deliveries",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
        sa.UniqueConstraint(
            "delivery_id", "number", name="uq_delivery_attempts_delivery_id_number"
        ),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    op.drop_table("live_sessions")
    op.drop_table("greeting_guards")
    op.drop_table("greeting_policies")
