"""`cds NAME ...` builds only the command NAME (cds.apps.cli._only_the_named_command): what it prints is what
the whole application prints, and everything else still builds every command."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from cds.apps import cli

ROOT = Path(__file__).resolve().parents[1]

runner = CliRunner()
NAMES = [c.name or typer.main.get_command_name(c.callback.__name__) for c in cli.app.registered_commands if c.callback]
GROUPS = [g.name for g in cli.app.registered_groups if g.name]


def _invoke(args: list[str], only: bool) -> tuple[int, str, str]:
    with cli._only_the_named_command(args) if only else cli.contextlib.nullcontext():
        result = runner.invoke(cli.app, args, prog_name="cds")
    return result.exit_code, result.stdout, result.stderr


def test_every_command_and_group_is_named():
    assert len(NAMES) == 10 and len(GROUPS) == 3
    assert {"evaluate", "batch", "diff-rules", "new-profile", "import-fhir"} <= set(NAMES)
    assert set(GROUPS) == {"rules", "feedback", "cases"}


@pytest.mark.parametrize("name", NAMES + GROUPS)
def test_help_usage_and_errors_are_the_whole_applications(name):
    for args in ([name, "--help"], [name], [name, "--no-such-option"], [name, "a", "b", "c", "d"]):
        whole = _invoke(args, only=False)
        assert _invoke(args, only=True) == whole, args
        assert whole[0] in (0, 1, 2), (args, whole)  # help; invalid files (cds validate a b c d); a usage error
    if name in GROUPS:
        sub = {"rules": "show", "feedback": "export", "cases": "import"}[name]
        for args in ([name, sub, "--help"], [name, "no-such", "--help"], [name, sub, "--bad"]):
            assert _invoke(args, only=True) == _invoke(args, only=False), args


def test_only_the_named_command_is_built_and_everything_else_builds_all(monkeypatch):
    built: list[list[str]] = []
    real = typer.main.get_command

    def spy(instance: typer.Typer) -> object:
        if instance is cli.app:
            built.append(
                [c.name or typer.main.get_command_name(c.callback.__name__) for c in instance.registered_commands if c.callback]
                + [g.name for g in instance.registered_groups if g.name]
            )
        return real(instance)

    monkeypatch.setattr(typer.main, "get_command", spy)
    everything = NAMES + GROUPS
    for args, expected in (
        (["evaluate", "--help"], ["evaluate"]),
        (["rules", "list", "--help"], ["rules"]),
        (["diff-rules", "--help"], ["diff-rules"]),
        (["--help"], everything),
        (["no-such-command"], everything),
        (["Evaluate", "--help"], everything),  # click matches names exactly: an unknown command, listed with the rest
    ):
        built.clear()
        monkeypatch.setattr(sys, "argv", ["cds", *args])
        try:
            with pytest.raises(SystemExit):
                cli.main()
        finally:
            gc.enable()  # main pauses collection for the command it runs
        assert built == [expected], args
        assert len(cli.app.registered_commands) == len(NAMES) and len(cli.app.registered_groups) == len(GROUPS)  # restored
    built.clear()
    monkeypatch.setattr(sys, "argv", ["cds", "evaluate", "--help"])
    monkeypatch.setenv("_CDS_COMPLETE", "bash_complete")  # shell completion lists every command
    try:
        with pytest.raises(SystemExit):
            cli.main()
    finally:
        gc.enable()
    assert built == [everything]


def test_an_evaluation_with_the_rule_set_cached_creates_no_rule_file_models(tmp_path):
    """The rule folder's file formats (cds.knowledge.rulefiles) are for loading the YAML: `cds evaluate` with the
    validated rule set in the cache never imports them (about 13M instructions of a cold start)."""
    case = ROOT / "patient_profiles" / "fit_tcr_bcma_naive.json"
    env = {**os.environ, "CDS_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-X", "importtime", "-m", "cds", "evaluate", str(case), "--format", "json"]

    def imported() -> set[str]:
        err = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stderr
        return {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}

    assert "cds.knowledge.rulefiles" in imported()  # an empty cache: the rule folder is read and validated
    warm = imported()
    assert "cds.knowledge.ruleset" in warm and "cds.knowledge.rulefiles" not in warm
