"""The profile input checks as they were before they were made fast (cds 2026-12, commit d55d017), verbatim:
the reference the fast ones are compared with (tests/test_profile_fast_paths.py). Only `parse_profile` differs:
it returns the validated profile and which lines' agents came from the regimen label (PriorLine then kept
that in a private attribute; `_expand` is not repeated here). One change on purpose since: an agent name or an
investigational agent's name of spaces only is a problem ("is blank"), as in cds.model.profile (it was accepted
and the evaluation failed with an internal error)."""

from __future__ import annotations

import calendar
import difflib
import itertools
import json
from typing import Any

from pydantic import ValidationError

from cds.errors import ProfileError, printable, quoted
from cds.model.profile import (
    _DATE_RE,
    LINE_DATES,
    MAX_DEPTH,
    MAX_ITEMS,
    NON_RESPONSE,
    Day,
    PatientProfile,
    Problem,
    _car_t,
    _check_structure,
    _check_tested,
    _date_ok,
    _describe,
    _DuplicateKey,
    _error_message,
    _finite_float,
    _json_quoted,
    _labels_inside,
    _not_a_drug,
    _not_finite,
    _NotFinite,
    _unknown_hint,
    evaluation_time_phrase,
    json_problem,
    strip_comment_lines,
)
from cds.model.vocabulary import Drug, Resolution, Vocabulary


def _valid_date(value: str) -> str:
    m = _DATE_RE.match(value)
    if not m:
        raise ValueError(f"{_json_quoted(value)} is not a date: write YYYY-MM-DD or YYYY-MM (e.g. 2024-03-15 or 2024-03)")
    year, month, day = int(m.group(1)), int(m.group(2)), m.group(3)
    if not 1900 <= year <= 2200 or not 1 <= month <= 12:
        raise ValueError(f"{_json_quoted(value)} is not a valid month")
    if day is not None and not 1 <= int(day) <= calendar.monthrange(year, month)[1]:
        raise ValueError(f"{_json_quoted(value)} is not a valid day of that month")
    return value


def _named(name: str, drugs: list[Resolution], vocabulary: Vocabulary) -> Drug | None:
    """The drug of the line that `name` (an entry of refractory_to / intolerant_to) refers to."""
    found = vocabulary.resolve(name)
    for r in drugs:
        if found is not None and r.drug.name == found.drug.name:
            return r.drug
        if r.drug.investigational and r.written.strip().lower() == name.strip().lower():
            return r.drug
    return None


def _check_sizes(data: dict[str, Any]) -> None:
    """Refuse a list or object with more than MAX_ITEMS items, naming the field, before any validation.

    A profile under the size limit can still hold 100,000 list items, each of which the
    validators would check (and suggest corrections for) one by one: one problem instead.
    """
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


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object_pairs_hook: a key given twice is an error, not 'the last one wins'."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _label_regimen(label: object, vocabulary: Vocabulary) -> tuple[str, tuple[str, ...]] | None:
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


