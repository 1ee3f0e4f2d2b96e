"""The example reports in ``reports/examples``: which cases, and how they are (re)generated.

``cds examples`` evaluates each case of `EXAMPLE_CASES` from ``patient_profiles/``
with the current rules and templates, at the fixed time `EXAMPLE_TIMESTAMP`,
and writes ``<case>.html``, ``<case>.md`` and ``<case>.json``. The output is
byte-identical from run to run, so ``tests/test_examples.py`` regenerates the
files in memory and fails when the committed ones are stale; ``cds examples
--check`` does the same from the command line. The folder keeps a manifest
(``GENERATED.txt``) of the files the command wrote, and the command only ever
removes or replaces those (issue 10, defect 6).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cds.errors import InputError

# Contrasting tumor-board cases: CAR-T first, frail, rapidly progressive,
# after a BCMA bispecific, first relapse, no CAR-T access with dialysis, and
# a profile with missing results that could change the top option.
EXAMPLE_CASES: tuple[str, ...] = (
    "fit_tcr_bcma_naive",
    "frail_ecog3",
    "rapidly_progressive",
    "relapse_after_bcma_bispecific",
    "first_relapse_len_refractory",
    "severe_renal_impairment",
    "unknowns_not_assessed",
)
EXAMPLE_TIMESTAMP = "2026-01-01T00:00:00Z"
FORMATS: tuple[tuple[str, str], ...] = (("html", "html"), ("markdown", "md"), ("json", "json"))
REGENERATE_COMMAND = "cds examples  (from the checkout root; or: python -m cds examples)"


def render_examples(profiles_dir: Path, rules: Path | None = None) -> dict[str, str]:
    """File name -> exact text of every example report."""
    from cds.decide.pipeline import default_evaluator
    from cds.report.build import build_report
    from cds.report.render import render

    evaluator = default_evaluator(str(rules) if rules else None)
    out: dict[str, str] = {}
    for case in EXAMPLE_CASES:
        path = profiles_dir / f"{case}.json"
        if not path.is_file():
            raise InputError(f"--profiles: example case {path} not found (run from the checkout root or pass --profiles)")
        report = build_report(evaluator.evaluate(evaluator.load(path), EXAMPLE_TIMESTAMP), EXAMPLE_TIMESTAMP)
        for fmt, ext in FORMATS:
            out[f"{case}.{ext}"] = render(report, fmt)
    return out


MANIFEST = "GENERATED.txt"  # in every folder of generated files: the names the command wrote there


def _manifest(out_dir: Path) -> set[str] | None:
    """The file names the manifest of `out_dir` lists (None: the folder has no manifest)."""
    try:
        text = (out_dir / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{out_dir / MANIFEST}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def _manifest_text(names: set[str] | list[str], command: str) -> str:
    header = f"# The files `{command}` wrote in this folder; it removes only files named here (and never edits other files).\n"
    return header + "".join(f"{n}\n" for n in sorted(names))


def stale(out_dir: Path, expected: dict[str, str], command: str = "cds examples") -> list[str]:
    """What differs between the folder and the expected files: missing, changed, retired (written earlier by
    `command`, per the folder's manifest, and not generated any more), and the manifest itself.

    Also used for the committed JSON Schemas (cds.apps.schemas).
    """
    problems = []
    for name, text in expected.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"{path}: out of date")
    listed = _manifest(out_dir) if out_dir.is_dir() else None
    for name in sorted((listed or set()) - set(expected)):
        if (out_dir / name).exists():
            problems.append(f"{out_dir / name}: not generated any more")
    if listed is None or listed != set(expected):
        problems.append(f"{out_dir / MANIFEST}: {'missing' if listed is None else 'out of date'}")
    return problems


def _replace(path: Path, data: bytes) -> None:
    """Write `data` as `path` in one step (a new file renamed over it: a link at `path` is replaced, not followed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_examples(out_dir: Path, expected: dict[str, str], command: str = "cds examples") -> list[Path]:
    """Write every file whose content changed and remove the retired ones: only files this command wrote.

    The folder's manifest (`MANIFEST`) names the files `command` wrote there. A file about to be
    written that the manifest does not name, and that differs from what would be written, is someone
    else's: InputError before anything is written. Files not in the manifest are never removed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = _manifest(out_dir) or set()
    for name, text in expected.items():
        path = out_dir / name
        if name in listed or not (path.exists() or path.is_symlink()):
            continue
        if not path.is_file() or path.is_symlink() or path.read_bytes() != text.encode("utf-8"):
            raise InputError(
                f"--output-dir {out_dir}: {name} was not written by {command} (not in {MANIFEST}); "
                "refusing to overwrite it (move it away or choose another folder)"
            )
    written = []
    if not listed >= set(expected):  # name what is about to be written before writing it
        _replace(out_dir / MANIFEST, _manifest_text(listed | set(expected), command).encode("utf-8"))
    for name, text in expected.items():
        path = out_dir / name
        data = text.encode("utf-8")
        if not path.is_file() or path.is_symlink() or path.read_bytes() != data:
            _replace(path, data)
            written.append(path)
    for name in sorted(listed - set(expected)):
        path = out_dir / name
        if path.is_file() and not path.is_symlink() and path.parent == out_dir:
            path.unlink()
            written.append(path)
    if listed != set(expected):
        _replace(out_dir / MANIFEST, _manifest_text(set(expected), command).encode("utf-8"))
    return written
