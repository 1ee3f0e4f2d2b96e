"""The patient profile: the input contract, validated strictly.

Strict types (no coercion of "40" to 40 or "true" to true), unknown keys are
errors, and every optional fact that is absent (or null) means *unknown*, not
false. `parse_profile` checks the structure (pydantic) and the content (drug
names against the vocabulary, regimen labels, cytogenetics against the
catalogue, dates) in one pass and raises one `ProfileError` carrying *every*
problem, each naming its field (dotted path, e.g.
``prior_lines[1].refractory_to[0]``).

Profile v2 (issue 12) added optional fields only; a profile valid before keeps
its meaning. Per line: ``agents`` may be left out when ``regimen`` is a known
label (rules/catalog/regimens.yaml; the line then has the label's agents and
`PriorLine.agents_from_regimen` says so); ``refractory_to`` absent means *not
recorded* (the facts that depend on it become unknown, never false), ``[]``
means refractory to none; ``autologous_transplant`` absent means no transplant
recorded in that line; ``intolerant_to`` absent means *not recorded* (intolerance to the line's agents
is unknown, never false), ``[]`` intolerant to none;
``infusion_date`` (a CAR-T line only) is the day the CAR-T cells were infused, when the line's
``start_date`` is earlier (the apheresis, bridging): absent, the ``start_date`` of a CAR-T line is
read as the infusion, as before; ``transplant_date`` (with ``autologous_transplant: true``) is the day
of the line's (last) autologous transplant: early relapse after ASCT is counted from it, and without it
from the start of the line.
"""

from __future__ import annotations

import calendar
import difflib
import functools
import itertools
import json
import math
import re
import sys
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args

from pydantic import AfterValidator, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from cds.datafile import PROFILE_LIMIT, read_capped
from cds.errors import MESSAGE_VALUE_LIMIT, ProfileError, ReadError, printable, quoted
from cds.model.base import Strict
from cds.model.vocabulary import Drug, Resolution, Vocabulary

Frailty = Literal["fit", "intermediate", "frail"]
Sex = Literal["female", "male", "other"]
BestResponse = Literal["sCR", "CR", "VGPR", "PR", "MR", "SD", "PD"]  # IMWG
StopReason = Literal["progression", "toxicity", "completed", "patient_choice", "other"]
#: best responses that are no response at all (IMWG: refractory = no response, i.e. less than MR, or progression)
NON_RESPONSE: tuple[str, ...] = ("SD", "PD")

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


def _json_quoted(value: str) -> str:
    """A string from the profile as JSON writes it, safe to print and cut to a message's length."""
    return printable(json.dumps(value[: MESSAGE_VALUE_LIMIT + 1], ensure_ascii=False))


_VALID_DATES: set[str] = set()  # the dates _valid_date passed (a cohort's are few; at most 4,096 kept)


def _valid_date(value: str) -> str:
    if type(value) is str and value in _VALID_DATES:
        return value
    m = _DATE_RE.match(value)
    if not m:
        raise ValueError(f"{_json_quoted(value)} is not a date: write YYYY-MM-DD or YYYY-MM (e.g. 2024-03-15 or 2024-03)")
    year, month, day = int(m.group(1)), int(m.group(2)), m.group(3)
    if not 1900 <= year <= 2200 or not 1 <= month <= 12:
        raise ValueError(f"{_json_quoted(value)} is not a valid month")
    if day is not None and not 1 <= int(day) <= calendar.monthrange(year, month)[1]:
        raise ValueError(f"{_json_quoted(value)} is not a valid day of that month")
    if type(value) is str:
        if len(_VALID_DATES) >= 4096:
            _VALID_DATES.clear()
        _VALID_DATES.add(value)
    return value


#: ISO date ``YYYY-MM-DD`` or a month ``YYYY-MM`` (when the day is not known)
PartialDate = Annotated[str, AfterValidator(_valid_date)]

# Upper bounds far above any physiological value: they catch unit mix-ups and
# keep every number in the range the rules engine can represent.


def _no_negative_zero(value: float) -> float:
    return value + 0.0  # -0.0 + 0.0 == +0.0: "-0" and "0" are one value, with one input hash


CreatinineClearance = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False), AfterValidator(_no_negative_zero)]
LabValue = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False), AfterValidator(_no_negative_zero)]
NonEmptyName = Annotated[str, Field(min_length=1, max_length=200)]


class Labs(Strict):
    soluble_bcma_ng_ml: LabValue | None = None
    ferritin_ng_ml: LabValue | None = None
    crp_mg_l: LabValue | None = None
    neutrophils_10e9_l: LabValue | None = None
    platelets_10e9_l: LabValue | None = None
    igg_g_l: LabValue | None = None
    ldh_u_l: LabValue | None = None


class InvestigationalAgent(Strict):
    """An agent the vocabulary does not name (a trial product): its name or code, and its class and target."""

    investigational: NonEmptyName
    drug_class: str = Field(alias="class", min_length=1, max_length=40)
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,19}$")] | None = None


Agent = NonEmptyName | InvestigationalAgent


class PriorLine(Strict):
    regimen: Annotated[str, Field(max_length=200)] | None = None
    agents: list[Agent] | None = Field(default=None, min_length=1, max_length=30)
    refractory_to: list[NonEmptyName] | None = Field(default=None, max_length=30)
    intolerant_to: list[NonEmptyName] | None = Field(default=None, max_length=30)
    autologous_transplant: bool | None = None
    transplant_date: PartialDate | None = None  # the (last) autologous transplant of the line, when known
    start_date: PartialDate | None = None
    infusion_date: PartialDate | None = None  # a CAR-T line: the infusion (absent: start_date is read as it)
    end_date: PartialDate | None = None
    progression_date: PartialDate | None = None
    best_response: BestResponse | None = None
    stop_reason: StopReason | None = None

    @property
    def agents_from_regimen(self) -> bool:
        """True when `agents` was left out and filled in from the regimen label (a `RegimenLine`)."""
        return False

    @property
    def agent_list(self) -> list[Agent]:
        """The line's agents (always set on a profile returned by `parse_profile`)."""
        return list(self.agents or ())

    @property
    def refractoriness_recorded(self) -> bool:
        return self.refractory_to is not None


class RegimenLine(PriorLine):
    """A line whose `agents` were left out and are its regimen label's (made by `parse_profile`, never validated).

    A class rather than a private attribute: a model with one sets it up on every line validated, which
    cost as much as validating the line."""

    @property
    def agents_from_regimen(self) -> bool:
        return True


