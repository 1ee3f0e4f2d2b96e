"""Generators of VALID patient profiles: hypothesis strategies and a fast seeded generator.

pydantic v2 has no hypothesis plugin, so the profile shape is written out here
once, as `build_profile(src)`, against a tiny "source of choices" interface with
two implementations:

- `_Draw` draws every choice from hypothesis (so failures shrink), used by `profiles()`;
- `_Rand` draws from `random.Random(seed)`, used by `random_profiles()` for the
  differential test, which needs thousands of profiles quickly.

Profiles are plain JSON-ready dicts (what a user writes), never model objects:
random prior lines drawn from the drug vocabulary (real regimens from
rules/catalog/drugs.yaml, BCMA- and GPRC5D-directed lines, random drug mixes,
generic names and aliases in any case), ``refractory_to`` a subset of each
line's agents, and every optional field either absent, null or a valid value.
Choices are biased toward the interesting cases: triple-class exposure, BCMA
exposure, rapidly progressive disease, values at the thresholds the rules use.

Hypothesis profiles: ``cds`` (default, fast) and ``long``; choose with the
environment variable ``CDS_HYPOTHESIS_PROFILE=long``. They are registered with
`settings.register_profile` and applied by the tests through `SETTINGS`
(not loaded globally, so other test files keep their own settings).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cds.api import load_ruleset, load_vocabulary
from cds.knowledge.ruleset import leaves
from cds.model.facts import CYTOGENETIC_ABNORMALITIES, FACTS

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"

# --------------------------------------------------------------------------- hypothesis profiles

PROFILE_NAME = os.environ.get("CDS_HYPOTHESIS_PROFILE", "cds")
_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("cds", max_examples=40, **_COMMON)
settings.register_profile("long", max_examples=1500, **_COMMON)
if PROFILE_NAME not in ("cds", "long"):
    raise RuntimeError(f"CDS_HYPOTHESIS_PROFILE must be 'cds' or 'long', not {PROFILE_NAME!r}")
SETTINGS = settings.get_profile(PROFILE_NAME)
LONG = PROFILE_NAME == "long"
# Profiles per run of the differential test (pre-generated, fast loop).
DIFFERENTIAL_N = int(os.environ.get("CDS_DIFFERENTIAL_N", "50000" if LONG else "2000"))

# --------------------------------------------------------------------------- vocabulary and thresholds

_DRUGS_YAML = yaml.safe_load((RULES / "catalog" / "drugs.yaml").read_text(encoding="utf-8"))
DRUGS: dict[str, dict] = {}
for _d in _DRUGS_YAML["drugs"]:
    _t = _d.get("target")
    DRUGS[_d["name"]] = {
        "class": _d["class"],
        "targets": tuple(_t) if isinstance(_t, list) else ((_t,) if _t else ()),
        "aliases": tuple(_d.get("aliases") or ()),
    }
_REGIMENS_YAML = yaml.safe_load((RULES / "catalog" / "regimens.yaml").read_text(encoding="utf-8"))
REGIMENS: dict[str, list[str]] = {r["label"]: list(r["agents"]) for r in _REGIMENS_YAML["regimens"]}
VOCABULARY = load_vocabulary(RULES / "catalog" / "drugs.yaml")
CLASSES: list[str] = sorted(_DRUGS_YAML["classes"])


def is_known_label(text: str) -> bool:
    """A regimen label that means something (a known regimen or a drug name): agents must agree with it."""
    return VOCABULARY.regimen(text) is not None or VOCABULARY.resolve(text) is not None


BY_CLASS: dict[str, list[str]] = {}
for _name, _info in DRUGS.items():
    BY_CLASS.setdefault(_info["class"], []).append(_name)
BCMA_AGENTS = sorted(n for n, i in DRUGS.items() if "BCMA" in i["targets"])
NON_BCMA_AGENTS = sorted(n for n in DRUGS if n not in BCMA_AGENTS)
NON_BCMA_REGIMENS = {k: v for k, v in REGIMENS.items() if not any(a in BCMA_AGENTS for a in v)}


def _thresholds() -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    rs = load_ruleset(RULES)
    for rule in rs.rules:
        for leaf in leaves(rule.condition):
            spec = FACTS[leaf.fact]
            if spec.type in ("int", "float") and leaf.op not in ("known", "unknown"):
                vals = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
                out.setdefault(leaf.fact, []).extend(float(v) for v in vals)  # type: ignore[arg-type]
    return {k: sorted(set(v)) for k, v in out.items()}


THRESHOLDS = _thresholds()


def boundary_values(fact: str, spec_min: float = 0.0) -> list[float]:
    """Values at and around every threshold the rules use for `fact` (within its range)."""
    out = {spec_min}
    for t in THRESHOLDS.get(fact, []):
        for v in (t - 1, t - 0.5, t - 0.001, t, t + 0.001, t + 0.5, t + 1):
            if v >= spec_min:
                out.add(v)
    return sorted(out)


# --------------------------------------------------------------------------- numbers durable-rules crashes on

# durable-rules 2.0.28 segfaults (kills the process) on a JSON number written in
# exponent form without a fraction point, which is how Python writes 1e-05,
# 2e-07, 5e-324, 1e+16 or a large integer given for a float field (1e+18);
# "1.5e+16" is fine. In-process tests draw only numbers the engine survives, so
# that a crash cannot take the whole test run down; the crash itself is tested in
# a subprocess (tests/test_properties.py) with EXPONENT_NUMBERS.
EXPONENT_NUMBERS = [1e-05, 1e16, 10**18]


SAFE_EXPONENT_NUMBERS = [1.5e16, 2.5e-05, 1.5e-07, 9.999e300]


def engine_safe(value: float) -> bool:
    text = repr(float(value))
    return "e" not in text or "." in text.split("e")[0]


# --------------------------------------------------------------------------- sources of choices

_TEXT_ALPHABET = "abcXYZ 0123-_/.()é中Ωß\u00a0😀<>&\"'*`#[]"


class _Rand:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def shuffled(self, seq: Sequence[Any]) -> list[Any]:
        out = list(seq)
        self.rng.shuffle(out)
        return out

    def float(self, lo: float, hi: float) -> float:
        while True:
            v = self.rng.uniform(lo, hi)
            if engine_safe(v):
                return v

    def text(self, min_size: int, max_size: int) -> str:
        return "".join(self.pick(_TEXT_ALPHABET) for _ in range(self.int(min_size, max_size)))


class _Draw:
    """Every choice is a hypothesis draw that shrinks toward the simplest case (first item, False, 0)."""

    def __init__(self, draw: Callable[[Any], Any]):
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def chance(self, p: float) -> bool:
        return self.draw(st.integers(0, 999)) >= round(1000 * (1 - p))

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.draw(st.integers(0, len(seq) - 1))]

    def shuffled(self, seq: Sequence[Any]) -> list[Any]:
        return list(self.draw(st.permutations(list(seq))))

    def float(self, lo: float, hi: float) -> float:
        return self.draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False).filter(engine_safe))

    def text(self, min_size: int, max_size: int) -> str:
        return self.draw(st.text(min_size=min_size, max_size=max_size))


# --------------------------------------------------------------------------- the profile shape

ABSENT = object()


def _optional(src, make: Callable[[], Any], p_absent: float = 0.12, p_null: float = 0.08) -> Any:
    r = src.int(0, 99)
    if r < p_absent * 100:
        return ABSENT
    if r < (p_absent + p_null) * 100:
        return None
    return make()


def _put(d: dict, key: str, value: Any) -> None:
    if value is not ABSENT:
        d[key] = value


def _spelling(src, name: str) -> str:
    """The generic name or an alias, in some letter case (matching is case-insensitive)."""
    choices = [name, *DRUGS[name]["aliases"]]
    s = src.pick(choices) if src.chance(0.3) else name
    r = src.int(0, 9)
    return s.upper() if r == 0 else s.title() if r == 1 else s


def _number(src, fact: str, hi: float) -> float | int:
    r = src.int(0, 9)
    if r < 4 and THRESHOLDS.get(fact):
        return src.pick(boundary_values(fact))
    if r < 6:
        return src.int(0, int(hi))
    return src.float(0.0, hi)


RESPONSES = ["sCR", "CR", "VGPR", "PR", "MR", "SD", "PD"]
STOP_REASONS = ["progression", "toxicity", "completed", "patient_choice", "other"]


def _month(n: int) -> str:
    """Month number n (0 = 2010-01) as YYYY-MM."""
    return f"{2010 + n // 12:04d}-{n % 12 + 1:02d}"


def _date(src, n: int) -> str:
    """Month n as YYYY-MM or a day of it as YYYY-MM-DD (days 1-28: valid in every month)."""
    return _month(n) if src.chance(0.4) else f"{_month(n)}-{src.int(1, 28):02d}"


def _line(src, agents: list[str], refractory_p: float, regimen: str | None, clock: list[int] | None = None) -> dict:
    """One line. v2 fields: agents left out behind a known label, refractory_to not recorded,
    intolerance, dates (chronological through `clock`, the current month), best response, stop reason,
    an investigational agent now and then."""
    agents = list(dict.fromkeys(agents))  # one drug once per line
    spelled: list[Any] = [_spelling(src, a) for a in agents]
    if src.chance(0.04):
        cls = src.pick(CLASSES)
        spelled.append({"investigational": f"TRIAL-{src.int(1, 999)}", "class": cls})
    names = [a if isinstance(a, str) else a["investigational"] for a in spelled]
    refractory = [n for n in names if src.chance(refractory_p)]
    line: dict[str, Any] = {}
    known_label = regimen in REGIMENS and agents == list(dict.fromkeys(REGIMENS[regimen])) and len(spelled) == len(agents)
    if known_label and src.chance(0.25):
        line["regimen"] = regimen  # agents left out: the label's agents
    else:
        label = _optional(src, lambda: regimen if regimen and src.chance(0.7) else src.text(0, 20), 0.3, 0.1)
        if isinstance(label, str) and is_known_label(label) and label != regimen:
            label = ABSENT  # random text that happens to be a known label would have to agree with the agents
        _put(line, "regimen", label)
        line["agents"] = spelled
    if src.chance(0.1):
        pass  # refractoriness not recorded: unknown
    else:
        line["refractory_to"] = src.shuffled(refractory) if len(refractory) > 1 and src.chance(0.3) else refractory
    r = src.int(0, 9)
    if r < 7:
        line["autologous_transplant"] = src.chance(0.15)
    elif r < 8:
        line["autologous_transplant"] = None
    if src.chance(0.15):
        line["intolerant_to"] = [n for n in names if src.chance(0.3)]
    if clock is not None and src.chance(0.35):
        start = clock[0] + src.int(0, 6)
        line["start_date"] = _date(src, start)
        end = start + src.int(1, 24)
        if src.chance(0.7):
            line["end_date"] = _date(src, end)
        if src.chance(0.6):
            line["progression_date"] = _date(src, end + src.int(0, 12))
        clock[0] = end + 13
    if src.chance(0.25):
        allowed = RESPONSES if line.get("refractory_to") != [] else RESPONSES[:5]
        line["best_response"] = src.pick(allowed)
    if src.chance(0.2):
        line["stop_reason"] = src.pick(STOP_REASONS)
    return line


def _random_agents(src, pool: Sequence[str]) -> list[str]:
    return [src.pick(pool) for _ in range(src.int(1, 4))]


def _any_line(src, bcma_ok: bool) -> tuple[list[str], str | None]:
    regimens = REGIMENS if bcma_ok else NON_BCMA_REGIMENS
    r = src.int(0, 99)
    if r < 45:
        name = src.pick(sorted(regimens))
        return list(regimens[name]), name
    if bcma_ok and r < 62:  # BCMA-directed line
        kind = src.pick(["bcma_car_t", "bcma_bispecific", "bcma_adc"])
        pool = [a for a in BY_CLASS[kind] if "BCMA" in DRUGS[a]["targets"]]
        agents = [src.pick(pool)]
        if kind == "bcma_adc":
            agents += [src.pick(["pomalidomide", "bortezomib"]), "dexamethasone"]
        return agents, None
    if r < 72:  # GPRC5D / other T-cell redirecting
        pool = BY_CLASS["gprc5d_bispecific"] + BY_CLASS["gprc5d_car_t"] + BY_CLASS["fcrh5_bispecific"]
        return [src.pick(pool)], None
    return _random_agents(src, sorted(DRUGS) if bcma_ok else NON_BCMA_AGENTS), None


def _lines(src, tce_bcma_naive: bool) -> list[dict]:
    lines: list[dict] = []
    clock = [src.int(0, 120)]
    if tce_bcma_naive:
        # Triple-class exposed within the first lines, never a BCMA-directed agent, refractory to the last line.
        first = src.pick(["VRd", "KRd", "D-VRd", "D-KRd", "Isa-VRd", "Isa-KRd"])
        second = src.pick(["DKd", "DPd", "Isa-Pd", "Isa-Kd", "DRd", "DVd"])
        specs = [(list(REGIMENS[first]), first), (list(REGIMENS[second]), second)]
        for _ in range(src.int(1, 3)):
            specs.append(_any_line(src, bcma_ok=False))
        for i, (agents, name) in enumerate(specs):
            last = i == len(specs) - 1
            line = _line(src, agents, 0.9 if last else 0.4, name, clock)
            if last and not line.get("refractory_to"):
                first_agent = line["agents"][0] if "agents" in line else REGIMENS[line["regimen"]][0]
                line["refractory_to"] = [first_agent if isinstance(first_agent, str) else first_agent["investigational"]]
            lines.append(line)
        return lines
    n = src.pick([1, 2, 3, 3, 4, 4, 5, 6]) if src.chance(0.9) else src.int(1, 12)
    bcma_ok = src.chance(0.35)
    for i in range(n):
        agents, name = _any_line(src, bcma_ok)
        last = i == n - 1
        lines.append(_line(src, agents, 0.7 if last else 0.35, name, clock))
    return lines


def build_profile(src, tce_bcma_naive: bool = False) -> dict:
    """One valid profile. With `tce_bcma_naive`, a triple-class exposed, BCMA-naive patient
    refractory to the last line and not known to be unfit for CAR-T (both BCMA T-cell options in play)."""
    p: dict[str, Any] = {}
    p["patient_id"] = src.text(1, 30) if src.chance(0.5) else f"P-{src.int(0, 99999)}"
    p["age"] = src.pick([18, 74, 75, 76, 80, 81, 120]) if src.chance(0.3) else src.int(18, 120)
    if tce_bcma_naive:
        p["ecog"] = src.int(0, 2)
        _put(p, "frailty", _optional(src, lambda: src.pick(["fit", "intermediate"])))
        _put(p, "organ_function_adequate", _optional(src, lambda: True))
        _put(p, "car_t_center_access", _optional(src, lambda: True))
        _put(p, "rapidly_progressive", _optional(src, lambda: False))
    else:
        p["ecog"] = src.int(0, 4)
        _put(p, "frailty", _optional(src, lambda: src.pick(["fit", "intermediate", "frail"])))
        _put(p, "organ_function_adequate", _optional(src, lambda: src.chance(0.7)))
        _put(p, "car_t_center_access", _optional(src, lambda: src.chance(0.7)))
        _put(p, "rapidly_progressive", _optional(src, lambda: src.chance(0.4)))
    _put(p, "creatinine_clearance_ml_min", _optional(src, lambda: _number(src, "creatinine_clearance_ml_min", 200)))
    for key in ("dialysis", "extramedullary_disease", "active_serious_infection", "prior_allogeneic_transplant"):
        _put(p, key, _optional(src, lambda: src.chance(0.25)))

    def cyto() -> list[str]:
        found = [a for a in CYTOGENETIC_ABNORMALITIES if src.chance(0.2)]
        if src.chance(0.25) and "t(11;14)" not in found:
            found.append("t(11;14)")
        return src.shuffled(found) if len(found) > 1 and src.chance(0.3) else found

    _put(p, "cytogenetics", _optional(src, cyto, 0.15, 0.1))

    def labs() -> dict:
        out: dict[str, Any] = {}
        for key, hi in (
            ("soluble_bcma_ng_ml", 2000),
            ("ferritin_ng_ml", 5000),
            ("crp_mg_l", 300),
            ("neutrophils_10e9_l", 20),
            ("platelets_10e9_l", 600),
            ("igg_g_l", 80),
            ("ldh_u_l", 2000),
        ):
            _put(out, key, _optional(src, lambda key=key, hi=hi: _number(src, key, hi), 0.25, 0.1))
        return out

    _put(p, "labs", _optional(src, labs))
    p["prior_lines"] = _lines(src, tce_bcma_naive)
    # v2 patient fields (none of them may change a decision unless a rule reads it)
    _put(p, "sex", _optional(src, lambda: src.pick(["female", "male", "other"]), 0.5, 0.1))
    for key in ("plasma_cell_leukemia", "cns_involvement"):
        _put(p, key, _optional(src, lambda: src.chance(0.1), 0.6, 0.1))
    _put(p, "r_iss", _optional(src, lambda: src.int(1, 3), 0.5, 0.1))
    _put(p, "notes", _optional(src, lambda: src.text(0, 60), 0.7, 0.1))
    _put(p, "prior_serious_infections", _optional(src, lambda: src.chance(0.3), 0.5, 0.1))
    dates = [line[k] for line in p["prior_lines"] for k in ("start_date", "end_date", "progression_date") if k in line]
    if src.chance(0.5):
        last = max((int(d[:4]) * 12 + int(d[5:7]) - 1 - 2010 * 12 for d in dates), default=180)
        p["evaluation_date"] = _date(src, last + src.int(1, 30)) if src.chance(0.8) else _month(last + 1)
    # a partial FISH panel (review R12-09): the probes done; drawn last, so the fields above stay as they were
    if isinstance(p.get("cytogenetics"), list) and src.chance(0.2):
        probes = [a for a in CYTOGENETIC_ABNORMALITIES if src.chance(0.5)]
        p["cytogenetics_tested"] = probes or [src.pick(CYTOGENETIC_ABNORMALITIES)]
    return p


@st.composite
def profiles(draw, tce_bcma_naive: bool = False) -> dict:
    """Hypothesis strategy of valid profile dicts (see `build_profile`)."""
    return build_profile(_Draw(draw), tce_bcma_naive=tce_bcma_naive)


def random_profiles(n: int, seed: int = 20260101) -> list[dict]:
    """`n` valid profiles from a seeded generator (fast; for the differential test)."""
    src = _Rand(random.Random(seed))
    return [build_profile(src, tce_bcma_naive=(i % 5 == 4)) for i in range(n)]


def random_fact_dicts(n: int, seed: int = 7) -> list[dict]:
    """`n` flat engine fact dicts drawn straight from the fact catalogue (not via profiles).

    Derived facts are independent here, so combinations no profile produces are
    covered too; numbers sit at and around the rules' thresholds, an unknowable
    fact is absent a quarter of the time.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        d: dict[str, Any] = {}
        for name, spec in FACTS.items():
            if spec.may_be_unknown and rng.random() < 0.25:
                continue
            if spec.type == "bool":
                d[name] = rng.random() < 0.5
            elif spec.type == "enum":
                d[name] = rng.choice(spec.values)
            else:
                lo = spec.minimum or 0
                hi = min(spec.maximum or 1000, 1000)
                candidates = [v for v in boundary_values(name, lo) if lo <= v <= (spec.maximum or 1e18)]
                if spec.type == "int":
                    candidates = [int(v) for v in candidates if v == int(v)]
                    d[name] = rng.choice(candidates) if candidates and rng.random() < 0.6 else rng.randint(int(lo), int(hi))
                elif rng.random() < 0.05:  # exponent forms the engine parses (see EXPONENT_NUMBERS for the ones it does not)
                    d[name] = rng.choice(SAFE_EXPONENT_NUMBERS)
                else:
                    v = rng.uniform(lo, hi)
                    d[name] = rng.choice(candidates) if candidates and rng.random() < 0.6 else (v if engine_safe(v) else lo)
        out.append(d)
    return out


