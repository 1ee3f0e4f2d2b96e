"""Evaluations without a stored report: the card's part of it, `summary_json`.

A CDS Hooks patient-view stores what its card showed and not the report JSON (about half of a
worker's time per call): `output_zlib` is then empty (b""), and GET /reports rebuilds the report
from the stored profile at the stored time. Adding a nullable column changes no stored row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("summary_json", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("evaluations", "summary_json")