class PatientProfile(Strict):
    patient_id: Annotated[str, Field(min_length=1, max_length=200)]
    age: int = Field(ge=18, le=120)
    ecog: int = Field(ge=0, le=4)
    sex: Sex | None = None
    evaluation_date: PartialDate | None = None
    frailty: Frailty | None = None
    creatinine_clearance_ml_min: CreatinineClearance | None = None
    dialysis: bool | None = None
    extramedullary_disease: bool | None = None
    plasma_cell_leukemia: bool | None = None
    cns_involvement: bool | None = None
    r_iss: int | None = Field(default=None, ge=1, le=3)
    cytogenetics: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(default=None, max_length=30)
    # the probes of a partial panel: abnormalities outside it are unknown (absent: `cytogenetics` is the whole panel)
    cytogenetics_tested: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        default=None, min_length=1, max_length=30
    )
    rapidly_progressive: bool | None = None
    car_t_center_access: bool | None = None
    organ_function_adequate: bool | None = None
    active_serious_infection: bool | None = None
    prior_serious_infections: bool | None = None  # serious (grade >= 3 or hospitalised) infections on earlier treatment
    prior_allogeneic_transplant: bool | None = None
    labs: Labs | None = None
    prior_lines: list[PriorLine] = Field(max_length=40)
    notes: Annotated[str, Field(max_length=10_000)] | None = None  # free text: printed escaped, never read by rules

    @field_validator("cytogenetics", "cytogenetics_tested")
    @classmethod
    def _no_duplicate_cytogenetics(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            dup = sorted({x for x in v if v.count(x) > 1})
            raise ValueError(f"lists {', '.join(dup)} more than once")
        return v


#: every optional top-level field (what `cds new-profile` documents and the JSON Schema lists)
PROFILE_FIELDS: tuple[str, ...] = tuple(PatientProfile.model_fields)
LINE_FIELDS: tuple[str, ...] = tuple(PriorLine.model_fields)
LAB_FIELDS: tuple[str, ...] = tuple(Labs.model_fields)


# --------------------------------------------------------------------------- agents of a line


def agent_text(agent: Agent) -> str:
    """An agent as written (an investigational agent by its name)."""
    return agent if isinstance(agent, str) else agent.investigational


def resolve_agent(agent: Agent, vocabulary: Vocabulary) -> Resolution | None:
    """The drug an agent entry stands for (None for an unknown name or class)."""
    if isinstance(agent, str):
        return vocabulary.resolve(agent)
    if agent.drug_class not in vocabulary.classes:
        return None
    target = (agent.target,) if agent.target else None
    return Resolution(agent.investigational, vocabulary.investigational(agent.investigational, agent.drug_class, target))


def line_drugs(line: PriorLine, vocabulary: Vocabulary) -> list[Resolution]:
    """How every agent of a validated line was read."""
    out = []
    for agent in line.agent_list:
        found = resolve_agent(agent, vocabulary)
        assert found is not None  # validated by parse_profile
        out.append(found)
    return out


def _named(name: str, drugs: list[Resolution], vocabulary: Vocabulary) -> Drug | None:
    """The drug of the line that `name` (an entry of refractory_to / intolerant_to) refers to."""
    return _named_as(name, vocabulary.resolve(name), drugs)


def _named_as(name: str, found: Resolution | None, drugs: list[Resolution]) -> Drug | None:
    """`_named`, with `found` the vocabulary's resolution of `name`."""
    for r in drugs:
        if found is not None and r.drug.name == found.drug.name:
            return r.drug
        if r.drug.investigational and r.written.strip().lower() == name.strip().lower():
            return r.drug
    return None


def named_drugs(names: list[str] | None, line: PriorLine, vocabulary: Vocabulary) -> set[str]:
    """Generic names of the line's drugs that `names` refer to (refractory_to, intolerant_to)."""
    drugs = line_drugs(line, vocabulary)
    out = set()
    for n in names or ():
        d = _named(n, drugs, vocabulary)
        assert d is not None  # validated by parse_profile
        out.add(d.name)
    return out


# --------------------------------------------------------------------------- partial dates


@dataclass(frozen=True, order=True)
class Day:
    """A date to the day or to the month (`day` None)."""

    year: int
    month: int
    day: int | None = None

    @classmethod
    def parse(cls, text: str) -> Day:
        m = _DATE_RE.match(text)
        assert m, text
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) else None)

    def bounds(self) -> tuple[int, int]:
        """Earliest and latest day number (days since 1 Jan of year 0, proleptic) this date can be."""
        from datetime import date

        if self.day is not None:
            n = date(self.year, self.month, self.day).toordinal()
            return n, n
        last = calendar.monthrange(self.year, self.month)[1]
        return date(self.year, self.month, 1).toordinal(), date(self.year, self.month, last).toordinal()

    def surely_before(self, other: Day) -> bool:
        """True only when this date is before `other` whatever the unknown days are."""
        return self.bounds()[1] < other.bounds()[0]


def months_between(a: Day, b: Day) -> tuple[float, float]:
    """(shortest, longest) interval from a to b in months of 30.4375 days, given the precision of both."""
    (a_lo, a_hi), (b_lo, b_hi) = a.bounds(), b.bounds()
    return (b_lo - a_hi) / 30.4375, (b_hi - a_lo) / 30.4375


# --------------------------------------------------------------------------- error messages


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + printable(part)
    return out or "(profile)"


def _describe(value: Any) -> str:
    """A short, never-failing description of a bad value for an error message."""
    if isinstance(value, dict):
        return f"with {len(value)} key(s)"
    if isinstance(value, list):
        return f"with {len(value)} item(s)"
    if isinstance(value, str) and len(value) > 60:
        value = value[:60]  # the whole of a huge value is never encoded
    return printable(json.dumps(value, ensure_ascii=False), 60)


_TYPE_NAMES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "model_type": "an object",
    "dict_type": "an object",
}

#: what people write for "not known"; for an optional field the answer is to leave it out
_UNKNOWN_WORDS = frozenset(
    {"unknown", "unk", "not done", "not tested", "not known", "n/a", "na", "none", "nd", "?", "-", "", "null", "missing"}
)
_UNKNOWN_HINT = "omit the field or use null for unknown"

_ENUMS: dict[str, tuple[str, ...]] = {
    "frailty": get_args(Frailty),
    "sex": get_args(Sex),
    "best_response": get_args(BestResponse),
    "stop_reason": get_args(StopReason),
}