def _check_line(i: int, line: dict[str, Any], vocabulary: Vocabulary) -> list[Problem]:
    out: list[Problem] = []
    where = f"prior_lines[{i}]"
    label = line.get("regimen")
    known = _label_regimen(label, vocabulary)
    agents = line.get("agents")
    drugs: list[Resolution] = []
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
                        f"{where}.agents",
                        f"required: the regimen {quoted(label)} is not a known label, so its agents must be listed{hint}",
                    )
                )
            else:
                out.append((f"{where}.agents", 'required field is missing (or give a known regimen label, e.g. "KRd")'))
        else:
            drugs = [Resolution(a, vocabulary.lookup(a) or Drug(a, "", ())) for a in known[1]]
    elif isinstance(agents, list):
        seen: dict[str, str] = {}
        for j, agent in enumerate(agents):
            field = f"{where}.agents[{j}]"
            if isinstance(agent, str) and agent.strip():
                found = vocabulary.resolve(agent)
                if found is None:
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
            elif isinstance(agent, str) and agent:
                out.append((field, f"{_describe(agent)} is blank: write the drug's name"))
                continue
            elif isinstance(agent, dict) and isinstance(agent.get("investigational"), str):
                cls = agent.get("class")
                name = agent["investigational"]
                blank = bool(name) and not name.strip()
                if blank:
                    out.append((f"{field}.investigational", f"{_describe(name)} is blank: write the trial agent's name or code"))
                if not blank and vocabulary.resolve(name) is not None:
                    out.append((f"{field}.investigational", f"{quoted(name)} is a known drug: write it as a name"))
                    continue
                if not isinstance(cls, str) or cls not in vocabulary.classes:
                    if isinstance(cls, str):
                        close = difflib.get_close_matches(cls, list(vocabulary.classes), n=2, cutoff=0.5)
                        hint = f"; did you mean {' or '.join(close)}?" if close else ""
                        out.append(
                            (
                                f"{field}.class",
                                f"unknown class {quoted(cls)}{hint} (one of {', '.join(sorted(vocabulary.classes))})",
                            )
                        )
                    continue
                if blank:
                    continue
                found = Resolution(
                    name, vocabulary.investigational(name, cls, (agent["target"],) if agent.get("target") else None)
                )
            else:
                continue  # the structure check reports it
            written = agent if isinstance(agent, str) else agent["investigational"]
            if found.drug.name in seen:
                out.append(
                    (field, f"{quoted(written)} is listed twice in this line (same drug as {quoted(seen[found.drug.name])})")
                )
                continue
            seen[found.drug.name] = written
            drugs.append(found)
        if known is not None and len(drugs) == len(agents):
            given = {d.drug.name for d in drugs}
            missing = [a for a in known[1] if a not in given]
            if missing:
                out.append(
                    (
                        f"{where}.agents",
                        f"does not include {', '.join(missing)}, which {known[0]} contains: list every agent of the "
                        "label (more is fine) or leave 'agents' out",
                    )
                )
    broken = agents is not None and (not isinstance(agents, list) or len(drugs) != len(agents))
    trial = {
        a["investigational"].strip().lower()
        for a in (agents if isinstance(agents, list) else ())
        if isinstance(a, dict)
        and isinstance(a.get("investigational"), str)
        and not (a["investigational"] and not a["investigational"].strip())
    }
    for key in ("refractory_to", "intolerant_to"):
        names = line.get(key)
        if not isinstance(names, list):
            continue
        taken: set[str] = set()
        for j, name in enumerate(names):
            if not isinstance(name, str):
                continue
            field = f"{where}.{key}[{j}]"
            wrong = _not_a_drug(name, key, trial, vocabulary)
            if wrong is not None:
                out.append((field, wrong))
                continue
            if broken:
                continue  # which agents the line has is not known yet: the agents list's own problems are reported
            d = _named(name, drugs, vocabulary)
            if d is None:
                listed = ", ".join(printable(r.written) for r in drugs)
                out.append(
                    (
                        field,
                        f"{quoted(name)} is not one of this line's agents ({listed}); {key} must name agents of the same line",
                    )
                )
            elif d.name in taken:
                out.append((field, f"{quoted(name)} is listed twice"))
            else:
                taken.add(d.name)
    if line.get("refractory_to") == [] and line.get("best_response") in NON_RESPONSE:
        out.append(
            (
                f"{where}.refractory_to",
                f"is [] but best_response is {line['best_response']}: no response (less than MR) is refractoriness; "
                "list the agents, or leave refractory_to out if it is not known",
            )
        )
    complete = agents is None or (isinstance(agents, list) and len(drugs) == len(agents))
    if line.get("infusion_date") is not None and complete and drugs and not any(_car_t(r.drug) for r in drugs):
        out.append(
            (
                f"{where}.infusion_date",
                "is only for a CAR-T line (the day the CAR-T cells were infused); this line has no CAR-T agent",
            )
        )
    if line.get("transplant_date") is not None and line.get("autologous_transplant") is not True:
        out.append(
            (
                f"{where}.transplant_date",
                "is the date of the line's autologous transplant: give it with autologous_transplant: true",
            )
        )
    dates = {k: line.get(k) for k in LINE_DATES}
    parsed = {k: Day.parse(v) for k, v in dates.items() if isinstance(v, str) and _date_ok(v)}
    if "start_date" in parsed:
        for k in ("infusion_date", "transplant_date", "end_date", "progression_date"):
            if k in parsed and parsed[k].surely_before(parsed["start_date"]):
                out.append((f"{where}.{k}", f"{dates[k]} is before the line's start_date {dates['start_date']}"))
    return out


def check_content(data: dict[str, Any], vocabulary: Vocabulary) -> list[Problem]:
    """Every content problem of a decoded profile, leniently (whatever its structure problems are)."""
    out: list[Problem] = []
    cyto = data.get("cytogenetics")
    if isinstance(cyto, list):
        for j, abn in enumerate(cyto):
            if isinstance(abn, str) and abn not in vocabulary.cytogenetic_names:
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
        return out + _check_tested(data, vocabulary) + _check_lines(data, vocabulary)
    return out + _check_tested(data, vocabulary) + _check_lines(data, vocabulary)


