"""The case pages in a real browser: Playwright for Python driving Debian's Chromium against a real `cds serve`.

The server is a subprocess on an ephemeral 127.0.0.1 port with its own SQLite store, started and
stopped by PID (tests/live_server.py). No browser is downloaded (`executable_path` is Debian's
chromium, installed by .ci/run); axe-core comes from npm (tests/axe, `npm ci` in .ci/run).
Every page load records the browser's console messages and every request it makes: any console
message, and any request to another origin, fails the test. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import live_server
import pytest
from live_server import Server
from rule_folders import with_weight

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
FHIR_BUNDLE = ROOT / "tests" / "fhir" / "cases" / "relapse_on_bispecific.json"
BOARD_DATE = "2026-12-09"
TIMEOUT_MS = 90_000  # bounds a hang only: the machine is shared and loaded
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions"]  # fmt: skip


def _chromium() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's chromium is not installed: apt-get install -y chromium (.ci/run does it)"
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    srv = Server(tmp, "--no-auth", "--workers", "1")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page whose console messages and requests are recorded."""

    def __init__(self, browser, origin: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.origin = origin
        self.console: list[str] = []
        self.requests: list[str] = []
        self.allowed: list[str] = []  # console messages a test expects (Chromium logs every 4xx document)
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def check(self) -> None:
        unexpected = [m for m in self.console if not any(a in m for a in self.allowed)]
        assert unexpected == [], f"console messages: {unexpected}"
        foreign = [u for u in self.requests if not (u.startswith(self.origin + "/") or u == self.origin)]
        assert foreign == [], f"requests that left the origin {self.origin}: {foreign}"

    def axe(self) -> None:
        assert AXE.exists(), f"axe-core is not installed at {AXE}: run `npm ci --prefix tests/axe` (.ci/run does it)"
        # the page's CSP forbids scripts: axe is evaluated through the DevTools protocol, which CSP does not govern
        self.page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
        result = self.page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], "axe-core: serious or critical violations:\n" + "\n".join(bad)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser, server):
    w = Watched(browser, server.url)
    try:
        yield w
    finally:
        w.close()


def _line(page, n: int):
    return page.get_by_role("group", name=f"Line {n}", exact=True)


def _agent(line, n: int):
    return line.get_by_role("group", name=f"Agent {n}", exact=True)


def _fill_patient(page, patient_id: str) -> None:
    page.get_by_label("Tumor-board date").fill(BOARD_DATE)
    page.get_by_label("Patient ID").fill(patient_id)
    page.get_by_label("Age", exact=True).fill("58")
    page.get_by_label("ECOG performance status").select_option("1")
    page.get_by_label("Frailty").select_option("fit")
    page.get_by_label("Creatinine clearance (mL/min)").fill("82")
    page.get_by_label("Dialysis").select_option("no")
    page.get_by_label("Extramedullary disease").select_option("no")
    page.get_by_label("Cytogenetics tested").select_option("tested")
    page.get_by_label("gain(1q)", exact=True).check()  # not the "gain(1q) probe tested" box of a partial panel
    page.get_by_label("Access to a CAR-T centre").select_option("yes")
    page.get_by_label("Organ function adequate for CAR-T").select_option("yes")
    page.get_by_label("Active serious infection").select_option("no")
    page.get_by_label("Prior allogeneic transplant").select_option("no")
    page.get_by_label("Soluble BCMA (ng/mL)").fill("120")


def _agents(line, rows: list[tuple[str, str]]) -> None:
    for k, (name, refractory) in enumerate(rows, 1):
        a = _agent(line, k)
        a.get_by_label("Agent", exact=True).fill(name)
        a.get_by_label("Refractory").select_option(label=refractory)


