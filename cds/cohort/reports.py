"""One report per record for a cohort: ``cds batch INPUT --reports DIR [--format] [--site]`` and ``cds board``.

A report's file name is a safe form of the patient ID plus where the record
came from (``TB-001.line3.html`` for line 3 of a JSONL file, ``TB-001.case7.html``
for the file ``case7.json`` of a folder), so that two records with the same ID
never write the same file. Files are written under a temporary name and
renamed when complete; the folder must be new or empty (``check_reports_dir``),
so that nothing of an earlier run is overwritten.

Markdown and HTML are written by the worker that evaluated the record; a PDF
needs the browser, which runs once in the parent (`PdfStage`): the worker
writes the HTML to a hidden file and the parent prints it.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds.errors import InputError

EXTENSIONS = {"html": "html", "markdown": "md", "pdf": "pdf"}
PENDING_SUFFIX = ".print.html"  # HTML waiting to be printed to PDF by the parent


@dataclass(frozen=True)
class ReportOptions:
    directory: str
    fmt: str  # html | markdown | pdf
    site: str | None  # site file (validated in the parent first)


def check_reports_dir(raw: str, fmt: str) -> Path:
    """--reports DIR: created if missing (its parent must exist); an existing one must be an empty, writable folder."""
    if fmt not in EXTENSIONS:
        raise InputError(f"--format {fmt}: reports are html, markdown or pdf")
    path = Path(os.path.expanduser(raw))
    if path.exists():
        if not path.is_dir():
            raise InputError(f"--reports {raw}: not a folder")
        if any(path.iterdir()):
            raise InputError(
                f"--reports {raw}: the folder is not empty (nothing of an earlier run is overwritten): give a new or empty folder"
            )
    elif not path.parent.is_dir():
        raise InputError(f"--reports {raw}: folder {path.parent} does not exist")
    else:
        try:
            path.mkdir()
        except OSError as exc:
            raise InputError(f"--reports {raw}: cannot create ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"--reports {raw}: cannot write (permission denied)")
    if fmt == "pdf":
        from cds.report.pdf import chromium_path

        chromium_path()
    return path


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(patient_id: str, key: tuple[str, Any]) -> str:
    """'TB-001.line3' / 'TB-001.case7': the patient ID in letters, digits, '.', '_' and '-' only, plus the record."""
    pid = _UNSAFE.sub("_", patient_id).strip("._-")[:80] or "patient"
    where = f"line{key[1]}" if key[0] == "line" else _UNSAFE.sub("_", Path(str(key[1])).stem)[:80] or "file"
    return f"{pid}.{where}"


_SITES: dict[tuple[str, str], Any] = {}


def site_for(path: str | None, ruleset: Any) -> Any:
    """The site file (loaded once per process and rule set), or None for the rule folder's default site."""
    if path is None:
        return None
    key = (path, ruleset.digest)
    if key not in _SITES:
        from cds.knowledge.site import load_site

        _SITES[key] = load_site(Path(path), ruleset)
    return _SITES[key]


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(ev: Any, options: ReportOptions, key: tuple[str, Any], evaluated_at: str) -> str:
    """Write the record's report; returns its file name (a PDF is only queued for `PdfStage`)."""
    from cds.report.build import build_report
    from cds.report.render import render

    report = build_report(ev, evaluated_at, site_for(options.site, ev.ruleset))
    name = f"{safe_stem(report.patient_id, key)}.{EXTENSIONS[options.fmt]}"
    folder = Path(options.directory)
    if options.fmt == "pdf":
        _write_atomically(folder / f".{name}{PENDING_SUFFIX}", render(report, "html"))
    else:
        _write_atomically(folder / name, render(report, options.fmt))
    return name


class PdfStage:
    """In the parent: prints the queued HTML of each record to its PDF with one browser."""

    def __init__(self, directory: str, evaluated_at: str):
        from cds.report.pdf import PdfPrinter

        self.directory, self.evaluated_at = Path(directory), evaluated_at
        self.printer = PdfPrinter()

    def __enter__(self) -> PdfStage:
        self.printer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.printer.close()
        for leftover in self.directory.glob(f".*{PENDING_SUFFIX}"):  # an aborted run leaves no half-made report
            leftover.unlink(missing_ok=True)

    def print(self, name: str) -> None:
        pending = self.directory / f".{name}{PENDING_SUFFIX}"
        pdf = self.printer.print_html(pending.read_text(encoding="utf-8"), self.evaluated_at)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pdf)
        os.replace(tmp, self.directory / name)
        pending.unlink()
