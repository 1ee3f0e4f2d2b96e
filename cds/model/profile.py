"""The patient profile: the input contract, validated strictly.

Strict types (no coercion of "40" to 40 or "true" to true), unknown keys are
errors, and every optional fact that is absent (or null) means *unknown*, not
false. `load_profile` turns every problem into a `ProfileError` that names the
field (dotted path, e.g. ``prior_lines[1].refractory_to[0]``) and the problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cds.errors import ProfileError
from cds.model.vocabulary import Vocabulary

CYTOGENETIC_ABNORMALITIES: tuple[str, ...] = (
    "del(17p)",
    "t(4;14)",
    "t(14;16)",
    "t(11;14)",
    "gain(1q)",
    "amp(1q)",
    "del(1p)",
)

Cytogenetic = Literal["del(17p)", "t(4;14)", "t(14;16)", "t(11;14)", "gain(1q)", "amp(1q)", "del(1p)"]
Frailty = Literal["fit", "intermediate", "frail"]

# Upper bounds far above any physiological value: they catch unit mix-ups and
# keep every number in the range the rules engine can represent.
CreatinineClearance = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
LabValue = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
NonEmptyName = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Labs(_Strict):
    soluble_bcma_ng_ml: LabValue | None = None
    ferritin_ng_ml: LabValue | None = None
    crp_mg_l: LabValue | None = None


class PriorLine(_Strict):
    regimen: Annotated[str, Field(max_length=200)] | None = None
    agents: list[NonEmptyName] = Field(min_length=1, max_length=30)
    refractory_to: list[NonEmptyName] = Field(max_length=30)
    autologous_transplant: bool


class PatientProfile(_Strict):
    patient_id: Annotated[str, Field(min_length=1, max_length=200)]
    age: int = Field(ge=18, le=120)
    ecog: int = Field(ge=0, le=4)
    frailty: Frailty | None = None
    creatinine_clearance_ml_min: CreatinineClearance | None = None
    dialysis: bool | None = None
    extramedullary_disease: bool | None = None
    cytogenetics: list[Cytogenetic] | None = None
    rapidly_progressive: bool | None = None
    car_t_center_access: bool | None = None
    organ_function_adequate: bool | None = None
    active_serious_infection: bool | None = None
    prior_allogeneic_transplant: bool | None = None
    labs: Labs | None = None
    prior_lines: list[PriorLine] = Field(max_length=40)

    @field_validator("cytogenetics")
    @classmethod
    def _no_duplicate_cytogenetics(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            dup = sorted({x for x in v if v.count(x) > 1})
            raise ValueError(f"lists {', '.join(dup)} more than once")
        return v


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(profile)"


def _describe(value: Any) -> str:
    """A short, never-failing description of a bad value for an error message."""
    if isinstance(value, dict):
        return f"with {len(value)} key(s)"
    if isinstance(value, list):
        return f"with {len(value)} item(s)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


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


def _error_message(err: dict[str, Any]) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in {"list[...]"}))
    field = _path(loc)
    etype = err["type"]
    value = err.get("input")
    if etype == "missing":
        return field, "required field is missing"
    if etype == "extra_forbidden":
        return field, "unknown field (not part of the profile format)"
    if etype in _TYPE_NAMES:
        return field, f"expected {_TYPE_NAMES[etype]}, got {type(value).__name__} {_describe(value)}"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return field, f"{_describe(value)} is not one of {expected}"
    if etype in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return field, f"{_describe(value)} is out of range ({err['msg'].lower()})"
    if etype == "finite_number":
        return field, "must be a finite number"
    if etype in {"too_short", "too_long", "string_too_short", "string_too_long"}:
        return field, err["msg"].replace("List", "list").replace("String", "string")
    return field, err["msg"].removeprefix("Value error, ")


MAX_DEPTH = 32  # a profile is at most 4 levels deep; anything far deeper is not a profile


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


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a key given twice is an error, not 'the last one wins'."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_profile(data: Any, vocabulary: Vocabulary) -> PatientProfile:
    """Validate an already-decoded JSON value. Raises ProfileError."""
    if not isinstance(data, dict):
        raise ProfileError("(profile)", f"the profile must be a JSON object, got {type(data).__name__}")
    try:
        profile = PatientProfile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first_field, first_problem = _error_message(errors[0])
        if len(errors) > 1:
            rest = "; ".join("{}: {}".format(*_error_message(e)) for e in errors[1:6])
            more = f" (and {len(errors) - 6} more)" if len(errors) > 6 else ""
            first_problem += f" [also: {rest}{more}]"
        raise ProfileError(first_field, first_problem) from None
    if not profile.prior_lines:
        raise ProfileError(
            "prior_lines",
            "is empty: cds covers relapsed/refractory myeloma, so at least one prior line of therapy is required "
            "(newly diagnosed disease is out of scope)",
        )
    check_agents(profile, vocabulary)
    return profile


def check_agents(profile: PatientProfile, vocabulary: Vocabulary) -> None:
    for i, line in enumerate(profile.prior_lines):
        canon: dict[str, str] = {}
        for j, agent in enumerate(line.agents):
            field = f"prior_lines[{i}].agents[{j}]"
            drug = vocabulary.lookup(agent)
            if drug is None:
                reg = vocabulary.regimen(agent)
                if reg is not None:
                    raise ProfileError(
                        field,
                        f"{agent!r} is a regimen label, not an agent: put it in 'regimen' and list its agents "
                        f"({', '.join(reg[1])})",
                    )
                sugg = vocabulary.suggestions(agent)
                hint = f"; did you mean {', '.join(sugg)}?" if sugg else ""
                raise ProfileError(field, f"unknown drug {agent!r}{hint}")
            if drug.name in canon:
                raise ProfileError(field, f"{agent!r} is listed twice in this line (same drug as {canon[drug.name]!r})")
            canon[drug.name] = agent
        seen: set[str] = set()
        for j, agent in enumerate(line.refractory_to):
            field = f"prior_lines[{i}].refractory_to[{j}]"
            drug = vocabulary.lookup(agent)
            if drug is None or drug.name not in canon:
                listed = ", ".join(line.agents)
                raise ProfileError(
                    field,
                    f"{agent!r} is not one of this line's agents ({listed}); refractory_to must name agents of the same line",
                )
            if drug.name in seen:
                raise ProfileError(field, f"{agent!r} is listed twice")
            seen.add(drug.name)


def decode_json(text: str) -> Any:
    """Strict JSON decoding of an input file's text (a key given twice, NaN, absurd nesting are errors)."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        raise ProfileError(
            "(file)", f"the key {exc.key!r} appears twice in one JSON object; every field must be given once"
        ) from None
    except json.JSONDecodeError as exc:
        raise ProfileError("(file)", f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ProfileError("(file)", "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        raise ProfileError("(file)", f"not valid JSON: {exc}") from None
    _check_structure(data)
    return data


def load_profile_text(text: str, vocabulary: Vocabulary) -> PatientProfile:
    return parse_profile(decode_json(text), vocabulary)


def read_input_file(path: Path) -> str:
    """The text of an input file (UTF-8, BOM allowed), or a ProfileError naming the problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError("(file)", f"{path}: no such file") from None
    except IsADirectoryError:
        raise ProfileError("(file)", f"{path}: is a directory, not a profile file") from None
    except OSError as exc:
        raise ProfileError("(file)", f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProfileError("(file)", f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ProfileError("(file)", "the file is empty")
    return text


def load_profile(path: Path, vocabulary: Vocabulary) -> PatientProfile:
    return load_profile_text(read_input_file(path), vocabulary)
