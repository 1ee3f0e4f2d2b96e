"""The evaluation date defaults to the evaluation time (issue 12 C): the instant the report is stamped with.

A profile without `evaluation_date` but with a dated BCMA therapy gets its months since that therapy
counted to the date of `--timestamp` (or SOURCE_DATE_EPOCH, or now) on every path: `cds evaluate`,
`cds batch`, the public API, the HTTP service (a real server) and the CDS Hooks patient-view. Every
report says which date was used and where it came from; the same input at the same time gives the
same bytes; a prior-line date after the defaulted date is an error naming the field.
"""

from __future__ import annotations

import json
import signal
from html.parser import HTMLParser
from urllib.parse import urlencode

import live_server
import pytest
from live_server import Server
from typer.testing import CliRunner

import cds
from cds.apps.cli import app

runner = CliRunner()

# teclistamab (BCMA) ended 2024-05-01: 10.3 months before 2025-03-10, 13.3 before 2025-06-10
PROFILE = {
    "patient_id": "ED-1",
    "age": 63,
    "ecog": 1,
    "prior_lines": [
        {"regimen": "VRd", "autologous_transplant": True, "refractory_to": ["lenalidomide"]},
        {"agents": ["daratumumab", "pomalidomide", "dexamethasone"], "refractory_to": ["daratumumab", "pomalidomide"]},
        {"agents": ["teclistamab"], "refractory_to": ["teclistamab"], "start_date": "2023-09-01", "end_date": "2024-05-01"},
    ],
}
AT = "2025-03-10T09:30:00Z"
EPOCH_2025_03_10 = "1741564800"  # 2025-03-10T00:00:00Z


def fact(report: dict, name: str) -> dict:
    return next(f for f in report["derived_facts"] if f["name"] == name)


