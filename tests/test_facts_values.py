"""derive_values' own path (cds.model.facts._derive_from_entries: each line read once per distinct line, the values
of a profile's group masks made once per distinct masks) gives the values derive's full path gives.

derive (with its explanations) goes through _derive_lines and _derive_course; derive_values (without) through the
line entries. Checked on case, bench and random profiles and on mutations of them that reach every branch of the
course facts (infusion and transplant dates, toxicity stops of bispecific lines, intolerance, lines not recording
refractoriness whose dates make them not refractory), each value with its type, with empty and with warm caches.
"""

from __future__ import annotations

import contextlib
import json
import random

from conftest import case_names, load_case
from strategies import random_profiles
from test_worker_loop import _bench_profiles

from cds.errors import ProfileError
from cds.model import facts
from cds.model.facts import FACTS, derive, derive_values

RESPONSES = [None, "sCR", "CR", "VGPR", "PR", "MR", "SD", "PD"]
STOPS = [None, "progression", "toxicity", "completed", "patient_choice", "other"]
ON = [None, "2016-06-15", "2020-01", "2026-01-01"]


def _month(n: int, rng: random.Random) -> str:
    text = f"{2012 + n // 12}-{n % 12 + 1:02d}"
    return text if rng.random() < 0.4 else f"{text}-{rng.randint(1, 28):02d}"


def _mutated(data: dict, rng: random.Random, vocabulary) -> dict:
    """The profile with its lines' course fields redrawn (dates in order, now and then out of it, best response,
    stop reason, intolerance, refractoriness not recorded, autologous transplant)."""
    data = json.loads(json.dumps(data))
    clock = rng.randint(0, 40)
    for line in data.get("prior_lines", []):
        names = [a if isinstance(a, str) else a.get("investigational") for a in line.get("agents") or []]
        car_t = any((r := vocabulary.resolve(n)) is not None and r.drug.drug_class.endswith("_car_t") for n in names)
        if rng.random() < 0.3:
            line["autologous_transplant"] = rng.choice([True, False, None])
        for key in ("start_date", "infusion_date", "transplant_date", "end_date", "progression_date"):
            line.pop(key, None)
        start = clock + rng.randint(0, 3)
        end = start + rng.randint(1, 14)
        months = {
            "start_date": start,
            "infusion_date": start + rng.randint(0, 1),
            "transplant_date": start + rng.randint(1, 4),
            "end_date": end,
            "progression_date": end + rng.randint(0, 16) if rng.random() < 0.9 else start,
        }
        clock = max(months.values()) + 1
        for key, month in months.items():
            if (key == "infusion_date" and not car_t) or (
                key == "transplant_date" and line.get("autologous_transplant") is not True
            ):
                continue
            if rng.random() < 0.6:
                line[key] = _month(month, rng)
        if rng.random() < 0.2:
            line["refractory_to"] = None
        if rng.random() < 0.5:
            line["best_response"] = rng.choice(RESPONSES if line.get("refractory_to") != [] else RESPONSES[:6])
        if rng.random() < 0.5:
            line["stop_reason"] = rng.choice(STOPS)
        if rng.random() < 0.3:
            line["intolerant_to"] = rng.choice([None, [], [n for n in names if rng.random() < 0.5]])
    data["evaluation_date"] = rng.choice([None, None, _month(clock + 2, rng), _month(clock + 30, rng)])
    return data


def _profiles(evaluator, n: int) -> list:
    rng = random.Random(11)
    datas = [load_case(name) for name in case_names()] + _bench_profiles(n, 41) + random_profiles(n, seed=42)
    datas += [_mutated(d, rng, evaluator.vocabulary) for d in datas for _ in range(3)]
    out = []
    for data in datas:
        with contextlib.suppress(ProfileError):
            out.append(evaluator.parse(data))
    return out


def _typed(values: dict) -> list:
    return [(name, type(values[name]), values[name]) for name in FACTS]


