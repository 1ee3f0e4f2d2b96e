"""cds: clinical decision support for relapsed/refractory multiple myeloma.

Decision support, not decision making: every ranked option carries the rules
that fired, the evidence behind them, and the facts they were computed from.

The public API (see `cds.api`; imported on first use, so ``import cds`` is cheap)::

    evaluate(data, *, rules=None, evaluated_at=None) -> Evaluation   one patient (profile dict, PatientProfile or
                                                     file path) at an instant (None: SOURCE_DATE_EPOCH or now)
    load_rules(directory=None) -> Evaluator          a compiled rule folder (once per process)
    build_report(evaluation, evaluated_at=None, site=None) -> Report   (cds.report.model; .to_dict() is the JSON;
                                                     stamped with the evaluation's instant)
    build_card_data(evaluation, evaluated_at=None, site=None) -> dict   the part of the report's JSON a CDS
                                                     Hooks card shows, without building the report
    summarize(report) -> Summary                     page 1: top options, facts to obtain, exclusions (cds.report.summary)
    render(report, fmt) -> str                       "json" | "markdown" | "html"
    evaluation_time(fixed=None) -> str               ISO-8601 UTC evaluation time (``--timestamp``)
    load_site(path, ruleset) -> Site                 site settings (availability at a centre)
    check_rules(directory=None, profiles_dir=None)   `cds rules check`
    Evaluation, Evaluator, PatientProfile, Report    the types
    CdsError, InputError, ProfileError, SiteError, RuleSetError, ReadError, EngineError, WorkerLost   (cds.errors)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "evaluate": "cds.api",
    "load_rules": "cds.api",
    "check_rules": "cds.api",
    "build_report": "cds.api",
    "build_card_data": "cds.api",
    "evaluation_time": "cds.api",
    "render": "cds.api",
    "Report": "cds.api",
    "summarize": "cds.api",
    "Summary": "cds.api",
    "load_site": "cds.api",
    "Evaluation": "cds.api",
    "Evaluator": "cds.api",
    "PatientProfile": "cds.api",
    "CdsError": "cds.errors",
    "InputError": "cds.errors",
    "ProfileError": "cds.errors",
    "SiteError": "cds.errors",
    "RuleSetError": "cds.errors",
    "ReadError": "cds.errors",
    "EngineError": "cds.errors",
    "WorkerLost": "cds.errors",
}
__all__ = ["__version__", *_EXPORTS]


def lazy_attributes(namespace: dict[str, Any], exports: dict[str, str]) -> Callable[[str], Any]:
    """A module's ``__getattr__`` for names defined elsewhere (`exports`: name -> module), imported on first use
    and then kept in the module's `namespace` (its globals()); used by cds and cds.api."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


__getattr__ = lazy_attributes(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
