"""Usage errors are bad input like any other: one `error:` line naming the problem, exit 2 (issue 10, defect 10).

typer used to print a six-line panel (Usage:, Try ..., a box) for a missing argument, an unknown
option, a bad --format or --jobs 0; a long value was echoed whole, wrapped over many lines.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import PROFILES, ROOT
from typer.testing import CliRunner

from cds.apps.cli import app

runner = CliRunner()
CASE = str(PROFILES / "frail_ecog3.json")


def one_usage_line(stderr: str, command: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    (line,) = lines
    assert line.startswith("error: ") and line.endswith(f"(see: {command} --help)"), line
    assert "Usage:" not in line and "\u256d" not in line and "Traceback" not in line
    return line


@pytest.mark.parametrize(
    "args, command, says",
    [
        (["evaluate"], "cds evaluate", "Missing argument"),
        (["evaluate", CASE, "--format", "docx"], "cds evaluate", "'docx' is not one of 'markdown', 'html', 'json', 'pdf'"),
        (["batch", CASE, "--jobs", "0"], "cds batch", "'--jobs'"),
        (["batch", CASE, "--jobs", "many"], "cds batch", "'--jobs'"),
        (["batch", CASE, "--jobs", "257"], "cds batch", "Input should be less than or equal to 256"),
        (["diff-rules", "a", "b"], "cds diff-rules", "Missing argument"),
        (["evaluate", CASE, "--no-such-option"], "cds evaluate", "No such option: --no-such-option"),
        (["no-such-command"], "cds", "No such command 'no-such-command'"),
        (["rules", "show"], "cds rules show", "Missing argument"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args, command, says):
    result = runner.invoke(app, args, prog_name="cds")
    assert result.exit_code == 2, result.output
    assert says in one_usage_line(result.stderr, command)
    assert result.stdout == ""


def test_a_long_or_hostile_option_value_is_cut_and_escaped():
    value = "A\n\x1b[2J\u202e" + "x" * 10_000
    result = runner.invoke(app, ["evaluate", CASE, "--format", value], prog_name="cds")
    assert result.exit_code == 2
    line = one_usage_line(result.stderr, "cds evaluate")
    assert "\x1b" not in line and "\u202e" not in line and len(line) < 300, line
    assert "'A\\n\\x1b[2J\\u202exxx" in line and "\u2026'" in line and "is not one of" in line


def test_the_installed_command_says_it_in_one_line_too():
    """The console script (not only typer's test runner): stderr is exactly one line, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "cds", "batch", CASE, "--jobs", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    one_usage_line(proc.stderr, "python -m cds batch")


def test_help_and_no_arguments_still_show_the_help():
    assert runner.invoke(app, ["evaluate", "--help"]).exit_code == 0
    bare = runner.invoke(app, [])
    assert bare.exit_code == 2 and "Usage" in bare.output  # no command: the help, as before