def test_tcr_patient_by_labels_ranks_car_t_first(watched, server):
    page = watched.page
    page.goto(server.url + "/")
    _fill_patient(page, "WEB-TCR-1")
    line1 = _line(page, 1)
    line1.get_by_label("Regimen").fill("VRd")  # by its label alone: expanded on submit
    line1.get_by_label("Autologous transplant (ASCT)").select_option("yes")
    page.get_by_role("button", name="Add line").click()
    line2 = _line(page, 2)
    line2.get_by_label("Regimen").fill("DKd")
    _agents(line2, [("daratumumab", "Refractory"), ("carfilzomib", "Refractory"), ("dexamethasone", "Not refractory")])
    line2.get_by_label("Best response").select_option("PR")
    line2.get_by_label("Stop reason").select_option("progression")
    page.get_by_role("button", name="Add line").click()
    line3 = _line(page, 3)
    _agents(line3, [("pomalidomide", "Refractory"), ("dexamethasone", "Not refractory")])
    assert _line(page, 1).get_by_label("Regimen").input_value() == "VRd"  # kept across the re-render
    assert page.get_by_label("Patient ID").input_value() == "WEB-TCR-1"
    watched.shot("web-form")
    watched.axe()
    page.get_by_role("button", name="Evaluate").first.click()
    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}\?version=1$"))
    first = page.locator("ol.top > li").first
    assert "BCMA-directed CAR-T" in first.locator(".top-title").inner_text()
    assert first.locator(".rank").inner_text().strip() == "1"
    assert "triple-class refractory" in page.locator(".synopsis").inner_text()
    expanded = page.locator(".expanded-lines").inner_text()
    assert "VRd = bortezomib, lenalidomide, dexamethasone" in expanded, expanded
    for name in ("Full report", "PDF", "JSON", "Edit"):
        assert page.get_by_role("link", name=name, exact=True).count() == 1
    watched.shot("web-summary")
    watched.axe()
    page.get_by_role("link", name="Full report", exact=True).click()
    assert "tumor board summary" in page.locator("body").inner_text().lower()
    watched.check()


def test_invalid_form_shows_every_problem_beside_its_field(watched, server):
    page = watched.page
    page.goto(server.url + "/")
    page.get_by_label("Patient ID").fill("WEB-BAD-1")
    page.get_by_label("Age", exact=True).fill("sixty")
    page.get_by_label("Creatinine clearance (mL/min)").fill("-5")
    line1 = _line(page, 1)
    _agents(line1, [("bortezomibb", "Refractory"), ("lenalidomide", "Unknown")])
    line1.get_by_label("Start date").fill("2024-13-01")
    # bad input is a 4xx (422) page, which Chromium logs as a failed load: the only message allowed
    watched.allowed.append("Failed to load resource: the server responded with a status of 422")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Evaluate").first.click()
    assert posted.value.status == 422
    page.wait_for_selector(".problems")
    expected = {
        "f-age": "expected an integer",
        "f-ecog": "required field is missing",
        "f-creatinine_clearance_ml_min": "out of range",
        "f-prior_lines-0-agents-0": "unknown drug 'bortezomibb'",
        "f-prior_lines-0-agents-1-refractory": "refractoriness is recorded for other agents",
        "f-prior_lines-0-start_date": "not a valid month",
    }
    for input_id, text in expected.items():
        field = page.locator(f".field:has(#{input_id})")
        error = field.locator(".error")
        assert error.count() >= 1, f"no problem beside {input_id}"
        assert text in error.first.inner_text(), (input_id, error.first.inner_text())
        assert page.locator(f"#{input_id}").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Age", exact=True).input_value() == "sixty"  # the values are kept
    assert _agent(line1, 1).get_by_label("Agent", exact=True).input_value() == "bortezomibb"
    count = page.locator(".problems li").count()
    assert count == len(expected), page.locator(".problems").inner_text()
    watched.shot("web-errors")
    watched.axe()
    watched.check()
    listed = server.client.get("/cases").text
    assert "WEB-BAD-1" not in listed  # nothing was stored


def test_upload_fhir_bundle_prefills_the_form(watched, server):
    page = watched.page
    page.goto(server.url + "/")
    page.get_by_label("Upload profile or FHIR bundle").set_input_files(str(FHIR_BUNDLE))
    page.get_by_role("button", name="Upload and prefill").click()
    page.wait_for_selector(".notice")
    expected = json.loads(FHIR_BUNDLE.with_name(FHIR_BUNDLE.stem + ".expected.json").read_text())["profile"]
    assert page.get_by_label("Patient ID").input_value() == expected["patient_id"]
    assert page.get_by_label("Age", exact=True).input_value() == str(expected["age"])
    assert page.locator(".field:has(#f-patient_id) .imported").count() == 1
    lines = expected["prior_lines"]
    assert page.locator("fieldset.line").count() == len(lines)
    first_agent = _agent(_line(page, 1), 1).get_by_label("Agent", exact=True).input_value()
    assert first_agent == lines[0]["agents"][0]
    assert "Prefilled from the FHIR Bundle" in page.locator(".notice").inner_text()
    watched.shot("web-upload")
    watched.axe()
    # what FHIR could not give is entered by hand; the case is then evaluated
    if not page.get_by_label("ECOG performance status").input_value():
        page.get_by_label("ECOG performance status").select_option("1")
    page.get_by_label("Tumor-board date").fill(BOARD_DATE)
    page.get_by_role("button", name="Evaluate").first.click()
    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}\?version=1$"))
    assert page.locator("ol.top > li").count() >= 1
    watched.check()