def _enum_suggestion(value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        return ""
    folded = {a.lower().replace("_", " "): a for a in allowed}
    key = value.strip().lower().replace("_", " ").replace("-", " ")
    if key in folded:
        return f"; did you mean {folded[key]!r}?"
    close = difflib.get_close_matches(key, list(folded), n=2, cutoff=0.6)
    if not close and key:  # an abbreviation: "M" for male
        close = [a for a in folded if a.startswith(key)][:1] if sum(a.startswith(key) for a in folded) == 1 else []
    return f"; did you mean {' or '.join(repr(folded[c]) for c in close)}?" if close else ""


def _unknown_hint(value: object, field: str) -> str:
    if isinstance(value, str) and value.strip().lower() in _UNKNOWN_WORDS and field not in ("patient_id", "age", "ecog"):
        if field == "cytogenetics":
            return f" ({_UNKNOWN_HINT}: not tested; [] means tested, none found)"
        return f" ({_UNKNOWN_HINT})"
    return ""


_UNION_TAGS = frozenset({"str", "constrained-str", "InvestigationalAgent"})


def _error_message(err: ErrorDetails) -> tuple[str, str] | None:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in {"list[...]"}))
    # an agent is a name or an investigational-agent object: pydantic tries both; keep the relevant branch
    tags = [p for p in loc if p in _UNION_TAGS]
    if tags:
        if tags[0] == "InvestigationalAgent":
            if loc[-1] == "InvestigationalAgent":
                return None  # not an object: the name branch says what is wrong
        elif isinstance(err.get("input"), dict):
            return None  # an object: the investigational-agent branch says what is wrong
        loc = tuple(p for p in loc if p not in _UNION_TAGS)
    field = _path(loc)
    name = loc[-1] if loc and isinstance(loc[-1], str) else ""
    etype = err["type"]
    value = err.get("input")
    if etype == "missing":
        return field, "required field is missing"
    if etype == "extra_forbidden":
        return field, "unknown field (not part of the profile format)"
    if etype in _TYPE_NAMES:
        hint = _unknown_hint(value, str(name))
        if etype == "model_type" and "agents" in field and isinstance(value, (int, float, bool, list)):
            return (
                field,
                f'expected a drug name or an investigational agent {{"investigational": ..., "class": ...}}, got {type(value).__name__} {_describe(value)}',
            )
        if value is None:
            return field, f"expected {_TYPE_NAMES[etype]}, got null (this field is required)"
        return field, f"expected {_TYPE_NAMES[etype]}, got {type(value).__name__} {_describe(value)}{hint}"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        allowed = _ENUMS.get(str(name), ())
        return (
            field,
            f"{_describe(value)} is not one of {expected}{_enum_suggestion(value, allowed)}{_unknown_hint(value, str(name))}",
        )
    if etype in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return field, f"{_describe(value)} is out of range ({err['msg'].lower()})"
    if etype == "finite_number":
        return field, "must be a finite number"
    if etype in {"too_short", "too_long", "string_too_short", "string_too_long"}:
        return field, err["msg"].replace("List", "list").replace("String", "string")
    if etype == "string_pattern_mismatch" and name == "target":
        return field, f"{_describe(value)} is not a target name (letters, digits and '-', e.g. BCMA)"
    return field, err["msg"].removeprefix("Value error, ") + _unknown_hint(value, str(name))


MAX_DEPTH = 32  # a profile is at most 5 levels deep; anything far deeper is not a profile


