"""The case store: open (creating or migrating the schema), append evaluations and feedback, read them back.

    store = open_store("sqlite:////path/cases.db")    # or a path, or postgresql+psycopg://...
    ev = store.add_evaluation(NewEvaluation(...))      # a new case, or the next version of one
    store.evaluation_by_report_token(token, max_age)   # GET /reports/{token}
    for row in store.iter_feedback(): ...               # cds feedback export

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit returns once the transaction is
in the write-ahead log, written to the operating system, so every acknowledged evaluation
survives a crash of the server process (SIGKILL included: tests/test_service_store.py); the log
is fsynced at checkpoints, not at every commit, so a power loss or kernel crash may lose the
last transactions since the last checkpoint (never corrupting the file). ``FULL`` would also
survive that, for an fsync per evaluation (about 16 ms of wall time each on the shared disk
under load, and about 0.5-1 ms of CPU). Every write transaction starts with ``BEGIN IMMEDIATE``
so that concurrent writers (threads or processes) queue on the database lock instead of failing
on a stale snapshot. A write is one transaction: it is stored completely or not at all.

A long-running writer (`cds serve`: ``open_store(db, checkpoint_in_background=True)``) checkpoints
from a thread of its own instead: SQLite's automatic checkpoint runs inside the commit that
crosses 1,000 pages of log (about one patient-view in 170) and fsyncs the log and the database
there, under the write lock: 7.5-12.5 ms at the 99th percentile of `add_evaluation` on the shared
disk (0.24 ms at the median), for that request and every one queued to store behind it. With
the automatic checkpoint off and a PASSIVE checkpoint every half second after writes (it does
not block writers, and its fsync does not hold the GIL), the 99th percentile is 0.66 ms (under
writes without a pause, the log restarts only after a round holding the write lock, taken once
it holds 64 MB: `_Checkpointer.checkpoint`). What a
power loss may lose is still the log since the last checkpoint: now at most about half a second
of writes, where it was up to 1,000 pages.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, RowMapping, bindparam, create_engine, event, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from cds.errors import StoreError
from cds.model.base import Strict

from . import exchange
from .schema import EvaluationFields, cases, evaluations, feedback, output_text, output_zlib

log = logging.getLogger("cds.store")

SQLITE_BUSY_TIMEOUT_S = 30.0
# in WAL mode: durable against a crash of the process, not of the machine (see the module docstring)
SQLITE_SYNCHRONOUS = "NORMAL"
SQLITE_CHECKPOINT_INTERVAL_S = 0.5  # checkpoint_in_background: at most this long after a write
SQLITE_LOG_LIMIT_BYTES = 64 * 1024 * 1024
SQLITE_LOG_LIMIT_FRAMES = 16_384  # 64 MB of 4 KB pages


def default_db_path() -> Path:
    """cases.db in the user's data directory (platformdirs: ~/.local/share/cds on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cds", appauthor=False)) / "cases.db"


def db_url(db: str | os.PathLike[str] | None) -> str:
    """`--db`: a SQLAlchemy URL (sqlite:///..., postgresql://...) or a path of an SQLite file."""
    if db is None:
        path = default_db_path()
    else:
        text = os.fspath(db)
        if "://" in text:
            url = make_url(text)
            if url.drivername == "postgresql":  # plain postgresql:// means psycopg 3 (the driver we pin)
                url = url.set(drivername="postgresql+psycopg")
            return url.render_as_string(hide_password=False)
        path = Path(text).expanduser()
    return f"sqlite:///{path.resolve()}"


