"""`cds evaluate`: the format from --output's suffix, a clear error when it disagrees with --format,
and the short summary on a terminal (a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from conftest import PROFILES, ROOT, RULES
from typer.testing import CliRunner

import schemas
from cds.apps.cli import app
from cds.apps.terminal import MAX_LINES
from cds.report.model import SCHEMA_VERSION

runner = CliRunner()
FIXED = "2026-01-01T00:00:00Z"
CASE = str(PROFILES / "unknowns_not_assessed.json")


def cli(*args):
    return runner.invoke(app, [*args, "--rules", str(RULES), "--timestamp", FIXED])


@pytest.mark.parametrize(
    "suffix, check",
    [
        (".html", lambda t: t.startswith("<!DOCTYPE html>")),
        (".md", lambda t: t.startswith("# Tumor-board summary")),
        (".json", lambda t: json.loads(t)["schema_version"] == SCHEMA_VERSION),
        (".HTM", lambda t: t.startswith("<!DOCTYPE html>")),
    ],
)
def test_format_follows_the_output_suffix(tmp_path, suffix, check):
    out = tmp_path / f"report{suffix}"
    result = cli("evaluate", CASE, "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert check(out.read_text(encoding="utf-8"))


def test_a_suffix_that_disagrees_with_format_is_exit_2(tmp_path):
    out = tmp_path / "report.html"
    result = cli("evaluate", CASE, "--format", "json", "--output", str(out))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == f"error: --output {out}: the suffix says html, but --format is json"
    assert not out.exists()


def test_a_txt_suffix_is_markdown(tmp_path):
    out = tmp_path / "report.txt"
    assert cli("evaluate", CASE, "--output", str(out)).exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("# Tumor-board summary")


def test_piped_output_is_the_markdown_report():
    result = cli("evaluate", CASE)
    assert result.exit_code == 0 and result.stdout.startswith("# Tumor-board summary")


def _run_on_a_terminal(args: list[str], columns: int = 100) -> str:
    """Run `python -m cds ARGS` with stdout on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "60", "TERM": "xterm"}
    env.pop("CDS_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "cds", *args], stdout=follower, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""
    text = b"".join(chunks).decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_on_a_terminal_a_short_summary_is_printed():
    text = _plain(_run_on_a_terminal(["evaluate", CASE, "--rules", str(RULES), "--timestamp", FIXED]))
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{text}"
    assert all(len(line) <= 100 for line in lines)
    assert lines[0].startswith("Patient TB-017")
    assert "Top options" in text and "Facts to obtain" in text and "Excluded" in text
    assert " 1  BCMA-directed CAR-T cell therapy" in text and "referral needed" in text
    assert "best option available here: BCMA x CD3 bispecific antibody" in text
    assert "Access to a certified CAR-T centre: if no:" in text
    assert "--format html --output report.html" in lines[-1]
    assert "&gt;" not in text and "&#39;" not in text and "\\-" not in text


def test_on_a_terminal_an_explicit_format_prints_the_report():
    text = _plain(_run_on_a_terminal(["evaluate", CASE, "--rules", str(RULES), "--timestamp", FIXED, "--format", "json"]))
    schemas.validate(schemas.REPORT, json.loads(text))


def test_a_pdf_is_not_written_to_a_terminal():
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "cds", "evaluate", CASE, "--format", "pdf", "--rules", str(RULES)],
        stdout=follower,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        timeout=120,
        text=True,
    )
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 2 and "give --output FILE.pdf" in proc.stderr


@pytest.mark.parametrize("name", ["report.docx", "summary.2026-12-01"])
def test_an_output_suffix_that_names_no_format_is_refused_without_format(tmp_path, name):
    """--output report.docx wrote Markdown that Word cannot open (newuser finding): exit 2, nothing written;
    with --format given, any name is the user's choice."""
    from conftest import PROFILES
    from typer.testing import CliRunner

    from cds.apps.cli import app

    out = tmp_path / name
    r = CliRunner().invoke(app, ["evaluate", str(PROFILES / "frail_ecog3.json"), "--output", str(out)])
    assert r.exit_code == 2 and "names no report format" in r.output and not out.exists()
    r = CliRunner().invoke(app, ["evaluate", str(PROFILES / "frail_ecog3.json"), "--output", str(out), "--format", "markdown"])
    assert r.exit_code == 0 and out.read_text(encoding="utf-8").startswith("#")