def shuffle_keys(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order (lists keep their order)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffle_keys(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffle_keys(v, rng) for v in value]
    return value


# --------------------------------------------------------------------------- arbitrary JSON (robustness)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "40", "true", "null", "lenalidomide", "KRd", "dara", "t(11;14)", "fit", "\u0000", "\ud7ff"]),
)
json_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=30,
)


def close_course(profile: dict) -> dict:
    """The profile with the course of every prior line recorded (review R12-02's property): exact dates,
    chronological (each line 5 months, progression 1 month after its end, the next line 2 months later;
    the evaluation date 2 months after the last progression), a best response (PR: allowed whatever
    refractory_to says), no intolerance and a stop for progression, where the line does not give them.
    Drawn dates are replaced, so the line order stays chronological. What is left unknown is then only
    a field of the patient (a flag, a category, a lab, cytogenetics) or a line's refractoriness."""
    out = json.loads(json.dumps(profile))
    month = 0
    for line in out["prior_lines"]:
        for key in ("start_date", "end_date", "progression_date", "infusion_date", "transplant_date"):
            line.pop(key, None)
        line["start_date"] = f"{_month(month)}-15"
        line["end_date"] = f"{_month(month + 5)}-15"
        line["progression_date"] = f"{_month(month + 6)}-15"
        line.setdefault("best_response", "PR")
        line.setdefault("intolerant_to", [])
        line["stop_reason"] = "progression"
        month += 8
    out["evaluation_date"] = f"{_month(month)}-15"
    return out