def _now() -> _dt.datetime:
    return _dt.datetime.now(tz=_dt.UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


class NewEvaluation(EvaluationFields):
    """What the caller knows about one evaluation (`EvaluationFields`, and which case it belongs to);
    the store adds ids, version, time and the report token."""

    case_id: str | None = None  # add a version to this case
    external_key: str | None = None  # or to the case with this key (created on first use)
    board_date: _dt.date | None = None  # of a case this evaluation creates (an existing case keeps its own)
    label: str | None = None  # likewise
    report_token: str | None = None  # the capability of GET /reports/{token}; generated when None


class FeedbackLine(Strict):
    """One line of `cds feedback export` (a row of `Store.iter_feedback`, keys sorted): a feedback item as
    received, with the evaluation it refers to (null where the card is not one of this store's). It
    describes the line for its committed schema (schemas/feedback-export.schema.json); the export writes
    the row itself."""

    accepted_suggestions: list[Any] | None
    card_uuid: str
    case_id: str | None
    client: str | None
    engine_version: str | None
    evaluated_at: str | None
    evaluation_id: str | None
    id: int
    outcome: str  # accepted | overridden
    outcome_timestamp: str
    override_reason: dict[str, Any] | None
    patient_id: str | None
    received_at: str  # ISO 8601, UTC (Z)
    ruleset_hash: str | None
    service_id: str
    site_name: str | None
    top_option: str | None


@dataclass(frozen=True)
class CaseSummary:
    """One case and its latest evaluation (None for a case created without one yet)."""

    case_id: str
    created_at: _dt.datetime
    created_by: str
    channel: str
    patient_id: str | None
    board_date: _dt.date | None
    label: str | None
    versions: int
    latest: StoredEvaluation | None


@dataclass(frozen=True)
class StoredEvaluation:
    id: str
    case_id: str
    version: int
    created_at: _dt.datetime
    report_token: str
    row: dict[str, Any]

    def output_text(self) -> str | None:
        """The report JSON as produced; None when it was not built (a CDS Hooks card: see `summary`)."""
        return output_text(self.row["output_zlib"])

    def output(self) -> dict[str, Any] | None:
        text = self.output_text()
        report: dict[str, Any] | None = None if text is None else json.loads(text)  # the report JSON is an object
        return report

    def summary(self) -> dict[str, Any]:
        """What a card shows of the report (`cds.apps.http.card.card_data`): the stored summary, or the stored
        report itself (every key of the summary at the same path, and more)."""
        text = self.row.get("summary_json") or self.output_text()
        assert text is not None, "an evaluation stores its report or its summary"
        summary: dict[str, Any] = json.loads(text)
        return summary


def _sqlite_setup(engine: Engine, *, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
        if not autocheckpoint:  # the store's own thread checkpoints (_Checkpointer)
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.execute(f"PRAGMA journal_size_limit={SQLITE_LOG_LIMIT_BYTES}")  # the log file shrinks back after a burst
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        # writers take the lock at the start: no "database is locked" on upgrading a read snapshot
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


# The statements of add_evaluation, built once with their parameters bound at execution: building them per
# call (values(**row): a bound parameter and a cache key per column) was about half of its CPU
_NEXT_VERSION = select(func.coalesce(func.max(evaluations.c.version), 0)).where(evaluations.c.case_id == bindparam("case_id"))
_CASE_BY_KEY = select(cases.c.id).where(cases.c.external_key == bindparam("key")).with_for_update()
_INSERT_CASE = insert(cases)
_INSERT_EVALUATION = insert(evaluations)


class _Checkpointer:
    """A thread that checkpoints the SQLite log (PASSIVE) at most `interval` seconds after a write."""

    def __init__(self, engine: Engine, interval: float, write_lock: threading.Lock):
        self.engine = engine
        self.interval = interval
        self.write_lock = write_lock
        self.dirty = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cds-store-checkpoint", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            if self.dirty.is_set():
                self.dirty.clear()
                try:
                    self.checkpoint()
                except Exception as exc:  # noqa: BLE001 - e.g. no connection: the next round tries again; never a traceback
                    self.dirty.set()
                    log.warning("checkpoint of the case store failed (%s); retrying", type(exc).__name__)

    def checkpoint(self, rounds: int = 4) -> None:
        """PASSIVE checkpoints until the log is copied whole (a few rounds: each copies what the writers added
        meanwhile), so that the next writer starts the log again from its beginning instead of growing it.

        The log restarts only when a writer begins after a checkpoint that copied it whole; under writes
        without a pause one is always in progress, and the log would grow without end. Once it holds
        SQLITE_LOG_LIMIT_FRAMES, one more round (the few frames added since the last) runs holding the store's
        write lock: no writer of this process is mid-transaction, so the next one restarts the log. This
        process's writers then wait for that short checkpoint, about once per 7,000 patient-views under
        constant load.
        """
        raw = self.engine.raw_connection()
        try:
            db = cast(sqlite3.Connection, raw.driver_connection)  # a checkpointer exists only for an SQLite engine (Store)
            for _ in range(rounds):
                _busy, logged, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if logged >= SQLITE_LOG_LIMIT_FRAMES:
                    with self.write_lock:
                        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    return
                if copied >= logged:
                    return
            self.dirty.set()  # writers kept adding: the next round goes on
        except sqlite3.Error:
            self.dirty.set()  # e.g. busy: the next round tries again
        finally:
            raw.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


class Store:
    def __init__(self, engine: Engine, *, checkpoint_in_background: bool = False):
        self.engine = engine
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps and polls
        # (1, 2, 5, ... 100 ms): threads of this process queue on a lock of their own instead, which
        # hands over at once. Other processes (a second server, `cds cases import`) still meet
        # SQLite's busy timeout. PostgreSQL locks rows, not the database: no lock here.
        lock = threading.Lock()
        self._write_lock: threading.Lock | contextlib.nullcontext[None] = (
            lock if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        self._checkpointer = (
            _Checkpointer(engine, SQLITE_CHECKPOINT_INTERVAL_S, lock)
            if checkpoint_in_background and engine.dialect.name == "sqlite"
            else None
        )

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: stored completely or not at all."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn
        if self._checkpointer is not None:
            self._checkpointer.dirty.set()

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer.checkpoint()
        self.engine.dispose()

    def _read(self) -> Connection:
        return self.engine.connect().execution_options(read_only=True)

    # ------------------------------------------------------------------ writes (append-only)

    def create_case(
        self,
        *,
        created_by: str,
        channel: str,
        patient_id: str | None = None,
        board_date: _dt.date | None = None,
        label: str | None = None,
    ) -> str:
        case_id = _new_id()
        with self._write() as conn:
            conn.execute(
                insert(cases).values(
                    id=case_id,
                    created_at=_now(),
                    created_by=created_by,
                    channel=channel,
                    patient_id=patient_id,
                    board_date=board_date,
                    label=label,
                )
            )
        return case_id

    def add_evaluation(self, new: NewEvaluation) -> StoredEvaluation:
        """Store one evaluation as the next version of its case (a new case unless `case_id`/`external_key` names one)."""
        now = _now()
        eval_id = _new_id()
        token = new.report_token or secrets.token_urlsafe(32)
        with self._write() as conn:
            case_id = self._case_for(conn, new, now)
            # the case row is locked (PostgreSQL) / the database is (SQLite, BEGIN IMMEDIATE): versions never collide
            version = conn.execute(_NEXT_VERSION, {"case_id": case_id}).scalar_one() + 1
            row: dict[str, Any] = new.model_dump(include=set(EvaluationFields.model_fields))
            output = row.pop("output_json")
            row.update(
                id=eval_id,
                case_id=case_id,
                version=version,
                created_at=now,
                output_zlib=output_zlib(output),
                report_token=token,
            )
            conn.execute(_INSERT_EVALUATION, row)
        return StoredEvaluation(eval_id, case_id, version, now, token, row)

    def _case_for(self, conn: Connection, new: NewEvaluation, now: _dt.datetime) -> str:
        if new.case_id is not None:
            found: str | None = conn.execute(select(cases.c.id).where(cases.c.id == new.case_id).with_for_update()).scalar()
            if found is None:
                raise StoreError(f"case {new.case_id}: no such case")
            return found
        if new.external_key is not None:
            by_key: str | None = conn.execute(_CASE_BY_KEY, {"key": new.external_key}).scalar()
            if by_key is not None:
                return by_key
        case_id = _new_id()
        conn.execute(
            _INSERT_CASE,
            {
                "id": case_id,
                "created_at": now,
                "created_by": new.user,
                "channel": new.channel,
                "external_key": new.external_key,
                "patient_id": new.patient_id,
                "board_date": new.board_date,
                "label": new.label,
            },
        )
        return case_id

    def set_case(self, case_id: str, **changes: Any) -> None:
        """Change a case's own row (`board_date`, `label`); its evaluations never change. StoreError if unknown."""
        unknown = set(changes) - {"board_date", "label"}
        if unknown:
            raise ValueError(f"set_case: only board_date and label change, not {sorted(unknown)}")
        with self._write() as conn:
            if conn.execute(update(cases).where(cases.c.id == case_id).values(**changes)).rowcount != 1:
                raise StoreError(f"case {case_id}: no such case")

    def add_feedback(self, items: list[dict[str, Any]], *, service_id: str, client: str | None) -> int:
        """Store feedback items (already validated), linked to the evaluation that showed the card; all or none."""
        now = _now()
        with self._write() as conn:
            for item in items:
                eval_id = conn.execute(select(evaluations.c.id).where(evaluations.c.card_uuid == item["card"])).scalar()
                conn.execute(
                    insert(feedback).values(
                        received_at=now,
                        evaluation_id=eval_id,
                        service_id=service_id,
                        card_uuid=item["card"],
                        outcome=item["outcome"],
                        outcome_timestamp=item["outcomeTimestamp"],
                        override_reason_json=_json_or_none(item.get("overrideReason")),
                        accepted_suggestions_json=_json_or_none(item.get("acceptedSuggestions")),
                        client=client,
                        raw_json=json.dumps(item, ensure_ascii=False, sort_keys=True),
                    )
                )
        return len(items)

    # ------------------------------------------------------------------ reads

    def evaluation(self, eval_id: str) -> StoredEvaluation | None:
        return self._one(evaluations.c.id == eval_id)

    def evaluation_by_report_token(self, token: str, max_age: _dt.timedelta) -> StoredEvaluation | None:
        """The evaluation whose report link this is, if it is younger than `max_age`."""
        found = self._one(evaluations.c.report_token == token)
        if found is None or found.created_at < _now() - max_age:
            return None
        return found

    def case_history(self, case_id: str) -> list[StoredEvaluation]:
        with self._read() as conn:
            rows = (
                conn.execute(select(evaluations).where(evaluations.c.case_id == case_id).order_by(evaluations.c.version))
                .mappings()
                .all()
            )
        return [_stored(r) for r in rows]

    def case(self, case_id: str) -> CaseSummary | None:
        found = self._cases(cases.c.id == case_id)
        return found[0] if found else None

    def list_cases(self, board_date: _dt.date | None = None) -> list[CaseSummary]:
        """The cases of one tumor-board date (every case when None), the latest evaluated first."""
        return self._cases(None if board_date is None else cases.c.board_date == board_date)

    def _cases(self, where: ColumnElement[bool] | None) -> list[CaseSummary]:
        counts = (
            select(evaluations.c.case_id, func.max(evaluations.c.version).label("versions"))
            .group_by(evaluations.c.case_id)
            .subquery()
        )
        query = select(cases, func.coalesce(counts.c.versions, 0).label("versions")).select_from(
            cases.outerjoin(counts, counts.c.case_id == cases.c.id)
        )
        if where is not None:
            query = query.where(where)
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
            latest: dict[str, StoredEvaluation] = {}
            wanted = [(r["id"], r["versions"]) for r in rows if r["versions"]]
            for start in range(0, len(wanted), 200):
                chunk = wanted[start : start + 200]
                pairs = tuple_(evaluations.c.case_id, evaluations.c.version).in_(chunk)
                for e in conn.execute(select(evaluations).where(pairs)).mappings():
                    latest[e["case_id"]] = _stored(e)
        out = [
            CaseSummary(
                case_id=r["id"],
                created_at=r["created_at"],
                created_by=r["created_by"],
                channel=r["channel"],
                patient_id=r["patient_id"],
                board_date=r["board_date"],
                label=r["label"],
                versions=r["versions"],
                latest=latest.get(r["id"]),
            )
            for r in rows
        ]
        out.sort(key=lambda c: (c.latest.created_at if c.latest else c.created_at, c.case_id), reverse=True)
        return out

    def export_lines(self, since: _dt.datetime | None = None) -> Iterator[str]:
        """`cds cases export`: one JSON line per evaluation stored at or after `since` (see exchange.py)."""
        with self._read() as conn:
            yield from exchange.export_lines(conn, since)

    def import_lines(self, records: list[exchange.Line]) -> exchange.ImportResult:
        """`cds cases import`: add the evaluations the store lacks, all in one transaction (InputError: none)."""
        with self._write() as conn:
            return exchange.import_lines(conn, records)

    def count_evaluations(self) -> int:
        with self._read() as conn:
            count: int = conn.execute(select(func.count()).select_from(evaluations)).scalar_one()
        return count

    def _one(self, where: ColumnElement[bool]) -> StoredEvaluation | None:
        with self._read() as conn:
            row = conn.execute(select(evaluations).where(where)).mappings().first()
        return None if row is None else _stored(row)

    def iter_feedback(self, since: _dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        """Every feedback item in the order received, with the evaluation (rule set, top option) it refers to."""
        query = (
            select(
                feedback.c.id,
                feedback.c.received_at,
                feedback.c.service_id,
                feedback.c.card_uuid,
                feedback.c.outcome,
                feedback.c.outcome_timestamp,
                feedback.c.override_reason_json,
                feedback.c.accepted_suggestions_json,
                feedback.c.client,
                feedback.c.evaluation_id,
                evaluations.c.case_id,
                evaluations.c.patient_id,
                evaluations.c.top_option,
                evaluations.c.ruleset_hash,
                evaluations.c.engine_version,
                evaluations.c.evaluated_at,
                evaluations.c.site_name,
            )
            .select_from(feedback.outerjoin(evaluations, feedback.c.evaluation_id == evaluations.c.id))
            .order_by(feedback.c.id)
        )
        if since is not None:
            query = query.where(feedback.c.received_at >= since)
        with self._read() as conn:
            for r in conn.execute(query).mappings():
                out = dict(r)
                out["received_at"] = r["received_at"].isoformat().replace("+00:00", "Z")
                out["override_reason"] = _loads_or_none(out.pop("override_reason_json"))
                out["accepted_suggestions"] = _loads_or_none(out.pop("accepted_suggestions_json"))
                yield out


def _stored(row: RowMapping) -> StoredEvaluation:
    r = dict(row)
    return StoredEvaluation(r["id"], r["case_id"], r["version"], r["created_at"], r["report_token"], r)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def migrate(engine: Engine) -> None:
    """Create the schema or bring it to the newest migration (Alembic, in one transaction)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_store(db: str | os.PathLike[str] | None = None, *, create: bool = True, checkpoint_in_background: bool = False) -> Store:
    """Open the store at `db` (see `db_url`), creating or migrating its schema; StoreError if it cannot be.

    `checkpoint_in_background`: SQLite's log is checkpointed by a thread of the store, not inside
    the commit that fills it (a long-running writer: the service; see the module docstring).
    """
    url = db_url(db)
    try:
        if url.startswith("sqlite:"):
            path = Path(make_url(url).database or "")
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.is_file():
                raise StoreError(f"--db {path}: no such case store")
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
            _sqlite_setup(engine, autocheckpoint=not checkpoint_in_background)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        migrate(engine)
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - a database problem reaches the user as one line
        raise StoreError(
            f"--db {make_url(url).render_as_string(hide_password=True)}: cannot open the case store ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    return Store(engine, checkpoint_in_background=checkpoint_in_background)


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
