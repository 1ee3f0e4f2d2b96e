"""The case store behind the real server: concurrent clients lose and duplicate nothing; report links expire."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import live_server
import pytest
from live_server import REQUEST_TIMEOUT_S, ROOT, Server, wait_for
from test_store import postgres_url  # noqa: F401 - the throwaway PostgreSQL server fixture, used by name

from cds.store import open_store

CLIENTS, PER_CLIENT = 8, 200
REPORT_HOURS = 0.003  # 10.8 s: long enough to fetch a fresh report, short enough to wait out
PROFILE = json.loads((ROOT / "patient_profiles" / "fit_tcr_bcma_naive.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve-store"), "--no-auth", "--workers", "2", "--report-hours", str(REPORT_HOURS))
    yield s
    assert s.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def test_eight_clients_submitting_200_cases_each_store_exactly_1600(server):
    before = _count(server)
    results: dict[int, list[tuple[int, str]]] = {}
    errors: list[str] = []
    barrier = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        got: list[tuple[int, str]] = []
        with live_server.client(server.url, timeout=REQUEST_TIMEOUT_S) as http:
            barrier.wait(120)
            for i in range(PER_CLIENT):  # bounded: 200 requests, each bounded by the client timeout
                body = json.dumps({**PROFILE, "patient_id": f"C{n}-{i}"})
                try:
                    r = http.post("/api/evaluate", content=body)
                except httpx.HTTPError as exc:
                    errors.append(f"client {n} request {i}: {type(exc).__name__}")
                    continue
                if r.status_code != 200:
                    errors.append(f"client {n} request {i}: {r.status_code} {r.text[:200]}")
                    continue
                got.append((r.status_code, r.headers["x-cds-evaluation-id"]))
        results[n] = got

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1800)
    assert not any(t.is_alive() for t in threads), "a client did not finish within 30 minutes"
    assert errors == []
    ids = [eid for got in results.values() for _, eid in got]
    assert len(ids) == len(set(ids)) == CLIENTS * PER_CLIENT
    # the database itself (read by a second, independent connection): exactly these 1,600, each patient once
    assert _count(server) - before == CLIENTS * PER_CLIENT
    store = open_store(server.db)
    try:
        patients = [store.evaluation(eid).row["patient_id"] for eid in ids]
        assert sorted(patients) == sorted(f"C{n}-{i}" for n in range(CLIENTS) for i in range(PER_CLIENT))
        one = store.evaluation(ids[0]).row
        assert one["user"] == "local" and one["channel"] == "api" and one["version"] == 1
        assert json.loads(one["input_json"])["patient_id"] == one["patient_id"]  # the input as entered
        assert one["engine_version"].startswith("cds ") and len(one["ruleset_hash"]) == 64
    finally:
        store.close()
    assert server.health()["workers"]["replaced"] == 0


def _count(server) -> int:
    store = open_store(server.db)
    try:
        return store.count_evaluations()
    finally:
        store.close()


def test_a_report_link_is_served_for_the_configured_time_then_404(server):
    ttl_s = REPORT_HOURS * 3600
    started = time.monotonic()
    r = server.client.post("/api/evaluate?format=json", content=json.dumps(PROFILE))
    assert r.status_code == 200
    link = r.headers["link"].split(">")[0].lstrip("<")
    fresh = server.client.get(link + "?format=json")
    if time.monotonic() - started < ttl_s * 0.8:  # fetched well within the time: it must be served
        assert fresh.status_code == 200 and fresh.json()["patient_id"] == PROFILE["patient_id"]
    wait_for(lambda: time.monotonic() - started > ttl_s + 1, ttl_s + 30, "the report's time to pass", interval=0.2)
    gone = server.client.get(link)
    assert gone.status_code == 404 and gone.json()["error"].startswith("no such report")
    assert gone.headers["cache-control"] == "no-store"


def test_a_server_killed_under_load_keeps_every_acknowledged_evaluation(tmp_path):
    """SIGKILL mid-request (no shutdown at all): every evaluation answered 200 is stored whole, the file is intact."""
    s = Server(tmp_path, "--no-auth", "--workers", "2")
    acknowledged: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with live_server.client(s.url, timeout=REQUEST_TIMEOUT_S) as http:
            for i in range(PER_CLIENT):  # bounded; ends at the kill
                if stop.is_set():
                    return
                try:
                    r = http.post("/api/evaluate", content=json.dumps({**PROFILE, "patient_id": f"K{n}-{i}"}))
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acknowledged.append(r.headers["x-cds-evaluation-id"])

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: len(acknowledged) >= 20, 600, "20 acknowledged evaluations")
        s.kill()  # SIGKILL: requests in flight, a transaction possibly open
    finally:
        stop.set()
        s.kill()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S + 30)
    store = open_store(s.db)  # reopening recovers the WAL and migrates nothing
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        for eid in acknowledged:
            stored = store.evaluation(eid)
            assert stored is not None, eid
            assert stored.output()["patient_id"] == stored.row["patient_id"]  # whole, not half-written
        assert store.count_evaluations() >= len(acknowledged)
    finally:
        store.close()


def test_cds_serve_on_postgresql_stores_and_serves_the_report(tmp_path, request):
    """`cds serve --db postgresql://...`: the schema is migrated at start, evaluations land in PostgreSQL."""
    from sqlalchemy import text

    pg_url = request.getfixturevalue("postgres_url")
    reset = open_store(pg_url)
    with reset.engine.begin() as conn:  # a clean database: drop what other tests left, the server migrates again
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    reset.close()
    s = Server(tmp_path, "--no-auth", "--workers", "1", "--db", pg_url)
    try:
        r = s.client.post("/api/evaluate?format=json", content=json.dumps(PROFILE))
        assert r.status_code == 200
        link = r.headers["link"].split(">")[0].lstrip("<")
        assert s.client.get(link + "?format=json").text == r.text
    finally:
        assert s.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    store = open_store(pg_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        stored = store.evaluation(r.headers["x-cds-evaluation-id"])
        assert stored is not None and stored.version == 1 and stored.row["user"] == "local"
        assert not (tmp_path / "cases.db").exists()  # the last --db wins: nothing went to SQLite
    finally:
        store.close()
