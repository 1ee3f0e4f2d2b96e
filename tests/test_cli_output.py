"""Output files (`--output`, `--summary`), path options and option errors of the command line.

Contract: a problem with an option is exit code 2 and exactly one line ``error: <option> ...`` on
stderr (no usage panel, no traceback, nothing on stdout); an output file is written completely or
not at all, through a symbolic link, directly into a FIFO, with the permission bits of a normal
new file.
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import typing
from pathlib import Path

import pytest
import typer
from conftest import PROFILES, ROOT, RULES, case_names, load_case
from typer.testing import CliRunner

from cds.apps.cli import app

runner = CliRunner()
CASE = PROFILES / "frail_ecog3.json"
FIXED = "2026-01-01T00:00:00Z"


def evaluate(*args: str):
    return runner.invoke(app, ["evaluate", str(CASE), "--rules", str(RULES), "--timestamp", FIXED, *args])


def expected_report() -> str:
    result = evaluate()
    assert result.exit_code == 0
    return result.stdout


def one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _cohort(tmp_path):
    src = tmp_path / "in" / "c.jsonl"
    src.parent.mkdir()
    src.write_text("".join(json.dumps(load_case(n)) + "\n" for n in case_names()[:2]), encoding="utf-8")
    return src


def command_with_output(kind: str, tmp_path, target: str):
    """Each command that writes a file with --output, run with that target."""
    if kind == "evaluate":
        return evaluate("--output", target)
    src = _cohort(tmp_path)
    if kind == "batch":
        return runner.invoke(
            app, ["batch", str(src), "--rules", str(RULES), "--timestamp", FIXED, "-j", "1", "-q", "--output", target]
        )
    return runner.invoke(app, ["diff-rules", str(RULES), str(RULES), str(src), "-j", "1", "-q", "--output", target])


# --------------------------------------------------------------------------- --output


@pytest.mark.parametrize("kind", ["evaluate", "batch", "diff-rules"])
def test_output_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path, kind):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "report.txt"
    target.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    result = command_with_output(kind, tmp_path, str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    text = target.read_text(encoding="utf-8")
    assert text != "old\n" and text.strip()
    if kind == "evaluate":
        assert text == expected_report()
    assert listing(real_dir) == ["report.txt"]  # no temporary file left beside the target
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_output_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "new.md")
    assert evaluate("-o", str(link)).exit_code == 0
    assert link.is_symlink() and (tmp_path / "new.md").read_text(encoding="utf-8") == expected_report()


def test_output_into_a_fifo_is_written_directly(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = evaluate("--output", str(fifo))
    reader.join(30)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert not reader.is_alive() and received == [expected_report().encode("utf-8")]
    assert listing(tmp_path) == ["pipe"]


@pytest.mark.parametrize("kind", ["evaluate", "batch", "diff-rules"])
def test_output_that_is_a_directory_is_exit_2(tmp_path, kind):
    folder = tmp_path / "out"
    folder.mkdir()
    line = one_error_line(command_with_output(kind, tmp_path, str(folder)))
    assert line == f"error: --output {folder}: is a directory"
    assert listing(folder) == []


@pytest.mark.parametrize("kind", ["evaluate", "batch", "diff-rules"])
def test_empty_output_path_is_exit_2(tmp_path, kind):
    assert one_error_line(command_with_output(kind, tmp_path, "")) == "error: --output: the path is empty"


def test_output_in_a_missing_folder_is_exit_2(tmp_path):
    line = one_error_line(evaluate("-o", str(tmp_path / "nope" / "r.md")))
    assert line.startswith(f"error: --output {tmp_path / 'nope' / 'r.md'}: ") and "does not exist" in line


@pytest.mark.parametrize("umask", [0o022, 0o007], ids=["022", "007"])
def test_new_output_file_gets_the_umask_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert evaluate("-o", str(tmp_path / "r.md")).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "r.md").st_mode) == 0o666 & ~umask


def test_replaced_output_file_keeps_its_mode(tmp_path):
    out = tmp_path / "r.md"
    out.write_text("old", encoding="utf-8")
    out.chmod(0o640)
    assert evaluate("-o", str(out)).exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and out.read_text(encoding="utf-8") == expected_report()


def _file_size_limited(limit: int):
    def preexec() -> None:  # a real write error (EFBIG) without a full disk or another user
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", str(CASE), "--rules", str(RULES)],
        ["batch", "@cohort", "--rules", str(RULES), "-j", "2", "-q"],
    ],
    ids=["evaluate", "batch"],
)
def test_write_error_is_exit_2_with_path_and_reason_and_no_temp_file(tmp_path, args):
    src = tmp_path / "cohort.jsonl"
    src.write_text("".join(json.dumps(load_case(n)) + "\n" for n in case_names()) * 3, encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result"
    cmd = [sys.executable, "-m", "cds", *[str(src) if a == "@cohort" else a for a in args], "--output", str(out)]
    # a cold cache folder: the cache files written beside the output meet the same limit, and a cache
    # that cannot be written must only cost time (the CI failure this reproduces had a cold cache)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "CDS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("CDS_DEBUG", None)
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, preexec_fn=_file_size_limited(4096)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"error: --output {out}: cannot write ({os.strerror(27)})"  # EFBIG: File too large
    assert listing(out_dir) == []


def test_output_errors_are_input_errors_not_profile_errors(tmp_path):
    line = one_error_line(evaluate("-o", str(tmp_path)))
    assert "invalid patient profile" not in line


# --------------------------------------------------------------------------- path parameters


def _callbacks(typer_app: typer.Typer):
    for info in typer_app.registered_commands:
        yield info.callback
    for group in typer_app.registered_groups:
        yield from _callbacks(group.typer_instance)


def test_no_path_parameter_is_checked_by_typer():
    """typer's checks (readable=True by default) print a multi-line usage panel; cds's loaders say it in one line."""
    checked = 0
    for callback in _callbacks(app):
        hints = typing.get_type_hints(callback, include_extras=True)
        for name in inspect.signature(callback).parameters:
            annotated, info = typing.get_args(hints[name])  # Annotated[type, typer.Option/Argument(...)]
            if Path not in (annotated, *typing.get_args(annotated)):
                continue
            flags = (info.exists, info.readable, info.writable, info.file_okay, info.dir_okay, info.resolve_path)
            assert flags == (False, False, False, True, True, False), (callback.__name__, name, flags)
            checked += 1
    assert checked >= 12


def _missing_and_wrong_kind(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    folder = tmp_path / "folder.json"
    folder.mkdir()
    return tmp_path / "missing", a_file, folder


@pytest.mark.parametrize(
    "make_args",
    [
        lambda bad, f, d: ["evaluate", str(bad), "--rules", str(RULES)],
        lambda bad, f, d: ["evaluate", str(d), "--rules", str(RULES)],
        lambda bad, f, d: ["evaluate", str(CASE), "--rules", str(bad)],
        lambda bad, f, d: ["evaluate", str(CASE), "--rules", str(f)],
        lambda bad, f, d: ["evaluate", str(CASE), "--rules", str(RULES), "--site", str(bad)],
        lambda bad, f, d: ["evaluate", str(CASE), "--rules", str(RULES), "--site", str(d)],
        lambda bad, f, d: ["rules", "list", "--rules", str(bad)],
        lambda bad, f, d: ["rules", "show", "X", "--rules", str(f)],
        lambda bad, f, d: ["batch", str(bad), "--rules", str(RULES)],
        lambda bad, f, d: ["batch", str(CASE), "--rules", str(bad)],
        lambda bad, f, d: ["diff-rules", str(bad), str(RULES), str(CASE)],
        lambda bad, f, d: ["diff-rules", str(RULES), str(f), str(CASE)],
        lambda bad, f, d: ["diff-rules", str(RULES), str(RULES), str(bad)],
        lambda bad, f, d: ["examples", "--check", "--profiles", str(bad)],
        lambda bad, f, d: ["examples", "--check", "--profiles", str(f)],
        lambda bad, f, d: ["examples", "--check", "--output-dir", str(f)],
    ],
    ids=[
        "evaluate-missing-profile",
        "evaluate-profile-is-a-folder",
        "evaluate-missing-rules",
        "evaluate-rules-is-a-file",
        "evaluate-missing-site",
        "evaluate-site-is-a-folder",
        "rules-list-missing-rules",
        "rules-show-rules-is-a-file",
        "batch-missing-input",
        "batch-missing-rules",
        "diff-rules-missing-old",
        "diff-rules-new-is-a-file",
        "diff-rules-missing-input",
        "examples-missing-profiles",
        "examples-profiles-is-a-file",
        "examples-output-dir-is-a-file",
    ],
)
def test_missing_or_wrong_kind_of_path_is_one_error_line(tmp_path, make_args):
    args = make_args(*_missing_and_wrong_kind(tmp_path))
    line = one_error_line(runner.invoke(app, args))
    assert "Usage:" not in line and "Traceback" not in line


# --------------------------------------------------------------------------- --jobs and examples


def test_jobs_must_be_at_least_1(tmp_path):
    src = _cohort(tmp_path)
    for value in ("0", "-3"):
        result = runner.invoke(
            app, ["batch", str(src), "--rules", str(RULES), "-q", "-j", value, "-o", str(tmp_path / "r.jsonl")]
        )
        assert result.exit_code == 2 and "--jobs" in result.stderr
        assert not (tmp_path / "r.jsonl").exists()
        result = runner.invoke(app, ["diff-rules", str(RULES), str(RULES), str(src), "-q", "--jobs", value])
        assert result.exit_code == 2 and "--jobs" in result.stderr


def test_jobs_default_is_the_usable_cpu_count():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    root = typer.main.get_command(app)
    for name in ("batch", "diff-rules"):
        (jobs,) = [p for p in root.commands[name].params if p.name == "jobs"]  # type: ignore[attr-defined]
        assert jobs.default == expected


def test_examples_outside_a_checkout_is_an_option_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["examples", "--check"]))
    assert line.startswith("error: --profiles patient_profiles: ") and "invalid patient profile" not in line


def test_examples_with_a_case_missing_is_an_option_error(tmp_path):
    (tmp_path / "cases").mkdir()
    line = one_error_line(runner.invoke(app, ["examples", "--check", "--profiles", str(tmp_path / "cases")]))
    assert line.startswith("error: --profiles: example case ") and "not found" in line
