"""The fast profile input checks give what the checks they replace gave (tests/profile_reference.py).

`decode_json`, `_check_sizes` (with and without the JSON text), `check_content`, `dates_after` and
`parse_profile` are compared with the reference on valid profiles (the seeded generator, the case
profiles) and on thousands of mutations of them: fields dropped, renamed, duplicated, or set to values
of the wrong type, unknown drugs and labels, bad, future and out-of-order dates, oversized lists; the
JSON texts also with keys given twice, whitespace around the colons, non-finite numbers, comments, a
BOM, deep nesting and cut-off text. Same value or same problems, in the same order, always.
"""

from __future__ import annotations

import copy
import json
import pickle
import random
import sys
from pathlib import Path
from typing import Any

import profile_reference as ref
import pytest
from strategies import random_profiles

from cds.api import Evaluator
from cds.errors import ProfileError
from cds.interop.inputs import load_input_profile, load_input_text
from cds.model import profile as pm
from cds.model.profile import PatientProfile, PriorLine, RegimenLine

ROOT = Path(__file__).resolve().parents[1]
DATES = ["2024-13-01", "2024-02-30", "2024-02-29", "2023-02-29", "2023-05", "1899-01-01", "2201-01", "2030-01-01",
         "2019-06-15", "2019-06", "2021-01-31", "2025-12-31", "2026-01-01", "2026-01-02", "2026-01", "2024-1-01",
         "24-01-01", "２０２４-01-01", "2024-01-01\n", " 2024-01-01"]  # fmt: skip
AGENTS = ["dara", "daratumumab", "Darzalex", "lenalidomide 25 mg", "teclistamab-cqyv", "Revlimid", "velcade", "dex",
          "lenalidomid", "KRd", "DRd", "cilta-cel", "ide-cel", "talquetamab", "belantamab mafodotin", "pom", "x", " ",
          "ciltacabtagene autoleucel", "elranatamab", "selinexor", "iberdomide", "abc-123", " XYZ", "q-1", "Q-1 ",
          {"investigational": "ABC-123", "class": "bcma_bispecific"}, {"investigational": "XYZ", "class": "bcma_car_t"},
          {"investigational": "ABC-123", "class": "bcma_bispecfic"}, {"investigational": "dara", "class": "x"},
          {"investigational": "Q-1", "class": "gprc5d_bispecific", "target": "GPRC5D"},
          {"investigational": "", "class": "cd38_antibody"}, {"investigational": 3, "class": "x"}, {"class": "x"}]  # fmt: skip
LABELS = ["KRd", "VRd + ASCT", "DRd", "len maintenance", "belamaf", "D-VRd", "Dara-Rd", "unknown regimen", "lenalidomide",
          "isa-pd", "", "  ", "then and x2", "VRd then KRd"]  # fmt: skip
CYTO = ["del(17p)", "t(4;14)", "del17p", "gain(1q)", "amp1q", "t(11;14)", "t(14;20)", "unknown", "", "none"]
JUNK: list[Any] = [None, "", " ", "unknown", "n/a", 0, 1, -1, -0.0, 1.5, 1e308, 40, 121, True, False, [], {}, [1, 2],
                   {"a": 1}, "x" * 300, "PD", "SD", "CR", "cr", "progression", "fit", "Frail", "male", "M", *DATES]  # fmt: skip


@pytest.fixture(scope="module")
def vocabulary(evaluator: Evaluator) -> Any:
    return evaluator.vocabulary


def _valid() -> list[dict[str, Any]]:
    cases = [json.loads(p.read_text()) for p in sorted((ROOT / "patient_profiles").glob("*.json"))]
    return cases + random_profiles(300, seed=11)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _value(rng: random.Random, key: Any) -> Any:
    """A new value for the field `key` (a copy: never shared with another profile)."""
    return copy.deepcopy(_pick(rng, key))


def _pick(rng: random.Random, key: Any) -> Any:
    if key in ("agents", "refractory_to", "intolerant_to") or (isinstance(key, int) and rng.random() < 0.5):
        return rng.choice(AGENTS) if isinstance(key, int) else rng.sample(AGENTS, rng.randint(0, 4))
    if isinstance(key, str) and key.endswith("date"):
        return rng.choice(DATES)
    if key == "regimen":
        return rng.choice(LABELS)
    if key in ("cytogenetics", "cytogenetics_tested"):
        return rng.sample(CYTO, rng.randint(0, 3)) if rng.random() < 0.8 else rng.choice(CYTO)
    return rng.choice(JUNK)


