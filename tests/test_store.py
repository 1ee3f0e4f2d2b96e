"""The case store on a real SQLite file (WAL) and a real PostgreSQL server: append-only, versioned, concurrent."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from cds.errors import InputError, StoreError
from cds.store import NewEvaluation, open_store
from cds.store.schema import metadata

WRITERS, PER_WRITER = 8, 200


def new(**over) -> NewEvaluation:
    fields = dict(
        user="local",
        channel="api",
        input_kind="profile",
        input_json='{"patient_id": "P"}',
        profile_json='{"patient_id":"P"}',
        output_json=json.dumps({"options": [{"id": "bcma_car_t"}]}),
        engine_version="cds test",
        ruleset_hash="r" * 64,
        input_hash="i" * 64,
        evaluated_at="2026-01-01T00:00:00Z",
        patient_id="P",
        top_option="bcma_car_t",
    )
    return NewEvaluation(**{**fields, **over})


# ---------------------------------------------------------------------- PostgreSQL, started and stopped by the test


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL cluster on a Unix socket (no TCP), run as the postgres user when we are root."""
    pg = _pg_bin()
    assert pg is not None, "PostgreSQL is not installed (.ci/run installs Debian's postgresql)"
    base = Path(tempfile.mkdtemp(prefix="cds-pg-"))  # not under pytest's 0700 tree: the postgres user must reach it
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        base.chmod(0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*prefix, str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    proc = subprocess.Popen(
        [
            *prefix,
            str(pg / "postgres"),
            "-D",
            str(data),
            "-k",
            str(sock),
            "-p",
            "5432",
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    socket_file = sock / ".s.PGSQL.5432"  # a Unix socket in our own folder: no TCP port, no clash with other servers
    deadline = time.monotonic() + 120
    while not (socket_file.exists() and stat.S_ISSOCK(socket_file.stat().st_mode)):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "postgres exited"
        assert time.monotonic() < deadline, "PostgreSQL did not start"
        time.sleep(0.05)
    import psycopg

    while True:  # the socket exists before the server takes queries ("the database system is starting up")
        try:
            with psycopg.connect(host=str(sock), port=5432, user="postgres", dbname="postgres", connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            break
        except psycopg.OperationalError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "postgres exited"
            assert time.monotonic() < deadline, "PostgreSQL did not become ready"
            time.sleep(0.1)
    yield f"postgresql://postgres@/postgres?host={sock}&port=5432"
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(tmp_path / "cases.db")
    else:
        url = request.getfixturevalue("postgres_url")
        s = open_store(url)
        with s.engine.begin() as conn:  # a clean database per test: drop and migrate again
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        s.close()
        s = open_store(url)
    yield s
    s.close()


# ---------------------------------------------------------------------- behaviour


def test_versions_are_appended_and_the_output_kept(store):
    first = store.add_evaluation(new())
    second = store.add_evaluation(new(case_id=first.case_id, top_option="bcma_bispecific"))
    assert (first.version, second.version) == (1, 2)
    history = store.case_history(first.case_id)
    assert [h.version for h in history] == [1, 2]
    assert history[0].output() == {"options": [{"id": "bcma_car_t"}]}
    assert history[1].row["top_option"] == "bcma_bispecific"
    other = store.add_evaluation(new())
    assert other.case_id != first.case_id and other.version == 1


def test_external_key_groups_a_patient_seen_again(store):
    a = store.add_evaluation(new(external_key="cds-hooks ehr Patient/1", channel="cds-hooks"))
    b = store.add_evaluation(new(external_key="cds-hooks ehr Patient/1", channel="cds-hooks"))
    c = store.add_evaluation(new(external_key="cds-hooks ehr Patient/2", channel="cds-hooks"))
    assert a.case_id == b.case_id != c.case_id
    assert (a.version, b.version, c.version) == (1, 2, 1)


def test_unknown_case_is_refused(store):
    with pytest.raises(StoreError, match="no such case"):
        store.add_evaluation(new(case_id="00000000-0000-0000-0000-000000000000"))
    assert store.count_evaluations() == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE evaluations SET top_option = 'x'",
        "DELETE FROM evaluations",
        "UPDATE feedback SET outcome = 'accepted'",
        "DELETE FROM feedback",
    ],
)
def test_evaluations_and_feedback_are_append_only_in_the_database(store, statement):
    ev = store.add_evaluation(new(card_uuid="11111111-1111-1111-1111-111111111111"))
    store.add_feedback(
        [{"card": ev.row["card_uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}],
        service_id="svc",
        client="ehr",
    )
    with pytest.raises(Exception, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert store.count_evaluations() == 1
    assert len(list(store.iter_feedback())) == 1


def test_feedback_is_linked_to_the_evaluation_and_exported(store):
    ev = store.add_evaluation(new(card_uuid="22222222-2222-2222-2222-222222222222"))
    items = [
        {
            "card": "22222222-2222-2222-2222-222222222222",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-01-02T10:00:00Z",
            "overrideReason": {
                "reason": {"code": "patient-preference", "display": "Patient preference"},
                "userComment": "wants oral",
            },
        },
        {"card": "not-a-card-of-ours", "outcome": "accepted", "outcomeTimestamp": "2026-01-02T10:01:00Z"},
    ]
    assert store.add_feedback(items, service_id="mm-treatment-sequencing", client="https://ehr.example.org") == 2
    rows = list(store.iter_feedback())
    assert [r["outcome"] for r in rows] == ["overridden", "accepted"]
    assert rows[0]["evaluation_id"] == ev.id and rows[0]["top_option"] == "bcma_car_t" and rows[0]["ruleset_hash"] == "r" * 64
    assert rows[0]["override_reason"]["userComment"] == "wants oral"
    assert rows[1]["evaluation_id"] is None  # an unknown card is kept, not dropped
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert list(store.iter_feedback(since=later)) == []


def test_cases_are_listed_by_board_date_with_their_latest_version(store):
    monday, tuesday = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
    a = store.add_evaluation(new(channel="web", board_date=monday, label="Case A"))
    store.add_evaluation(
        new(case_id=a.case_id, top_option="bcma_bispecific", board_date=tuesday)
    )  # an existing case keeps its date
    b_id = store.create_case(created_by="local", channel="web", board_date=monday, label="Case B")
    c = store.add_evaluation(new(channel="web", board_date=tuesday))
    listed = store.list_cases(monday)
    assert {x.case_id for x in listed} == {a.case_id, b_id}
    first = next(x for x in listed if x.case_id == a.case_id)
    assert (first.versions, first.label, first.board_date) == (2, "Case A", monday)
    assert first.latest.version == 2 and first.latest.row["top_option"] == "bcma_bispecific"
    assert first.latest.output() == {"options": [{"id": "bcma_car_t"}]}
    empty = store.case(b_id)
    assert empty.versions == 0 and empty.latest is None
    assert [x.case_id for x in store.list_cases(tuesday)] == [c.case_id]
    assert len(store.list_cases()) == 3
    store.set_case(b_id, board_date=tuesday, label="Case B, moved")
    assert store.case(b_id).board_date == tuesday and store.case(b_id).label == "Case B, moved"
    assert {x.case_id for x in store.list_cases(tuesday)} == {b_id, c.case_id}
    with pytest.raises(StoreError, match="no such case"):
        store.set_case("00000000-0000-0000-0000-000000000000", label="x")
    with pytest.raises(ValueError, match="only board_date and label"):
        store.set_case(b_id, patient_id="x")
    assert store.case("00000000-0000-0000-0000-000000000000") is None


def _export(store, since=None) -> bytes:
    return "".join(store.export_lines(since)).encode()


def _import(store, data: bytes):
    import io

    from cds.store.exchange import read_lines

    return store.import_lines(read_lines(io.BytesIO(data), "export.jsonl"))


def test_export_and_import_restore_every_version(store, tmp_path):
    a = store.add_evaluation(new(board_date=dt.date(2026, 3, 2), label="A", output_json='{"options": [], "x": "é"}'))
    store.add_evaluation(new(case_id=a.case_id, top_option="bcma_bispecific"))
    hooks = store.add_evaluation(  # a CDS Hooks card: its summary, no report (rebuilt on GET /reports)
        new(
            external_key="cds-hooks ehr Patient/9",
            channel="cds-hooks",
            card_uuid=str(uuid.uuid4()),
            output_json=None,
            summary_json='{"options": [{"id": "bcma_car_t"}]}',
        )
    )
    assert hooks.output() is None and hooks.summary() == {"options": [{"id": "bcma_car_t"}]}
    assert store.evaluation(a.id).summary() == {"options": [], "x": "é"}  # a stored report is its own summary
    data = _export(store)
    assert len(data.splitlines()) == 3
    assert [json.loads(x)["evaluation"]["output_json"] is None for x in data.splitlines()] == [False, False, True]
    target = open_store(tmp_path / "restored.db")
    assert _import(target, data).added == 3
    assert target.evaluation(hooks.id).output() is None and target.evaluation(hooks.id).summary() == hooks.summary()
    assert _export(target) == data  # every field, the report byte for byte
    again = _import(target, data)  # importing twice adds nothing
    assert (again.added, again.already_present) == (0, 3)
    assert [h.version for h in target.case_history(a.case_id)] == [1, 2]
    assert target.case(a.case_id).label == "A"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert _export(store, later) == b""
    # a contradiction refuses the whole file: nothing added, nothing overwritten
    lines = [json.loads(x) for x in data.splitlines()]
    lines[1]["evaluation"]["top_option"] = "changed"
    fresh = dict(lines[2], evaluation={**lines[2]["evaluation"], "id": str(uuid.uuid4())})  # a new id on a taken version
    for bad, message in (([lines[0], lines[1]], "another evaluation under this id"), ([fresh], "is already evaluation")):
        before = _export(target)
        with pytest.raises(InputError, match=message):
            _import(target, "".join(json.dumps(x) + "\n" for x in bad).encode())
        assert _export(target) == before
    target.close()


def test_a_bad_export_file_names_every_problem_by_line(store):
    store.add_evaluation(new())
    good = json.loads(_export(store).splitlines()[0])
    del good["evaluation"]["user"]
    lines = [json.dumps(good), "not json", json.dumps({**good, "format": "other"}), json.dumps({**good, "extra": 1})]
    with pytest.raises(InputError) as info:
        _import(store, "\n".join(lines).encode())
    message = str(info.value)
    for expected in (
        "line 1: evaluation.user: missing",
        "line 2: (line): not valid JSON",
        "line 3: evaluation.user: missing",
        "line 4: extra: not a field of a cases export",
    ):
        assert expected in message, message
    assert store.count_evaluations() == 1


def test_an_export_of_format_1_still_imports(store, tmp_path):
    """Format 1 (before summary_json): its lines have a report and no summary; they import as they were."""
    ev = store.add_evaluation(new())
    line = json.loads(_export(store).splitlines()[0])
    assert line["format"] == "cds-cases/2"
    del line["evaluation"]["summary_json"]
    target = open_store(tmp_path / "restored.db")
    with pytest.raises(InputError, match=r"evaluation\.summary_json: missing"):  # format 2 writes every field
        _import(target, (json.dumps(line) + "\n").encode())
    assert _import(target, (json.dumps({**line, "format": "cds-cases/1"}) + "\n").encode()).added == 1
    assert target.evaluation(ev.id).output() == ev.output() and target.evaluation(ev.id).row["summary_json"] is None
    target.close()


def test_an_export_line_without_an_optional_field_is_refused(store):
    """The export writes every field; a line missing one that may be null is not imported as null."""
    store.add_evaluation(new())
    good = json.loads(_export(store).splitlines()[0])
    del good["evaluation"]["card_uuid"], good["evaluation"]["site_name"]
    with pytest.raises(InputError) as info:
        _import(store, (json.dumps(good) + "\n").encode())
    assert "line 1: evaluation.card_uuid: missing" in str(info.value)
    assert "line 1: evaluation.site_name: missing" in str(info.value)


def test_the_export_record_is_the_evaluation_row_and_shares_its_fields_with_new_evaluation():
    """One definition (cds.store.schema.EvaluationFields): the export line's evaluation is every column
    of the row (the report as text), and NewEvaluation takes exactly the caller-given ones plus its case."""
    from cds.store.exchange import EvaluationRecord
    from cds.store.schema import EvaluationFields, evaluations

    columns = {c.name for c in evaluations.columns} - {"output_zlib"} | {"output_json"}
    assert set(EvaluationRecord.model_fields) == columns
    given = set(EvaluationFields.model_fields)
    assert given < columns and columns - given == {"id", "case_id", "version", "created_at", "report_token"}
    assert set(NewEvaluation.model_fields) - given == {"case_id", "external_key", "board_date", "label", "report_token"}
    with pytest.raises(ValueError, match="no_such_field"):
        new(no_such_field=1)


def test_the_store_models_are_on_the_one_strict_base():
    """NewEvaluation, the export line and its parts are cds.model.base.Strict: exact types (no text read as a
    date), no unknown key, immutable."""
    import pydantic

    from cds.model.base import Strict
    from cds.store.exchange import CaseRecord, EvaluationRecord, Line
    from cds.store.schema import EvaluationFields

    for model in (EvaluationFields, NewEvaluation, EvaluationRecord, CaseRecord, Line):
        assert issubclass(model, Strict), model
    with pytest.raises(pydantic.ValidationError, match="board_date"):
        new(board_date="2026-05-04")  # lax pydantic would have read the text as a date
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        new().label = "changed"


def test_reports_expire(store):
    ev = store.add_evaluation(new())
    assert store.evaluation_by_report_token(ev.report_token, dt.timedelta(hours=24)).id == ev.id
    assert store.evaluation_by_report_token(ev.report_token, dt.timedelta(seconds=0)) is None
    assert store.evaluation_by_report_token("no-such-token", dt.timedelta(hours=24)) is None


def test_migrations_match_the_schema(store):
    """The committed Alembic migrations create exactly the tables of cds/store/schema.py (no stale migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_reopening_keeps_everything_and_sqlite_runs_in_wal(tmp_path):
    s = open_store(tmp_path / "cases.db")
    ev = s.add_evaluation(new())
    s.close()
    s = open_store(tmp_path / "cases.db")  # migrate at start: already at head, nothing lost
    assert s.evaluation(ev.id).output() == {"options": [{"id": "bcma_car_t"}]}
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()


def test_unopenable_database_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match=r"--db .*cannot open the case store"):
        open_store(tmp_path / "file" / "cases.db")
    with pytest.raises(StoreError, match="cannot open the case store"):
        open_store("postgresql://nobody@/none?host=/nonexistent-socket-dir")


# ---------------------------------------------------------------------- concurrency: processes, one case


def _writer(url: str, case_id: str, n: int, barrier) -> None:
    s = open_store(url)
    barrier.wait(600)
    for i in range(n):
        s.add_evaluation(new(case_id=case_id, input_json=json.dumps({"n": i, "pid": os.getpid()})))
    s.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_writers_lose_and_duplicate_nothing(backend, tmp_path, request):
    """8 processes append 200 evaluations each to the same case: exactly 1,600, versions 1..1600."""
    url = str(tmp_path / "cases.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    s = open_store(url)
    if backend == "postgresql":
        with s.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        s.close()
        s = open_store(url)
    case_id = s.create_case(created_by="local", channel="web")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(url, case_id, PER_WRITER, barrier)) for _ in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(1200)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    versions = [h.version for h in s.case_history(case_id)]
    assert versions == list(range(1, WRITERS * PER_WRITER + 1))
    assert s.count_evaluations() == WRITERS * PER_WRITER
    s.close()


def test_cases_export_and_import_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from cds.apps.cli import app

    db, restored, out = tmp_path / "cases.db", tmp_path / "restored.db", tmp_path / "cases.jsonl"
    s = open_store(db)
    first = s.add_evaluation(new())
    s.add_evaluation(new(case_id=first.case_id))
    s.close()
    run = CliRunner().invoke
    done = run(app, ["cases", "export", "--db", str(db), "--since", "2000-01-01", "--output", str(out)])
    assert done.exit_code == 0, done.stderr
    assert len(out.read_text().splitlines()) == 2
    assert run(app, ["cases", "export", "--db", str(db), "--since", "2999-01-01"]).stdout == ""
    done = run(app, ["cases", "import", str(out), "--db", str(restored)])
    assert done.exit_code == 0 and "imported 2 evaluation(s)" in done.stdout, done.stderr
    done = run(app, ["cases", "import", str(out), "--db", str(restored)])
    assert "imported 0 evaluation(s)" in done.stdout and "2 already there" in done.stdout
    for args, message in (
        (["cases", "export", "--db", str(tmp_path / "none.db")], "no such case store"),
        (["cases", "export", "--db", str(db), "--since", "monday"], "--since: 'monday' is not an ISO-8601 date"),
        (["cases", "import", str(db), "--db", str(restored)], "not a cases export"),
        (["cases", "import", str(tmp_path / "missing.jsonl"), "--db", str(restored)], "cannot read"),
    ):
        done = run(app, args)
        assert done.exit_code == 2 and message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    assert not (tmp_path / "none.db").exists()


def test_a_store_checkpointing_in_background_copies_the_log_without_a_commit_doing_it(tmp_path):
    """open_store(checkpoint_in_background=True) (cds serve): no commit checkpoints (wal_autocheckpoint 0), the
    store's thread does, within about a second of the writes: the database file itself grows while the store is
    open. Without it, SQLite's automatic checkpoint is left as it is."""
    db = tmp_path / "cases.db"
    s = open_store(db, checkpoint_in_background=True)
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    before = db.stat().st_size
    ids = [s.add_evaluation(new(input_json=json.dumps({"pad": "x" * 20_000, "i": i}))).id for i in range(30)]
    deadline = time.monotonic() + 10
    while db.stat().st_size < before + 30 * 20_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size >= before + 30 * 20_000, (before, db.stat().st_size)
    assert [s.evaluation(i).id for i in ids] == ids
    s.close()
    assert not s._checkpointer.thread.is_alive()
    plain = open_store(tmp_path / "plain.db")
    with plain.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    assert plain._checkpointer is None
    plain.close()


def test_the_background_checkpoint_bounds_the_log_under_writes_without_a_pause(tmp_path, monkeypatch):
    """Writes back to back never leave the log copied whole between two of them (so it would never restart and
    grow without end): once it holds SQLITE_LOG_LIMIT_FRAMES, the checkpoint takes the write lock and the log
    starts again from its beginning. Here the limit is 256 frames (1 MB): the log file stays a fraction of what
    was written."""
    import cds.store.store as store_module

    monkeypatch.setattr(store_module, "SQLITE_LOG_LIMIT_FRAMES", 256)
    monkeypatch.setattr(store_module, "SQLITE_LOG_LIMIT_BYTES", 1024 * 1024)  # the file shrinks back to 1 MB at a restart
    monkeypatch.setattr(store_module, "SQLITE_CHECKPOINT_INTERVAL_S", 0.1)
    db = tmp_path / "cases.db"
    s = open_store(db, checkpoint_in_background=True)
    pad = "x" * 20_000
    written = 0
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        s.add_evaluation(new(input_json=json.dumps({"pad": pad, "i": written})))
        written += 1
    wal = Path(f"{db}-wal").stat().st_size
    s.close()
    assert written > 100
    assert wal < written * 20_000 / 4, (wal, written)