def test_the_values_are_those_of_derive_with_explanations(evaluator):
    vocabulary = evaluator.vocabulary
    profiles = _profiles(evaluator, 400)
    assert len(profiles) > 2500
    reached = {"fallback": 0, "car_t_interval": 0, "asct_known": 0, "inferred_last": 0, "intolerant": 0, "stopped": 0}
    for cold in (True, False):  # every line entry and value table made afresh, then read from the caches
        if cold:
            facts._LINES.clear()
            facts._EXPOSURE_VALUES.clear()
            facts._REFRACTORINESS_VALUES.clear()
            facts._INTOLERANCE_VALUES.clear()
            facts._CYTO_VALUES.clear()
        for profile in profiles:
            for on in ON:
                derived = derive_values(profile, vocabulary, on)
                full = derive(profile, vocabulary, on)
                assert _typed(derived.values) == _typed({name: fv.value for name, fv in full.items()})
                assert derived.not_applying == {name for name, fv in full.items() if not fv.applies}
                values = derived.values
                reached["car_t_interval"] += values["months_car_t_to_progression"] is not None
                reached["asct_known"] += values["early_relapse_after_asct"] is not None and values["prior_autologous_transplant"]
                reached["intolerant"] += any(values[f] is True for f, _, _ in facts._INTOLERANCE)
                reached["stopped"] += values["bispecific_stopped_for_toxicity_in_response"] is not False
                reached["inferred_last"] += (
                    profile.prior_lines[-1].refractory_to is None and values["refractory_to_last_line"] is False
                )
            with_entries = {}
            reached["fallback"] += facts._derive_from_entries(profile, vocabulary, None, with_entries) is None
    assert all(n > 20 for n in reached.values()), reached


def test_a_line_entry_is_read_with_the_vocabulary_it_was_made_with(evaluator):
    """A line entry made with another vocabulary is made again (the entries are keyed by what the line writes)."""
    vocabulary = evaluator.vocabulary
    profile = evaluator.parse(load_case(case_names()[0]))
    expected = derive_values(profile, vocabulary, "2026-01-01").values
    assert any(expected[f] for f in facts._EXPOSURE_FACTS)
    for key in list(facts._LINES):
        facts._LINES[key] = (object(), 0, True, 0, 0, 0)  # type: ignore[assignment]  # as if read by another vocabulary
    assert derive_values(profile, vocabulary, "2026-01-01").values == expected


def test_a_line_of_many_names_is_read_without_being_kept(evaluator):
    """A line naming more than 16 agents and refractoriness entries is read afresh every time (not kept), with
    the values of derive's full path."""
    vocabulary = evaluator.vocabulary
    agents = [d.name for d in vocabulary.drugs if d.drug_class in ("imid", "pi", "anti_cd38", "chemotherapy", "steroid")]
    assert len(agents) >= 12
    data = {"patient_id": "MANY", "age": 70, "ecog": 1, "prior_lines": [{"agents": agents[:12], "refractory_to": agents[:6]}]}
    profile = evaluator.parse(data)
    facts._LINES.clear()
    for _ in range(2):
        derived = derive_values(profile, vocabulary, "2026-01-01")
        full = derive(profile, vocabulary, "2026-01-01")
        assert _typed(derived.values) == _typed({name: fv.value for name, fv in full.items()})
        assert not facts._LINES


def test_every_fact_is_written_on_the_path_without_explanations(evaluator, monkeypatch):
    """Without explanations `_derive` starts from every fact unknown (`_UNKNOWN`, so that the values keep FACTS
    order) and its length check cannot see a fact the fast path forgot to write: that fact would be silently
    unknown (review rev4 R2). Started from a marker instead of None, every value must have been written."""
    marker = object()
    monkeypatch.setattr(facts, "_UNKNOWN", dict.fromkeys(FACTS, marker))
    vocabulary = evaluator.vocabulary
    written = 0
    for profile in _profiles(evaluator, 100):
        for on in ON:
            values = derive_values(profile, vocabulary, on).values
            assert [name for name, v in values.items() if v is marker] == []
            assert list(values) == list(FACTS)
            written += 1
    assert written > 2000