def mutate(profile: dict[str, Any], rng: random.Random) -> Any:
    """`profile` with one to three random changes."""
    data = copy.deepcopy(profile)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(data)
        path = rng.choice(paths[1:]) if len(paths) > 1 else ()
        if not path:
            return rng.choice([[], "x", 1, None])
        parent = data
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        op = rng.random()
        if op < 0.15:
            del parent[key]
        elif op < 0.2 and isinstance(parent, dict):
            parent[rng.choice(["evaluation_date", "notes", "labs", "sex", "start_date", "end_date", "agentz", "Age"])] = (
                parent.pop(key)
            )
        elif op < 0.3 and isinstance(parent[key], list) and parent[key]:
            parent[key].append(copy.deepcopy(rng.choice(parent[key])))
        elif op < 0.33 and isinstance(parent[key], list):
            parent[key] = [copy.deepcopy(parent[key][0]) if parent[key] else 1] * rng.choice([100, 101, 150])
        elif op < 0.36 and isinstance(parent[key], list) and len(parent[key]) > 1:
            parent[key].reverse()
        elif op < 0.45 and isinstance(parent, dict) and "prior_lines" in data:
            line = rng.choice(data["prior_lines"]) if isinstance(data["prior_lines"], list) and data["prior_lines"] else {}
            if isinstance(line, dict):
                k = rng.choice([*pm.LINE_DATES, "agents", "regimen", "best_response", "autologous_transplant"])
                line[k] = _value(rng, k) if k != "agents" or rng.random() < 0.7 else None
                if k == "agents" and line[k] is None:
                    del line[k]
        else:
            parent[key] = _value(rng, key)
    return data