def write(tmp_path, data: dict, name: str = "p.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def evaluate(path, *args: str, env: dict | None = None):
    return runner.invoke(app, ["evaluate", str(path), *args], env=env)


def test_cli_counts_months_to_the_timestamp(tmp_path):
    path = write(tmp_path, PROFILE)
    r = evaluate(path, "--format", "json", "--timestamp", AT)
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["evaluated_at"] == AT
    assert report["evaluation_date"] == {"date": "2025-03-10", "source": "evaluation_time"}
    months = fact(report, "months_since_bcma_therapy")
    assert months["value"] == 10.3 and months["known"]
    assert "2025-03-10 is the evaluation time (no evaluation_date in the profile)" in months["explanation"]
    later = json.loads(evaluate(path, "--format", "json", "--timestamp", "2025-06-10T00:00:00Z").stdout)
    assert fact(later, "months_since_bcma_therapy")["value"] == 13.3
    assert report["inputs"]["evaluation_date"] is None  # the input stays as given: the same input hash
    assert later["input_hash"] == report["input_hash"]


def test_source_date_epoch_is_the_evaluation_time_too(tmp_path):
    path = write(tmp_path, PROFILE)
    r = evaluate(path, "--format", "json", env={"SOURCE_DATE_EPOCH": EPOCH_2025_03_10})
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["evaluated_at"] == "2025-03-10T00:00:00Z"
    assert report["evaluation_date"]["date"] == "2025-03-10"
    assert fact(report, "months_since_bcma_therapy")["value"] == 10.3


@pytest.mark.parametrize("fmt", ["json", "markdown", "html"])
def test_same_input_same_timestamp_same_bytes(tmp_path, fmt):
    path = write(tmp_path, PROFILE)
    a, b = (evaluate(path, "--format", fmt, "--timestamp", AT) for _ in range(2))
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_the_profiles_evaluation_date_wins_and_is_named(tmp_path):
    path = write(tmp_path, {**PROFILE, "evaluation_date": "2025-06-10"})
    report = json.loads(evaluate(path, "--format", "json", "--timestamp", AT).stdout)
    assert report["evaluation_date"] == {"date": "2025-06-10", "source": "profile"}
    months = fact(report, "months_since_bcma_therapy")
    assert months["value"] == 13.3 and "evaluation time" not in months["explanation"]
    md = evaluate(path, "--format", "markdown", "--timestamp", AT).stdout
    assert "evaluation date 2025-06-10 (profile)" in md
    assert "| Evaluation date | 2025-06-10 (the profile's evaluation_date) |" in md


def test_the_defaulted_date_is_shown_on_page_1_and_in_the_appendix(tmp_path):
    path = write(tmp_path, PROFILE)
    md = evaluate(path, "--format", "markdown", "--timestamp", AT).stdout
    page1 = md.split("# Appendix", 1)[0]
    assert "evaluated 2025-03-10 · evaluation date 2025-03-10 (evaluation time)" in page1
    assert "| Evaluation date | 2025-03-10 (the evaluation time: no evaluation_date in the profile) |" in md
    html = evaluate(path, "--format", "html", "--timestamp", AT).stdout
    assert "<span>evaluation date 2025-03-10 (evaluation time)</span>" in html
    assert (
        '<dt>Evaluation date</dt><dd class="wide">2025-03-10 (the evaluation time: no evaluation_date in the profile)</dd>'
        in html
    )


def test_no_dates_stays_unknown(tmp_path):
    undated = {**PROFILE, "prior_lines": [*PROFILE["prior_lines"][:2], {"agents": ["teclistamab"], "refractory_to": []}]}
    report = json.loads(evaluate(write(tmp_path, undated), "--format", "json", "--timestamp", AT).stdout)
    months = fact(report, "months_since_bcma_therapy")
    assert months["value"] is None and not months["known"] and "end_date not given" in months["explanation"]


def test_a_date_after_the_evaluation_time_is_an_error_naming_the_field(tmp_path):
    future = {**PROFILE, "prior_lines": [*PROFILE["prior_lines"][:2], {**PROFILE["prior_lines"][2], "end_date": "2025-04"}]}
    r = evaluate(write(tmp_path, future), "--format", "json", "--timestamp", AT, "--output", str(tmp_path / "out.json"))
    assert r.exit_code == 2
    assert (
        "prior_lines[2].end_date: 2025-04 is after the evaluation time 2025-03-10 (no evaluation_date in the profile)" in r.stderr
    )
    assert "Traceback" not in r.output and not (tmp_path / "out.json").exists()
    # the same month as the evaluation time is not surely after it: accepted
    same = {**PROFILE, "prior_lines": [*PROFILE["prior_lines"][:2], {**PROFILE["prior_lines"][2], "end_date": "2025-03"}]}
    assert evaluate(write(tmp_path, same), "--format", "json", "--timestamp", AT).exit_code == 0


def test_a_future_date_is_listed_with_every_other_problem(tmp_path):
    bad = {
        **PROFILE,
        "ecog": 7,
        "prior_lines": [*PROFILE["prior_lines"][:2], {**PROFILE["prior_lines"][2], "end_date": "2025-04"}],
    }
    path = write(tmp_path, bad)
    r = evaluate(path, "--format", "json", "--timestamp", AT)
    assert r.exit_code == 2 and "ecog" in r.stderr and "prior_lines[2].end_date: 2025-04 is after the evaluation time" in r.stderr
    # `cds validate` checks against the time `cds evaluate` would take (SOURCE_DATE_EPOCH, else now)
    v = runner.invoke(app, ["validate", str(path)], env={"SOURCE_DATE_EPOCH": EPOCH_2025_03_10})
    assert v.exit_code == 1 and "2 problems" in v.output and "prior_lines[2].end_date" in v.output
    ok = runner.invoke(app, ["validate", str(path)], env={"SOURCE_DATE_EPOCH": "1767225600"})  # 2026-01-01
    assert ok.exit_code == 1 and "1 problem" in ok.output and "end_date" not in ok.output


def test_batch_counts_months_to_the_timestamp(tmp_path):
    src = tmp_path / "cohort.jsonl"
    src.write_text(json.dumps(PROFILE) + "\n" + json.dumps({**PROFILE, "evaluation_date": "2025-06-10"}) + "\n")
    reports = tmp_path / "reports"
    out = tmp_path / "out.jsonl"
    args = ["batch", str(src), "-o", str(out), "-j", "1", "-q", "--timestamp", AT, "--reports", str(reports), "-f", "markdown"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert first["evaluation_date"] == {"date": "2025-03-10", "source": "evaluation_time"}
    assert second["evaluation_date"] == {"date": "2025-06-10", "source": "profile"}
    md = (reports / first["report"]).read_text(encoding="utf-8")
    assert "evaluation date 2025-03-10 (evaluation time)" in md
    assert "ended 2024-05-01, 10.3 months before 2025-03-10" in md
    # the batch's report is the one `cds evaluate` writes at the same time
    assert md == evaluate(write(tmp_path, PROFILE), "--format", "markdown", "--timestamp", AT).stdout


def test_public_api_defaults_to_its_evaluation_time(monkeypatch):
    ev = cds.evaluate(PROFILE, evaluated_at=AT)
    assert ev.evaluated_at == AT and ev.evaluation_date == "2025-03-10"
    assert ev.facts["months_since_bcma_therapy"].value == 10.3
    report = cds.build_report(ev)  # stamped with the evaluation's instant
    assert report.evaluated_at == AT and report.evaluation_date.source == "evaluation_time"
    with pytest.raises(ValueError, match="not the instant the evaluation was made at"):
        cds.build_report(ev, "2025-06-10T00:00:00Z")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH_2025_03_10)
    ev = cds.evaluate(PROFILE)  # no time given: SOURCE_DATE_EPOCH (else now)
    assert ev.evaluated_at == "2025-03-10T00:00:00Z" and ev.facts["months_since_bcma_therapy"].value == 10.3


def test_the_library_evaluator_without_a_time_leaves_the_date_unknown(evaluator):
    """Evaluator.evaluate(profile) without a time: no date to count to, unknown (never a guess); said in the report."""
    ev = evaluator.evaluate(evaluator.parse(PROFILE))
    assert ev.evaluation_date is None and ev.facts["months_since_bcma_therapy"].value is None
    report = cds.build_report(ev, AT)
    assert report.to_dict()["evaluation_date"] == {"date": None, "source": "not_given"}
    assert "not given" in cds.render(report, "markdown").split("# Appendix", 1)[0]


# ---------------------------------------------------------------------- the service (a real server)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # 2026-03-01T00:00:00Z: after every date of the FHIR test bundles
    s = Server(tmp_path_factory.mktemp("serve-date"), "--no-auth", "--workers", "1", env={"SOURCE_DATE_EPOCH": "1772323200"})
    yield s
    assert s.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def test_service_evaluate_counts_months_to_its_evaluation_time(server):
    r = server.client.post("/api/evaluate?format=json", content=json.dumps(PROFILE).encode())
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["evaluated_at"] == "2026-03-01T00:00:00Z"
    assert report["evaluation_date"] == {"date": "2026-03-01", "source": "evaluation_time"}
    assert fact(report, "months_since_bcma_therapy")["value"] == 22.0
    # the stored report, rendered again from the stored profile at the stored time: the same date and facts
    token = r.headers["link"].split("/reports/", 1)[1].split(">", 1)[0]
    md = server.client.get(f"/reports/{token}?format=markdown")
    assert md.status_code == 200 and "evaluation date 2026-03-01 (evaluation time)" in md.text
    assert "ended 2024-05-01, 22.0 months before 2026-03-01" in md.text


def test_service_rejects_a_date_after_its_evaluation_time(server):
    future = {**PROFILE, "prior_lines": [*PROFILE["prior_lines"][:2], {**PROFILE["prior_lines"][2], "end_date": "2026-05-01"}]}
    r = server.client.post("/api/evaluate?format=json", content=json.dumps(future).encode())
    assert r.status_code == 422
    assert r.json()["field"] == "prior_lines[2].end_date" and "after the evaluation time 2026-03-01" in r.json()["error"]


def test_patient_view_imports_and_counts_to_its_evaluation_time(server):
    from live_server import ROOT

    from cds.apps.http.hooks import prefetch_for

    bundle = json.loads((ROOT / "tests" / "fhir" / "cases" / "relapse_on_bispecific.json").read_text(encoding="utf-8"))
    body = {
        "hook": "patient-view",
        "hookInstance": "0b6f7c1e-3d2a-4c59-8e61-2f4a9d7b3c10",
        "context": {"userId": "Practitioner/example", "patientId": "1288992"},
        "prefetch": prefetch_for(bundle),  # a collection Bundle without timestamp: the evaluation time's date
    }
    r = server.client.post("/cds-services/mm-treatment-sequencing", json=body)
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    report = server.client.get(card["links"][0]["url"], params={"format": "json"}).json()
    assert report["evaluated_at"] == "2026-03-01T00:00:00Z"
    assert report["inputs"]["evaluation_date"] == "2026-03-01"  # the importer's date: the evaluation time's
    months = fact(report, "months_since_bcma_therapy")  # teclistamab ended 2025-12-01
    assert months["known"] and months["value"] == 3.0


class _CaseForm(HTMLParser):
    """The fields a browser would submit from the case form (action "/"), as (name, value) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._select_value: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._in_form = a.get("action") == "/"
        if not self._in_form or ("name" not in a and tag != "option"):
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "file"):
                self.fields.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select, self._select_value = a["name"], None
        elif tag == "option" and self._select is not None and ("selected" in a or self._select_value is None):
            self._select_value = a.get("value", "")
        elif tag == "textarea":
            self._textarea, self._text = a["name"], ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "select" and self._select is not None:
            self.fields.append((self._select, self._select_value or ""))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text))
            self._textarea = None


def test_case_pages_count_months_to_their_evaluation_time(server):
    """The web path as a browser takes it: the form, an uploaded profile prefilling it, Evaluate, the case page."""
    import re

    with live_server.client(server.url, timeout=60, follow_redirects=False) as c:
        token = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text).group(1)
        filled = c.post(
            "/upload", data={"csrf": token}, files={"file": ("p.json", json.dumps(PROFILE).encode(), "application/json")}
        )
        assert filled.status_code == 200, filled.text
        form = _CaseForm()
        form.feed(filled.text)
        body = urlencode([*form.fields, ("action", "evaluate")]).encode()
        r = c.post("/", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 303, r.text
        page = c.get(r.headers["location"]).text
        assert "evaluation date 2026-03-01 (evaluation time)" in page
        case_id = r.headers["location"].split("/cases/", 1)[1].split("?", 1)[0]
        report = c.get(f"/cases/{case_id}/report", params={"format": "json"}).json()
    assert report["evaluation_date"] == {"date": "2026-03-01", "source": "evaluation_time"}
    assert fact(report, "months_since_bcma_therapy")["value"] == 22.0