def _check_lines(data: dict[str, Any], vocabulary: Vocabulary) -> list[Problem]:
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
    starts: list[tuple[int, Day, str]] = []
    for i, line in enumerate(lines):
        if isinstance(line, dict):
            out.extend(_check_line(i, line, vocabulary))
            s = line.get("start_date")
            if isinstance(s, str) and _date_ok(s):
                starts.append((i, Day.parse(s), s))
    for (i, a, ta), (j, b, tb) in itertools.pairwise(starts):
        if b.surely_before(a):
            out.append(
                (
                    f"prior_lines[{j}].start_date",
                    f"{tb} is before the start of line {i + 1} ({ta}): prior_lines are chronological (last = most recent)",
                )
            )
    ev = data.get("evaluation_date")
    if isinstance(ev, str) and _date_ok(ev):
        out.extend(dates_after(data, ev, f"the evaluation_date {ev}"))
    return out


def dates_after(data: dict[str, Any], on: str, what: str) -> list[Problem]:
    """Every date of the profile (`data`, decoded JSON) surely after the evaluation date `on`, described as `what`."""
    at = Day.parse(on)
    out: list[Problem] = []
    lines = data.get("prior_lines")
    for i, line in enumerate(lines if isinstance(lines, list) else ()):
        if not isinstance(line, dict):
            continue
        for k in LINE_DATES:
            v = line.get(k)
            if isinstance(v, str) and _date_ok(v) and at.surely_before(Day.parse(v)):
                out.append((f"prior_lines[{i}].{k}", f"{v} is after {what}"))
    return out


def parse_profile(data: Any, vocabulary: Vocabulary, default_evaluation_date: str | None = None) -> Expanded:
    """Validate an already-decoded JSON value. Raises ProfileError with every problem found.

    `default_evaluation_date` (the evaluation time's date, ``YYYY-MM-DD``): a profile without
    `evaluation_date` is evaluated on it, so none of its dates may be after it either."""
    if not isinstance(data, dict):
        raise ProfileError("(profile)", f"the profile must be a JSON object, got {type(data).__name__}")
    _check_sizes(data)
    problems: list[Problem] = []
    profile = None
    try:
        profile = PatientProfile.model_validate(data)
    except ValidationError as exc:
        problems.extend(m for e in exc.errors() if (m := _error_message(e)) is not None)
    problems.extend(check_content(data, vocabulary))
    if default_evaluation_date is not None and data.get("evaluation_date") is None:
        problems.extend(dates_after(data, default_evaluation_date, evaluation_time_phrase(default_evaluation_date)))
    if problems:
        # one message per field and problem, in the order of the fields in the profile
        unique = list(dict.fromkeys(problems))
        raise ProfileError.many(unique)
    assert profile is not None
    return _expanded(profile, vocabulary)


#: what the profile parse_profile returned reads: its model_dump(), each line's agents_from_regimen and fields set
Expanded = tuple[dict[str, Any], list[bool], list[set[str]]]


def _expanded(profile: PatientProfile, vocabulary: Vocabulary) -> Expanded:
    """What `_expand` made of `profile`: a line without agents has its label's, it says so, and `agents` is set."""
    dump = profile.model_dump()
    for line, out in zip(profile.prior_lines, dump["prior_lines"], strict=True):
        if line.agents is None:
            known = _label_regimen(line.regimen, vocabulary)
            assert known is not None
            out["agents"] = list(known[1])
    return (
        dump,
        [line.agents is None for line in profile.prior_lines],
        [line.model_fields_set | ({"agents"} if line.agents is None else set()) for line in profile.prior_lines],
    )


def decode_json(text: str) -> Any:
    """Strict JSON decoding of an input file's text (a key given twice, NaN, absurd nesting are errors).

    Whole-line ``//`` comments are allowed (the `cds new-profile` template has them).

    The parser itself refuses non-finite numbers, so the walk over the decoded value
    (`_check_structure`) runs only when the text has more brackets than `MAX_DEPTH`
    (otherwise it cannot nest that deep); when the parser meets a non-finite number, the
    text is parsed again as Python would, and the walk names the field."""
    text = strip_comment_lines(text)
    if not text.strip():
        raise ProfileError("(file)", "the file holds only comments")
    try:
        try:
            data = json.loads(text, object_pairs_hook=_unique_object, parse_float=_finite_float, parse_constant=_not_finite)
            finite = True
        except _NotFinite:
            data = json.loads(text, object_pairs_hook=_unique_object)
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
    return data