def _inputs(n: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    valid = _valid()
    return valid + [mutate(rng.choice(valid), rng) for _ in range(n)]


def _outcome(f: Any, *args: Any, **kw: Any) -> Any:
    try:
        return "ok", f(*args, **kw)
    except ProfileError as exc:
        return "error", exc.field, exc.problem, exc.problems, str(exc)


def _expanded(profile: PatientProfile) -> ref.Expanded:
    lines = profile.prior_lines
    return profile.model_dump(), [line.agents_from_regimen for line in lines], [line.model_fields_set for line in lines]


def test_parse_profile_as_before(vocabulary: Any) -> None:
    outcomes = {"ok": 0, "error": 0}
    for data in _inputs(4000, seed=1):
        text = json.dumps(data, allow_nan=False)
        for default in (None, "2026-01-01", "2025-06-15"):
            old = _outcome(ref.parse_profile, copy.deepcopy(data), vocabulary, default)
            for given in (None, text):
                new = _outcome(pm.parse_profile, copy.deepcopy(data), vocabulary, default, text=given)
                if new[0] == "ok":
                    new = ("ok", _expanded(new[1]))
                assert new == old, (data, default)
            outcomes[old[0]] += 1
    assert outcomes["ok"] > 2000 and outcomes["error"] > 5000, outcomes


def test_content_checks_as_before(vocabulary: Any) -> None:
    for data in _inputs(3000, seed=2):
        if not isinstance(data, dict):
            continue
        assert pm.check_content(data, vocabulary) == ref.check_content(data, vocabulary), data
        for on in ("2026-01-01", "2020-03", "2019-06-15"):
            assert pm.dates_after(data, on, "x") == ref.dates_after(data, on, "x"), data


def test_size_check_as_before() -> None:
    rng = random.Random(3)
    for data in _inputs(3000, seed=3):
        if not isinstance(data, dict):
            continue
        if rng.random() < 0.3:  # a second oversized container, elsewhere: the same one must be named
            data[rng.choice(["labs", "notes", "prior_lines", "zz"])] = {str(i): i for i in range(rng.choice([100, 101, 300]))}
        old = _outcome(ref._check_sizes, data)
        assert _outcome(pm._check_sizes, data) == old
        for indent in (None, 1):
            assert _outcome(pm._check_sizes, data, json.dumps(data, indent=indent)) == old


def _texts(seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for data in _inputs(1500, seed=seed):
        text = json.dumps(data, separators=rng.choice([(",", ":"), (", ", ": "), (",", " : "), (",\n", ":\t")]))
        op = rng.random()
        if op < 0.15 and '"' in text:  # a key given twice (or a string that looks like one)
            at = rng.choice([i for i, c in enumerate(text) if c in "{,"])
            key = rng.choice(['"age"', '"ecog"', '"regimen"', '"x"', '"agents"', '"age" '])
            value = rng.choice(["1", "null", "[]", "{}", '{"a":1,"a":2}'])
            text = f"{text[: at + 1]}{key}:{value},{text[at + 1 :]}"
        elif op < 0.3:
            text = text.replace(
                rng.choice(["1", "0", "5"]), rng.choice(["1e999", "NaN", "-Infinity", "1E3", "1.5e-3", "9" * 400]), 1
            )
        elif op < 0.35:
            text = "\ufeff" + text
        elif op < 0.4:
            text = "// a comment, with: commas\n" + text.replace(",", ",\n  // x: y, z\n", 2)
        elif op < 0.45:
            text = "[" * rng.choice([10, 31, 32, 33, 40, 2000]) + text + "]" * rng.choice([0, 40, 2000])
        elif op < 0.5:
            text = text[: rng.randint(0, len(text))]
        elif op < 0.55:
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice(["\\", '"', "}", ",", " ", "\x00", "\u2028", '\\":', '":']) + text[at:]
        elif op < 0.57:
            text += rng.choice(["\n", " \t\r\n", "\n\n x", "\u3000", " {}", "\n// end\n"])
        elif op < 0.6:
            text = rng.choice(["", " ", "\n\t ", "\u3000", "\x1c", "\x85", "//x\n", "//x\n \n"]) + rng.choice(["", text])
        out.append(text)
    return out


def test_decode_json_as_before() -> None:
    for text in _texts(4):
        old = _outcome(ref.decode_json, text)
        new = _outcome(pm.decode_json, text)
        assert new[0] == old[0] and json.dumps(new[1:]) == json.dumps(old[1:]), text  # NaN == NaN in its text


def test_blank_text_as_before() -> None:
    """`not text or text.isspace()` (decode_json) is `not text.strip()`: for every code point, and these."""
    assert all((not c.strip()) == c.isspace() for c in map(chr, range(sys.maxunicode + 1)))
    for text in ("", " x", "\u3000\x1c", "\x85 \t", "\u200b", "\ufeff", " \u2028\n"):
        assert (not text or text.isspace()) == (not text.strip())


def _profile_of_text(text: str, vocabulary: Any, day: str) -> PatientProfile:
    return load_input_text(text, vocabulary, default_date=day).profile


def test_load_input_text_as_before(vocabulary: Any) -> None:
    """The whole text path (`cds batch` and `cds evaluate`): decode, then parse with the text known."""
    for text in _texts(5):
        try:
            old = ("ok", ref.parse_profile(ref.decode_json(text), vocabulary, "2026-01-01"))
        except ProfileError as exc:
            old = ("error", exc.problems)
        for load in (_profile_of_text, load_input_profile):
            try:
                new: Any = ("ok", _expanded(load(text, vocabulary, "2026-01-01")))
            except ProfileError as exc:
                new = ("error", exc.problems)
            assert new == old, text


def test_date_check_as_before() -> None:
    """`_valid_date` (every date field's validator) keeps the dates it passed: same answer, first time or not."""
    rng = random.Random(6)
    digits = "0123456789"
    made = [
        f"{rng.choice(['19', '20', '21', '22', '00', '18'])}{rng.choice(digits)}{rng.choice(digits)}-"
        f"{rng.randint(0, 13):02d}" + rng.choice(["", f"-{rng.randint(0, 32):02d}", "-1", "-31", "-29", "-30"])
        for _ in range(3000)
    ]
    for text in [*DATES, "2200-12-31", "2201-01-01", "1900-01", "0000-01", "2024-00", "2024-12-32", *made] * 2:
        assert _outcome_of(pm._valid_date, text) == _outcome_of(ref._valid_date, text), text
        assert pm._date_ok(text) == (_outcome_of(ref._valid_date, text)[0] == "ok")


def _outcome_of(f: Any, text: str) -> tuple[str, str]:
    try:
        return "ok", f(text)
    except ValueError as exc:
        return "error", str(exc)


def test_regimen_line(vocabulary: Any) -> None:
    """A line whose agents came from its label is a RegimenLine: same fields, dump and schema as a PriorLine,
    unequal to the same line with the agents given (as before, when a private attribute told them apart)."""
    short = pm.parse_profile({"patient_id": "p", "age": 60, "ecog": 1, "prior_lines": [{"regimen": "KRd"}]}, vocabulary)
    given = pm.parse_profile(
        {"patient_id": "p", "age": 60, "ecog": 1, "prior_lines": [{"regimen": "KRd", "agents": short.prior_lines[0].agents}]},
        vocabulary,
    )
    line, plain = short.prior_lines[0], given.prior_lines[0]
    assert type(line) is RegimenLine and type(plain) is PriorLine and isinstance(line, PriorLine)
    assert line.agents_from_regimen and not plain.agents_from_regimen
    assert line.model_dump() == plain.model_dump() and short.model_dump_json() == given.model_dump_json()
    assert line.model_fields_set == plain.model_fields_set == {"regimen", "agents"}
    assert line != plain and short != given and line == line.model_copy() and plain == plain.model_copy()
    assert pickle.loads(pickle.dumps(short)) == short and pickle.loads(pickle.dumps(line)).agents_from_regimen
    assert line.model_copy(update={"regimen": "x"}).agents_from_regimen
    assert list(RegimenLine.model_fields) == list(PriorLine.model_fields) and not PriorLine.__private_attributes__
    assert "RegimenLine" not in json.dumps(PatientProfile.model_json_schema())  # the schema: tests/test_schemas.py


# the values a prior line's field may hold that Python finds equal (1 == 1.0 == True, 0 == -0.0 == False) or alike
LINE_VALUES: dict[str, list[Any]] = {
    "regimen": ["KRd", "DRd", "unknown regimen", None, 1, True, ["KRd"], ""],
    "agents": [["carfilzomib", "lenalidomide", "dexamethasone"], ["dara", "lenalidomide", "dexamethasone"], ["dara"],
               ["dara", "dara"], [1], [True], [1.0], [None], [["dara"]], "dara", [], None, [{"investigational": "X-1",
               "class": "bcma_car_t"}], ["KRd"], [" "]],
    "refractory_to": [["lenalidomide"], ["dara"], [], None, [1], [True], ["lenalidomide", "Revlimid"], "dara"],
    "intolerant_to": [[], ["dex"], None, [0], [False], [0.0]],
    "autologous_transplant": [True, False, 1, 0, 1.0, 0.0, -0.0, None, "true", [True]],
    "transplant_date": ["2020-01", "2020-01-15", "2031-01", "2020-13", 2020, None],
    "start_date": ["2019-06", "2019-06-15", "2025-12-31", "2026-01-02", "2026-01", "2019-02-30", None, 2019],
    "end_date": ["2020-01", "2030-01-01", None, True, 1],
    "best_response": ["PD", "CR", None, 1, True, "pd"],
    "infusion_date": ["2019-07-01", None, 0, False],
}  # fmt: skip


VALID_LINE_VALUES: dict[str, list[Any]] = {
    "refractory_to": [["lenalidomide"], [], None],
    "intolerant_to": [[], ["dex"], None],
    "autologous_transplant": [True, False, None],
    "start_date": ["2019-06", "2019-06-15", "2025-12-31", "2026-01-02"],
    "end_date": ["2020-01", "2030-01-01", None],
    "best_response": ["CR", None, "PD"],
}
VALID_AGENTS = [("KRd", ["carfilzomib", "lenalidomide", "dexamethasone"]), ("DRd", ["dara", "Revlimid", "dex"]),
                ("KRd", None), ("Rd", ["lenalidomide", "dexamethasone"]), (None, ["lenalidomide", "dex"])]  # fmt: skip


def _lines(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Prior lines with fields from LINE_VALUES (in random order, some left out)."""
    out = []
    for _ in range(n):
        keys = rng.sample(list(LINE_VALUES), rng.randint(1, 6))
        if rng.random() < 0.7:
            keys = ["regimen", "agents", *(k for k in keys if k not in ("regimen", "agents"))]
        line = {k: copy.deepcopy(rng.choice(LINE_VALUES[k])) for k in keys}
        if rng.random() < 0.6:  # a valid line (more or less)
            line = {k: copy.deepcopy(rng.choice(VALID_LINE_VALUES[k])) for k in keys if k in VALID_LINE_VALUES}
            line["regimen"], line["agents"] = copy.deepcopy(rng.choice(VALID_AGENTS))
        out.append(line)
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_seen_lines_as_before(vocabulary: Any, seed: int) -> None:
    """The prior lines met before (`_seen_lines`: their problems, start and latest dates, and model) give what
    checking them again gives, whatever was met first: profiles made of a few lines, equal in Python (1 and
    true, 0 and -0.0 and false) and not as JSON, through the JSON text path, in three orders."""
    rng = random.Random(seed)
    pool = _lines(rng, 60)
    profiles = []
    for _ in range(1500):
        data: dict[str, Any] = {"patient_id": "p", "age": 60, "ecog": 1}
        if rng.random() < 0.3:
            data["evaluation_date"] = rng.choice(["2026-01-01", "2020-01", "2019-06-20", "2026-13-01"])
        data["prior_lines"] = [copy.deepcopy(rng.choice(pool)) for _ in range(rng.randint(0, 4))]
        profiles.append(json.dumps(data))
    olds = {}
    for text in profiles:
        olds[text] = _outcome(ref.parse_profile, json.loads(text), vocabulary, "2026-01-01")
    outcomes = {"ok": 0, "error": 0}
    for order in (profiles, profiles[::-1], rng.sample(profiles, len(profiles))):
        pm._MEMOS.clear()
        for text in order:
            new = _outcome(pm.parse_profile, pm.decode_json(text), vocabulary, "2026-01-01", text=text)
            if new[0] == "ok":
                new = ("ok", _expanded(new[1]))
            assert new == olds[text], text
            outcomes[new[0]] += 1
    assert outcomes["ok"] > 300 and outcomes["error"] > 1000, outcomes


def test_seen_lines_bounded(vocabulary: Any) -> None:
    memo = pm._memo(vocabulary)
    for i in range(pm.MAX_SEEN_LINES + 10):
        text = json.dumps({"patient_id": "p", "age": 60, "ecog": 1, "prior_lines": [{"regimen": "KRd", "notes": str(i)}]})
        with pytest.raises(ProfileError):
            pm.parse_profile(pm.decode_json(text), vocabulary, text=text)
        assert len(memo.lines) <= pm.MAX_SEEN_LINES


def _plain_texts(seed: int) -> list[str]:
    """Profile texts the duplicate-key test by counts (`_plain`) must not be fooled by: colons and braces in
    strings (as written or escaped) beside keys given twice, objects in unusual places, deep lists."""
    rng = random.Random(seed)
    out = []
    for data in _inputs(800, seed=seed):
        text = json.dumps(data, separators=rng.choice([(",", ":"), (", ", ": ")]))
        for _ in range(rng.randint(1, 3)):
            at = rng.choice([i for i, c in enumerate(text) if c in "{,"] or [0])
            op = rng.random()
            if op < 0.4:  # a key given twice
                key = rng.choice(['"age"', '"regimen"', '"x"', '"agents"', '"labs"', '"prior_lines"'])
                value = rng.choice(["1", "[]", "{}", "[{}]", '{"a":1}'])
                text = text[: at + 1] + key + ":" + value + "," + text[at + 1 :]
            elif op < 0.7:  # a string with a colon or a brace (perhaps escaped)
                s = rng.choice(['"a:b"', '"{"', '"}"', '"\\u003a"', '"\\u007b"', '"::"', '"{:"', '"\\":"'])
                key = rng.choice(['"x"', '"notes"', '"patient_id"'])
                text = text[: at + 1] + key + ":" + s + "," + text[at + 1 :]
            elif op < 0.85:  # an object elsewhere
                text = text[: at + 1] + '"y":[{}, [{"a":1}]],' + text[at + 1 :]
            else:  # lists in lists
                n = rng.choice([5, 31, 32, 33, 40])
                text = text[: at + 1] + '"z":' + "[" * n + "]" * n + "," + text[at + 1 :]
        out.append(text)
    return out


def test_the_plain_decoding_as_before() -> None:
    plain = 0
    for text in _plain_texts(7) + _texts(8):
        old = _outcome(ref.decode_json, text)
        new = _outcome(pm.decode_json, text)
        assert new[0] == old[0] and json.dumps(new[1:]) == json.dumps(old[1:]), text
        found = pm._plain(pm.strip_comment_lines(text))
        if found is not None:
            data = found[0]
            plain += 1
            assert old == ("ok", data) and json.dumps(data) == json.dumps(old[1]), text  # same key order too
    assert plain > 500, plain


def _alike(value: Any) -> list[Any]:
    """Values equal to `value` in Python and not as JSON."""
    if value is True:
        return [1, 1.0]
    if value is False:
        return [0, 0.0, -0.0]
    if isinstance(value, list):
        return [[*value[:i], alt, *value[i + 1 :]] for i, v in enumerate(value) for alt in _alike(v)]
    return []


def test_seen_lines_equal_in_python(vocabulary: Any) -> None:
    """A line met before and a line equal to it in Python (true and 1, false and 0 and -0.0), either first."""
    bases = [
        {"regimen": "KRd", "agents": ["carfilzomib", "lenalidomide", "dexamethasone"], "autologous_transplant": True,
         "transplant_date": "2020-01", "refractory_to": ["lenalidomide"]},
        {"regimen": "KRd", "autologous_transplant": False, "refractory_to": []},
        {"agents": ["dara", "dex"], "autologous_transplant": False, "start_date": "2019-06", "intolerant_to": ["dex"]},
    ]  # fmt: skip
    pairs = []
    for base in bases:
        for key, value in base.items():
            pairs += [(base, {**base, key: alt}) for alt in _alike(value)]
        pairs.append((base, {**base, "autologous_transplant": [base.get("autologous_transplant")]}))
    assert len(pairs) > 8
    for pair in pairs:
        for first, then in (pair, pair[::-1]):
            pm._MEMOS.clear()
            for line in (first, then, first):
                text = json.dumps({"patient_id": "p", "age": 60, "ecog": 1, "prior_lines": [line, line]})
                new = _outcome(pm.parse_profile, pm.decode_json(text), vocabulary, "2026-01-01", text=text)
                if new[0] == "ok":
                    new = ("ok", _expanded(new[1]))
                assert new == _outcome(ref.parse_profile, json.loads(text), vocabulary, "2026-01-01"), text


def _shaped(text: str, vocabulary: Any, default: str | None) -> Any:
    """`parse_profile` as `load_input_profile` calls it: with the `Shape` `decode_profile_json` proved."""
    data, shape = pm.decode_profile_json(text)
    return pm.parse_profile(data, vocabulary, default, text=text, shape=shape)


def _line_texts_hold(text: str) -> bool:
    """`Shape.lines` of a text are its lines: each (closed as written) decodes to the line; False when not known."""
    try:
        data, shape = pm.decode_profile_json(text)
    except ProfileError:
        return False
    if shape is None or shape.lines is None:
        return False
    lines = data["prior_lines"]
    assert len(shape.lines) == len(lines)
    for i, (written, line) in enumerate(zip(shape.lines, lines)):
        closed = "{" + (written + "}" if i == len(lines) - 1 else written.rstrip(" \t\r\n,"))
        assert json.dumps(json.loads(closed)) == json.dumps(line), text
    return True


def _moved(rng: random.Random, data: dict[str, Any]) -> str:
    """`data` as JSON with its keys in another order (the labs before or after the lines), perhaps indented."""
    items = list(data.items())
    rng.shuffle(items)
    return json.dumps(dict(items), indent=rng.choice([None, None, 1, "\t"]), separators=rng.choice([None, (",", ":")]))


@pytest.mark.parametrize("seed", [3, 4])
def test_shape_as_before(vocabulary: Any, seed: int) -> None:
    """Through the `Shape` (the lines known by their texts, the commas counted): the outcome of the reference,
    on texts with braces and colons in strings, keys given twice, objects in lines, labs before and after the
    lines, whitespace; the lines met before in three orders. A line's text is the line."""
    rng = random.Random(seed)
    texts = _plain_texts(seed) + _texts(seed)[:600]
    pool = _lines(rng, 60)
    for data in _inputs(300, seed=seed) + [{"patient_id": "p", "age": 60, "ecog": 1} for _ in range(900)]:
        if isinstance(data, dict):
            data = copy.deepcopy(data)
            if rng.random() < 0.7:
                data["prior_lines"] = [copy.deepcopy(rng.choice(pool)) for _ in range(rng.randint(0, 4))]
            if rng.random() < 0.5:
                data["labs"] = {"crp_mg_l": rng.choice([1.5, 0, -1, "x"]), "ferritin_ng_ml": 300.0}
            if rng.random() < 0.1:
                data["notes"] = rng.choice(["}", "{", "a: b", "}{", '"prior_lines":[{'])
        texts.append(_moved(rng, data) if isinstance(data, dict) else json.dumps(data))
    olds = {}
    for text in texts:
        olds[text] = _outcome(lambda t: ref.parse_profile(ref.decode_json(t), vocabulary, "2026-01-01"), text)
    known = sum(_line_texts_hold(text) for text in texts)
    assert known > 700, known
    for order in (texts, texts[::-1], rng.sample(texts, len(texts))):
        pm._MEMOS.clear()
        for text in order:
            new = _outcome(_shaped, text, vocabulary, "2026-01-01")
            if new[0] == "ok":
                new = ("ok", _expanded(new[1]))
            assert new == olds[text], text
