"""The committed example reports in reports/examples are exactly what the current code, rules and
templates produce (regenerated in memory at the fixed example time and compared byte for byte)."""

from __future__ import annotations

import pytest
from conftest import PROFILES, ROOT, RULES

from cds.report.examples import EXAMPLE_CASES, FORMATS, MANIFEST, REGENERATE_COMMAND, render_examples, stale, write_examples

EXAMPLES = ROOT / "reports" / "examples"


@pytest.fixture(scope="module")
def expected() -> dict[str, str]:
    return render_examples(PROFILES, RULES)


def test_examples_cover_contrasting_cases(expected):
    assert len(EXAMPLE_CASES) >= 4
    assert set(expected) == {f"{c}.{ext}" for c in EXAMPLE_CASES for _, ext in FORMATS}


def test_examples_are_up_to_date(expected):
    problems = stale(EXAMPLES, expected)
    assert not problems, (
        "the example reports in reports/examples are stale:\n  "
        + "\n  ".join(problems)
        + f"\nregenerate them with: {REGENERATE_COMMAND}"
    )


def test_examples_do_not_depend_on_the_clock(expected, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert render_examples(PROFILES, RULES) == expected


def test_stale_detects_a_changed_file(expected, tmp_path):
    name = next(iter(expected))
    write_examples(tmp_path, expected)
    assert stale(tmp_path, expected) == []
    (tmp_path / name).write_text(expected[name] + " ", encoding="utf-8")
    (tmp_path / "retired_case.md").write_text("old", encoding="utf-8")
    (tmp_path / "not_ours.md").write_text("someone's", encoding="utf-8")
    with (tmp_path / MANIFEST).open("a", encoding="utf-8") as fh:
        fh.write("retired_case.md\n")  # written by an earlier version
    problems = stale(tmp_path, expected)
    assert any(name in p and "out of date" in p for p in problems)
    assert any("retired_case.md" in p and "not generated any more" in p for p in problems)
    assert not any("not_ours.md" in p for p in problems)  # not written by cds examples: none of its business
