"""The example reports in ``reports/examples``: which cases, and how they are (re)generated.

``cds examples`` evaluates each case of `EXAMPLE_CASES` from ``patient_profiles/``
with the current rules and templates, at the fixed time `EXAMPLE_TIMESTAMP`,
and writes ``<case>.html``, ``<case>.md`` and ``<case>.json``. The output is
byte-identical from run to run, so ``tests/test_examples.py`` regenerates the
files in memory and fails when the committed ones are stale; ``cds examples
--check`` does the same from the command line.
"""

from __future__ import annotations

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
EXTENSIONS = tuple(ext for _, ext in FORMATS)


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
        report = build_report(evaluator.evaluate(evaluator.load(path)), EXAMPLE_TIMESTAMP)
        for fmt, ext in FORMATS:
            out[f"{case}.{ext}"] = render(report, fmt)
    return out


def stale(out_dir: Path, expected: dict[str, str], extensions: tuple[str, ...] = EXTENSIONS) -> list[str]:
    """What differs between the folder and the expected files: missing, changed, unexpected (files with `extensions`).

    Also used for the committed JSON Schemas (cds.apps.schemas).
    """
    problems = []
    for name, text in expected.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"{path}: out of date")
    if out_dir.is_dir():
        for path in sorted(out_dir.iterdir()):
            if path.name.endswith(tuple(f".{e}" for e in extensions)) and path.name not in expected:
                problems.append(f"{path}: not generated any more")
    return problems


def write_examples(out_dir: Path, expected: dict[str, str], extensions: tuple[str, ...] = EXTENSIONS) -> list[Path]:
    """Write every file (only those whose content changed) and remove retired ones (files with `extensions`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected.items():
        path = out_dir / name
        data = text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            written.append(path)
    for path in sorted(out_dir.iterdir()):
        if path.name.endswith(tuple(f".{e}" for e in extensions)) and path.name not in expected:
            path.unlink()
            written.append(path)
    return written
