"""The error hierarchy and exit codes (cds/errors.py): one code per kind of failure, from every command."""

from __future__ import annotations

import shutil

import pytest
from conftest import PROFILES, RULES
from typer.testing import CliRunner

from cds import errors
from cds.apps.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def broken_rules(tmp_path_factory):
    """A rule folder with one invalid rule (an unknown option): a RuleSetError wherever it is loaded."""
    folder = tmp_path_factory.mktemp("broken") / "rules"
    shutil.copytree(RULES, folder)
    path = folder / "eligibility.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("options: [bcma_car_t]", "options: [no_such_option]", 1), encoding="utf-8")
    return folder


def commands(rules: str, tmp: str) -> dict[str, list[str]]:
    case = str(PROFILES / "frail_ecog3.json")
    return {
        "evaluate": ["evaluate", case, "--rules", rules],
        "rules list": ["rules", "list", "--rules", rules],
        "rules show": ["rules", "show", "ELIG-CART-002", "--rules", rules],
        "rules check": ["rules", "check", "--rules", rules, "--profiles", str(PROFILES)],
        "batch": ["batch", case, "--rules", rules, "-q", "-o", f"{tmp}/r.jsonl"],
        "diff-rules": ["diff-rules", str(RULES), rules, case, "-q"],
        "examples": ["examples", "--check", "--profiles", str(PROFILES), "--rules", rules],
    }


@pytest.mark.parametrize("command", list(commands("", "")))
def test_an_invalid_rule_set_exits_the_same_from_every_command(broken_rules, tmp_path, command):
    result = runner.invoke(app, commands(str(broken_rules), str(tmp_path))[command])
    assert result.exit_code == errors.RuleSetError([]).exit_code == errors.EXIT_INPUT, result.output
    assert "no_such_option" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_every_error_class_and_exit_code_lives_in_errors():
    assert issubclass(errors.RuleSetError, errors.InputError)
    assert issubclass(errors.ReadError, errors.InputError)
    assert errors.WorkerLost("x").exit_code == errors.EXIT_INTERNAL
    assert not issubclass(errors.Terminated, Exception)  # no `except Exception` swallows a signal
    assert errors.Terminated(15).exit_code == errors.EXIT_TERMINATED == 143
    assert errors.Terminated(2).exit_code == errors.EXIT_INTERRUPTED == 130
    from cds.apps import cli
    from cds.cohort import pool

    assert pool.WorkerLost is errors.WorkerLost and cli.Terminated is errors.Terminated


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("plain", "plain"),
        ("two\nlines", "two\\nlines"),
        ("\x1b[2Jclear", "\\x1b[2Jclear"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("line\u2028sep", "line\\u2028sep"),
        ("\u200bzero width", "\\u200bzero width"),
        ("caf\u00e9 \u2265 3 \u00b5g", "caf\u00e9 \u2265 3 \u00b5g"),  # ordinary non-ASCII text is kept
        ("\x85next line", "\\x85next line"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(raw, shown):
    assert errors.printable(raw) == shown


def test_printable_truncates_long_values_before_escaping():
    assert errors.printable("x" * 10_000_000) == "x" * 79 + "\u2026"
    assert len(errors.printable("\n" * 1000, 10)) == 2 * 9 + 1
    assert errors.printable("x" * 100, None) == "x" * 100
    assert errors.quoted("a\nb") == "'a\\nb'"
