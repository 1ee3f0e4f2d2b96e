"""`cds batch --reports/--site` and `cds board`: one report per record, and the week's list on one table."""

from __future__ import annotations

import json
import re

import pytest
from conftest import PROFILES, RULES, load_case
from typer.testing import CliRunner

from cds.apps.cli import app

runner = CliRunner()
FIXED = "2026-01-01T00:00:00Z"
SITE = RULES / "catalog" / "site_default.yaml"


def cli(*args):
    return runner.invoke(app, [*args, "--rules", str(RULES), "--timestamp", FIXED])


@pytest.fixture
def week(tmp_path):
    """A JSONL list: two records with the same patient ID, an invalid record, a referral case."""
    same = load_case("frail_ecog3")
    lines = [same, same, {"patient_id": "X-9", "age": 60}, load_case("unknowns_not_assessed")]
    path = tmp_path / "week.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in lines), encoding="utf-8")
    return path


def result_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_batch_writes_one_report_per_record_without_overwriting(week, tmp_path):
    out, reports = tmp_path / "r.jsonl", tmp_path / "reports"
    result = cli("batch", str(week), "-o", str(out), "--reports", str(reports), "-q", "-j", "1")
    assert result.exit_code == 1, result.stderr  # one invalid record
    rows = result_lines(out)
    names = [r.get("report") for r in rows]
    assert names == ["TB-002.line1.html", "TB-002.line2.html", None, "TB-017.line4.html"]
    assert sorted(p.name for p in reports.iterdir()) == sorted(n for n in names if n)
    html = (reports / "TB-017.line4.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "Best option available here:" in html


def test_batch_reports_in_markdown(week, tmp_path):
    reports = tmp_path / "md"
    result = cli("batch", str(week), "-o", str(tmp_path / "r.jsonl"), "--reports", str(reports), "--format", "markdown", "-q")
    assert result.exit_code == 1
    assert (reports / "TB-002.line1.md").read_text(encoding="utf-8").startswith("# Tumor-board summary: patient TB-002")


def test_batch_site_gives_the_top_options_availability(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        "name: No CAR-T here\ndescription: test\ncar_t_delivered_on_site: false\ncar_t_referral_possible: false\n"
        "availability:\n  bcma_car_t: {available: false, note: No CAR-T product here.}\n",
        encoding="utf-8",
    )
    out = tmp_path / "r.jsonl"
    result = cli("batch", str(PROFILES), "-o", str(out), "--site", str(site), "-q")
    assert result.exit_code == 0, result.stderr
    rows = {r["patient_id"]: r for r in result_lines(out)}
    assert rows["TB-001"]["top_option"] == "bcma_car_t" and rows["TB-001"]["top_option_availability"] == "unavailable"
    assert rows["TB-002"]["top_option_availability"] == "unknown"  # the bispecific: not stated by this site
    assert len({r["site_hash"] for r in rows.values()}) == 1
    plain = cli("batch", str(PROFILES), "-o", str(tmp_path / "p.jsonl"), "-q")
    assert plain.exit_code == 0 and "site_hash" not in result_lines(tmp_path / "p.jsonl")[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "pdf"], "--format: applies to the --reports files"),
        (["--reports", "@full"], "the folder is not empty"),
        (["--reports", "@missing/x"], "does not exist"),
        (["--reports", "@dir", "--format", "json"], "reports are html, markdown or pdf"),
    ],
)
def test_batch_report_options_are_checked_first(week, tmp_path, args, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.html").write_text("x", encoding="utf-8")
    subst = {"@full": str(full), "@missing/x": str(tmp_path / "missing" / "x"), "@dir": str(tmp_path / "new")}
    out = tmp_path / "r.jsonl"
    result = cli("batch", str(week), "-o", str(out), *[subst.get(a, a) for a in args])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not out.exists() and (full / "old.html").read_text(encoding="utf-8") == "x"


def test_board_html_one_row_per_patient_in_input_order_with_links(week, tmp_path):
    board, reports = tmp_path / "board.html", tmp_path / "reports"
    result = cli("board", str(week), "--output", str(board), "--reports", str(reports))
    assert result.exit_code == 0, result.stderr
    html = board.read_text(encoding="utf-8")
    rows = re.findall(r'<tr (?:class="invalid" )?id="row-(\d+)">(.*?)</tr>', html, re.S)
    assert [n for n, _ in rows] == ["1", "2", "3", "4"]
    assert "TB-002" in rows[0][1] and "line 1" in rows[0][1] and "line 2" in rows[1][1]
    assert "not evaluated" in rows[2][1] and "ecog" in rows[2][1]
    assert "Referral needed" in rows[3][1] and "Best available here: BCMA x CD3 bispecific antibody" in rows[3][1]
    assert "Access to a certified CAR-T centre" in rows[3][1]
    links = re.findall(r'<a href="([^"]+)">report</a>', html)
    assert links == ["reports/TB-002.line1.html", "reports/TB-002.line2.html", "reports/TB-017.line4.html"]
    assert all((tmp_path / link).is_file() for link in links)


def test_board_markdown_is_one_table(week, tmp_path):
    from markdown_it import MarkdownIt

    result = cli("board", str(week), "--site", str(SITE))
    assert result.exit_code == 0, result.stderr
    rendered = MarkdownIt("commonmark").enable("table").render(result.stdout)
    assert rendered.count("<table>") == 1 and rendered.count("<tr>") == 1 + 4


def test_board_refuses_json(week):
    result = cli("board", str(week), "--format", "json")
    assert result.exit_code == 2 and "the board is html, pdf or markdown" in result.stderr


@pytest.mark.browser
def test_board_and_batch_reports_as_pdf(week, tmp_path):
    board, reports = tmp_path / "board.pdf", tmp_path / "reports"
    result = cli("board", str(week), "--output", str(board), "--reports", str(reports))
    assert result.exit_code == 0, result.stderr
    assert board.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in reports.iterdir()) == ["TB-002.line1.pdf", "TB-002.line2.pdf", "TB-017.line4.pdf"]
    assert all(p.read_bytes()[:5] == b"%PDF-" for p in reports.iterdir())
    batch_reports = tmp_path / "batch"
    result = cli("batch", str(week), "-o", str(tmp_path / "r.jsonl"), "--reports", str(batch_reports), "--format", "pdf", "-q")
    assert result.exit_code == 1
    assert sorted(p.name for p in batch_reports.iterdir()) == ["TB-002.line1.pdf", "TB-002.line2.pdf", "TB-017.line4.pdf"]
