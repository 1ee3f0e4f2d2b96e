"""The case store: cases, append-only evaluations and feedback.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from cds.store.schema import UTC

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("evaluations", "feedback")


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("external_key", sa.String(500), nullable=True),
        sa.Column("patient_id", sa.String(200), nullable=True),
        sa.Column("board_date", sa.Date(), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.UniqueConstraint("external_key", name="uq_cases_external_key"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("client", sa.String(500), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("input_kind", sa.String(40), nullable=False),
        sa.Column("input_json", sa.Text(), nullable=False),
        sa.Column("profile_json", sa.Text(), nullable=False),
        sa.Column("output_zlib", sa.LargeBinary(), nullable=False),
        sa.Column("engine_version", sa.String(200), nullable=False),
        sa.Column("ruleset_hash", sa.String(64), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("site_name", sa.String(200), nullable=True),
        sa.Column("site_hash", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(200), nullable=True),
        sa.Column("top_option", sa.String(100), nullable=True),
        sa.Column("evaluated_at", sa.String(40), nullable=False),
        sa.Column("report_token", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(36), nullable=True),
        sa.Column("card_uuid", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_evaluations_case_id_cases"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.UniqueConstraint("case_id", "version", name="uq_evaluations_case_version"),
        sa.UniqueConstraint("report_token", name="uq_evaluations_report_token"),
        sa.UniqueConstraint("card_uuid", name="uq_evaluations_card_uuid"),
    )
    op.create_index("ix_evaluations_created_at", "evaluations", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("received_at", UTC(), nullable=False),
        sa.Column("evaluation_id", sa.String(36), nullable=True),
        sa.Column("service_id", sa.String(100), nullable=False),
        sa.Column("card_uuid", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("outcome_timestamp", sa.String(40), nullable=False),
        sa.Column("override_reason_json", sa.Text(), nullable=True),
        sa.Column("accepted_suggestions_json", sa.Text(), nullable=True),
        sa.Column("client", sa.String(500), nullable=True),
        sa.Column("raw_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluations.id"], name="fk_feedback_evaluation_id_evaluations"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
    )
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    _append_only_triggers()


def _append_only_triggers() -> None:
    """Recorded evaluations and feedback cannot be changed or removed, whatever the code above the store does."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} are append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION cds_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% are append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION cds_append_only()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "sqlite":
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{action}")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS cds_append_only()")
    op.drop_table("feedback")
    op.drop_table("evaluations")
    op.drop_table("cases")
