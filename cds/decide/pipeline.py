"""The evaluation pipeline: profile -> derived facts -> engine -> ranking -> unknown facts.

`Evaluator` loads and compiles the rule set once; `evaluate` runs one patient.
The patient's own fact set and every counterfactual variant of the
unknown-fact analysis go through the durable-rules engine in a single session.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cds import __version__
from cds.decide.decision import Decider, Decision
from cds.decide.ranking import Ranking, rank
from cds.decide.unknowns import UnknownFact, VariantPlanner, summarize
from cds.engine.durable import Engine, durable_version
from cds.engine.matcher import Matcher
from cds.knowledge.ruleset import RuleSet, load_ruleset
from cds.model.facts import REFRACTORY_FIELD, FactValue, derive, engine_facts
from cds.model.profile import PatientProfile, load_profile, parse_profile
from cds.model.vocabulary import Vocabulary
from cds.resources import rules_dir


@dataclass(frozen=True)
class Evaluation:
    profile: PatientProfile
    input_hash: str
    facts: dict[str, FactValue]
    fired: frozenset[str]
    unknown_facts: tuple[UnknownFact, ...]
    unknown_without_effect: tuple[str, ...]
    ruleset: RuleSet
    decision: Decision  # ranked options with their scores, excluded options

    @functools.cached_property
    def ranking(self) -> Ranking:
        """The decision with every reason's text, built on first use (the report needs it, a batch does not)."""
        return rank(self.ruleset, self.decision, self.facts)

    @property
    def engine_version(self) -> str:
        return f"cds {__version__} (durable-rules {durable_version()})"


def input_hash(profile: PatientProfile) -> str:
    """sha256 of the validated profile in canonical JSON (key order and whitespace do not matter; an absent
    optional field and a null are the same, so that adding optional fields to the format changes no hash)."""
    # python-mode dump: every value of the profile model is already a JSON type (str, int, float,
    # bool, None, list, dict), so this is the JSON-mode dump at a third of the cost
    canonical = json.dumps(profile.model_dump(exclude_none=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Evaluator:
    """A rule set compiled on the engine: validates profiles and evaluates them.

    Built from a rule folder (`directory`, default the packaged rules) or from an
    already loaded `ruleset` (e.g. the rules `cds rules check` could compile). The
    rules are matched by `matcher(ruleset)`: the durable-rules `Engine`, or any
    `cds.engine.matcher.Matcher` (the reference interpreter, for the differential
    tests and the benchmark's baseline).
    """

    def __init__(
        self,
        directory: Path | None = None,
        analyze_unknowns: bool = True,
        ruleset: RuleSet | None = None,
        matcher: Callable[[RuleSet], Matcher] = Engine,
    ):
        self.ruleset = ruleset if ruleset is not None else load_ruleset(directory or rules_dir())
        self.engine: Matcher = matcher(self.ruleset)
        self.decider = Decider(self.ruleset)
        self.planner = VariantPlanner(self.ruleset)
        self.analyze_unknowns = analyze_unknowns

    @property
    def vocabulary(self) -> Vocabulary:
        return self.ruleset.vocabulary

    def parse(self, data: object) -> PatientProfile:
        return parse_profile(data, self.vocabulary)

    def load(self, path: Path) -> PatientProfile:
        return load_profile(path, self.vocabulary)

    def fired_rules(self, profile: PatientProfile) -> frozenset[str]:
        facts = derive(profile, self.vocabulary)
        return self.engine.run([engine_facts(facts)], patient=profile.patient_id)[0]

    def evaluate(self, profile: PatientProfile) -> Evaluation:
        facts = derive(profile, self.vocabulary)
        base_facts = engine_facts(facts)
        variants = self.planner.variants(facts, profile) if self.analyze_unknowns else []
        # each variant is the patient's facts with one unknown field set (scoped: see cds.engine.durable);
        # a line's possible refractoriness records are matched unscoped, against every rule
        scoped = [v for v in variants if v.field != REFRACTORY_FIELD]
        whole = [v for v in variants if v.field == REFRACTORY_FIELD]
        variants = scoped + whole
        fired_all = self.engine.run_counterfactuals(
            base_facts, [(v.field, dict(v.assignment)) for v in scoped], patient=profile.patient_id
        )
        for start in range(0, len(whole), 64):
            batch = [{**base_facts, **dict(v.assignment)} for v in whole[start : start + 64]]
            fired_all += self.engine.run(batch, patient=profile.patient_id)
        base = self.decider.decide(fired_all[0])
        unknown: list[UnknownFact] = []
        without: list[str] = []
        if self.analyze_unknowns:
            # many variants fire the same rules: decide each fired set once, from the patient's decision
            seen: dict[frozenset[str], Decision] = {fired_all[0]: base}
            decisions = [seen.get(f) or seen.setdefault(f, self.decider.decide(f, base=base)) for f in fired_all[1:]]
            unknown, without = summarize(variants, decisions, base, facts)
        return Evaluation(
            profile=profile,
            input_hash=input_hash(profile),
            facts=facts,
            fired=fired_all[0],
            unknown_facts=tuple(unknown),
            unknown_without_effect=tuple(without),
            ruleset=self.ruleset,
            decision=base,
        )


@functools.lru_cache(maxsize=4)
def default_evaluator(directory: str | None = None) -> Evaluator:
    """One compiled evaluator per rule folder per process (recompiling leaks in durable-rules)."""
    return Evaluator(Path(directory) if directory else None)
