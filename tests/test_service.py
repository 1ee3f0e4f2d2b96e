"""`cds serve` against the real server: uvicorn in a subprocess on an ephemeral loopback port, stopped by PID."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from conftest import load_case
from live_server import CDS, ROOT, Server, alive, wait_for
from typer.testing import CliRunner

import schemas
from cds.apps.cli import app as cli_app

PROFILES = ROOT / "patient_profiles"
SITE = ROOT / "tests" / "data" / "site_no_cart.yaml"
SERVICE = "/cds-services/mm-treatment-sequencing"
STAMP = re.compile(r"\d{4}\\?-\d\d\\?-\d\dT\d\d:\d\d:\d\dZ")
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    s = Server(
        tmp,
        "--no-auth",
        "--workers",
        "1",
        "--site",
        f"nocart={SITE}",
        "--cors-origin",
        "https://ehr.example.org",
        "--max-body-bytes",
        "200000",
    )
    yield s
    assert s.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def profile_bytes(name: str = "fit_tcr_bcma_naive") -> bytes:
    return (PROFILES / f"{name}.json").read_bytes()


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def hook_request(**over) -> dict:
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": "1288992"},
        "prefetch": {},
    }
    body.update(over)
    return body


# ---------------------------------------------------------------------- health and the evaluation API


def test_healthz(server):
    h = server.health()
    assert h["status"] == "ok"
    assert h["engine_version"].startswith("cds ") and "durable-rules" in h["engine_version"]
    assert re.fullmatch(r"[0-9a-f]{64}", h["ruleset_hash"])
    assert h["site"]["name"].startswith("Default")
    assert "nocart" in h["sites"] and h["workers"]["ready"] == 1


@pytest.mark.parametrize("fmt", ["json", "markdown", "html"])
def test_evaluate_gives_the_clis_document(server, fmt, tmp_path):
    r = server.client.post(f"/api/evaluate?format={fmt}", content=profile_bytes())
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert all(h in r.headers for h in SECURITY_HEADERS)
    stamp = STAMP.search(r.text).group(0).replace("\\", "")
    code, out, _ = cli("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--format", fmt, "--timestamp", stamp)
    assert code == 0
    assert r.text == out
    assert re.fullmatch(r"<http://127\.0\.0\.1:\d+/reports/[\w-]{43}>; rel=\"alternate\"", r.headers["link"])


def test_evaluate_at_a_configured_site(server):
    r = server.client.post("/api/evaluate?format=json&site=nocart", content=profile_bytes())
    assert r.status_code == 200
    assert r.json()["site_name"] == "Test centre without CAR-T"
    bad = server.client.post("/api/evaluate?site=elsewhere", content=profile_bytes())
    assert bad.status_code == 422 and bad.json()["field"] == "site" and "nocart" in bad.json()["error"]


BAD_BODIES = {
    "malformed": b'{"patient_id": "P1", "age": }',
    "duplicate key": b'{"patient_id": "P1", "patient_id": "P2", "age": 60, "ecog": 1, "prior_lines": []}',
    "wrong type": json.dumps({**json.loads(profile_bytes()), "age": "60"}).encode(),
    "out of range": json.dumps({**json.loads(profile_bytes()), "ecog": 7}).encode(),
    "unknown drug": json.dumps({**json.loads(profile_bytes()), "prior_lines": [{"agents": ["aspirinmab"]}]}).encode(),
    "not an object": b"[1, 2, 3]",
    "NaN": b'{"patient_id": "P1", "age": NaN, "ecog": 1, "prior_lines": []}',
    "deep": b'{"labs": ' * 40 + b"{}" + b"}" * 40,
    "not UTF-8": b'{"patient_id": "\xff\xfe"}',
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_is_422_with_the_clis_message(server, case, tmp_path):
    body = BAD_BODIES[case]
    r = server.client.post("/api/evaluate", content=body)
    assert r.status_code == 422, r.text
    got = r.json()
    assert set(got) - {"problems"} == {"error", "field"} and got["field"]
    path = tmp_path / "profile.json"
    path.write_bytes(body)
    code, _, err = cli("evaluate", str(path))
    assert code == 2
    expected = err.strip().removeprefix("error: ").replace("(file)", "(body)")
    assert got["error"] == expected
    assert "\n" not in got["error"]


def test_every_problem_of_a_profile_at_once_as_the_cli_names_them(server, tmp_path):
    """Principle 3 (all problems at once): the API named only the first of several (newuser finding)."""
    data = {**load_case("frail_ecog3"), "ecog": 7, "cytogenetics": ["del17p"], "frailty": "unknown"}
    r = server.client.post("/api/evaluate", content=json.dumps(data).encode())
    assert r.status_code == 422, r.text
    got = r.json()
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    code, _, err = cli("evaluate", str(path))
    cli_fields = [line.strip().split(":")[0] for line in err.splitlines()[1:] if line.startswith("  ")]
    assert code == 2 and len(cli_fields) == 3
    assert [p["field"] for p in got["problems"]] == cli_fields
    assert got["field"] == cli_fields[0] and got["error"].startswith("invalid patient profile: 3 problems: ")
    assert "\n" not in got["error"] and all(p["problem"] in got["error"] for p in got["problems"])


def test_empty_body_and_bad_query_are_4xx_not_500(server):
    r = server.client.post("/api/evaluate", content=b"  ")
    assert r.status_code == 422 and r.json()["field"] == "(body)"
    r = server.client.post("/api/evaluate?format=pdf", content=profile_bytes())
    assert r.status_code == 422 and r.json()["field"] == "format"
    assert server.client.get("/api/evaluate").status_code == 405
    assert server.client.get("/nowhere").status_code == 404


def test_oversized_body_is_413(server):
    big = b'{"patient_id": "' + b"x" * 300_000 + b'"}'
    r = server.client.post("/api/evaluate", content=big)
    assert r.status_code == 413 and r.json()["field"] == "(body)"

    def chunks():  # no Content-Length: the cap is applied while reading
        for _ in range(30):
            yield b"x" * 10_000

    r = server.client.post("/api/evaluate", content=chunks())
    assert r.status_code == 413
    assert server.health()["status"] == "ok"


def test_report_link_serves_the_report(server):
    r = server.client.post("/api/evaluate?format=json", content=profile_bytes("frail_ecog3"))
    link = r.headers["link"].split(">")[0].lstrip("<")
    html = server.client.get(link, timeout=60)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "img-src data:" in html.headers["content-security-policy"] and html.headers["cache-control"] == "no-store"
    assert html.headers["referrer-policy"] == "no-referrer"
    assert "TB-" in html.text
    as_json = server.client.get(link + "?format=json", timeout=60)
    assert as_json.text == r.text  # the stored output, byte for byte
    # HTML and Markdown again from the stored profile, time and site: the CLI's documents
    for fmt, text in (("html", html.text), ("markdown", server.client.get(link + "?format=markdown", timeout=60).text)):
        code, out, _ = cli(
            "evaluate", str(PROFILES / "frail_ecog3.json"), "--format", fmt, "--timestamp", r.json()["evaluated_at"]
        )
        assert code == 0 and text == out, fmt
    at_site = server.client.post("/api/evaluate?format=json&site=nocart", content=profile_bytes())
    site_html = server.client.get(at_site.headers["link"].split(">")[0].lstrip("<"), timeout=60).text
    assert "Test centre without CAR-T" in site_html
    assert server.client.get("/reports/" + "A" * 43).status_code == 404


def test_cors_only_for_configured_origins(server):
    ok = server.client.options(
        "/cds-services",
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert ok.headers.get("access-control-allow-origin") == "https://ehr.example.org"
    other = server.client.get("/cds-services", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers


def test_access_log_names_no_patient_and_no_report_token(server):
    r = server.client.post("/api/evaluate?format=json", content=profile_bytes("rapidly_progressive"))
    token = r.headers["link"].split("/reports/")[1].split(">")[0]
    server.client.get(f"{server.url}/reports/{token}", timeout=60)
    wait_for(lambda: "GET /reports/… 200" in server.log(), 30, "the access log line")
    log = server.log()
    assert token not in log
    assert json.loads(profile_bytes("rapidly_progressive"))["patient_id"] not in log


# ---------------------------------------------------------------------- CDS Hooks without the FHIR importer


def test_discovery(server):
    r = server.client.get("/cds-services")
    assert r.status_code == 200
    (svc,) = r.json()["services"]
    assert svc["id"] == "mm-treatment-sequencing" and svc["hook"] == "patient-view"
    assert svc["title"] and svc["description"]
    assert svc["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    for key in (
        "conditions",
        "medicationAdministrations",
        "medicationRequests",
        "medicationStatements",
        "procedures",
        "observations",
    ):
        assert "patient={{context.patientId}}" in svc["prefetch"][key]


def full_prefetch(**over) -> dict:
    prefetch = {
        k: None
        for k in (
            "patient",
            "conditions",
            "medicationAdministrations",
            "medicationRequests",
            "medicationStatements",
            "procedures",
            "observations",
        )
    }
    prefetch.update(over)
    return prefetch


@pytest.mark.parametrize(
    "prefetch",
    [
        {},
        {k: v for k, v in full_prefetch().items() if k != "observations"},
        full_prefetch(conditions={"resourceType": "OperationOutcome", "issue": []}),
        full_prefetch(observations={"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "next", "url": "x"}]}),
    ],
)
def test_missing_prefetch_is_412(server, prefetch):
    r = server.client.post(SERVICE, json=hook_request(prefetch=prefetch))
    assert r.status_code == 412, r.text
    assert r.json()["field"] == "prefetch"
    r = server.client.post(SERVICE, json=hook_request(prefetch=prefetch, fhirServer="https://fhir.example.org"))
    assert r.status_code == 412  # fetching from fhirServer is not supported yet


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (hook_request(hookInstance="not-a-uuid"), "hookInstance"),
        (hook_request(hook="order-select"), "hook"),
        (hook_request(context={"userId": "Practitioner/1"}), "context.patientId"),
        (hook_request(context={"patientId": 5, "userId": "Practitioner/1"}), "context.patientId"),
        ({k: v for k, v in hook_request().items() if k != "hookInstance"}, "hookInstance"),
        (
            hook_request(
                fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "x"}
            ),
            "(body)",
        ),
        ([1, 2], "(body)"),
    ],
)
def test_bad_hook_request_is_422_naming_the_field(server, body, field):
    r = server.client.post(SERVICE, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and r.json()["error"].startswith(field if field != "(body)" else "")


def test_malformed_hook_json_is_422(server):
    r = server.client.post(SERVICE, content=b'{"hook": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"].startswith("(body): not valid JSON")


# ---------------------------------------------------------------------- feedback


def test_feedback_is_stored_and_exported(server, tmp_path):
    items = [
        {
            "card": "0f9c6f8d-0000-4000-8000-000000000001",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-01-02T10:00:00Z",
            "overrideReason": {"reason": {"code": "other", "display": "Other"}, "userComment": "prefers bispecific"},
        },
        {"card": "0f9c6f8d-0000-4000-8000-000000000002", "outcome": "accepted", "outcomeTimestamp": "2026-01-02T10:05:00Z"},
    ]
    r = server.client.post(SERVICE + "/feedback", json={"feedback": items})
    assert r.status_code == 200 and r.json() == {"stored": 2}
    out = tmp_path / "feedback.jsonl"
    done = subprocess.run(
        [CDS, "feedback", "export", "--db", str(server.db), "--output", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    schemas.validate_jsonl(schemas.FEEDBACK_EXPORT, out.read_text())  # a subprocess's output: not seen by conftest's check
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_card = {r["card_uuid"]: r for r in rows}
    assert by_card[items[0]["card"]]["override_reason"]["userComment"] == "prefers bispecific"
    assert by_card[items[1]["card"]]["outcome"] == "accepted"
    bad = server.client.post(
        SERVICE + "/feedback", json={"feedback": [{"card": "x", "outcome": "maybe", "outcomeTimestamp": "now"}]}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "feedback[0].outcome"
    assert server.client.post(SERVICE + "/feedback", json={"feedback": []}).status_code == 422


# ---------------------------------------------------------------------- start-up refusals (exit 2, one line)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0", "--no-auth"], "--no-auth: only on a loopback address"),
        (["--host", "0.0.0.0"], "refusing to bind 0.0.0.0"),
        ([], "no authentication configured"),
        (["--no-auth", "--workers", "1", "--rules", str(ROOT / "tests")], "the rule set is invalid"),
        (["--no-auth", "--site", "nowhere.yaml"], "--site nowhere.yaml: no such file"),
    ],
)
def test_refusals_are_one_line_exit_2(args, message, tmp_path):
    done = subprocess.run(
        [CDS, "serve", "--port", "0", "--db", str(tmp_path / "c.db"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------------- workers: death, replacement, graceful stop


def test_dead_worker_gives_503_and_is_replaced_then_sigterm_finishes_requests(tmp_path):
    s = Server(tmp_path, "--no-auth", "--workers", "1")
    try:
        (worker,) = wait_for(s.workers, 60, "the worker process")
        # 1) a request inside a worker that dies gets 503, and a new worker takes over
        os.kill(worker, signal.SIGSTOP)
        result: dict = {}
        t = threading.Thread(target=lambda: result.update(r=s.client.post("/api/evaluate", content=profile_bytes())))
        t.start()
        wait_for(lambda: s.health()["workers"]["busy"] == 1, 60, "the request to reach the worker")
        os.kill(worker, signal.SIGKILL)
        t.join(60)
        assert result["r"].status_code == 503 and result["r"].json()["error"].startswith("service unavailable")
        assert result["r"].headers["retry-after"] == "1"
        wait_for(lambda: s.health()["workers"]["ready"] == 1, 120, "the replacement worker")
        assert s.health()["workers"]["replaced"] == 1
        assert s.client.post("/api/evaluate", content=profile_bytes()).status_code == 200
        # 2) SIGTERM: the request in progress completes, then the server and its worker exit
        (worker,) = s.workers()
        os.kill(worker, signal.SIGSTOP)
        t = threading.Thread(target=lambda: result.update(r=s.client.post("/api/evaluate", content=profile_bytes())))
        t.start()
        wait_for(lambda: s.health()["workers"]["busy"] == 1, 60, "the request to reach the worker")
        s.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "Shutting down" in s.log(), 60, "the server to start shutting down")
        os.kill(worker, signal.SIGCONT)
        t.join(60)
        assert result["r"].status_code == 200
        s.proc.wait(60)
        wait_for(lambda: not alive(worker), 30, "the worker to exit")
    finally:
        s.kill()


# ---------------------------------------------------------------------- patient-view with the FHIR importer's test bundles

FHIR_CASES = sorted(p for p in (ROOT / "tests" / "fhir" / "cases").glob("*.json") if not p.name.endswith(".expected.json"))


def check_card(card: dict) -> None:
    from test_service_card import check_card as check

    check(card)


@pytest.mark.parametrize("case", FHIR_CASES, ids=lambda p: p.stem)
def test_patient_view_gives_one_card_for_the_cases_top_option(server, case, tmp_path):
    from cds.apps.http.hooks import bundle_from_prefetch, prefetch_for

    bundle = json.loads(case.read_text(encoding="utf-8"))
    prefetch = prefetch_for(bundle)
    r = server.client.post(SERVICE, json=hook_request(prefetch=prefetch))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    (card,) = r.json()["cards"]
    check_card(card)
    # the card names the top option of the CLI's evaluation of the same data (the Bundle the prefetch makes)
    rebuilt = tmp_path / "bundle.json"
    rebuilt.write_text(json.dumps(bundle_from_prefetch(prefetch)))
    code, out, err = cli("evaluate", str(rebuilt), "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    top = report["options"][0]["title"].split(" (")[0]
    assert top in card["summary"] and "ranked 1st" in card["summary"]
    assert card["source"]["label"].endswith(report["ruleset_hash"][:12])
    (link,) = card["links"]
    assert link["type"] == "absolute" and link["url"] == card["source"]["url"]
    page = server.client.get(link["url"], timeout=60)
    assert page.status_code == 200 and report["patient_id"] in page.text
    # the card stored only its part of the report: every format of the report is built again from the stored
    # profile, time and site, and is the CLI's document for the same data at the same time, byte for byte
    as_json = server.client.get(link["url"] + "?format=json", timeout=60)
    at = as_json.json()["evaluated_at"]
    for fmt, text in (
        ("json", as_json.text),
        ("html", page.text),
        ("markdown", server.client.get(link["url"] + "?format=markdown").text),
    ):
        code, out, err = cli("evaluate", str(rebuilt), "--format", fmt, "--timestamp", at)
        assert code == 0 and text == out, fmt


def test_patient_view_is_stored_and_its_feedback_linked(server, tmp_path):
    from cds.apps.http.hooks import prefetch_for
    from cds.store import open_store

    bundle = json.loads(FHIR_CASES[0].read_text(encoding="utf-8"))
    token = {"access_token": "s3cr3t-t0ken", "token_type": "Bearer", "expires_in": 300, "scope": "s", "subject": "x"}
    body = hook_request(
        prefetch=prefetch_for(bundle),
        hookInstance="7c3a0d4e-1f0b-4a51-9f0e-5b1de7d54a10",
        fhirServer="https://fhir.example.org",
        fhirAuthorization=token,
    )
    (card,) = server.client.post(SERVICE, json=body).json()["cards"]
    r = server.client.post(
        SERVICE + "/feedback",
        json={
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-01-02T10:00:00Z",
                    "overrideReason": {"userComment": "tumor board chose a trial"},
                }
            ]
        },
    )
    assert r.status_code == 200
    store = open_store(server.db)
    try:
        rows = [row for row in store.iter_feedback() if row["card_uuid"] == card["uuid"]]
        assert len(rows) == 1 and rows[0]["evaluation_id"] is not None
        ev = store.evaluation(rows[0]["evaluation_id"])
        assert ev.row["channel"] == "cds-hooks" and ev.row["hook_instance"] == body["hookInstance"]
        assert ev.row["user"] == "Practitioner/example" and rows[0]["top_option"] == ev.row["top_option"]
        assert "fhirAuthorization" not in ev.row["input_json"] and "s3cr3t" not in ev.row["input_json"]
        assert json.loads(ev.row["input_json"]) == {k: v for k, v in body.items() if k != "fhirAuthorization"}
        assert json.loads(ev.row["profile_json"])["patient_id"] == ev.row["patient_id"]
        assert ev.output() is None and ev.summary()["options"][0]["id"] == ev.row["top_option"]  # the card's part only
        listed = server.client.get("/cases")  # the case list reads a card's stored summary
        assert listed.status_code == 200 and ev.row["patient_id"] in listed.text
        assert html.escape(ev.summary()["options"][0]["title"]) in listed.text
        again = store.add_evaluation  # the same patient seen again is the next version of the same case
        assert again is not None
    finally:
        store.close()


def test_patient_without_myeloma_gets_no_cards(server):
    from cds.apps.http.hooks import prefetch_for

    bundle = json.loads(FHIR_CASES[0].read_text(encoding="utf-8"))
    prefetch = prefetch_for(bundle)
    prefetch["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    r = server.client.post(SERVICE, json=hook_request(prefetch=prefetch))
    assert r.status_code == 200 and r.json() == {"cards": []}
    prefetch["conditions"] = None  # "no data" is the same
    assert server.client.post(SERVICE, json=hook_request(prefetch=prefetch)).json() == {"cards": []}


def test_api_evaluate_takes_a_fhir_bundle(server):
    r = server.client.post("/api/evaluate?format=json", content=FHIR_CASES[0].read_bytes())
    assert r.status_code == 200 and r.json()["options"]
    bad = json.loads(FHIR_CASES[0].read_text())
    bad["entry"][0]["resource"]["birthDate"] = "not-a-date"
    r = server.client.post("/api/evaluate", json=bad)
    assert r.status_code == 422 and r.json()["error"].startswith("FHIR bundle: ")


def test_the_readme_session_patient_view_and_feedback(server, tmp_path):
    """The README's curl session: the example request for a test bundle gets a card; feedback on it is stored."""
    out = tmp_path / "patient-view.json"
    done = subprocess.run(
        [sys.executable, "-m", "cds.apps.http.example", str(ROOT / "tests" / "fhir" / "cases" / "car_t_bridging.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    out.write_text(done.stdout)
    r = server.client.post(SERVICE, content=out.read_bytes(), headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    (card,) = r.json()["cards"]
    check_card(card)
    assert card["summary"].startswith("R/R MM: ") and card["links"][0]["url"].startswith(server.url + "/reports/")
    fb = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-12-02T09:00:00Z",
                "overrideReason": {"userComment": "patient prefers an oral regimen"},
            }
        ]
    }
    assert server.client.post(SERVICE + "/feedback", json=fb).json() == {"stored": 1}
    assert server.client.get(card["links"][0]["url"], timeout=60).status_code == 200


def test_every_json_response_is_checked_against_its_committed_schema(server):
    """live_server.check_json (an event hook on every test client) fails a response its schema refuses, and one
    that no committed schema describes."""
    import jsonschema
    from live_server import check_json

    health = server.client.get("/healthz").json()  # checked on the way in
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate_response("GET", "/healthz", 200, {**health, "uptime": 1})
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate_response("POST", SERVICE, 200, {"cards": [{"summary": "no uuid, no source"}]})
    with pytest.raises(jsonschema.ValidationError):
        schemas.validate_response("POST", "/api/evaluate", 422, {"error": "x"})  # an error names its field (or null)
    undocumented = httpx.Response(200, json={}, request=httpx.Request("GET", f"{server.url}/nowhere"))
    with pytest.raises(AssertionError, match="no committed schema describes GET /nowhere"):
        check_json(undocumented)