def test_keyboard_only(watched, server):
    """Every required field and a line reached with Tab, typed, chosen with keys; Enter evaluates."""
    page = watched.page
    page.goto(server.url + "/")

    def tab_to(element_id: str, limit: int = 200) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("f-patient_id")
    page.keyboard.type("WEB-KEY-1")
    tab_to("f-age")
    page.keyboard.type("71")
    tab_to("f-ecog")
    page.keyboard.press("ArrowDown")  # "Choose" -> 0
    page.keyboard.press("ArrowDown")  # -> 1
    tab_to("f-prior_lines-0-regimen")
    page.keyboard.type("KRd")
    tab_to("f-prior_lines-0-agents-0")
    page.keyboard.type("carfilzomib")
    tab_to("f-prior_lines-0-agents-0-refractory")
    page.keyboard.press("ArrowDown")  # Unknown -> Refractory
    tab_to("f-prior_lines-0-agents-1")
    page.keyboard.type("lenalidomide")
    tab_to("f-prior_lines-0-agents-1-refractory")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # -> Not refractory
    tab_to("f-prior_lines-0-agents-2")
    page.keyboard.type("dexamethasone")
    tab_to("f-prior_lines-0-agents-2-refractory")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    tab_to("f-prior_lines-0-start_date")
    page.keyboard.type("2024-02")
    page.keyboard.press("Enter")  # the form's first submit button: Evaluate
    page.wait_for_url(re.compile(r"/cases/[0-9a-f-]{36}\?version=1$"))
    assert page.locator("h1").inner_text() == "Patient WEB-KEY-1"
    focus_ring = page.evaluate(
        "() => { const a = document.querySelector('nav.links a'); a.focus(); return getComputedStyle(a).outlineStyle; }"
    )
    assert focus_ring != "none"
    watched.check()


def test_http_protections(server):
    """CSRF on every form post, cookies scripts cannot read, no caching, a strict CSP: checked over HTTP."""
    c = live_server.client(server.url, timeout=60)
    try:
        r = c.get("/")
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("samesite", "SameSite")
        assert r.headers["cache-control"] == "no-store"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "form-action 'self'" in csp
        forms = re.findall(r"<form[^>]*method=\"post\"", r.text)
        tokens = re.findall(r'name="csrf" value="([^"]+)"', r.text)
        assert len(forms) == len(tokens) == 2
        assert tokens[0] == c.cookies["cds_csrf"]
        body = {"patient_id": "WEB-CSRF", "age": "60", "ecog": "1", "prior_lines[0].regimen": "KRd"}
        assert c.post("/", data={**body, "csrf": "forged"}).status_code == 403
        c2 = live_server.client(server.url, timeout=60)  # no cookie at all
        try:
            assert c2.post("/", data={**body, "csrf": tokens[0]}).status_code == 403
        finally:
            c2.close()
        profile = ROOT / "patient_profiles" / "fit_tcr_bcma_naive.json"
        files = {"file": (profile.name, profile.read_bytes(), "application/json")}
        assert c.post("/upload", data={"csrf": "forged"}, files=files).status_code == 403
        for content, status, text in (
            (b"{not json", 422, "not valid JSON"),
            (b"\xff\xfe", 422, "not UTF-8"),
            (b" " * (1024 * 1024 + 1), 413, "larger than 1 MiB"),
            (b'{"resourceType": "Bundle", "type": "collection", "entry": []}', 422, "FHIR Bundle cannot be imported"),
        ):
            bad = c.post("/upload", data={"csrf": tokens[0]}, files={"file": ("x.json", content, "application/json")})
            assert bad.status_code == status and text in bad.text, (content[:20], bad.status_code, bad.text[-3000:])
        up = c.post("/upload", data={"csrf": tokens[0]}, files=files)
        assert up.status_code == 200 and 'value="TB-001"' in up.text and "Prefilled from the profile" in up.text
        assert up.text.count('class="imported"') >= 10  # every value the file gave is marked
        ok = c.post("/", data={**body, "csrf": tokens[0]})
        assert ok.status_code == 303, ok.text[:500]
        summary = c.get(ok.headers["location"])
        assert summary.status_code == 200 and "Patient WEB-CSRF" in summary.text
        assert summary.headers["cache-control"] == "no-store"
        case_path = ok.headers["location"].split("?")[0]
        # a case that came through the API is listed too, and its edit form starts from its validated profile
        api = c.post("/api/evaluate", content=(ROOT / "patient_profiles" / "frail_ecog3.json").read_bytes())
        assert api.status_code == 200, api.text[:300]
        api_pid = json.loads((ROOT / "patient_profiles" / "frail_ecog3.json").read_text())["patient_id"]
        listed = c.get("/cases").text
        link = re.search(rf'<a href="(/cases/[0-9a-f-]{{36}})">{re.escape(api_pid)}</a>', listed)
        assert link, listed[:2000]
        api_edit = c.get(f"{link.group(1)}/edit")
        assert api_edit.status_code == 200 and f'value="{api_pid}"' in api_edit.text
        case_id = case_path.rsplit("/", 1)[1]
        edit = c.get(f"{case_path}/edit")
        assert edit.status_code == 200 and 'value="WEB-CSRF"' in edit.text and f'value="{case_id}"' in edit.text
        again = c.post("/", data={**body, "age": "61", "case_id": case_id, "csrf": tokens[0]})
        assert again.status_code == 303 and again.headers["location"] == f"{case_path}?version=2"  # a version, not an overwrite
        assert "version 1" in c.get(again.headers["location"]).text
        for fmt, media in (("json", "application/json"), ("pdf", "application/pdf"), ("markdown", "text/markdown")):
            rep = c.get(f"{case_path}/report", params={"format": fmt})
            assert rep.status_code == 200 and rep.headers["content-type"].startswith(media), (fmt, rep.status_code)
            assert rep.headers["cache-control"] == "no-store"
    finally:
        c.close()


