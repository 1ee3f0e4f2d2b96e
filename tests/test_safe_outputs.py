"""Never destroy the user's files (issue 10, defects 5 and 6), and no temporary file that can outlive a run."""

from __future__ import annotations

import json
import os

import pytest
from conftest import RULES, case_names, load_case
from typer.testing import CliRunner

from cds.apps.cli import app
from cds.apps.outputs import OutputFile

runner = CliRunner()
FIXED = "2026-01-01T00:00:00Z"


def one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def cohort(tmp_path):
    src = tmp_path / "cohort.jsonl"
    src.write_text("".join(json.dumps(load_case(n)) + "\n" for n in case_names()[:2]), encoding="utf-8")
    return src


def profile(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(load_case("frail_ecog3")), encoding="utf-8")
    return path


def same_file_ways(tmp_path, target):
    """The input itself, a symbolic link to it, a hard link to it, a path with '..' in it."""
    link = tmp_path / "link"
    link.symlink_to(target)
    hard = tmp_path / "hard"
    os.link(target, hard)
    sub = tmp_path / "sub"
    sub.mkdir()
    return {"itself": str(target), "symlink": str(link), "hard link": str(hard), "dotdot": f"{sub}/../{target.name}"}


@pytest.mark.parametrize("way", ["itself", "symlink", "hard link", "dotdot"])
@pytest.mark.parametrize("command", ["evaluate", "batch", "batch --summary", "diff-rules", "import-fhir --report"])
def test_the_output_is_never_the_input(tmp_path, command, way):
    src = profile(tmp_path) if command in ("evaluate", "import-fhir --report") else cohort(tmp_path)
    before = src.read_bytes()
    out = same_file_ways(tmp_path, src)[way]
    args = {
        "evaluate": ["evaluate", str(src), "--rules", str(RULES), "--output", out],
        "batch": ["batch", str(src), "--rules", str(RULES), "-q", "-j", "1", "--output", out],
        "batch --summary": ["batch", str(src), "--rules", str(RULES), "-q", "-j", "1", "--summary", out],
        "diff-rules": ["diff-rules", str(RULES), str(RULES), str(src), "-q", "-j", "1", "--output", out],
        "import-fhir --report": ["import-fhir", str(src), "--report", out],
    }[command]
    line = one_error_line(runner.invoke(app, args))
    option = "--summary" if "summary" in command else "--report" if "report" in command else "--output"
    assert line.startswith(f"error: {option} {out}: is the input ") and "refusing to overwrite it" in line, line
    assert src.read_bytes() == before


def test_the_output_is_never_a_file_of_the_rule_folder(tmp_path):
    import shutil

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    target = rules / "eligibility.yaml"
    before = target.read_bytes()
    line = one_error_line(
        runner.invoke(app, ["evaluate", str(profile(tmp_path)), "--rules", str(rules), "-o", str(target), "--format", "markdown"])
    )
    assert "is inside the rule folder" in line
    assert target.read_bytes() == before


def test_the_output_is_never_a_record_of_the_input_folder(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(load_case("frail_ecog3")), encoding="utf-8")
    before = (folder / "a.json").read_bytes()
    line = one_error_line(runner.invoke(app, ["batch", str(folder), "--rules", str(RULES), "-q", "-o", str(folder / "a.json")]))
    assert "is the input" in line and (folder / "a.json").read_bytes() == before


def test_a_temporary_output_has_no_name_until_it_is_complete(tmp_path):
    """Written into an unnamed file (O_TMPFILE) and linked at the end: a killed process leaves nothing."""
    target = tmp_path / "r.txt"
    out = OutputFile(str(target))
    out.open()
    out.write("partial")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"] and target.read_text() == "partial"
    aborted = OutputFile(str(tmp_path / "other.txt"))
    aborted.open()
    aborted.write("x")
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]


# --------------------------------------------------------------------------- generated folders (defect 6)


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory):
    """A folder `cds examples` has written once (the run is slow: shared by the tests below, each on a copy)."""
    from conftest import PROFILES

    folder = tmp_path_factory.mktemp("examples") / "out"
    result = runner.invoke(app, ["examples", "--output-dir", str(folder), "--profiles", str(PROFILES), "--rules", str(RULES)])
    assert result.exit_code == 0, result.output
    return folder


def examples_into(folder) -> object:
    from conftest import PROFILES

    return runner.invoke(app, ["examples", "--output-dir", str(folder), "--profiles", str(PROFILES), "--rules", str(RULES)])


def snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_examples_never_remove_a_file_they_did_not_write(tmp_path, examples_dir):
    import shutil

    folder = tmp_path / "out"
    shutil.copytree(examples_dir, folder)
    mine = {"notes.md": b"my notes", "patient.html": b"<p>a report of mine</p>", "data.json": b"{}"}
    for name, data in mine.items():
        (folder / name).write_bytes(data)
    result = examples_into(folder)
    assert result.exit_code == 0, result.output
    assert {n: (folder / n).read_bytes() for n in mine} == mine


def test_examples_remove_a_retired_file_they_wrote(tmp_path, examples_dir):
    import shutil

    from cds.report.examples import MANIFEST

    folder = tmp_path / "out"
    shutil.copytree(examples_dir, folder)
    (folder / "retired_case.md").write_text("an example of an earlier version", encoding="utf-8")
    with (folder / MANIFEST).open("a", encoding="utf-8") as fh:
        fh.write("retired_case.md\n")
    (folder / "kept.md").write_text("not ours", encoding="utf-8")
    result = examples_into(folder)
    assert result.exit_code == 0, result.output
    assert not (folder / "retired_case.md").exists() and (folder / "kept.md").read_text(encoding="utf-8") == "not ours"
    assert "retired_case.md" not in (folder / MANIFEST).read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_examples_refuse_to_overwrite_a_file_of_the_same_name_they_did_not_write(tmp_path, kind):
    folder = tmp_path / "out"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere.html"
    elsewhere.write_text("<p>someone's own report</p>", encoding="utf-8")
    if kind == "file":
        (folder / "frail_ecog3.html").write_bytes(elsewhere.read_bytes())
    else:
        (folder / "frail_ecog3.html").symlink_to(elsewhere)
    before = snapshot(folder)
    line = one_error_line(examples_into(folder))
    assert "frail_ecog3.html was not written by cds examples" in line and "refusing to overwrite it" in line, line
    assert snapshot(folder) == before and elsewhere.read_text(encoding="utf-8") == "<p>someone's own report</p>"


def test_schemas_never_remove_a_file_they_did_not_write(tmp_path):
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "mine.schema.json").write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["schemas", "--output-dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "mine.schema.json").read_text(encoding="utf-8") == "{}"
    assert (folder / "profile.schema.json").is_file()