def _check_structure(value: Any) -> None:
    """Refuse NaN/Infinity (Python's JSON parser accepts them) and absurd nesting, naming the field.

    Iterative, so that no input can exhaust the interpreter's recursion limit. A
    cheap pass without paths runs on every profile; the field is named only when
    there is a problem.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif isinstance(node, float):
            if not math.isfinite(node):
                break
            continue
        elif not isinstance(node, list):
            continue
        if depth >= MAX_DEPTH and len(node):  # its items would be deeper than MAX_DEPTH
            break
        stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list, float)))
    else:
        return
    _name_structure_problem(value)


def _name_structure_problem(value: Any) -> None:
    paths: list[tuple[Any, str, int]] = [(value, "", 0)]
    while paths:
        node, path, depth = paths.pop()
        if depth > MAX_DEPTH:
            raise ProfileError(path or "(profile)", f"nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, float) and not math.isfinite(node):
            raise ProfileError(path or "(profile)", "must be a finite number")
        if isinstance(node, dict):
            paths.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in node.items())
        elif isinstance(node, list):
            paths.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node))


MAX_ITEMS = 100  # items in any list or object of a profile (the longest list the contract allows has 40)


def _check_sizes(data: dict[str, Any], text: str | None = None, shape: Shape | None = None) -> None:
    """Refuse a list or object with more than MAX_ITEMS items, naming the field, before any validation.

    A profile under the size limit can still hold 100,000 list items, each of which the
    validators would check (and suggest corrections for) one by one: one problem instead.
    `text`, when known, is the JSON text `data` was decoded from: a list or object of more
    than MAX_ITEMS items has at least MAX_ITEMS commas between them, so a text with fewer
    commas needs no walk. A cheap pass without paths runs otherwise; the field is named only
    when there is a problem. `shape`: what `decode_profile_json` counted in that text (its commas).
    """
    if shape is not None:
        if shape.commas < MAX_ITEMS:
            return
    elif text is not None and text.count(",") < MAX_ITEMS:
        return
    stack: list[Any] = [data]
    while stack:
        node = stack.pop()
        if len(node) > MAX_ITEMS:
            _name_size_problem(data)
        stack.extend([v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))])


def _name_size_problem(data: dict[str, Any]) -> None:
    """The ProfileError for the first list or object of more than MAX_ITEMS items (walked depth first, last item first)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if len(node) > MAX_ITEMS:
            raise ProfileError(
                path or "(profile)", f"has {len(node):,} items; a profile has at most {MAX_ITEMS} in any list or object"
            )
        for k, v in items:
            if isinstance(v, (dict, list)):
                stack.append((v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{printable(k)}" if path else printable(k)))
    raise AssertionError("no list or object is too long")  # only called when one is


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a key given twice is an error (the first key met again), not 'the last one wins'."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


# --------------------------------------------------------------------------- content checks


Problem = tuple[str, str]
#: a regimen label as `_label_regimen` reads it
Known = tuple[str, tuple[str, ...]] | None
#: a regimen label as `_label_regimen` reads it, and its agents as a set
_Label = tuple[str, tuple[str, ...], frozenset[str]] | None


def _label_regimen(label: object, vocabulary: Vocabulary) -> Known:
    """(label, generic agents) when a line's regimen label is a known regimen or a single drug name."""
    if not isinstance(label, str) or not label.strip():
        return None
    reg = vocabulary.regimen(label)
    if reg is not None:
        return reg.label, reg.agents
    found = vocabulary.resolve(label)
    if found is not None:
        return found.drug.name, (found.drug.name,)
    return None


def _labels_inside(label: str, vocabulary: Vocabulary) -> list[str]:
    """Known regimen labels inside a free-text label ("VRd + ASCT" -> VRd), for a hint."""
    out = []
    for part in re.split(r"[+,/;()]|\bthen\b|\band\b|\bx\d+\b", label):
        reg = vocabulary.regimen(part) if part.strip() else None
        if reg is not None and reg.label not in out:
            out.append(reg.label)
    return out


def _not_a_drug(name: str, key: str, trial: set[str], vocabulary: Vocabulary) -> str | None:
    """Why an entry of refractory_to / intolerant_to (`key`) can name no agent whatever the line's agents are, or None.

    `trial`: the line's investigational agents as written, lower case."""
    if vocabulary.resolve(name) is not None or name.strip().lower() in trial:
        return None
    reg = vocabulary.regimen(name)
    if reg is not None:
        return (
            f"{quoted(name)} is a regimen label, not an agent: name the agents of it the line was {key.split('_')[0]} to "
            f"({reg.label} is {', '.join(reg.agents)})"
        )
    sugg = vocabulary.suggestions(name)
    if sugg:
        return f"unknown drug {quoted(name)}; did you mean {', '.join(sugg)}?"
    return None  # perhaps an investigational agent of the line: checked against the line's agents


def _check_agents(
    i: int, agents: list[Any], vocabulary: Vocabulary, out: list[Problem], trial: set[str], memo: _Memo
) -> tuple[list[Resolution], dict[str, str]]:
    """The drugs of line `i`'s `agents` list, each once, and {generic name: as written}; their problems go to
    `out`, the investigational agents' names (lower case) to `trial`. A list of names without a problem is
    kept in `memo` (the same names give the same drugs)."""
    drugs: list[Resolution] = []
    seen: dict[str, str] = {}
    resolve = vocabulary.resolve
    problems = len(out)
    for j, agent in enumerate(agents):
        if isinstance(agent, str) and agent.strip():
            found = resolve(agent)
            if found is None:
                field = f"prior_lines[{i}].agents[{j}]"
                reg = vocabulary.regimen(agent)
                if reg is not None:
                    out.append(
                        (
                            field,
                            f"{quoted(agent)} is a regimen label, not an agent: put it in 'regimen' and list its agents "
                            f"({', '.join(reg.agents)}) or leave 'agents' out",
                        )
                    )
                else:
                    sugg = vocabulary.suggestions(agent)
                    hint = f"; did you mean {', '.join(sugg)}?" if sugg else ""
                    out.append(
                        (
                            field,
                            f"unknown drug {quoted(agent)}{hint} (a trial agent can be entered as "
                            '{"investigational": "<name>", "class": "<class>"})',
                        )
                    )
                continue
            written = agent
        elif isinstance(agent, dict) and isinstance(agent.get("investigational"), str):
            cls = agent.get("class")
            name = written = agent["investigational"]
            blank = bool(name) and not name.strip()  # only spaces ("" is the model's: too short)
            if blank:
                out.append(
                    (
                        f"prior_lines[{i}].agents[{j}].investigational",
                        f"{_describe(name)} is blank: write the trial agent's name or code",
                    )
                )
            else:
                trial.add(name.strip().lower())
            if not blank and resolve(name) is not None:
                out.append(
                    (f"prior_lines[{i}].agents[{j}].investigational", f"{quoted(name)} is a known drug: write it as a name")
                )
                continue
            if not isinstance(cls, str) or cls not in vocabulary.classes:
                if isinstance(cls, str):
                    close = difflib.get_close_matches(cls, list(vocabulary.classes), n=2, cutoff=0.5)
                    hint = f"; did you mean {' or '.join(close)}?" if close else ""
                    out.append(
                        (
                            f"prior_lines[{i}].agents[{j}].class",
                            f"unknown class {quoted(cls)}{hint} (one of {', '.join(sorted(vocabulary.classes))})",
                        )
                    )
                continue
            if blank:
                continue
            found = Resolution(name, vocabulary.investigational(name, cls, (agent["target"],) if agent.get("target") else None))
        elif isinstance(agent, str) and agent:  # only spaces: no drug (the model's length check passes it; "" it does not)
            out.append((f"prior_lines[{i}].agents[{j}]", f"{_describe(agent)} is blank: write the drug's name"))
            continue
        else:
            continue  # the structure check reports it
        generic = found.drug.name
        if generic in seen:
            out.append(
                (
                    f"prior_lines[{i}].agents[{j}]",
                    f"{quoted(written)} is listed twice in this line (same drug as {quoted(seen[generic])})",
                )
            )
            continue
        seen[generic] = written
        drugs.append(found)
    if len(out) == problems and all(type(a) is str for a in agents):  # no problem to repeat, no trial agent
        if len(memo.agents) > 10_000:  # bounded, as the labels
            memo.agents.clear()
        memo.agents[tuple(agents)] = (drugs, seen)
    return drugs, seen


def _check_line(i: int, line: dict[str, Any], vocabulary: Vocabulary, memo: _Memo) -> list[Problem]:
    """The content problems of line `i`."""
    out: list[Problem] = []
    label = line.get("regimen")
    if isinstance(label, str):
        try:
            known = memo.labels[label]
        except KeyError:
            read = _label_regimen(label, vocabulary)
            known = memo.labels[label] = (*read, frozenset(read[1])) if read is not None else None
    else:
        known = None
    agents = line.get("agents")
    drugs: list[Resolution] = []
    trial: set[str] = set()  # the line's investigational agents as written, lower case
    if agents is None:
        if known is None:
            if isinstance(label, str) and label.strip():
                inside = _labels_inside(label, vocabulary)
                hint = (
                    f" (it contains {', '.join(inside)}: list that regimen's agents plus the rest, or give the label alone)"
                    if inside
                    else " (see rules/catalog/regimens.yaml for the known labels)"
                )
                out.append(
                    (
                        f"prior_lines[{i}].agents",
                        f"required: the regimen {quoted(label)} is not a known label, so its agents must be listed{hint}",
                    )
                )
            else:
                out.append((f"prior_lines[{i}].agents", 'required field is missing (or give a known regimen label, e.g. "KRd")'))
        else:
            drugs = [Resolution(a, vocabulary.lookup(a) or Drug(a, "", ())) for a in known[1]]
    elif isinstance(agents, list):
        try:
            drugs, seen = memo.agents[tuple(agents)]
        except (KeyError, TypeError):  # not met yet, or not all names (unhashable)
            drugs, seen = _check_agents(i, agents, vocabulary, out, trial, memo)
        if known is not None and len(drugs) == len(agents) and not seen.keys() >= known[2]:
            missing = [a for a in known[1] if a not in seen]  # seen: the generic names of `drugs`
            if missing:
                out.append(
                    (
                        f"prior_lines[{i}].agents",
                        f"does not include {', '.join(missing)}, which {known[0]} contains: list every agent of the "
                        "label (more is fine) or leave 'agents' out",
                    )
                )
    complete = agents is None or (isinstance(agents, list) and len(drugs) == len(agents))
    # without an investigational agent, the drug a name refers to (_named_as) is the line's drug of that generic name
    generics: Collection[str] | None = None
    if not trial:
        generics = seen if isinstance(agents, list) else {r.drug.name for r in drugs}
    for key in ("refractory_to", "intolerant_to"):
        names = line.get(key)
        if not isinstance(names, list):
            continue
        taken: set[str] = set()
        for j, name in enumerate(names):
            if not isinstance(name, str):
                continue
            found = vocabulary.resolve(name)
            if found is None:
                wrong = _not_a_drug(name, key, trial, vocabulary)
                if wrong is not None:
                    out.append((f"prior_lines[{i}].{key}[{j}]", wrong))
                    continue
            if not complete:
                continue  # which agents the line has is not known yet: the agents list's own problems are reported
            if generics is not None:
                named = found.drug.name if found is not None and found.drug.name in generics else None
            else:
                d = _named_as(name, found, drugs)
                named = d.name if d is not None else None
            if named is None:
                listed = ", ".join(printable(r.written) for r in drugs)
                out.append(
                    (
                        f"prior_lines[{i}].{key}[{j}]",
                        f"{quoted(name)} is not one of this line's agents ({listed}); {key} must name agents of the same line",
                    )
                )
            elif named in taken:
                out.append((f"prior_lines[{i}].{key}[{j}]", f"{quoted(name)} is listed twice"))
            else:
                taken.add(named)
    if line.get("refractory_to") == [] and line.get("best_response") in NON_RESPONSE:
        out.append(
            (
                f"prior_lines[{i}].refractory_to",
                f"is [] but best_response is {line['best_response']}: no response (less than MR) is refractoriness; "
                "list the agents, or leave refractory_to out if it is not known",
            )
        )
    if line.get("infusion_date") is not None and complete and drugs and not any(_car_t(r.drug) for r in drugs):
        out.append(
            (
                f"prior_lines[{i}].infusion_date",
                "is only for a CAR-T line (the day the CAR-T cells were infused); this line has no CAR-T agent",
            )
        )
    if line.get("transplant_date") is not None and line.get("autologous_transplant") is not True:
        out.append(
            (
                f"prior_lines[{i}].transplant_date",
                "is the date of the line's autologous transplant: give it with autologous_transplant: true",
            )
        )
    start = line.get("start_date")
    if isinstance(start, str) and (start_days := _valid_days(start)) is not None:
        for k in ("infusion_date", "transplant_date", "end_date", "progression_date"):
            v = line.get(k)
            if isinstance(v, str) and (days := _valid_days(v)) is not None and days[1] < start_days[0]:
                out.append((f"prior_lines[{i}].{k}", f"{v} is before the line's start_date {start}"))
    return out


#: the dates of a prior line (none may be after the evaluation date)
LINE_DATES: tuple[str, ...] = ("start_date", "infusion_date", "transplant_date", "end_date", "progression_date")


def _car_t(drug: Drug) -> bool:
    return drug.drug_class.endswith("_car_t")


def _date_ok(text: str) -> bool:
    try:
        _valid_date(text)
    except ValueError:
        return False
    return True


def _check_tested(data: dict[str, Any], vocabulary: Vocabulary) -> list[Problem]:
    """`cytogenetics_tested`: catalogue names, and only beside a `cytogenetics` result."""
    tested = data.get("cytogenetics_tested")
    if not isinstance(tested, list):
        return []
    out: list[Problem] = []
    for j, abn in enumerate(tested):
        if isinstance(abn, str) and abn not in vocabulary.cytogenetic_names:
            sugg = vocabulary.cytogenetic_suggestions(abn)
            hint = f"; did you mean {' or '.join(sugg)}?" if sugg else ""
            out.append(
                (f"cytogenetics_tested[{j}]", f"{_describe(abn)} is not one of {', '.join(vocabulary.cytogenetic_names)}{hint}")
            )
    if data.get("cytogenetics") is None:
        out.append(
            (
                "cytogenetics_tested",
                "names the probes of a panel whose result is `cytogenetics`: give it too ([] when none was found), "
                "or omit both for not tested",
            )
        )
    return out


class _Memo:
    """What the content checks work out once per vocabulary: the catalogue's abnormalities, how the regimen
    labels met so far read (`_label_regimen`, and the agents as a set) and the lists of agent names met so
    far without a problem (`_check_agents`); at most 10,000 of each, as `Vocabulary.resolve` keeps. And the
    prior lines of decoded JSON met so far (`_seen_lines`), at most `MAX_SEEN_LINES`."""

    def __init__(self, vocabulary: Vocabulary):
        self.cytogenetics = frozenset(vocabulary.cytogenetic_names)
        self.labels: dict[str, _Label] = {}
        self.agents: dict[tuple[str, ...], tuple[list[Resolution], dict[str, str]]] = {}
        self.lines: dict[tuple[Any, ...] | str, _Seen] = {}  # keyed by `_seen_lines` or by text (`_seen_texts`)


class _Seen:
    """What is known of a prior line (a JSON object) met before: `model`, the `PriorLine` it validated to
    (None: not known yet), and `clean`, when `_check_line` found no problem in it, the bounds of its
    start_date (`_valid_days`, None: no valid one) and the latest earliest day of its dates (None: no
    valid date), else None. Lines equal as JSON give the same (the checks read nothing but the line)."""

    __slots__ = ("clean", "model")

    def __init__(self) -> None:
        self.model: PriorLine | None = None
        self.clean: tuple[tuple[int, int] | None, int | None] | None = None


MAX_SEEN_LINES = 1024  # distinct prior lines kept (~2.5 kB each; the benchmark cohort's 100,000 profiles have 152)


def _seen_lines(lines: object, memo: _Memo) -> list[_Seen] | None:
    """The `_Seen` of every prior line of decoded JSON (`decode_json`), or None when a line is not an object
    or holds one (an investigational agent: not kept).

    A line's key is its keys and its values, a list as a tuple, a value other than a string or a list
    with its type (true is not 1 in a profile; in a list, 1 and true are alike: the checks skip both, and
    a line that validates holds strings only). The JSON decoder makes nothing but dicts, lists, strings,
    numbers, booleans and None: a line's key is equal to another's only when the lines are the same JSON."""
    if type(lines) is not list:
        return None
    table = memo.lines
    out = []
    for line in lines:
        if type(line) is not dict:
            return None
        key = (*line, *[tuple(v) if (t := type(v)) is list else v if t is str else (t, v) for v in line.values()])
        try:
            out.append(_seen(table, key))
        except TypeError:  # a list in a list, an object: unhashable
            return None
    return out


def _seen(table: dict[tuple[Any, ...] | str, _Seen], key: tuple[Any, ...] | str) -> _Seen:
    """The `_Seen` of a prior line's key in the memo's table, a new one for a key not met before (bounded)."""
    seen = table.get(key)
    if seen is None:
        if len(table) >= MAX_SEEN_LINES:  # bounded: arbitrary input cannot grow it without limit
            table.clear()
        seen = table[key] = _Seen()
    return seen


def _seen_texts(texts: list[str], memo: _Memo) -> list[_Seen]:
    """`_seen_lines`, of prior lines known by their JSON texts (`Shape.lines`): lines written alike are the
    same JSON (a string is never equal to a `_seen_lines` key, a tuple)."""
    table = memo.lines
    return [_seen(table, text) for text in texts]


def _latest(line: dict[str, Any]) -> int | None:
    """The latest earliest day (`_valid_days`) of a line's valid dates, None when it has none."""
    days = [d[0] for k in LINE_DATES if isinstance(v := line.get(k), str) and (d := _valid_days(v)) is not None]
    return max(days) if days else None


def _none_after(seen: list[_Seen], on: str) -> bool:
    """True when `dates_after` finds no date of these lines after `on` (every one clean), False when not known."""
    last = _days(on)[1]  # AssertionError: not a date, as dates_after
    for s in seen:
        clean = s.clean
        if clean is None or (clean[1] is not None and last < clean[1]):
            break
    else:
        return True
    return False


_MEMOS: weakref.WeakKeyDictionary[Vocabulary, _Memo] = weakref.WeakKeyDictionary()


def _memo(vocabulary: Vocabulary) -> _Memo:
    try:
        memo = _MEMOS[vocabulary]
    except KeyError:
        memo = _MEMOS[vocabulary] = _Memo(vocabulary)
    if len(memo.labels) > 10_000:  # bounded: arbitrary input cannot grow it without limit
        memo.labels.clear()
    return memo


def check_content(data: dict[str, Any], vocabulary: Vocabulary) -> list[Problem]:
    """Every content problem of a decoded profile, leniently (whatever its structure problems are)."""
    return _check_content(data, vocabulary, _memo(vocabulary), None)


def _check_content(data: dict[str, Any], vocabulary: Vocabulary, memo: _Memo, seen: list[_Seen] | None) -> list[Problem]:
    """`check_content`; `seen`: the `_seen_lines` of the profile's prior lines, when known."""
    out: list[Problem] = []
    cyto = data.get("cytogenetics")
    if isinstance(cyto, list):
        for j, abn in enumerate(cyto):
            if isinstance(abn, str) and abn not in memo.cytogenetics:
                sugg = vocabulary.cytogenetic_suggestions(abn)
                hint = f"; did you mean {' or '.join(sugg)}?" if sugg else ""
                out.append(
                    (
                        f"cytogenetics[{j}]",
                        f"{_describe(abn)} is not one of {', '.join(vocabulary.cytogenetic_names)}{hint}"
                        f"{_unknown_hint(abn, 'cytogenetics')}",
                    )
                )
    elif isinstance(cyto, str):
        out.append(("cytogenetics", f"expected a list, got str {_describe(cyto)}{_unknown_hint(cyto, 'cytogenetics')}"))
    if "cytogenetics_tested" in data:
        out.extend(_check_tested(data, vocabulary))
    out.extend(_check_lines(data, vocabulary, memo, seen))
    return out


def _check_lines(data: dict[str, Any], vocabulary: Vocabulary, memo: _Memo, seen: list[_Seen] | None) -> list[Problem]:
    out: list[Problem] = []
    lines = data.get("prior_lines")
    if isinstance(lines, list) and not lines:
        out.append(
            (
                "prior_lines",
                "is empty: cds covers relapsed/refractory myeloma, so at least one prior line of therapy is required "
                "(newly diagnosed disease is out of scope)",
            )
        )
    if not isinstance(lines, list):
        return out
    starts: list[tuple[int, tuple[int, int], str]] = []
    for i, line in enumerate(lines):
        if isinstance(line, dict):
            known = seen[i] if seen is not None else None
            if known is not None and known.clean is not None:  # a line met before, without a problem
                if (days := known.clean[0]) is not None:
                    starts.append((i, days, line["start_date"]))
                continue
            problems = _check_line(i, line, vocabulary, memo)
            s = line.get("start_date")
            days = None
            if isinstance(s, str) and (days := _valid_days(s)) is not None:
                starts.append((i, days, s))
            if problems:
                out.extend(problems)
            elif known is not None:
                known.clean = (days, _latest(line))
    for (i, a, ta), (j, b, tb) in itertools.pairwise(starts):
        if b[1] < a[0]:  # Day.surely_before
            out.append(
                (
                    f"prior_lines[{j}].start_date",
                    f"{tb} is before the start of line {i + 1} ({ta}): prior_lines are chronological (last = most recent)",
                )
            )
    ev = data.get("evaluation_date")
    if isinstance(ev, str) and _date_ok(ev) and (seen is None or not _none_after(seen, ev)):
        out.extend(dates_after(data, ev, f"the evaluation_date {ev}"))
    return out


def evaluation_time_phrase(on: str) -> str:
    """How a problem names a defaulted evaluation date."""
    return f"the evaluation time {on} (no evaluation_date in the profile)"


def dates_after(data: dict[str, Any], on: str, what: str) -> list[Problem]:
    """Every date of the profile (`data`, decoded JSON) surely after the evaluation date `on`, described as `what`."""
    _day(on)  # AssertionError: not a date
    out: list[Problem] = []
    lines = data.get("prior_lines")
    for i, line in enumerate(lines if isinstance(lines, list) else ()):
        if not isinstance(line, dict) or line.keys().isdisjoint(LINE_DATES):
            continue
        for k in LINE_DATES:
            v = line.get(k)
            if isinstance(v, str) and (days := _valid_days(v)) is not None and _days(on)[1] < days[0]:  # Day.surely_before
                out.append((f"prior_lines[{i}].{k}", f"{v} is after {what}"))
    return out


@functools.lru_cache(maxsize=1024)
def _day(text: str) -> Day:
    """``Day.parse(text)`` (kept: the evaluation dates of a cohort are few)."""
    return Day.parse(text)


@functools.lru_cache(maxsize=1024)
def _days(text: str) -> tuple[int, int]:
    """``Day.parse(text).bounds()``."""
    return _day(text).bounds()


@functools.lru_cache(maxsize=4096)
def _valid_days(text: str) -> tuple[int, int] | None:
    """``Day.parse(text).bounds()`` of a valid date (`_date_ok`), else None."""
    return Day.parse(text).bounds() if _date_ok(text) else None


def _expand(profile: PatientProfile, vocabulary: Vocabulary) -> PatientProfile:
    """The profile with every line's agents filled in from a known regimen label where they were left out."""
    for line in profile.prior_lines:
        if line.agents is None:
            break
    else:
        return profile  # (a loop: all() of a generator costs more than the check)
    lines: list[PriorLine] = []
    for line in profile.prior_lines:
        if line.agents is None:
            known = _label_regimen(line.regimen, vocabulary)
            assert known is not None  # checked
            new = line.model_copy(update={"agents": list(known[1])})
            object.__setattr__(new, "__class__", RegimenLine)  # the same fields and layout (model_construct: 2x slower)
            lines.append(new)
        else:
            lines.append(line)
    return profile.model_copy(update={"prior_lines": lines})


def parse_profile(
    data: Any,
    vocabulary: Vocabulary,
    default_evaluation_date: str | None = None,
    *,
    text: str | None = None,
    shape: Shape | None = None,
) -> PatientProfile:
    """Validate an already-decoded JSON value. Raises ProfileError with every problem found.

    `default_evaluation_date` (the evaluation time's date, ``YYYY-MM-DD``): a profile without
    `evaluation_date` is evaluated on it, so none of its dates may be after it either.
    `text`: the JSON text `data` was decoded from (`decode_json`), when there is one (a shortcut);
    `shape`: what `decode_profile_json` proved of it, when `data` is its value (a shortcut)."""
    if not isinstance(data, dict):
        raise ProfileError("(profile)", f"the profile must be a JSON object, got {type(data).__name__}")
    _check_sizes(data, text, shape)
    memo = _memo(vocabulary)
    # the prior lines met before (only for decoded JSON: a key tells JSON values apart, not any Python value)
    seen: list[_Seen] | None
    if shape is not None and shape.lines is not None:
        seen = _seen_texts(shape.lines, memo)
    else:
        seen = _seen_lines(data.get("prior_lines"), memo) if text is not None or shape is not None else None
    valid = data
    if seen:
        models = [s.model if s.model is not None else line for s, line in zip(seen, data["prior_lines"])]
        if any(s.model is not None for s in seen):
            # a line validated before, given as its model: validating it again would give the same (the model
            # is frozen and validated alone; an instance of a model is taken as it is)
            valid = {**data, "prior_lines": models}
    problems: list[Problem] = []
    profile = None
    try:
        # what PatientProfile.model_validate(data) calls (without its Python wrapper: 0.4 us of 7)
        profile = PatientProfile.__pydantic_validator__.validate_python(valid)
    except ValidationError as exc:
        problems.extend(m for e in exc.errors() if (m := _error_message(e)) is not None)
    else:
        if seen:
            for s, model in zip(seen, profile.prior_lines):
                s.model = model
    problems.extend(_check_content(data, vocabulary, memo, seen))
    if (
        default_evaluation_date is not None
        and data.get("evaluation_date") is None
        and (seen is None or not _none_after(seen, default_evaluation_date))
    ):
        problems.extend(dates_after(data, default_evaluation_date, evaluation_time_phrase(default_evaluation_date)))
    if problems:
        # one message per field and problem, in the order of the fields in the profile
        unique = list(dict.fromkeys(problems))
        raise ProfileError.many(unique)
    assert profile is not None
    return _expand(profile, vocabulary)


_COMMENT_LINE = re.compile(r"^[ \t]*//.*$", re.MULTILINE)


def strip_comment_lines(text: str) -> str:
    """Whole-line ``//`` comments blanked out (line numbers kept). A JSON string cannot span lines,
    so a line that starts with ``//`` is never inside one: nothing else of the text changes."""
    return _COMMENT_LINE.sub("", text) if "/" in text and "//" in text else text  # a 1-character search is 40x faster


def json_problem(exc: ValueError) -> str:
    """What `json.loads` found wrong, in words for the user (the CLI and the HTTP API say the same)."""
    if isinstance(exc, json.JSONDecodeError):
        # json's messages for some errors end in "at" ("Invalid control character at"): one "at" is enough
        return f"{exc.msg.removesuffix(' at')} at line {exc.lineno}, column {exc.colno}"
    if "integer string conversion" in str(exc):  # not Python's hint about sys.set_int_max_str_digits()
        return f"an integer with more than {sys.get_int_max_str_digits()} digits"
    return printable(exc, 200)


class _NotFinite(Exception):
    """NaN, Infinity or a number too large for a float, met while parsing."""


def _finite_float(text: str) -> float:
    value = float(text)  # what json does with a number that has a fraction or an exponent
    if not math.isfinite(value):  # 1e999
        raise _NotFinite
    return value


def _not_finite(text: str) -> float:  # json's NaN, Infinity, -Infinity
    raise _NotFinite


Scan = Callable[[str, int], tuple[Any, int]]


def _scanner(**hooks: Any) -> Scan:
    """The `scan_once` of ``json.JSONDecoder(**hooks)`` (set by its __init__; typeshed does not declare it)."""
    scan: Scan = vars(json.JSONDecoder(**hooks))["scan_once"]
    return scan


def _after_space(text: str, at: int) -> int:
    """Where the JSON whitespace (json.decoder.WHITESPACE: space, tab, LF, CR) at `at` in `text` ends."""
    return len(text) - len(text[at:].lstrip(" \t\n\r"))


def _decode(scan: Scan, text: str) -> Any:
    """``json.loads(text, **hooks)`` with `scan` the `scan_once` of a decoder made once with those hooks
    (`json.loads` makes one per call), and its `decode` inlined: the same errors, and no whitespace match
    where there is none."""
    if text.startswith("\ufeff"):  # what json.loads refuses before decoding
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    start = _after_space(text, 0) if text[:1] in " \t\n\r" else 0  # "" too
    try:
        value, end = scan(text, start)
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if end != len(text):
        end = _after_space(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return value


_STRICT = _scanner(object_pairs_hook=_unique_object, parse_float=_finite_float, parse_constant=_not_finite)
_PYTHON = _scanner(object_pairs_hook=_unique_object)  # NaN and Infinity decoded, as Python's json does
_PLAIN = _scanner(parse_float=_finite_float, parse_constant=_not_finite)  # objects made by the parser (in C)

#: every byte but the ones `_plain` counts: ``text.encode().translate(None, _UNCOUNTED)`` keeps
#: those alone, in one pass (a non-ASCII character's UTF-8 bytes are all >= 0x80: never one of them)
_UNCOUNTED = bytes(b for b in range(256) if b not in b"{}:[,")


class Shape(NamedTuple):
    """What `decode_profile_json` proved of a profile's JSON text by counting (a shortcut for `parse_profile`)."""

    commas: int  # the text's commas (fewer than MAX_ITEMS: no list or object can have more items)
    #: the text of each prior line (an object) after its ``{``, up to the next ``{`` (the last line's to its ``}``),
    #: when every brace of the text is an object's (None: not known)
    lines: list[str] | None


def _plain(text: str) -> tuple[Any, Shape] | None:
    """`decode_json`'s value of a profile's text and the text's `Shape`, when the text has no key given twice,
    no colon or brace in a string, no object outside the profile, its labs and its lines, and nothing wrong:
    decoded without the duplicate-key hook (a Python call per object); else None (the checking decoders).

    Each key of the text is followed by a colon, which is in no string: with `n` colons, the objects
    decoded hold `n` keys in all only when no key was given twice (a duplicate's value replaces the
    first) and no string holds a colon. The objects counted are all the text has when they are as many
    as its opening braces (a string may hold one).

    The lines' texts (`Shape.lines`): when the closing braces are as many too, no string holds a brace,
    so every ``{`` opens an object and every ``}`` closes one, in text order: the profile's first, then
    its labs and its lines, the lines one after the other (in their list), the labs before or after
    all of them (as their keys come in the profile: a dict keeps the text's order). A line holds no
    object (it would be one more), so what follows its ``{`` up to the next ``{`` is all of it and then
    (but for the last line) a comma between two lines, and for the last line, up to the first ``}``.
    Lines written alike are the same JSON (a key of the prior-line memo, `_seen_texts`)."""
    try:
        data = _decode(_PLAIN, text)
    except Exception:  # noqa: BLE001 - any error: the checking decoders give it (an exception or a message)
        return None
    if type(data) is not dict:
        return None
    objects, keys = 1, len(data)
    labs = data.get("labs")
    if type(labs) is dict:
        objects += 1
        keys += len(labs)
    lines = data.get("prior_lines")
    dict_lines = 0
    if type(lines) is list:
        for line in lines:
            if type(line) is dict:
                dict_lines += 1
                keys += len(line)
        objects += dict_lines
    # the counted characters alone, in one pass (str.count: one pass each)
    marks = text.encode("utf-8", "surrogatepass").translate(None, _UNCOUNTED)
    braces = marks.count(b"{")
    if objects != braces or keys != marks.count(b":"):
        return None
    if marks.count(b"[") + braces > MAX_DEPTH:  # it can nest that deep: the walk (a problem: the checking decoders)
        try:
            _check_structure(data)
        except ProfileError:
            return None
    texts = None
    if type(lines) is list and lines and dict_lines == len(lines) and marks.count(b"}") == braces:
        # what follows each brace up to the next one: [0] is before the profile's, [1] the profile's, then
        # the labs' when they come first
        names = list(data)
        first = 3 if type(labs) is dict and names.index("labs") < names.index("prior_lines") else 2
        texts = text.split("{", first + len(lines) - 1)[first:]  # (each line's text, and what follows it)
        texts[-1] = texts[-1].partition("}")[0]  # the last line's (what follows it is not the line's)
    return data, Shape(marks.count(b","), texts)


def decode_json(text: str) -> Any:
    """Strict JSON decoding of an input file's text (a key given twice, NaN, absurd nesting are errors).

    Whole-line ``//`` comments are allowed (the `cds new-profile` template has them).

    A profile's text is first decoded without the duplicate-key hook (`_plain`), when
    that is sure to give what the checking decoders would; otherwise the parser itself refuses
    a key given twice and non-finite numbers, so the walk over the decoded value
    (`_check_structure`) runs only when the text has more brackets than `MAX_DEPTH`
    (otherwise it cannot nest that deep); when the parser meets a non-finite number, the
    text is parsed again as Python would, and the walk names the field."""
    return decode_profile_json(text)[0]


def decode_profile_json(text: str) -> tuple[Any, Shape | None]:
    """`decode_json`'s value, and what was proved of the text (`Shape`, for `parse_profile`; None: nothing)."""
    text = strip_comment_lines(text)
    if not text or text.isspace():  # not text.strip()
        raise ProfileError("(file)", "the file holds only comments")
    found = _plain(text)
    if found is not None:
        return found
    try:
        try:
            data = _decode(_STRICT, text)
            finite = True
        except _NotFinite:
            data = _decode(_PYTHON, text)
            finite = False
    except _DuplicateKey as exc:
        raise ProfileError(
            "(file)", f"the key {quoted(exc.key)} appears twice in one JSON object; every field must be given once"
        ) from None
    except RecursionError:
        raise ProfileError("(file)", "not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise ProfileError("(file)", f"not valid JSON: {json_problem(exc)}") from None
    if not finite or text.count("[") + text.count("{") > MAX_DEPTH:
        _check_structure(data)
    return data, None


def load_profile_text(text: str, vocabulary: Vocabulary) -> PatientProfile:
    return parse_profile(decode_json(text), vocabulary)


def read_input_file(path: Path) -> str:
    """The text of an input file (UTF-8, BOM allowed), or a ProfileError naming the problem."""
    try:
        raw = read_capped(path, PROFILE_LIMIT, "a patient profile")
    except ReadError as exc:
        raise ProfileError("(file)", f"{printable(path, 200)}: {exc.problem}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProfileError("(file)", f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ProfileError("(file)", "the file is empty")
    return text


def load_profile(path: Path, vocabulary: Vocabulary) -> PatientProfile:
    return load_profile_text(read_input_file(path), vocabulary)
