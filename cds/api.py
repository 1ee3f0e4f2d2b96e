"""The public API behind ``cds/__init__.py``: what the applications (CLI, HTTP service, web pages) and the tests call.

    import cds
    evaluator = cds.load_rules()                      # compiled once per process per rule folder
    evaluation = cds.evaluate({"patient_id": ...}, evaluated_at="2026-01-01T00:00:00Z")  # a dict, PatientProfile or path
    report = cds.build_report(evaluation)             # stamped with the evaluation's instant
    text = cds.render(report, "html")                 # "json" | "markdown" | "html"
    problems = cds.check_rules().problems              # `cds rules check`, fixtures on the real engine

Everything is imported on first use, so that ``import cds`` stays cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds.knowledge.check import CheckReport


def load_rules(directory: str | os.PathLike[str] | None = None) -> Evaluator:
    """The rule folder (default: the packaged rules) validated and compiled on the engine, once per process."""
    from cds.decide.pipeline import default_evaluator

    return default_evaluator(str(directory) if directory is not None else None)


def evaluate(data: Any, *, rules: str | os.PathLike[str] | None = None, evaluated_at: str | None = None) -> Evaluation:
    """Evaluate one patient: a decoded profile or FHIR Bundle (dict), a validated `PatientProfile`, or a file path.

    At `evaluated_at` (ISO 8601; None: `evaluation_time()`, i.e. ``SOURCE_DATE_EPOCH`` or now): a profile
    without `evaluation_date` is evaluated on that instant's date, and `build_report` stamps the report
    with the same instant. Raises `cds.errors.ProfileError` (naming the field) for bad input.
    """
    from cds.interop.inputs import load_input, parse_input
    from cds.model.clock import evaluation_day, evaluation_time
    from cds.model.profile import PatientProfile

    at = evaluation_time(evaluated_at)
    evaluator = load_rules(rules)
    if isinstance(data, PatientProfile):
        profile = data
    elif isinstance(data, (str, os.PathLike)):
        profile = load_input(Path(data), evaluator.vocabulary, default_date=evaluation_day(at)).profile
    else:  # a profile dict or a FHIR Bundle dict
        profile = parse_input(data, evaluator.vocabulary, default_date=evaluation_day(at)).profile
    return evaluator.evaluate(profile, at)


def check_rules(
    directory: str | os.PathLike[str] | None = None,
    profiles_dir: str | os.PathLike[str] | None = None,
    run_fixtures: bool = True,
) -> CheckReport:
    """`cds rules check`: every problem of the rule folder, with its fixtures run on the real engine."""
    from cds.decide.pipeline import Evaluator
    from cds.engine.durable import capacity_problems
    from cds.knowledge.check import check_rules as _check
    from cds.knowledge.check import default_profiles_dir
    from cds.resources import rules_dir

    folder = Path(directory) if directory is not None else rules_dir()
    profiles = Path(profiles_dir) if profiles_dir is not None else default_profiles_dir(folder)

    def runner(ruleset: RuleSet) -> Evaluator:  # the rules that could be compiled, on durable-rules
        return Evaluator(ruleset=ruleset, analyze_unknowns=False)

    return _check(folder, profiles, run_fixtures=run_fixtures, runner=runner, capacity=capacity_problems)


# ---------------------------------------------------------------------------- the maintenance and cohort commands
#
# What the command line's other commands do with the internals, each as one function named for what it gives.


def engine_problem() -> str | None:
    """One line saying why the installed durable-rules cannot be used (not the pinned release), or None.
    `cds` checks it before any command (exit 3)."""
    from cds.engine.pin import problem

    return problem()


def rules_table(ruleset: RuleSet) -> str:
    """`cds rules list`: every rule (active, then retired) as a text table: ID, family, kind, option(s), title."""
    from cds.knowledge.check import format_table, list_rows

    return format_table(("ID", "FAMILY", "KIND", "OPTION", "TITLE"), list_rows(ruleset))


def refresh_review_lock(directory: str | os.PathLike[str]) -> tuple[Path, int, list[str]]:
    """`cds rules lock`: rewrite the rule folder's review lock from its rule files. Returns (the lock file, rules
    locked, refusals): nothing is written while a changed rule keeps its old last_reviewed (each refusal names it)."""
    from cds.knowledge.reviewlock import LOCK_NAME, refresh

    folder = Path(directory)
    count, refusals = refresh(folder)
    return folder / LOCK_NAME, count, refusals


def examples_out_of_date(output_dir: str | os.PathLike[str], expected: dict[str, str]) -> list[str]:
    """`cds examples --check`: one line per example file that differs from `expected` (`render_examples`), then how
    to regenerate them; empty when the folder is up to date."""
    from cds.report.examples import REGENERATE_COMMAND, stale

    problems = stale(Path(output_dir), expected)
    if problems:
        problems.append(f"examples are out of date; regenerate with: {REGENERATE_COMMAND}")
    return problems


def check_cohort_input(source: str | os.PathLike[str]) -> None:
    """The input of `cds batch`, `cds board` and `cds diff-rules` (a JSONL file or a folder of profiles) exists and
    can be read; InputError (exit 2) before anything starts."""
    from cds.cohort.batch import check_input

    check_input(Path(source))


def record_options(site: str | None, reports: str | None, report_format: str) -> RecordOptions | None:
    """What `cds batch` (and `cds board`) add to each record: availability at the `site` file, a report per patient
    (as `report_format`) in the folder `reports`, which is checked here (new or empty); None: neither."""
    from cds.cohort.batch import RecordOptions
    from cds.cohort.reports import ReportOptions, check_reports_dir

    report_options = None
    if reports is not None:
        folder = check_reports_dir(reports, report_format)
        report_options = ReportOptions(directory=str(folder.resolve()), fmt=report_format, site=site)
    if site is None and report_options is None:
        return None
    return RecordOptions(site=site, reports=report_options)


def load_rules_for_diff(directory: str | os.PathLike[str] | None) -> Evaluator:
    """A rule folder compiled as `cds diff-rules` compares it (the ranking only: no analysis of unknown facts), once
    per process; `run_diff`'s workers use the same one."""
    from cds.cohort.batch import evaluator_for

    return evaluator_for(str(directory) if directory is not None else None, False)


