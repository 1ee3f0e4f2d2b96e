"""The PDF (headless Chromium's print of the HTML report): page 1 is the whole summary, for every case.

Every case in patient_profiles/ (the committed examples among them) is printed
to PDF with the real engine; pdftotext (Debian's poppler-utils, installed by
.ci/run) reads page 1 and page 2: page 1 ends with the summary's last line and
page 2 starts the appendix, so the summary occupies exactly one A4 page. For
four contrasting cases page 1 is also rendered to PNG with pdftoppm and saved
as tests/artifacts/page1-<case>.png to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PROFILES, ROOT, RULES, case_names
from typer.testing import CliRunner

from cds.api import build_report, render, summarize
from cds.apps.cli import app
from cds.report.examples import EXAMPLE_CASES
from cds.report.pdf import PdfPrinter

pytestmark = pytest.mark.browser

FIXED = "2026-01-01T00:00:00Z"
ARTIFACTS = ROOT / "tests" / "artifacts"
# contrasting page 1s: referral with facts to obtain; penta-refractory with a lowered score and many
# exclusions; frail (ECOG 3), CAR-T excluded; first relapse, whose key figure another source contradicts
SCREENSHOT_CASES = ("unknowns_not_assessed", "penta_refractory_after_teclistamab", "frail_ecog3", "pollux_type_early_relapse")
A4_POINTS = (595, 842)


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} not found: the PDF tests need Debian's poppler-utils (apt-get install poppler-utils; .ci/run installs it)"
        )
    return found


def page_text(pdf: Path, page: int) -> str:
    proc = subprocess.run(
        [tool("pdftotext"), "-f", str(page), "-l", str(page), str(pdf), "-"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def all_pages(pdf: Path) -> list[str]:
    """The text of every page (pdftotext ends each page with a form feed)."""
    proc = subprocess.run([tool("pdftotext"), str(pdf), "-"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [" ".join(page.split()) for page in proc.stdout.split("\f")[:-1]]


def pdf_info(pdf: Path) -> dict[str, str]:
    proc = subprocess.run([tool("pdfinfo"), str(pdf)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)


@pytest.fixture(scope="module")
def printed(evaluator, tmp_path_factory):
    """Every case printed once, by one browser: case -> (report, PDF path)."""
    folder = tmp_path_factory.mktemp("pdf")
    out = {}
    with PdfPrinter() as printer:
        for case in case_names():
            report = build_report(evaluator.evaluate(evaluator.load(PROFILES / f"{case}.json")), FIXED)
            path = folder / f"{case}.pdf"
            path.write_bytes(printer.print_html(render(report, "html"), report.evaluated_at))
            out[case] = (report, path)
    return out


def test_every_example_is_a_case():
    assert set(EXAMPLE_CASES) <= set(case_names())


@pytest.mark.parametrize("case", case_names())
def test_the_summary_is_exactly_page_one(printed, case):
    report, pdf = printed[case]
    first, second = page_text(pdf, 1), page_text(pdf, 2)
    assert first.lower().startswith("tumor board summary") and f"Patient {report.patient_id}" in first[:200], first[:200]
    assert "Full report from page 2" in first, f"{case}: the summary does not fit on page 1"
    assert "Full report from page 2" not in second
    assert second.startswith("Appendix: the full report"), f"{case}: page 2 is not the start of the appendix: {second[:200]}"
    # every page carries the patient ID and "page N of M"
    pages = int(pdf_info(pdf)["Pages"])
    texts = all_pages(pdf)
    assert len(texts) == pages
    for n, text in enumerate(texts, 1):
        assert f"Patient {report.patient_id}" in text and f"page {n} of {pages}" in text, f"{case}: page {n}"


@pytest.mark.parametrize("case", SCREENSHOT_CASES)
def test_page_one_shows_the_decision_and_is_saved_as_png(printed, case):
    report, pdf = printed[case]
    summary = summarize(report)
    first = page_text(pdf, 1)
    assert report.patient_id in first
    # the title without its examples: a long title wraps beside the score, which pdftotext reads in between
    assert summary.options[0].short_title in first, "the rank-1 option is on page 1"
    for fact in summary.facts_to_obtain:
        assert fact.description in first, f"fact to obtain {fact.description!r} is on page 1"
    if not summary.facts_to_obtain:
        assert "no missing fact would change the top option" in first
    for o in summary.options:
        if o.key_figure is not None:
            assert f"{o.key_figure.measure} {o.key_figure.value}" in first
            if o.key_figure.conflicts:
                # every conflict and erratum in the one mark; a line may wrap inside a range ("80–" / "90%"),
                # which pdftotext reads as a space, so spaces are not compared
                marked = f"sources differ: {'; '.join(o.key_figure.conflicts)}"
                assert marked.replace(" ", "") in first.replace(" ", ""), "a contradicted key figure is marked on page 1"
    for x in summary.excluded:
        assert x.short_title in first
    size = re.findall(r"[\d.]+", pdf_info(pdf)["Page size"])[:2]
    assert [round(float(v)) for v in size] == list(A4_POINTS)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / f"page1-{case}"
    for old in ARTIFACTS.glob(f"page1-{case}*.png"):
        old.unlink()
    proc = subprocess.run(
        [tool("pdftoppm"), "-f", "1", "-l", "1", "-r", "110", "-png", "-singlefile", str(pdf), str(stem)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    png = stem.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000


def test_pdf_dates_are_the_evaluation_time(printed):
    _, pdf = printed["frail_ecog3"]
    info = pdf_info(pdf)
    assert "2026" in info["CreationDate"] and "Jan  1 00:00:00" in info["CreationDate"]


# ------------------------------------------------------------------ the command line


runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [*args, "--rules", str(RULES), "--timestamp", FIXED])


def test_evaluate_writes_a_pdf_from_the_suffix(tmp_path):
    out = tmp_path / "report.pdf"
    result = cli("evaluate", str(PROFILES / "frail_ecog3.json"), "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:5] == b"%PDF-" and int(pdf_info(out)["Pages"]) > 1
    assert "Patient TB-" in page_text(out, 1)
