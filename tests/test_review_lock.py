"""The review lock (issue 12 D): a rule whose content changed while its last_reviewed stayed old fails the rule check.

rules/review.lock holds, per rule, its last_reviewed and a hash of its clinical content; `cds rules check`
compares, `cds rules lock` refreshes (and refuses to hide a change). Real rule files, copied and edited.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil

import pytest
from conftest import PROFILES, RULES
from typer.testing import CliRunner

from cds.apps.cli import app
from cds.knowledge.reviewlock import LOCK_NAME, compare, current_rules, read_lock, refresh

runner = CliRunner()


def test_the_shipped_rules_are_locked_and_unchanged_since_their_review():
    locked, problems = read_lock(RULES)
    assert locked is not None and problems == [], f"rules/{LOCK_NAME} is missing or malformed: run `cds rules lock`"
    problems, _ = compare(RULES)
    assert problems == [], "\n".join(problems)
    assert set(locked) == set(current_rules(RULES)), "a rule is not in rules/review.lock (or no longer exists): `cds rules lock`"


def _pick(folder) -> tuple[str, str, str]:
    """A weighted rule reviewed before today, its file and its locked date (so a newer date is not in the future)."""
    locked, _ = read_lock(folder)
    today = dt.date.today().isoformat()
    for path in sorted(folder.glob("*.yaml")):
        for m in re.finditer(
            r"\n  - id: ([A-Z0-9-]+)\n(?:(?!\n  - id:).)*?\n    weight: \d+", path.read_text(encoding="utf-8"), re.S
        ):
            rid = m.group(1)
            if rid in locked and locked[rid].reviewed < today:
                return rid, path.name, locked[rid].reviewed
    raise AssertionError("no weighted rule reviewed before today")


def _edit(folder, name: str, rid: str, weight: int | None = None, reviewed: str | None = None, rewrap: bool = False):
    path = folder / name
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n  - id: {rid}\n")
    end = text.find("\n  - id:", start + 1)
    end = len(text) if end < 0 else end
    block = text[start:end]
    if weight is not None:
        block = re.sub(r"\n    weight: \d+", f"\n    weight: {weight}", block, count=1)
    if reviewed is not None:
        block = re.sub(r"\n    last_reviewed: \S+", "", block)
        block = block.replace(f"\n  - id: {rid}\n", f'\n  - id: {rid}\n    last_reviewed: "{reviewed}"\n', 1)
    if rewrap:  # the rationale's words on other lines: no clinical change
        block = re.sub(r"(\n    rationale: >\n      \S+) ", r"\1\n      ", block, count=1)
    path.write_text(text[:start] + block + text[end:], encoding="utf-8")


@pytest.fixture
def folder(tmp_path):
    dst = tmp_path / "rules"
    shutil.copytree(RULES, dst)
    return dst


def _day_after(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def test_a_changed_rule_without_a_newer_review_fails_the_check(folder):
    rid, name, reviewed = _pick(folder)
    _edit(folder, name, rid, weight=7)
    result = runner.invoke(app, ["rules", "check", "--rules", str(folder), "--profiles", str(PROFILES)])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.stdout.splitlines() if LOCK_NAME in line and not line.startswith("warning: ")]
    assert line.startswith(f"{name} [{rid}] last_reviewed: {reviewed} is not newer than the review of {reviewed}")
    assert "`cds rules lock`" in line
    # and the lock cannot be refreshed over it: refused, naming the rule, nothing written
    before = (folder / LOCK_NAME).read_bytes()
    lock = runner.invoke(app, ["rules", "lock", "--rules", str(folder)])
    assert lock.exit_code == 1 and f"[{rid}] changed since its review of {reviewed}" in lock.output
    assert (folder / LOCK_NAME).read_bytes() == before


def test_a_changed_rule_with_a_newer_review_passes_and_the_lock_is_refreshed(folder):
    rid, name, reviewed = _pick(folder)
    newer = _day_after(reviewed)
    _edit(folder, name, rid, weight=7, reviewed=newer)
    problems, warnings = compare(folder)
    assert problems == []
    assert any(f"[{rid}] {LOCK_NAME}: changed and reviewed {newer}" in w for w in warnings)
    lock = runner.invoke(app, ["rules", "lock", "--rules", str(folder)])
    assert lock.exit_code == 0, lock.output
    assert compare(folder) == ([], [])
    assert read_lock(folder)[0][rid].reviewed == newer
    # a second change the same day as that review is accepted by the refresh (the review that day covers it)
    _edit(folder, name, rid, weight=8)
    assert compare(folder)[0]  # the check still sees it
    assert refresh(folder, today=newer)[1] == []
    assert refresh(folder, today=_day_after(newer))[1] == []  # locked now: nothing changed since


def test_only_the_clinical_content_counts(folder):
    rid, name, reviewed = _pick(folder)
    _edit(folder, name, rid, rewrap=True)  # the rationale re-wrapped
    assert (folder / name).read_text(encoding="utf-8") != (RULES / name).read_text(encoding="utf-8")
    _edit(folder, name, rid, reviewed=reviewed)  # the file's date written on the rule: the same date
    fixtures = folder / "tests" / name
    if fixtures.is_file():
        fixtures.write_text(fixtures.read_text(encoding="utf-8") + "\n# a comment in the fixtures\n", encoding="utf-8")
    assert compare(folder) == ([], [])


def test_new_and_removed_rules_are_warnings_and_a_folder_without_a_lock_is_not_compared(folder):
    locked, _ = read_lock(folder)
    lines = (folder / LOCK_NAME).read_text(encoding="utf-8").splitlines(keepends=True)
    first = next(line for line in lines if not line.startswith("#"))
    kept = [line for line in lines if line != first] + ["ZZZ-GONE-001 2026-01-01 0123456789abcdef\n"]
    (folder / LOCK_NAME).write_text("".join(kept), encoding="utf-8")
    problems, warnings = compare(folder)
    assert problems == []
    assert any("1 rule(s) not in the lock (" + first.split()[0] in w for w in warnings)
    assert any("1 locked rule(s) no longer in the rule files (ZZZ-GONE-001)" in w for w in warnings)
    (folder / LOCK_NAME).write_text("CARTM-CRP-001 yesterday abc\n", encoding="utf-8")
    assert compare(folder)[0] == [f"{LOCK_NAME} line 1: not 'RULE-ID YYYY-MM-DD HASH' (cds rules lock writes it)"]
    (folder / LOCK_NAME).unlink()
    assert compare(folder) == ([], [])
    assert len(locked) == len(current_rules(folder))