def diff_row_json(row: dict[str, Any]) -> str:
    """A changed patient of `run_diff` as `cds diff-rules --output` writes it: one JSON line (as `cds batch`'s)."""
    from cds.cohort.batch import json_line

    return json_line(row)


# ---------------------------------------------------------------------------- what else the applications use
#
# The parts of the package the applications (cds.apps: the CLI, the HTTP service, the case pages) need beyond
# the functions above, re-exported here from the module that defines them: ``from cds.api import X`` inside
# the function that needs it imports X's module then, not at start-up. An import-linter contract
# (pyproject.toml) keeps cds.apps on this module, cds.errors and cds.store.
_REEXPORTS: dict[str, str] = {
    # the types
    "Evaluation": "cds.decide.pipeline",
    "Evaluator": "cds.decide.pipeline",
    "PatientProfile": "cds.model.profile",
    "Labs": "cds.model.profile",  # parts of the profile: the case form is built from the model
    "PriorLine": "cds.model.profile",
    "Report": "cds.report.model",
    "Summary": "cds.report.summary",
    "TopOption": "cds.report.summary",
    "Site": "cds.knowledge.site",
    # reading input as the CLI reads a file
    "decode_json": "cds.model.profile",  # JSON text -> data, strictly (no NaN, no duplicate key); ProfileError
    "json_problem": "cds.model.profile",  # a json.JSONDecodeError as the one-line problem the CLI prints
    "is_fhir": "cds.interop.inputs",  # decoded input: a FHIR Bundle (by resourceType) rather than a profile
    "import_bundle": "cds.interop.fhir",  # a FHIR Bundle -> profile, with how each field was found (or not)
    # the one strict pydantic base (the service's response shapes are on it too), and its errors written one way
    "Strict": "cds.model.base",
    "error_field": "cds.model.base",
    "error_text": "cds.model.base",
    # sites
    "load_site": "cds.knowledge.site",
    "default_site": "cds.knowledge.site",  # the rule folder's own site file, or None
    # the time of an evaluation
    "evaluation_time": "cds.model.clock",
    # reports and their views
    "build_report": "cds.report.build",
    "build_card_data": "cds.report.build",
    "render": "cds.report.render",
    "summarize": "cds.report.summary",
    "summary_view": "cds.report.view",  # page 1 as the templates show it
    "why_parts": "cds.report.model",  # an option's reasons as (text, rule IDs) parts
    "short_title": "cds.report.model",  # an option's title without its parenthesised examples
    "option_heading": "cds.report.model",  # the title with the products a fired rule restricts it to
    "evaluation_date_text": "cds.report.view",
    "tied_text": "cds.report.view",  # the options tied with the third, in words (page 1)
    "AVAILABILITY_BADGE": "cds.report.view",
    "html_to_pdf": "cds.report.pdf",  # headless Chromium; PdfError
    # the command line's reading of files and folders
    "rules_dir": "cds.resources",  # the packaged rule folder
    "load_ruleset": "cds.knowledge.ruleset",  # a rule folder validated, not compiled (`cds rules list/show`)
    "RuleSet": "cds.knowledge.ruleset",
    "load_vocabulary": "cds.model.vocabulary",  # the drug catalogue of a rule folder
    "read_input_file": "cds.model.profile",  # a profile's file read within its size limit (ProfileError)
    "load_input": "cds.interop.inputs",  # a profile or FHIR Bundle file -> the validated profile
    "validate_imported": "cds.interop.inputs",  # an imported Bundle's profile as `cds evaluate` would take it
    "evaluation_day": "cds.model.clock",  # the date of an evaluation instant (a profile without evaluation_date)
    "chromium_path": "cds.report.pdf",  # the headless Chromium `--format pdf` needs, or None
    # many patients
    "build_board": "cds.cohort.board",  # `cds board`: one page for a tumor board's cases
    "render_board": "cds.report.render",
    "count_records": "cds.cohort.batch",  # the records of a cohort input (None: too many to count first)
    "run_batch": "cds.cohort.batch",  # `cds batch`: every record evaluated, one result line each, in input order
    "RecordOptions": "cds.cohort.batch",  # see `record_options`
    "run_diff": "cds.cohort.batch",  # `cds diff-rules`: every record under two rule sets; the changed ones streamed
    "diff_row_text": "cds.cohort.batch",  # a changed patient of `run_diff` as the cells of the table on stdout
    # the maintenance commands (with the functions above)
    "show_rule": "cds.knowledge.check",  # `cds rules show`: one rule in plain language
    "profile_template": "cds.model.template",  # `cds new-profile`: the commented template
    "apply_overrides": "cds.interop.fhir.overrides",  # `cds import-fhir --with`: a partial profile over the import
    "render_examples": "cds.report.examples",  # `cds examples`: the example reports, at the fixed time
    "write_examples": "cds.report.examples",  # ... written (only the files the command wrote before are replaced)
}

