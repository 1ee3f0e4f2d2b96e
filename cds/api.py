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
    from cds.decide.pipeline import Evaluation, Evaluator
    from cds.knowledge.check import CheckReport
    from cds.knowledge.ruleset import RuleSet


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
