"""The HTML report in a real browser: Debian's headless Chromium (/usr/bin/chromium, installed by .ci/run).

For each example case the report is rendered from the current code and opened
twice, offline:

* directly, with a screenshot saved to tests/artifacts/<case>.png (gitignored)
  to look at, and Chromium's console log on stderr scanned: the report has no
  scripts and a Content-Security-Policy that forbids every external resource,
  so any console message (a CSP violation, a failed load, a script error) is
  a failure;
* inside an iframe of a small probe page (file:// pages are same-origin with
  --allow-file-access-from-files) whose script measures, in the rendered
  DOM, that every ranked option and every exclusion is visible (non-zero box,
  not display:none / visibility:hidden / transparent), that the timeline SVG
  is drawn, that no resource was fetched and that nothing overflows
  sideways, then writes the result into its own DOM for --dump-dom.

No browser is downloaded; no network is used. A missing Chromium fails the
test with a message saying how to install it (no skip).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PROFILES, ROOT

from cds.api import build_report, option_heading, render
from cds.report.examples import EXAMPLE_CASES

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
FIXED = "2026-01-01T00:00:00Z"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
CONSOLE = re.compile(r":CONSOLE[:(\]].*")

PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<pre id="result">pending</pre>
<script>
function check(frame) {
  var out = {errors: []};
  try {
    var d = frame.contentDocument, w = frame.contentWindow;
    function vis(el) {
      var r = el.getBoundingClientRect(), s = w.getComputedStyle(el);
      return r.width > 0 && r.height > 0 && s.display !== "none" && s.visibility !== "hidden" && parseFloat(s.opacity) > 0;
    }
    function items(selector) {
      return Array.from(d.querySelectorAll(selector)).map(function (el) {
        var h = el.querySelector("h3");
        return {id: el.id, visible: vis(el) && !!h && vis(h), title: h ? h.textContent.replace(/\\s+/g, " ").trim() : ""};
      });
    }
    out.options = items("article[id^='option-']");
    out.excluded = items("article[id^='excluded-']");
    var svg = d.querySelector("figure.timeline svg");
    out.timeline = svg ? {visible: vis(svg), width: svg.getBoundingClientRect().width,
                          agents: svg.querySelectorAll("g.agent").length,
                          refractory: svg.querySelectorAll("g.agent.refractory").length} : null;
    out.resources = w.performance.getEntriesByType("resource").map(function (e) { return e.name; });
    out.scripts = d.scripts.length;
    out.overflow = d.documentElement.scrollWidth - d.documentElement.clientWidth;
    out.sections = Array.from(d.querySelectorAll("section[id] > h2")).filter(vis).map(function (h) { return h.parentElement.id; });
  } catch (e) { out.errors.push(String(e)); }
  document.getElementById("result").textContent = JSON.stringify(out);
}
</script>
<iframe src="report.html" style="width: 1280px; height: 900px; border: 0" onload="check(this)"></iframe>
</body></html>
"""


def chromium() -> str:
    if not CHROMIUM.is_file():
        found = shutil.which("chromium")
        pytest.fail(
            f"{CHROMIUM} not found{f' (there is {found})' if found else ''}: the browser tests need Debian's chromium "
            "package: apt-get install -y chromium (.ci/run installs it)",
            pytrace=False,
        )
    return str(CHROMIUM)


def run(args: list[str], profile_dir: Path) -> tuple[str, list[str]]:
    """Run headless Chromium; return stdout and the console messages it logged."""
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile_dir}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within 120 s: {' '.join(cmd)}", pytrace=False)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout, [m.group(0) for m in CONSOLE.finditer(proc.stderr)]


def render_case(case: str, directory: Path) -> tuple[dict, Path]:
    from conftest import RULES

    from cds.decide.pipeline import default_evaluator

    evaluator = default_evaluator(str(RULES))
    report = build_report(evaluator.evaluate(evaluator.load(PROFILES / f"{case}.json")), FIXED)
    path = directory / "report.html"
    path.write_text(render(report, "html"), encoding="utf-8")
    return report.to_dict(), path


def probe(directory: Path) -> tuple[dict, list[str]]:
    (directory / "probe.html").write_text(PROBE, encoding="utf-8")
    dom, console = run(
        ["--allow-file-access-from-files", "--window-size=1400,1000", "--dump-dom", (directory / "probe.html").as_uri()],
        directory / "chromium-probe",
    )
    m = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert m, f"the probe page did not report:\n{dom[:2000]}"
    text = html.unescape(m.group(1))
    assert text != "pending", "the report did not finish loading in the probe frame"
    return json.loads(text), console


def test_the_console_scan_catches_errors(tmp_path):
    """The harness itself: a page with a script error and a blocked resource is caught."""
    (tmp_path / "report.html").write_text(
        "<!DOCTYPE html><html><head>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '</head><body><img src="https://example.invalid/x.png"><h3>x</h3></body></html>',
        encoding="utf-8",
    )
    _, console = run(["--dump-dom", (tmp_path / "report.html").as_uri()], tmp_path / "chromium")
    assert console, "a CSP-blocked image must show up as a console message"


@pytest.mark.parametrize("case", EXAMPLE_CASES)
def test_report_renders_cleanly_in_chromium(case, tmp_path):
    report, path = render_case(case, tmp_path)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{case}.png"
    shot.unlink(missing_ok=True)
    _, console = run([f"--screenshot={shot}", "--window-size=1280,4000", path.as_uri()], tmp_path / "chromium-shot")
    assert not console, f"console messages while rendering {case}:\n" + "\n".join(console)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    result, console = probe(tmp_path)
    assert not console, f"console messages in the probe for {case}:\n" + "\n".join(console)
    assert not result["errors"], result["errors"]

    shown = {o["id"]: o for o in result["options"]}
    assert list(shown) == [f"option-{o['id']}" for o in report["options"]]
    for o in report["options"]:
        item = shown[f"option-{o['id']}"]
        assert item["visible"], f"ranked option {o['title']!r} is not visible"
        assert option_heading(o["title"], o["products_supported"]) in item["title"]
    gone = {x["id"]: x for x in result["excluded"]}
    assert list(gone) == [f"excluded-{x['id']}" for x in report["excluded"]]
    for x in report["excluded"]:
        item = gone[f"excluded-{x['id']}"]
        assert item["visible"], f"excluded option {x['title']!r} is not visible"
        assert x["title"] in item["title"]

    agents = sum(len(line["agents"]) for line in report["lines"])
    refractory = sum(a["refractory"] for line in report["lines"] for a in line["agents"])
    assert result["timeline"] == {
        "visible": True,
        "width": pytest.approx(result["timeline"]["width"]),
        "agents": agents,
        "refractory": refractory,
    }
    assert result["timeline"]["width"] > 300
    assert result["resources"] == [], "the report must not load anything"
    assert result["scripts"] == 0
    assert result["overflow"] <= 0, "the page overflows sideways at 1280 px"
    sections = list(dict.fromkeys(result["sections"]))  # page 1 (summary) has several headings
    assert sections[:6] == ["summary", "case", "options", "excluded", "unknowns", "conflicts"]
    assert "references" in sections