if TYPE_CHECKING:
    from cds.cohort.batch import RecordOptions as RecordOptions
    from cds.cohort.batch import count_records as count_records
    from cds.cohort.batch import diff_row_text as diff_row_text
    from cds.cohort.batch import run_batch as run_batch
    from cds.cohort.batch import run_diff as run_diff
    from cds.cohort.board import build_board as build_board
    from cds.decide.pipeline import Evaluation as Evaluation
    from cds.decide.pipeline import Evaluator as Evaluator
    from cds.interop.fhir import import_bundle as import_bundle
    from cds.interop.fhir.overrides import apply_overrides as apply_overrides
    from cds.interop.inputs import is_fhir as is_fhir
    from cds.interop.inputs import load_input as load_input
    from cds.interop.inputs import validate_imported as validate_imported
    from cds.knowledge.check import show_rule as show_rule
    from cds.knowledge.ruleset import RuleSet as RuleSet
    from cds.knowledge.ruleset import load_ruleset as load_ruleset
    from cds.knowledge.site import Site as Site
    from cds.knowledge.site import default_site as default_site
    from cds.knowledge.site import load_site as load_site
    from cds.model.base import Strict as Strict
    from cds.model.base import error_field as error_field
    from cds.model.base import error_text as error_text
    from cds.model.clock import evaluation_day as evaluation_day
    from cds.model.clock import evaluation_time as evaluation_time
    from cds.model.profile import Labs as Labs
    from cds.model.profile import PatientProfile as PatientProfile
    from cds.model.profile import PriorLine as PriorLine
    from cds.model.profile import decode_json as decode_json
    from cds.model.profile import json_problem as json_problem
    from cds.model.profile import read_input_file as read_input_file
    from cds.model.template import profile_template as profile_template
    from cds.model.vocabulary import load_vocabulary as load_vocabulary
    from cds.report.build import build_card_data as build_card_data
    from cds.report.build import build_report as build_report
    from cds.report.examples import render_examples as render_examples
    from cds.report.examples import write_examples as write_examples
    from cds.report.model import Report as Report
    from cds.report.model import option_heading as option_heading
    from cds.report.model import short_title as short_title
    from cds.report.model import why_parts as why_parts
    from cds.report.pdf import chromium_path as chromium_path
    from cds.report.pdf import html_to_pdf as html_to_pdf
    from cds.report.render import render as render
    from cds.report.render import render_board as render_board
    from cds.report.summary import Summary as Summary
    from cds.report.summary import TopOption as TopOption
    from cds.report.summary import summarize as summarize
    from cds.report.view import AVAILABILITY_BADGE as AVAILABILITY_BADGE
    from cds.report.view import evaluation_date_text as evaluation_date_text
    from cds.report.view import summary_view as summary_view
    from cds.report.view import tied_text as tied_text
    from cds.resources import rules_dir as rules_dir
else:
    from cds import lazy_attributes

    __getattr__ = lazy_attributes(globals(), _REEXPORTS)
