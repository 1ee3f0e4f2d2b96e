"""The case store's tables (SQLAlchemy 2 Core metadata; the migrations in ``migrations/`` create them).

    cases         one patient's case (a tumor-board entry, an EHR patient seen through CDS Hooks)
    evaluations   every evaluation, append-only: a case's history is its versions 1, 2, ...
    feedback      what the clinician did with a card (CDS Hooks feedback), append-only

Evaluations and feedback are never updated or deleted: the migration installs database
triggers that refuse both (SQLite and PostgreSQL), so a bug elsewhere cannot rewrite a
recorded decision. A case's own row (its board date, label) may change; its evaluations not.
"""

from __future__ import annotations

import datetime as _dt
import zlib

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from cds.model.base import Strict

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTC(TypeDecorator[_dt.datetime]):
    """A moment in UTC: stored without a zone (SQLite has none), always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: _dt.datetime | None, dialect: Dialect) -> _dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(_dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: _dt.datetime | None, dialect: Dialect) -> _dt.datetime | None:
        return None if value is None else value.replace(tzinfo=_dt.UTC)


cases = Table(
    "cases",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4
    Column("created_at", UTC(), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("channel", String(20), nullable=False),  # api | cds-hooks | web | import
    # the same patient seen again through the same channel adds versions to one case, e.g.
    # "cds-hooks <issuer> Patient/123"; NULL for cases entered by hand
    Column("external_key", String(500), nullable=True, unique=True),
    Column("patient_id", String(200), nullable=True),
    Column("board_date", Date(), nullable=True),
    Column("label", String(200), nullable=True),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("id", String(36), primary_key=True),  # uuid4
    Column("case_id", String(36), ForeignKey("cases.id"), nullable=False),
    Column("version", Integer(), nullable=False),  # 1, 2, ... within the case
    Column("created_at", UTC(), nullable=False),
    Column("user", String(200), nullable=False),  # "local" on loopback without auth
    Column("client", String(500), nullable=True),  # the authenticated caller (JWT issuer)
    Column("channel", String(20), nullable=False),
    Column("input_kind", String(40), nullable=False),  # profile | fhir-bundle | cds-hooks
    Column("input_json", Text(), nullable=False),  # the input as received (decoded text)
    Column("profile_json", Text(), nullable=False),  # the validated profile (canonical JSON)
    # the report JSON, zlib-compressed; empty (b"") when the report was not built at evaluation time
    # (a CDS Hooks card: GET /reports rebuilds it from profile_json at evaluated_at, same rule set and site)
    Column("output_zlib", LargeBinary(), nullable=False),
    Column("engine_version", String(200), nullable=False),
    Column("ruleset_hash", String(64), nullable=False),
    Column("input_hash", String(64), nullable=False),
    Column("site_name", String(200), nullable=True),
    Column("site_hash", String(64), nullable=True),
    Column("patient_id", String(200), nullable=True),
    Column("top_option", String(100), nullable=True),
    Column("evaluated_at", String(40), nullable=False),  # the report's stamp (ISO 8601)
    Column("report_token", String(64), nullable=False, unique=True),  # capability for GET /reports/{token}
    Column("hook_instance", String(36), nullable=True),
    Column("card_uuid", String(36), nullable=True, unique=True),
    # the part of the report JSON a CDS Hooks card shows (cds.apps.http.card.card_data), where the
    # report itself was not stored; NULL where it was (the summary is then read from the report)
    Column("summary_json", Text(), nullable=True),
    UniqueConstraint("case_id", "version", name="uq_evaluations_case_version"),
)
Index("ix_evaluations_created_at", evaluations.c.created_at)


class EvaluationFields(Strict):
    """The columns of an evaluation row that the caller gives, stored as given (the report as text,
    `output_json`, is `output_zlib` compressed; None: not built, see `summary_json`). The one definition that `cds.store.NewEvaluation`
    (adding an evaluation) and the cases export line (`cds.store.exchange.EvaluationRecord`) share;
    the store adds id, case, version, time and report token. On the one strict base: exact types, no
    other keys, immutable (a row model, not a table: the tables above are SQLAlchemy Core)."""

    user: str
    channel: str  # api | cds-hooks | web | import
    input_kind: str  # profile | fhir-bundle | cds-hooks
    input_json: str
    profile_json: str
    output_json: str | None  # None: the report was not built (a CDS Hooks card); `summary_json` holds its card's part
    engine_version: str
    ruleset_hash: str
    input_hash: str
    evaluated_at: str
    patient_id: str | None = None
    top_option: str | None = None
    site_name: str | None = None
    site_hash: str | None = None
    client: str | None = None
    hook_instance: str | None = None
    card_uuid: str | None = None
    summary_json: str | None = None


feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("received_at", UTC(), nullable=False),
    Column("evaluation_id", String(36), ForeignKey("evaluations.id"), nullable=True),  # NULL: unknown card
    Column("service_id", String(100), nullable=False),
    Column("card_uuid", String(100), nullable=False),
    Column("outcome", String(20), nullable=False),  # accepted | overridden
    Column("outcome_timestamp", String(40), nullable=False),
    Column("override_reason_json", Text(), nullable=True),
    Column("accepted_suggestions_json", Text(), nullable=True),
    Column("client", String(500), nullable=True),
    Column("raw_json", Text(), nullable=False),  # the feedback item as received
)
Index("ix_feedback_received_at", feedback.c.received_at)


def output_text(output_zlib: bytes) -> str | None:
    """The stored report JSON (the `output_zlib` column), or None where it was not built (stored as b"")."""
    return zlib.decompress(output_zlib).decode("utf-8") if output_zlib else None


def output_zlib(output_json: str | None) -> bytes:
    """The `output_zlib` column of a report JSON (None: not built)."""
    return b"" if output_json is None else zlib.compress(output_json.encode("utf-8"), 1)