def test_cases_list_board_and_restart(watched, server, browser, tmp_path_factory):
    page = watched.page
    page.goto(f"{server.url}/cases?date={BOARD_DATE}")
    rows = page.locator("table.cases tbody tr")
    assert rows.count() >= 2, page.locator("main").inner_text()
    text = page.locator("table.cases").inner_text()
    assert "WEB-TCR-1" in text and "triple-class refractory" in text
    headers = [h.strip() for h in page.locator("table.cases thead th").all_inner_texts()]
    assert headers == ["Patient", "Synopsis", "Top option", "Availability", "Facts to obtain", "Last evaluated", "Rule set"]
    n_rows = rows.count()
    assert page.get_by_role("navigation", name="Tumor-board dates").get_by_role("link", name=BOARD_DATE).count() == 1
    bad_date = server.client.get("/cases", params={"date": "2026-13-45"})
    assert bad_date.status_code == 422 and "is not a date" in bad_date.text and "<tbody>" not in bad_date.text
    tcr_path = rows.filter(has_text="WEB-TCR-1").get_by_role("link", name="WEB-TCR-1").get_attribute("href")
    page.get_by_role("button", name="Re-evaluate under the current rule set").click()
    page.wait_for_selector("[role=status]")
    assert page.locator(".badge.good", has_text="unchanged").count() == rows.count()  # same rule set: no change
    watched.shot("web-cases")
    watched.axe()
    page.get_by_role("link", name="Printable board").click()
    assert "WEB-TCR-1" in page.locator("body").inner_text()
    watched.check()
    before = sorted(set(re.findall(r"WEB-[A-Z]+-\d", text)))
    report = server.client.get(f"{tcr_path}/report", params={"format": "json"}).json()
    server.stop()
    # restart on the same store: the cases are still listed
    again = Server(server.tmp, "--no-auth", "--workers", "1")
    try:
        listed = again.client.get("/cases", params={"date": BOARD_DATE}).text
        assert sorted(set(re.findall(r"WEB-[A-Z]+-\d", listed))) == before
    finally:
        again.stop()
    # restart under a rule set that lifts the runner-up above the top option: the list shows the change on demand
    first, second = report["options"][0], report["options"][1]
    rule = next(r for r in second["rationale"] if r["kind"] == "prefer" and r["weight"] > 0)
    rules = with_weight(
        tmp_path_factory.mktemp("rules") / "rules", rule["rule_id"], rule["weight"] + first["score"] - second["score"] + 50
    )
    changed = Server(server.tmp, "--no-auth", "--workers", "1", "--rules", str(rules))
    try:
        w = Watched(browser, changed.url)
        try:
            w.page.goto(f"{changed.url}/cases?date={BOARD_DATE}")
            assert w.page.locator(".badge", has_text="older rule set").count() == n_rows
            w.page.get_by_role("button", name="Re-evaluate under the current rule set").click()
            w.page.wait_for_selector("[role=status]")
            row = w.page.locator("table.cases tbody tr", has_text="WEB-TCR-1")
            assert row.locator(".badge", has_text="ranking would change").count() == 1
            row.locator("summary").click()
            diff = row.locator("details").inner_text()
            assert f"{first['id']} \u2192 {second['id']}" in diff, diff
            w.shot("web-cases-rules-changed")
            w.check()
        finally:
            w.close()
    finally:
        changed.stop()
