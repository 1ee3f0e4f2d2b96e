"""The evaluation pipeline: profile -> derived facts -> engine -> ranking -> unknown facts.

`Evaluator` loads and compiles the rule set once; `evaluate` runs one patient.
The patient's own fact set and every counterfactual variant of the
unknown-fact analysis go through the durable-rules engine in a single session.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cds import __version__
from cds.decide.decision import Decider, Decision
from cds.decide.ranking import Ranking, rank
from cds.decide.unknowns import UnknownFact, VariantPlanner, summarize
from cds.engine.durable import Engine, durable_version
from cds.engine.matcher import Matcher
from cds.errors import ProfileError
from cds.knowledge.ruleset import RuleSet, load_ruleset
from cds.model.clock import FROM_EVALUATION_TIME, FROM_PROFILE, NOT_GIVEN, evaluation_day, evaluation_time
from cds.model.facts import Derived, FactValue, derive_values
from cds.model.profile import (
    LINE_DATES,
    PatientProfile,
    PriorLine,
    dates_after,
    evaluation_time_phrase,
    load_profile,
    parse_profile,
)
from cds.model.vocabulary import Vocabulary
from cds.resources import rules_dir


@dataclass(frozen=True)
class Evaluation:
    profile: PatientProfile
    input_hash: str
    derived: Derived  # the facts' values (`facts`: each with how it was obtained, made on first use)
    fired: frozenset[str]
    unknown_facts: tuple[UnknownFact, ...]
    unknown_without_effect: tuple[str, ...]
    ruleset: RuleSet
    decision: Decision  # ranked options with their scores, excluded options
    # the instant the evaluation was made at (cds.model.clock.evaluation_time), None when it was not given;
    # the evaluation date the date-relative facts count to, and where it came from (cds.model.clock: FROM_*)
    evaluated_at: str | None = None
    evaluation_date: str | None = None
    evaluation_date_source: str = NOT_GIVEN

    @functools.cached_property
    def facts(self) -> dict[str, FactValue]:
        """Every fact of the profile with how it was obtained (`cds.model.facts.derive`, lazy), made on first use
        (a batch record reads none)."""
        return self.derived.facts()

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
    return _hash_of(_dump(profile))


def _dump(profile: PatientProfile) -> dict[str, Any]:
    """The validated profile as JSON data, nulls left out (what the input hash and the date check read)."""
    # python-mode dump: every value of the profile model is already a JSON type (str, int, float,
    # bool, None, list, dict), so this is the JSON-mode dump at a third of the cost
    # (the serializer model_dump calls, without model_dump's Python-level call passing each default on)
    dumped: dict[str, Any] = profile.__pydantic_serializer__.to_python(profile, exclude_none=True)
    return dumped


#: what `json.dumps(dumped, sort_keys=True, separators=(",", ":"))` encodes with, built once (json.dumps builds
#: one per call); check_circular off: a dump is a tree (no cycle to find), and it changes no output
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)
#: `_CANONICAL.encode(dumped)` as chunks to join: the C encoder its encode() builds on each call (iterencode's
#: _one_shot path for a non-string without indent: the same arguments, no markers), made once; else encode()
_CHUNKS: Callable[[object, int], list[str]]
try:
    from _json import make_encoder
except ImportError:  # pragma: no cover - CPython has it
    _CHUNKS = lambda dumped, _: [_CANONICAL.encode(dumped)]  # noqa: E731
else:
    _CHUNKS = make_encoder(None, _CANONICAL.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)


def _hash_of(dumped: dict[str, Any]) -> str:
    return hashlib.sha256("".join(_CHUNKS(dumped, 0)).encode()).hexdigest()


def _input_hash(profile: PatientProfile) -> str:
    """`input_hash(profile)`, from each prior line's canonical text kept (`_line_text`): the prior lines of a
    cohort are a few hundred objects shared by its profiles (cds.model.profile's `_seen_lines`)."""
    return hashlib.sha256(_canonical(profile).encode()).hexdigest()


def _canonical(profile: PatientProfile) -> str:
    """`"".join(_CHUNKS(_dump(profile), 0))`: the dump without the prior lines encoded with a mark for them, the
    mark replaced by the lines' texts. Exact: a dict's value is encoded in its key's place whatever the other
    values are, a list as "[" + its items' texts joined by "," + "]", and a line's dump in the profile's is the
    line's own (the same serializer, exclude_none passed on). The mark's text is found once: a quote inside an
    encoded string is escaped, so `"prior_lines":"` is the key's own text (else the plain path, to be sure)."""
    top: dict[str, Any] = profile.__pydantic_serializer__.to_python(profile, exclude_none=True, exclude=_LINES_FIELD)
    top["prior_lines"] = "\x00"
    text = "".join(_CHUNKS(top, 0))
    if text.count(_MARK) != 1:  # pragma: no cover - see above
        return "".join(_CHUNKS(_dump(profile), 0))
    lines = profile.prior_lines
    kept = list(map(_LINE_TEXTS.get, map(id, lines)))  # every line's text when each is kept (most records)
    texts = ",".join(cast("list[str]", kept) if None not in kept else map(_line_text, lines))
    return text.replace(_MARK, '"prior_lines":[' + texts + "]")


_LINES_FIELD = {"prior_lines"}  # (pydantic reads a set fast, a frozenset at twice the cost of the dump)
_MARK = '"prior_lines":"\\u0000"'  # how `_CHUNKS` writes the mark
_LINE_SERIALIZER = PriorLine.__pydantic_serializer__
#: id(line) -> the canonical text of the line's dump, for the lines held in _LINES (so that an id kept is the id of
#: the line it was kept for: no other object can have it while that one lives); bounded
_LINE_TEXTS: dict[int, str] = {}
_LINES: list[PriorLine] = []


def _line_text(line: PriorLine) -> str:
    """`"".join(_CHUNKS(dump, 0))` of a prior line's dump (exclude_none), kept per line object (a model is frozen)."""
    text = _LINE_TEXTS.get(id(line))
    if text is None:
        text = "".join(_CHUNKS(_LINE_SERIALIZER.to_python(line, exclude_none=True), 0))
        if type(line) is not PriorLine:  # a RegimenLine is made for its profile alone (parse_profile): not kept
            return text
        if len(_LINES) >= 1024:  # bounded (as the profile parser's table of lines met before)
            _LINE_TEXTS.clear()
            _LINES.clear()
        _LINES.append(line)
        _LINE_TEXTS[id(line)] = text
    return text


#: evaluation_time(stamp) per stamp given (a batch gives every record the same one); bounded
_STAMPS: dict[str, str] = {}


def _stamp(evaluated_at: str) -> str:
    """`evaluation_time(evaluated_at)`, read once per stamp (a stamp it refuses raises every time)."""
    stamp = _STAMPS.get(evaluated_at)
    if stamp is None:
        stamp = evaluation_time(evaluated_at)
        if len(_STAMPS) > 64:
            _STAMPS.clear()
        _STAMPS[evaluated_at] = stamp
    return stamp


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
        # per field of the scoped variants: the rules of the decision such a variant can fire differently from the
        # patient's facts (those reading a fact it sets; `Decider.decide(..., among=)`)
        self._among = {field: self.decider.rules_reading(facts) for field, facts in self.planner.varied_facts().items()}
        self.analyze_unknowns = analyze_unknowns

    @property
    def vocabulary(self) -> Vocabulary:
        return self.ruleset.vocabulary

    def parse(self, data: object) -> PatientProfile:
        return parse_profile(data, self.vocabulary)

    def load(self, path: Path) -> PatientProfile:
        return load_profile(path, self.vocabulary)

    def fired_rules(self, profile: PatientProfile, evaluated_at: str | None = None) -> frozenset[str]:
        derived = derive_values(profile, self.vocabulary, evaluation_date_for(profile, evaluated_at)[0])
        return self.engine.run([derived.known()], patient=profile.patient_id)[0]

    def evaluate(self, profile: PatientProfile, evaluated_at: str | None = None) -> Evaluation:
        """One patient, evaluated at `evaluated_at` (an `evaluation_time` stamp: the instant the report is
        stamped with). A profile without `evaluation_date` is evaluated on that instant's date; without
        either, the date-relative facts are unknown. A profile date after the evaluation time is a
        ProfileError naming every such field (as one after the profile's evaluation_date is)."""
        if evaluated_at is not None:
            evaluated_at = _stamp(evaluated_at)  # the report's stamp, to the second in UTC
        on, source = evaluation_date_for(profile, evaluated_at)
        derived = derive_values(profile, self.vocabulary, on)  # FactValues and explanations if a report reads them
        base_facts = derived.known()
        # each variant is the patient's facts with one unknown field set (scoped: see cds.engine.durable);
        # a line's possible refractoriness records (the variants after the scoped ones) are matched
        # unscoped, against every rule
        values, not_applying = derived.values, derived.not_applying
        variants, scoped = self.planner.plan(values, not_applying, profile) if self.analyze_unknowns else ([], [])
        fired_all = self.engine.run_counterfactuals(base_facts, scoped, patient=profile.patient_id)
        if len(variants) > len(scoped):
            whole = variants[len(scoped) :]
            for start in range(0, len(whole), 64):
                batch = [{**base_facts, **dict(v.assignment)} for v in whole[start : start + 64]]
                fired_all += self.engine.run(batch, patient=profile.patient_id)
        decide = self.decider.decide
        fired = fired_all[0]
        base = decide(fired)
        unknown: list[UnknownFact] = []
        without: list[str] = []
        if self.analyze_unknowns:
            # many variants fire the same rules: decide each fired set once, from the patient's decision
            seen: dict[frozenset[str], Decision] = {fired: base}
            decisions = []
            among = self._among.get  # the variant's field -> the rules it can change (None: the refractoriness records)
            for f, variant in zip(fired_all[1:], variants):
                made = seen.get(f)
                if made is None:
                    made = seen[f] = decide(f, base, among(variant.field))
                decisions.append(made)
            unknown, without = summarize(variants, decisions, base, base_facts, not_applying)
        # `Evaluation(...)` with every field, without the frozen dataclass's __init__ (an object.__setattr__ per
        # field, 1.8 us): the same instance dict in the same order (tests/test_batch.py checks it field by field)
        ev: Evaluation = _new(Evaluation)
        ev.__dict__.update(
            profile=profile,
            input_hash=_input_hash(profile),
            derived=derived,
            fired=fired,
            unknown_facts=tuple(unknown),
            unknown_without_effect=tuple(without),
            ruleset=self.ruleset,
            decision=base,
            evaluated_at=evaluated_at,
            evaluation_date=on,
            evaluation_date_source=source,
        )
        return ev


_new = object.__new__


def evaluation_date_for(profile: PatientProfile, evaluated_at: str | None) -> tuple[str | None, str]:
    """(the evaluation date, where it came from): the profile's `evaluation_date`, else the date of
    `evaluated_at`, else none. A profile date after a defaulted evaluation date is a ProfileError: a date
    in the future is almost surely a typing error, and counting months to it would be wrong."""
    if profile.evaluation_date is not None:
        return profile.evaluation_date, FROM_PROFILE
    if evaluated_at is None:
        return None, NOT_GIVEN
    on = evaluation_day(evaluated_at)
    if _any_after(profile, on):  # the problems as dates_after words them, from the dump it reads
        raise ProfileError.many(dates_after(_dump(profile), on, evaluation_time_phrase(on)))
    return on, FROM_EVALUATION_TIME


#: (date as written, evaluation date) -> whether `dates_after` finds the date after it; bounded
_AFTER: dict[tuple[str, str], bool] = {}


def _any_after(profile: PatientProfile, on: str) -> bool:
    """Whether `dates_after(_dump(profile), on, ...)` finds a date: the dump's line dates are the lines' date
    attributes that are not None (each date string tested once per evaluation date)."""
    after = _AFTER
    for line in profile.prior_lines:
        dates = _LINE_DATES_OF(line)  # one C call for the five attributes; most lines have none
        if dates == _NO_DATES:
            continue
        for k, v in zip(LINE_DATES, dates):
            if v is None:
                continue
            late = after.get((v, on))
            if late is None:
                if len(after) > 10_000:
                    after.clear()
                late = after[v, on] = bool(dates_after({"prior_lines": [{k: v}]}, on, ""))
            if late:
                return True
    return False


#: a line's LINE_DATES attributes as a tuple (attrgetter of several names), and that tuple for a line without dates
_LINE_DATES_OF = operator.attrgetter(*LINE_DATES)
_NO_DATES = (None,) * len(LINE_DATES)
assert len(LINE_DATES) > 1  # attrgetter of one name would give the value, not a tuple


@functools.lru_cache(maxsize=4)
def default_evaluator(directory: str | None = None) -> Evaluator:
    """One compiled evaluator per rule folder per process (recompiling leaks in durable-rules)."""
    return Evaluator(Path(directory) if directory else None)
