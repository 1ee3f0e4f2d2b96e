"""Rule fixtures: profiles on which a rule must fire and must stay silent.

Fixtures live in ``rules/tests/<family>.yaml``. A fixture names a base profile
of the rule folder's ``tests/profiles/`` and optional overrides. A base profile is
kept for the fixtures alone, small and named for what it shows (its README lists
them), so that editing a tumor-board case in ``patient_profiles/`` can never shift a
rule's boundaries silently: a fixture that names a tumor-board case is a
problem of `cds rules check`, which says so::

    fixtures:
      fires:
        - {profile: tcr_fit_3_lines, set: {ecog: 3}}
      silent:
        - {profile: tcr_fit_3_lines, set: {ecog: 2}, note: "boundary"}

``set`` keys are dotted paths into the profile JSON (``labs.crp_mg_l``,
``prior_lines`` to replace the whole list, ``prior_lines.-1.refractory_to``
for the last line); a value of ``null`` removes the key (the fact becomes
unknown). The result is validated like any profile, so a fixture can never
describe an impossible patient.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cds.errors import CdsError
from cds.knowledge.ruleset import FixtureSpec, Rule
from cds.model.profile import PatientProfile


class FixtureRunner(Protocol):
    """What fixtures run on: profile validation and the rules fired for a profile (the real engine)."""

    def parse(self, data: object) -> PatientProfile: ...

    def fired_rules(self, profile: PatientProfile) -> frozenset[str]: ...


@dataclass(frozen=True)
class FixtureResult:
    rule_id: str
    expectation: str  # "fires" | "silent"
    index: int
    ok: bool
    problem: str | None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node: Any = out
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(value)
        elif value is None:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return out


def base_folder(rules_directory: Path) -> Path:
    """Where fixtures' base profiles live (see the module docstring)."""
    return rules_directory / "tests" / "profiles"


def fixture_profile(spec: FixtureSpec, folder: Path) -> dict[str, Any]:
    """The fixture's profile: its base profile in `folder` with the overrides applied."""
    path = folder / f"{spec.profile}.json"
    if not path.is_file():
        raise FileNotFoundError(spec.profile)
    return apply_overrides(json.loads(path.read_text(encoding="utf-8")), spec.set)


def run_fixtures(rule: Rule, evaluator: FixtureRunner, folder: Path, cases: Path | None = None) -> list[FixtureResult]:
    """Evaluate every fixture of `rule` through `evaluator` (the real engine); base profiles from `folder`.

    `cases` is the tumor-board case folder, if any: a fixture naming one of its cases is told so.
    """
    results: list[FixtureResult] = []
    for expectation, specs in (("fires", rule.fixtures.fires), ("silent", rule.fixtures.silent)):
        for i, spec in enumerate(specs):
            where = f"{expectation}[{i}] ({spec.profile}{' ' + json.dumps(spec.set) if spec.set else ''})"
            try:
                profile = evaluator.parse(fixture_profile(spec, folder))
            except FileNotFoundError:
                if cases is not None and (cases / f"{spec.profile}.json").is_file():
                    missing = (
                        f"{where}: {spec.profile} is a tumor-board case of {cases.name}/, not a base profile: "
                        f"start from one of tests/profiles/ (small, named for what it shows; add one there if none "
                        "fits), so that editing the case cannot move the rule's boundary"
                    )
                else:
                    missing = f"{where}: no base profile tests/profiles/{spec.profile}.json"
                results.append(FixtureResult(rule.id, expectation, i, False, missing))
                continue
            except (CdsError, ValueError, IndexError, KeyError) as exc:
                results.append(FixtureResult(rule.id, expectation, i, False, f"{where}: not a valid profile: {exc}"))
                continue
            fired = rule.id in evaluator.fired_rules(profile)
            ok = fired if expectation == "fires" else not fired
            problem = None if ok else f"{where}: {'did not fire' if expectation == 'fires' else 'fired'}"
            results.append(FixtureResult(rule.id, expectation, i, ok, problem))
    return results
