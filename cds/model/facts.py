"""Facts the rules can test: profile facts and facts derived from the prior lines.

`FACTS` is the catalogue (name, type, range, whether it can be unknown, plain
description). Rules may only name facts listed here; `cds rules check` uses
the ranges to find conditions that can never hold, and the unknown-facts
analysis uses them to try every possible value of a missing fact.

`derive(profile, vocabulary, default_evaluation_date)` computes every fact with a one-line
explanation of how it was obtained; the date-relative facts count to the profile's
`evaluation_date`, or else to `default_evaluation_date` (the evaluation time's date). A fact
the profile leaves out is ``None`` (unknown).
Exposure facts are always known (a line lists what was given). Refractoriness
facts are three-valued: a line whose ``refractory_to`` is not recorded makes
every refractoriness fact it could change unknown, unless another line already
decides it (refractory to lenalidomide in line 1 is true whatever line 3 was);
`refractoriness_alternatives` lists the possible records of such a line for the
unknown-fact analysis.

The cytogenetics facts come from ``rules/catalog/cytogenetics.yaml`` (the
packaged copy; a rule folder's own copy must name the same facts).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, get_args

from cds.model.profile import (
    NON_RESPONSE,
    BestResponse,
    Day,
    PatientProfile,
    PriorLine,
    line_drugs,
    months_between,
    named_drugs,
)
from cds.model.vocabulary import Drug, Vocabulary, read_cytogenetics
from cds.resources import packaged_rules_dir

Value = bool | int | float | str


@dataclass(frozen=True)
class FactSpec:
    name: str
    type: Literal["bool", "int", "float", "enum"]
    description: str
    may_be_unknown: bool = False
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()
    group: str | None = None  # facts that are unknown together (e.g. all cytogenetics)
    input_field: str | None = None  # the profile field an unknown fact comes from
    derived: bool = False  # derived from the prior lines (not stated by the profile), even when it can be unknown

    def accepts(self, value: object) -> bool:
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "enum":
            return isinstance(value, str) and value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return not (self.type == "int" and not isinstance(value, int))


#: the cytogenetics catalogue the fact catalogue is built from (rules/catalog/cytogenetics.yaml, packaged)
_CYTO_CATALOGUE = read_cytogenetics(packaged_rules_dir() / "catalog" / "cytogenetics.yaml").abnormalities
CYTO_FACT: dict[str, str] = {c.name: c.fact for c in _CYTO_CATALOGUE}
CYTOGENETIC_ABNORMALITIES: tuple[str, ...] = tuple(CYTO_FACT)
_HIGH_RISK = [c.name for c in _CYTO_CATALOGUE if c.high_risk is True]
_HIGH_RISK_TEXT = ", ".join(_HIGH_RISK[:-1]) + " or " + _HIGH_RISK[-1] if len(_HIGH_RISK) > 1 else "".join(_HIGH_RISK)

#: the profile field refractoriness facts come from (unknown when a line does not record it)
REFRACTORY_FIELD = "prior_lines[].refractory_to"
#: the profile field intolerance facts come from (unknown where a line that gave the drug does not record it)
INTOLERANCE_FIELD = "prior_lines[].intolerant_to"
#: how the unknown-fact analysis names fields that are not a single fact's description
FIELD_DESCRIPTIONS = {
    "cytogenetics": "Cytogenetics (FISH) result",
    REFRACTORY_FIELD: "Refractoriness of a prior line (refractory_to not recorded)",
    INTOLERANCE_FIELD: "Intolerance of a prior line (intolerant_to not recorded)",
}

#: intolerance facts: intolerant_<key>, per class and for the drugs the partner rules name
INTOLERANCE_GROUPS: tuple[tuple[str, str], ...] = (
    ("imid", "an IMiD"),
    ("pi", "a proteasome inhibitor"),
    ("anti_cd38", "an anti-CD38 antibody"),
    ("bcma_bispecific", "a BCMA bispecific antibody"),
    ("gprc5d_bispecific", "a GPRC5D bispecific antibody"),
    ("lenalidomide", "lenalidomide"),
    ("pomalidomide", "pomalidomide"),
    ("bortezomib", "bortezomib"),
    ("carfilzomib", "carfilzomib"),
)
BEST_RESPONSES: tuple[str, ...] = get_args(BestResponse)
#: best responses that are a response (PR or better, IMWG)
RESPONSE: tuple[str, ...] = ("sCR", "CR", "VGPR", "PR")
#: the CAR-T relapse and early-relapse-after-ASCT boundary (S001, Samur et al.: "within 12 months")
EARLY_MONTHS = 12.0


def _refr(name: str, description: str) -> FactSpec:
    return FactSpec(name, "bool", description, True, input_field=REFRACTORY_FIELD, derived=True)


_F: list[FactSpec] = [
    FactSpec("age", "int", "Age in years", minimum=18, maximum=120),
    FactSpec("ecog", "int", "ECOG performance status", minimum=0, maximum=4),
    FactSpec("frailty", "enum", "Frailty category", True, values=("fit", "intermediate", "frail"), input_field="frailty"),
    FactSpec(
        "creatinine_clearance_ml_min",
        "float",
        "Creatinine clearance (mL/min)",
        True,
        0,
        1000,
        input_field="creatinine_clearance_ml_min",
    ),
    FactSpec("dialysis", "bool", "On dialysis", True, input_field="dialysis"),
    FactSpec("extramedullary_disease", "bool", "Extramedullary disease present", True, input_field="extramedullary_disease"),
    FactSpec(
        "rapidly_progressive",
        "bool",
        "Rapidly progressive disease that cannot wait weeks for therapy",
        True,
        input_field="rapidly_progressive",
    ),
    FactSpec("car_t_center_access", "bool", "Access to a certified CAR-T centre", True, input_field="car_t_center_access"),
    FactSpec(
        "organ_function_adequate",
        "bool",
        "Cardiac, pulmonary and hepatic function adequate for lymphodepletion and CRS",
        True,
        input_field="organ_function_adequate",
    ),
    FactSpec("active_serious_infection", "bool", "Active serious infection", True, input_field="active_serious_infection"),
    FactSpec(
        "prior_serious_infections",
        "bool",
        "Serious infections (grade 3 or more, or needing admission) on earlier treatment",
        True,
        input_field="prior_serious_infections",
    ),
    FactSpec(
        "prior_allogeneic_transplant",
        "bool",
        "Prior allogeneic stem-cell transplant",
        True,
        input_field="prior_allogeneic_transplant",
    ),
    FactSpec("plasma_cell_leukemia", "bool", "Plasma cell leukaemia", True, input_field="plasma_cell_leukemia"),
    FactSpec("cns_involvement", "bool", "Central nervous system involvement by myeloma", True, input_field="cns_involvement"),
    FactSpec(
        "soluble_bcma_ng_ml", "float", "Serum soluble BCMA (ng/mL)", True, 0, 1_000_000, input_field="labs.soluble_bcma_ng_ml"
    ),
    FactSpec("ferritin_ng_ml", "float", "Serum ferritin (ng/mL)", True, 0, 1_000_000, input_field="labs.ferritin_ng_ml"),
    FactSpec("crp_mg_l", "float", "C-reactive protein (mg/L)", True, 0, 1_000_000, input_field="labs.crp_mg_l"),
    FactSpec("igg_g_l", "float", "Serum IgG (g/L)", True, 0, 1_000_000, input_field="labs.igg_g_l"),
    FactSpec(
        "neutrophils_10e9_l",
        "float",
        "Absolute neutrophil count (x10^9/L)",
        True,
        0,
        1_000_000,
        input_field="labs.neutrophils_10e9_l",
    ),
    FactSpec("platelets_10e9_l", "float", "Platelet count (x10^9/L)", True, 0, 1_000_000, input_field="labs.platelets_10e9_l"),
    *[
        FactSpec(fact, "bool", f"{abn} detected", True, group="cytogenetics", input_field="cytogenetics")
        for abn, fact in CYTO_FACT.items()
    ],
    FactSpec(
        "high_risk_cytogenetics",
        "bool",
        f"Any high-risk abnormality: {_HIGH_RISK_TEXT}",
        True,
        group="cytogenetics",
        input_field="cytogenetics",
    ),
    FactSpec("prior_line_count", "int", "Number of prior lines of therapy", minimum=1, maximum=40),
    FactSpec("prior_autologous_transplant", "bool", "Prior autologous stem-cell transplant"),
    FactSpec("exposed_imid", "bool", "Exposed to an IMiD"),
    FactSpec("exposed_pi", "bool", "Exposed to a proteasome inhibitor"),
    FactSpec("exposed_anti_cd38", "bool", "Exposed to an anti-CD38 antibody"),
    FactSpec("exposed_anti_slamf7", "bool", "Exposed to an anti-SLAMF7 antibody"),
    _refr("refractory_imid", "Refractory to an IMiD"),
    _refr("refractory_pi", "Refractory to a proteasome inhibitor"),
    _refr("refractory_anti_cd38", "Refractory to an anti-CD38 antibody"),
    _refr("refractory_anti_slamf7", "Refractory to an anti-SLAMF7 antibody"),
    _refr("refractory_lenalidomide", "Refractory to lenalidomide"),
    _refr("refractory_pomalidomide", "Refractory to pomalidomide"),
    _refr("refractory_bortezomib", "Refractory to bortezomib"),
    _refr("refractory_carfilzomib", "Refractory to carfilzomib"),
    FactSpec("exposed_lenalidomide", "bool", "Exposed to lenalidomide"),
    FactSpec("exposed_pomalidomide", "bool", "Exposed to pomalidomide"),
    _refr("partner_imid_available", "An IMiD the patient is not refractory to remains (lenalidomide or pomalidomide)"),
    _refr("partner_pi_available", "A PI the patient is not refractory to remains (bortezomib or carfilzomib)"),
    FactSpec("triple_class_exposed", "bool", "Exposed to an IMiD, a PI and an anti-CD38 antibody"),
    _refr("triple_class_refractory", "Refractory to an IMiD, a PI and an anti-CD38 antibody"),
    _refr("penta_refractory", "Refractory to lenalidomide, pomalidomide, bortezomib, carfilzomib and an anti-CD38 antibody"),
    _refr("refractory_to_last_line", "Refractory to (progressed on) the most recent line"),
    FactSpec("bcma_exposed", "bool", "Any prior BCMA-directed therapy"),
    _refr("bcma_refractory", "Refractory to a BCMA-directed therapy"),
    FactSpec("bcma_adc_exposed", "bool", "Prior BCMA antibody-drug conjugate"),
    _refr("bcma_adc_refractory", "Refractory to a BCMA antibody-drug conjugate"),
    FactSpec("bcma_bispecific_exposed", "bool", "Prior BCMA bispecific antibody"),
    _refr("bcma_bispecific_refractory", "Refractory to a BCMA bispecific antibody"),
    FactSpec("bcma_car_t_exposed", "bool", "Prior BCMA CAR-T"),
    _refr("bcma_car_t_refractory", "Refractory to (no response or early progression after) a BCMA CAR-T"),
    FactSpec("gprc5d_exposed", "bool", "Prior GPRC5D-directed therapy (bispecific or CAR-T)"),
    _refr("gprc5d_refractory", "Refractory to a GPRC5D-directed therapy"),
    FactSpec("t_cell_redirecting_exposed", "bool", "Prior T-cell redirecting therapy (any CAR-T or bispecific)"),
    _refr("refractory_chemotherapy", "Refractory to any cytotoxic chemotherapy (transplant melphalan included)"),
    _refr(
        "refractory_salvage_chemotherapy",
        "Refractory to a salvage chemotherapy agent (cyclophosphamide, doxorubicin, cisplatin or etoposide)",
    ),
    # --- from the dates, responses and stop reasons of the prior lines (profile v2); unknown, never
    # false, when the dates they need are missing
    FactSpec(
        "months_since_bcma_therapy",
        "float",
        "Months since the most recent BCMA-directed therapy ended (to the evaluation date)",
        True,
        0,
        2400,
        input_field="prior_lines[].end_date (BCMA-directed line)",
        derived=True,
    ),
    FactSpec(
        "months_since_gprc5d_therapy",
        "float",
        "Months since the most recent GPRC5D-directed therapy ended (to the evaluation date)",
        True,
        0,
        2400,
        input_field="prior_lines[].end_date (GPRC5D-directed line)",
        derived=True,
    ),
    FactSpec(
        "months_car_t_to_progression",
        "float",
        "Months from the most recent CAR-T infusion to progression",
        True,
        0,
        2400,
        input_field="prior_lines[].progression_date (CAR-T line)",
        derived=True,
    ),
    FactSpec(
        "bcma_car_t_relapse_within_12_months",
        "bool",
        "Relapse within 12 months of a BCMA CAR-T infusion",
        True,
        input_field="prior_lines[].progression_date (BCMA CAR-T line)",
        derived=True,
    ),
    FactSpec(
        "early_relapse_after_asct",
        "bool",
        "Early relapse after ASCT: progression within 12 months of the transplant",
        True,
        input_field="prior_lines[].progression_date (line with ASCT)",
        derived=True,
    ),
    *[
        FactSpec(
            f"intolerant_{key}",
            "bool",
            f"Intolerant to {label} (stopped for toxicity)",
            True,
            input_field=INTOLERANCE_FIELD,
            derived=True,
        )
        for key, label in INTOLERANCE_GROUPS
    ],
    FactSpec(
        "last_line_best_response",
        "enum",
        "Best response (IMWG) to the most recent line",
        True,
        values=BEST_RESPONSES,
        input_field="prior_lines[-1].best_response",
        derived=True,
    ),
    FactSpec(
        "bispecific_stopped_for_toxicity_in_response",
        "bool",
        "A bispecific antibody stopped for toxicity while in response (PR or better)",
        True,
        input_field="prior_lines[].stop_reason (bispecific line)",
        derived=True,
    ),
]
FACTS: dict[str, FactSpec] = {f.name: f for f in _F}


class _Put(Protocol):
    """How `derive`'s helpers record a fact: name, value (None: unknown), how it was obtained, whether it applies."""

    def __call__(self, name: str, value: Value | None, explanation: str, applies: bool = True) -> None: ...


#: how the exposure and refractoriness helper records a fact (it never sets `applies`)
_PutLine = Callable[[str, Value | None, str], None]


class FactValue(NamedTuple):
    name: str
    value: Value | None  # None: unknown (or, with applies False, not applicable)
    how: str | Explainer  # the explanation, or what writes it on first use (`derive(..., lazy=True)`)
    applies: bool = True  # False: the fact has no value for this patient (months since a therapy never given)

    @property
    def known(self) -> bool:
        return self.value is not None

    @property
    def explanation(self) -> str:
        """How the fact was obtained, in one line."""
        how = self.how
        return how if isinstance(how, str) else how.explanation(self.name, self.value)


class Explainer:
    """The explanations of one lazy derivation, written on first use by deriving again with them.

    `derive` is a function of its arguments only, so the second derivation gives the same values
    (checked for each fact read); a batch, which never shows an explanation, never pays for them.
    """

    __slots__ = ("_args", "_facts")

    def __init__(self, profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None):
        self._args = (profile, vocabulary, default_evaluation_date)
        self._facts: dict[str, FactValue] | None = None

    def explanation(self, name: str, value: Value | None) -> str:
        if self._facts is None:
            self._facts = derive(*self._args)
        fact = self._facts[name]
        assert fact.value == value and type(fact.value) is type(value), (name, value, fact.value)
        return fact.explanation


def _fmt_lines(hits: list[tuple[str, int]]) -> str:
    """'lenalidomide (line 1), daratumumab (line 2)' from (agent, line_no) pairs."""
    return ", ".join(f"{a} (line {n})" for a, n in hits)


def cytogenetic_risk(found: set[str], tested: frozenset[str], vocabulary: Vocabulary) -> tuple[bool | None, str]:
    """`high_risk_cytogenetics` from what was detected and what the panel covered, with its explanation:
    true when a high-risk abnormality is detected; unknown when a high-risk (or unclassified) one was
    not tested, or an abnormality the sources do not classify (t(14;20)) was detected; else false."""
    hr = [abn for abn in vocabulary.high_risk_cytogenetics if abn in found]
    if hr:
        return True, f"high-risk abnormality detected: {', '.join(hr)}"
    untested = [abn for abn in (*vocabulary.high_risk_cytogenetics, *vocabulary.unclassified_cytogenetics) if abn not in tested]
    if untested:
        return None, f"not in the tested panel: {', '.join(untested)}: risk unknown"
    unclassified = [abn for abn in vocabulary.unclassified_cytogenetics if abn in found]
    if unclassified:
        return None, f"{', '.join(unclassified)} detected: not classified by the sources, risk unknown"
    return False, "cytogenetics tested: no high-risk abnormality"


def _derive_cytogenetics(
    cytogenetics: list[str], tested_list: list[str] | None, vocabulary: Vocabulary, put: _Put, explain: bool = True
) -> None:
    found = set(cytogenetics)
    tested = vocabulary.cytogenetics_tested(cytogenetics, tested_list)
    for abn, fact in CYTO_FACT.items():
        if abn in found:
            put(fact, True, f"cytogenetics tested: {abn} detected" if explain else "")
        elif abn in tested:
            put(fact, False, f"cytogenetics tested: {abn} not detected" if explain else "")
        else:
            put(fact, None, f"not in the tested panel (cytogenetics_tested): {abn} unknown" if explain else "")
    value, explanation = cytogenetic_risk(found, tested, vocabulary)
    put("high_risk_cytogenetics", value, explanation)


def derive(
    profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None = None, lazy: bool = False
) -> dict[str, FactValue]:
    """Every fact of `FACTS`, each with how it was obtained.

    `default_evaluation_date` (``YYYY-MM-DD``: the date of the evaluation time the report is stamped
    with) stands for the profile's `evaluation_date` when the profile gives none; without either, the
    date-relative facts are unknown. With `lazy`, the explanations are written only when one is
    first read (`Explainer`): the helpers below build an explanation only when `explain` is true.
    """
    out: dict[str, FactValue] = {}
    explain = not lazy
    explainer = Explainer(profile, vocabulary, default_evaluation_date) if lazy else None

    make = tuple.__new__  # what FactValue(...) runs, without its Python-level __new__

    def put(name: str, value: Value | None, explanation: str, applies: bool = True) -> None:
        assert name in FACTS, name
        out[name] = make(FactValue, (name, value, explanation if explainer is None else explainer, applies))

    put("age", profile.age, "from the profile")
    put("ecog", profile.ecog, "from the profile")
    for name in (
        "frailty",
        "creatinine_clearance_ml_min",
        "dialysis",
        "extramedullary_disease",
        "rapidly_progressive",
        "car_t_center_access",
        "organ_function_adequate",
        "active_serious_infection",
        "prior_serious_infections",
        "prior_allogeneic_transplant",
        "plasma_cell_leukemia",
        "cns_involvement",
    ):
        value = getattr(profile, name)
        put(name, value, "from the profile" if value is not None else "not given in the profile: unknown")
    labs = profile.labs
    for name in ("soluble_bcma_ng_ml", "ferritin_ng_ml", "crp_mg_l", "igg_g_l", "neutrophils_10e9_l", "platelets_10e9_l"):
        value = getattr(labs, name) if labs is not None else None
        put(name, value, "from the profile (labs)" if value is not None else "not measured/not given: unknown")

    if profile.cytogenetics is None:
        for fact in (*CYTO_FACT.values(), "high_risk_cytogenetics"):
            put(fact, None, "cytogenetics not tested/not given: unknown")
    else:
        _derive_cytogenetics(profile.cytogenetics, profile.cytogenetics_tested, vocabulary, put, explain)
    _derive_lines(profile, vocabulary, put, explain)
    _derive_course(profile, vocabulary, put, default_evaluation_date, explain)
    missing = set(FACTS) - set(out)
    assert not missing, missing
    return {name: out[name] for name in FACTS}


def _derive_lines(profile: PatientProfile, vocabulary: Vocabulary, put: _PutLine, explain: bool = True) -> None:
    """Exposure (always known) and refractoriness (three-valued) from the prior lines; each explanation
    only when `explain` (else "")."""
    lines = profile.prior_lines
    put("prior_line_count", len(lines), f"{len(lines)} prior line(s) listed" if explain else "")
    asct = [n for n, line in enumerate(lines, 1) if line.autologous_transplant]
    put(
        "prior_autologous_transplant",
        bool(asct),
        (f"autologous transplant in line {', '.join(map(str, asct))}" if asct else "no line lists an autologous transplant")
        if explain
        else "",
    )

    # One pass over the lines: every exposure (generic name, line number, refractory: True, False or
    # None when the line does not record refractoriness), grouped by the keys the facts below ask about.
    groups: dict[str, list[tuple[str, int, bool | None]]] = defaultdict(list)
    inferred: dict[int, str] = {}  # line number -> why it is not refractory (refractory_to not recorded)
    for n, line in enumerate(lines, 1):
        refractory_to = named_drugs(line.refractory_to, line, vocabulary) if line.refractory_to is not None else None
        if refractory_to is None and (why := not_refractory_by_dates(line)) is not None:
            refractory_to, inferred[n] = set(), why
        for found in line_drugs(line, vocabulary):
            drug = found.drug
            hit = (drug.name, n, None if refractory_to is None else drug.name in refractory_to)
            cls = drug.drug_class
            groups["class:" + cls].append(hit)
            groups["drug:" + drug.name].append(hit)
            if "BCMA" in drug.targets:
                groups["bcma"].append(hit)
                groups["bcma:" + cls].append(hit)
            if "GPRC5D" in drug.targets:
                groups["gprc5d"].append(hit)
            if cls.endswith("_car_t") or cls.endswith("_bispecific"):
                groups["t_cell_redirecting"].append(hit)
            if drug.name in SALVAGE_CHEMOTHERAPY_AGENTS:
                groups["salvage_chemotherapy"].append(hit)

    def exposed(fact: str, group: str, what: str) -> list[tuple[str, int]]:
        h = [(name, n) for name, n, _ in groups.get(group, ())]
        put(
            fact,
            bool(h),
            (f"exposed to {_fmt_lines(h)}" if h else f"no line shows the patient exposed to {what}") if explain else "",
        )
        return h

    def refractory(fact: str, group: str, what: str) -> tuple[bool | None, list[tuple[str, int]]]:
        hits = groups.get(group, [])
        h = [(name, n) for name, n, r in hits if r]
        if h:
            put(fact, True, f"refractory to {_fmt_lines(h)}" if explain else "")
            return True, h
        unrecorded = [(name, n) for name, n, r in hits if r is None]
        if unrecorded:
            put(fact, None, f"unknown: refractoriness not recorded for {_fmt_lines(unrecorded)}" if explain else "")
            return None, unrecorded
        if not explain:
            put(fact, False, "")
            return False, []
        by_dates = sorted({n for _, n, _ in hits if n in inferred})
        put(
            fact,
            False,
            f"no line shows the patient refractory to {what}"
            + "".join(f"; line {n} not refractory: {inferred[n]}" for n in by_dates),
        )
        return False, []

    cls_refr: dict[str, tuple[bool | None, list[tuple[str, int]]]] = {}
    cls_exp: dict[str, list[tuple[str, int]]] = {}
    for c, label in (
        ("imid", "an IMiD"),
        ("pi", "a PI"),
        ("anti_cd38", "an anti-CD38 antibody"),
        ("anti_slamf7", "an anti-SLAMF7 antibody"),
    ):
        cls_exp[c] = exposed(f"exposed_{c}", "class:" + c, label)
        cls_refr[c] = refractory(f"refractory_{c}", "class:" + c, label)
    refr_drug = {
        d: refractory(f"refractory_{d}", "drug:" + d, d) for d in ("lenalidomide", "pomalidomide", "bortezomib", "carfilzomib")
    }
    for d in ("lenalidomide", "pomalidomide"):
        exposed(f"exposed_{d}", "drug:" + d, d)

    for fact, drugs, both in (
        ("partner_imid_available", ("lenalidomide", "pomalidomide"), "refractory to both lenalidomide and pomalidomide"),
        ("partner_pi_available", ("bortezomib", "carfilzomib"), "refractory to both bortezomib and carfilzomib"),
    ):
        free = [d for d in drugs if refr_drug[d][0] is False]
        open_ = [d for d in drugs if refr_drug[d][0] is None]
        if free:
            put(fact, True, f"not refractory to {' or '.join(free)}" if explain else "")
        elif open_:
            put(
                fact,
                None,
                f"unknown: refractoriness to {' and '.join(open_)} not recorded in every line that gave it" if explain else "",
            )
        else:
            put(fact, False, both)

    # triple-class exposed (always known) and refractory (Kleene 'and': false if one part is false)
    classes = ("imid", "pi", "anti_cd38")
    labels = ("IMiD", "PI", "anti-CD38 antibody")
    parts = [cls_exp[c] for c in classes]
    if all(parts):
        put(
            "triple_class_exposed",
            True,
            "triple-class exposed: " + "; ".join(_fmt_lines(p[:1]) for p in parts) if explain else "",
        )
    else:
        missing = [lbl for p, lbl in zip(parts, labels) if not p] if explain else []
        put("triple_class_exposed", False, f"not triple-class exposed: no {', '.join(missing)} exposure" if explain else "")
    values = [cls_refr[c] for c in classes]
    if all(v is True for v, _ in values):
        put(
            "triple_class_refractory",
            True,
            "triple-class refractory: " + "; ".join(_fmt_lines(h) for _, h in values) if explain else "",
        )
    elif any(v is False for v, _ in values):
        missing = [lbl for (v, _), lbl in zip(values, labels) if v is False] if explain else []
        put(
            "triple_class_refractory",
            False,
            f"not triple-class refractory: no {', '.join(missing)} refractoriness" if explain else "",
        )
    else:
        open_ = [lbl for (v, _), lbl in zip(values, labels) if v is None] if explain else []
        put("triple_class_refractory", None, f"unknown: refractoriness to {', '.join(open_)} not recorded" if explain else "")

    penta_names = ("lenalidomide", "pomalidomide", "bortezomib", "carfilzomib", "an anti-CD38 antibody")
    penta = [refr_drug[d] for d in penta_names[:4]] + [cls_refr["anti_cd38"]]
    if all(v is True for v, _ in penta):
        put("penta_refractory", True, "penta-refractory: " + "; ".join(_fmt_lines(h[:1]) for _, h in penta) if explain else "")
    elif any(v is False for v, _ in penta):
        missing = [nm for (v, _), nm in zip(penta, penta_names) if v is False] if explain else []
        put("penta_refractory", False, f"not penta-refractory: not refractory to {', '.join(missing)}" if explain else "")
    else:
        open_ = [nm for (v, _), nm in zip(penta, penta_names) if v is None] if explain else []
        put("penta_refractory", None, f"unknown: refractoriness to {', '.join(open_)} not recorded" if explain else "")

    last = lines[-1]
    if len(lines) in inferred:
        put(
            "refractory_to_last_line",
            False,
            f"line {len(lines)} (most recent) not refractory: {inferred[len(lines)]}" if explain else "",
        )
    elif last.refractory_to is None:
        put(
            "refractory_to_last_line",
            None,
            f"unknown: refractoriness not recorded for line {len(lines)} (most recent)" if explain else "",
        )
    elif last.refractory_to:
        put(
            "refractory_to_last_line",
            True,
            f"line {len(lines)} (most recent): refractory to {', '.join(last.refractory_to)}" if explain else "",
        )
    else:
        put("refractory_to_last_line", False, f"line {len(lines)} (most recent) lists no refractoriness" if explain else "")

    exposed("bcma_exposed", "bcma", "a BCMA-directed therapy")
    refractory("bcma_refractory", "bcma", "a BCMA-directed therapy")
    for modality, label in (("bcma_adc", "a BCMA ADC"), ("bcma_bispecific", "a BCMA bispecific"), ("bcma_car_t", "a BCMA CAR-T")):
        exposed(f"{modality}_exposed", "bcma:" + modality, label)
        refractory(f"{modality}_refractory", "bcma:" + modality, label)
    exposed("gprc5d_exposed", "gprc5d", "a GPRC5D-directed therapy")
    refractory("gprc5d_refractory", "gprc5d", "a GPRC5D-directed therapy")
    exposed("t_cell_redirecting_exposed", "t_cell_redirecting", "a CAR-T or bispecific antibody")
    refractory("refractory_chemotherapy", "class:chemotherapy", "a cytotoxic chemotherapy")
    refractory(
        "refractory_salvage_chemotherapy",
        "salvage_chemotherapy",
        "an agent of the salvage chemotherapy regimens (cyclophosphamide, doxorubicin, cisplatin, etoposide)",
    )


#: The agents of the salvage chemotherapy the option names ("cyclophosphamide- or anthracycline-containing
#: regimens", rules/catalog/options.yaml; the chemotherapy of DCEP and (VDT-)PACE, rules/catalog/regimens.yaml).
#: Refractoriness to them, not to any chemotherapy, keeps the rapid-progression preference for chemotherapy
#: (SEQ-RAPID-003) off: high-dose melphalan given as the conditioning of an autologous transplant (or
#: melphalan in MP/VMP, fludarabine in lymphodepletion) is not the chemotherapy the option proposes.
SALVAGE_CHEMOTHERAPY_AGENTS = frozenset({"cyclophosphamide", "doxorubicin", "cisplatin", "etoposide"})


#: IMWG: refractory = no response (less than MR) or progression on therapy or within 60 days of the last dose
REFRACTORY_WINDOW_DAYS = 60
_RESPONSE_MR_OR_BETTER = ("sCR", "CR", "VGPR", "PR", "MR")


def not_refractory_by_dates(line: PriorLine) -> str | None:
    """Why a line that does not record refractory_to is nonetheless not refractory, or None.

    By the IMWG definition: a response (MR or better) and a progression surely more than 60 days after
    the last dose (the line's end_date) -- e.g. a bispecific stopped for infections in response.
    """
    if line.refractory_to is not None or line.best_response not in _RESPONSE_MR_OR_BETTER:
        return None
    if line.end_date is None or line.progression_date is None:
        return None
    end, prog = Day.parse(line.end_date), Day.parse(line.progression_date)
    if prog.bounds()[0] - end.bounds()[1] <= REFRACTORY_WINDOW_DAYS:
        return None
    return (
        f"best response {line.best_response}, progression {line.progression_date} more than "
        f"{REFRACTORY_WINDOW_DAYS} days after the end of the line {line.end_date} (IMWG)"
    )


def _progression(line: PriorLine) -> tuple[str | None, str]:
    """When a line progressed, and which field says so (an end for progression is a progression)."""
    if line.progression_date is not None:
        return line.progression_date, "progression_date"
    if line.stop_reason == "progression" and line.end_date is not None:
        return line.end_date, "end_date, stopped for progression"
    return None, ""


def _span(lo: float, hi: float) -> str:
    """'6.5' or '5.9-7.0' months, by the precision of the dates."""
    lo, hi = max(lo, 0.0), max(hi, 0.0)
    return f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f}-{hi:.1f}"


def _months_value(lo: float, hi: float) -> float:
    """The interval's midpoint in months (one decimal), the shortest possible interval being `lo`."""
    return round(max((lo + hi) / 2, 0.0), 1)


def _within(interval: tuple[float, float], limit: float) -> bool | None:
    """True when the interval is surely at most `limit` months, False when surely longer, None when the
    dates' precision leaves it open."""
    lo, hi = interval
    if hi <= limit:
        return True
    if lo > limit:
        return False
    return None


def _derive_course(
    profile: PatientProfile, vocabulary: Vocabulary, put: _Put, default_evaluation_date: str | None, explain: bool = True
) -> None:
    """Facts from the dates, best responses, stop reasons and intolerances of the prior lines (profile v2);
    each explanation only when `explain` (else "").

    A date-derived fact is unknown when a date it needs is missing (or when the dates' precision
    leaves the 12-month boundary open), never false; a fact about a therapy the patient never had
    does not apply (months since BCMA therapy) or is false (relapse within 12 months of a BCMA CAR-T).
    """
    lines = profile.prior_lines
    drugs = [line_drugs(line, vocabulary) for line in lines]
    evaluation = profile.evaluation_date or default_evaluation_date
    # said once per fact when the date is the evaluation time's, not the profile's
    defaulted = (
        ""
        if not explain or profile.evaluation_date or evaluation is None
        else f"; {evaluation} is the evaluation time (no evaluation_date in the profile)"
    )

    def names(n: int, pick: Callable[[Drug], bool]) -> str:
        return ", ".join(r.drug.name for r in drugs[n - 1] if pick(r.drug))

    def months_since(fact: str, pick: Callable[[Drug], bool], what: str) -> None:
        hits = [n for n in range(1, len(lines) + 1) if any(pick(r.drug) for r in drugs[n - 1])]
        if not hits:
            put(fact, None, f"no prior {what}: does not apply" if explain else "", applies=False)
            return
        parts = []
        for n in hits if explain else ():
            end = lines[n - 1].end_date
            if end is None:
                parts.append(f"{names(n, pick)} (line {n}): end_date not given")
            elif evaluation is None:
                parts.append(f"{names(n, pick)} (line {n}) ended {end}")
            else:
                lo, hi = months_between(Day.parse(end), Day.parse(evaluation))
                parts.append(f"{names(n, pick)} (line {n}) ended {end}, {_span(lo, hi)} months before {evaluation}")
        last = lines[hits[-1] - 1]
        if last.end_date is None:
            put(fact, None, "unknown: " + "; ".join(parts) if explain else "")
        elif evaluation is None:
            put(
                fact,
                None,
                "unknown: no evaluation_date in the profile and no evaluation time; " + "; ".join(parts) if explain else "",
            )
        else:
            lo, hi = months_between(Day.parse(last.end_date), Day.parse(evaluation))
            put(fact, _months_value(lo, hi), "; ".join(parts) + defaulted if explain else "")

    def bcma(d: Drug) -> bool:
        return "BCMA" in d.targets

    def gprc5d(d: Drug) -> bool:
        return "GPRC5D" in d.targets

    def car_t(d: Drug) -> bool:
        return d.drug_class.endswith("_car_t")

    def bcma_car_t(d: Drug) -> bool:
        return car_t(d) and "BCMA" in d.targets

    months_since("months_since_bcma_therapy", bcma, "BCMA-directed therapy")
    months_since("months_since_gprc5d_therapy", gprc5d, "GPRC5D-directed therapy")

    def to_progression(n: int, infusion: bool = False, transplant: bool = False) -> tuple[tuple[float, float] | None, str]:
        """(months from the start of line n -- with `infusion` / `transplant`, from its infusion_date /
        transplant_date when it has one -- to its progression, how it was read: "" unless `explain`)."""
        line = lines[n - 1]
        prog, how = _progression(line)
        if infusion and line.infusion_date is not None:
            origin, what = line.infusion_date, "infused "
        elif transplant and line.transplant_date is not None:
            origin, what = line.transplant_date, "transplant "
        elif line.start_date is None:
            return None, f"line {n}: start_date not given" if explain else ""
        else:
            origin, what = line.start_date, ""
        if prog is None:
            return None, f"line {n}: no progression date (progression_date not given)" if explain else ""
        lo, hi = months_between(Day.parse(origin), Day.parse(prog))
        if hi < 0:  # only an infusion or a transplant can be after the progression (a start_date cannot)
            event = "infusion" if what == "infused " else "transplant"
            return None, (
                f"line {n}: progression {prog} ({how}) before the {event} {origin}: no relapse after it recorded"
                if explain
                else ""
            )
        return (lo, hi), f"line {n}: {what}{origin} to progression {prog} ({how}), {_span(lo, hi)} months" if explain else ""

    def read_as_infusion(numbers: list[int]) -> str:
        """What the explanation says of the CAR-T lines without infusion_date (their start is read as it)."""
        without = [n for n in numbers if lines[n - 1].infusion_date is None]
        if not without:
            return ""
        if len(without) == len(numbers):
            return "the start of a CAR-T line is read as the infusion"
        return "the start of a CAR-T line without infusion_date is read as the infusion"

    car_t_lines = [n for n in range(1, len(lines) + 1) if any(car_t(r.drug) for r in drugs[n - 1])]
    if not car_t_lines:
        put("months_car_t_to_progression", None, "no prior CAR-T: does not apply", applies=False)
    else:
        interval, how = to_progression(car_t_lines[-1], infusion=True)
        note = read_as_infusion(car_t_lines[-1:]) if explain else ""
        label = f"{names(car_t_lines[-1], car_t)} ({how}{'; ' + note if note else ''})" if explain else ""
        put(
            "months_car_t_to_progression",
            None if interval is None else _months_value(*interval),
            (label if interval else "unknown: " + label) if explain else "",
        )

    def within_12_months(
        fact: str,
        line_numbers: list[int],
        label: Callable[[int, str], str],
        none: str,
        suffix: str,
        later: Callable[[int], tuple[bool | None, str]] | None = None,
        infusion: bool = False,
        transplant: bool = False,
    ) -> None:
        """True when some line surely progressed within 12 months of its start, False when every one
        surely later, else unknown; `none` explains False without any such line. `later(n)`, when
        given, decides "surely later" for line n instead (True, or None when it cannot be known);
        `infusion` / `transplant`: count from a line's infusion_date / transplant_date when it has one."""
        if not line_numbers:
            put(fact, False, none)
            return
        results = []
        for n in line_numbers:
            interval, how = to_progression(n, infusion, transplant)
            result = None if interval is None else _within(interval, EARLY_MONTHS)
            if result is False and later is not None:
                result, why = later(n)
                how += why
            results.append((result, label(n, how) if explain else ""))
        text = "; ".join(h for _, h in results) + suffix if explain else ""
        if any(r is True for r, _ in results):
            put(fact, True, "within 12 months: " + text if explain else "")
        elif all(r is False for r, _ in results):
            put(fact, False, "later than 12 months: " + text if explain else "")
        else:
            put(fact, None, "unknown: " + text if explain else "")

    bcma_car_t_lines = [n for n in range(1, len(lines) + 1) if any(bcma_car_t(r.drug) for r in drugs[n - 1])]
    note = read_as_infusion(bcma_car_t_lines) if explain else ""
    within_12_months(
        "bcma_car_t_relapse_within_12_months",
        bcma_car_t_lines,
        lambda n, how: f"{names(n, bcma_car_t)} ({how})",
        "no prior BCMA CAR-T",
        "; " + note if note else "",
        infusion=True,
    )

    def after_the_transplant(n: int) -> tuple[bool | None, str]:
        """More than 12 months from the line's start: the profile has no transplant date, and the
        transplant may have come months into the line (induction first), so progression is surely
        later than 12 months after it only when it came more than 12 months after the line ended."""
        line = lines[n - 1]
        if line.transplant_date is not None:
            return False, ""  # counted from the transplant: surely later
        prog, _ = _progression(line)
        if line.end_date is not None and prog is not None:
            lo, _hi = months_between(Day.parse(line.end_date), Day.parse(prog))
            if lo > EARLY_MONTHS:
                return False, f"; more than 12 months after the line ended {line.end_date}"
        return None, "; the transplant date is not in the profile, so 12 months after it cannot be told"

    asct_lines = [n for n, line in enumerate(lines, 1) if line.autologous_transplant]
    undated = [n for n in asct_lines if lines[n - 1].transplant_date is None]
    within_12_months(
        "early_relapse_after_asct",
        asct_lines,
        lambda n, how: how,
        "no line lists an autologous transplant",
        ""
        if not undated
        else " (line with ASCT, from its start)"
        if len(undated) == len(asct_lines)
        else " (a line with ASCT without transplant_date: from its start)",
        later=after_the_transplant,
        transplant=True,
    )

    # intolerance: what intolerant_to names; a line stopped for toxicity that does not say which agent
    # leaves its agents' intolerance unknown
    intolerant: list[tuple[str, int]] = []
    open_lines: list[int] = []
    for n, line in enumerate(lines, 1):
        if line.intolerant_to:
            intolerant += [(d, n) for d in sorted(named_drugs(line.intolerant_to, line, vocabulary))]
        elif line.stop_reason == "toxicity" and line.intolerant_to is None:
            treatment = [r.drug.name for r in drugs[n - 1] if r.drug.drug_class != "steroid"]
            if len(treatment) == 1:  # one agent besides steroids: the one stopped for toxicity
                intolerant.append((treatment[0], n))
            else:
                open_lines.append(n)
    by_name = {r.drug.name: r.drug for ds in drugs for r in ds}
    # the keys a drug counts under (its name and its class), and every line giving a drug, in line and
    # agent order, under each of its keys: one pass instead of one per key of INTOLERANCE_GROUPS
    keys_of = {name: {name, d.drug_class} for name, d in by_name.items()}
    given_under: dict[str, list[tuple[str, int]]] = {}
    for n, ds in enumerate(drugs, 1):
        for r in ds:
            for k in keys_of[r.drug.name]:
                given_under.setdefault(k, []).append((r.drug.name, n))
    unrecorded_lines = {n for n, line in enumerate(lines, 1) if line.intolerant_to is None and n not in open_lines}
    named = set(intolerant)

    for key, label in INTOLERANCE_GROUPS:
        given_lines = given_under.get(key, [])
        hits = [(d, n) for d, n in intolerant if key in keys_of[d]]
        giving = {n for _, n in given_lines}
        unsure = [n for n in open_lines if n in giving]
        # a line that gave it without recording intolerant_to: its tolerance is not recorded (unknown)
        unrecorded = [(d, n) for d, n in given_lines if n in unrecorded_lines and (d, n) not in named]
        given = bool(given_lines)
        if hits:
            put(f"intolerant_{key}", True, f"intolerant to {_fmt_lines(hits)}" if explain else "")
        elif unsure:
            where = ", ".join(map(str, unsure)) if explain else ""
            put(f"intolerant_{key}", None, f"unknown: line {where} stopped for toxicity without intolerant_to" if explain else "")
        elif unrecorded:
            put(f"intolerant_{key}", None, f"unknown: intolerance not recorded for {_fmt_lines(unrecorded)}" if explain else "")
        elif not given:
            put(f"intolerant_{key}", False, f"no line gave {label}" if explain else "")
        else:
            put(f"intolerant_{key}", False, f"no line records intolerance to {label}" if explain else "")

    responses = [f"line {n}: {line.best_response}" for n, line in enumerate(lines, 1) if line.best_response] if explain else []
    last = lines[-1]
    if last.best_response is None:
        put(
            "last_line_best_response",
            None,
            "unknown: best_response of the most recent line not given" + (f" ({'; '.join(responses)})" if responses else "")
            if explain
            else "",
        )
    else:
        put("last_line_best_response", last.best_response, "; ".join(responses) if explain else "")

    stopped = []
    open_ = []
    for n, line in enumerate(lines, 1):
        bispecifics = [r.drug.name for r in drugs[n - 1] if r.drug.drug_class.endswith("_bispecific")]
        if not bispecifics or line.stop_reason != "toxicity":
            continue
        if line.best_response in RESPONSE:
            stopped.append(f"{', '.join(bispecifics)} (line {n}): stopped for toxicity in {line.best_response}")
        elif line.best_response is None:
            open_.append(f"{', '.join(bispecifics)} (line {n}): stopped for toxicity, best_response not given")
    if stopped:
        put("bispecific_stopped_for_toxicity_in_response", True, "; ".join(stopped) if explain else "")
    elif open_:
        put("bispecific_stopped_for_toxicity_in_response", None, "unknown: " + "; ".join(open_) if explain else "")
    else:
        put("bispecific_stopped_for_toxicity_in_response", False, "no bispecific line stopped for toxicity in response")


#: the facts that depend on refractoriness records (unknown when a line does not record it)
REFRACTORY_FACTS: tuple[str, ...] = tuple(f.name for f in _F if f.input_field == REFRACTORY_FIELD)
_MAX_ALTERNATIVE_GROUPS = 6


def _line_facts(profile: PatientProfile, vocabulary: Vocabulary) -> dict[str, Value | None]:
    out: dict[str, Value | None] = {}

    def put(name: str, value: Value | None, explanation: str) -> None:
        out[name] = value

    _derive_lines(profile, vocabulary, put, explain=False)
    return out


def refractoriness_alternatives(
    profile: PatientProfile, vocabulary: Vocabulary, used: frozenset[str] | None = None
) -> list[tuple[str, dict[str, Value]]]:
    """For each line that does not record refractoriness, each distinguishable record it could have.

    One line at a time (the other unrecorded lines stay unknown), as (label, the refractoriness facts that
    become known; only those in `used` when given). Agents that change the same facts when marked
    refractory alone (e.g. dexamethasone and cyclophosphamide) are interchangeable, so one subset per
    combination of such groups is tried; with more than `_MAX_ALTERNATIVE_GROUPS` groups in one line,
    only 'none', each group alone and 'all'.
    """
    unrecorded = [
        i for i, line in enumerate(profile.prior_lines) if line.refractory_to is None and not_refractory_by_dates(line) is None
    ]
    if not unrecorded:
        return []
    base = _line_facts(profile, vocabulary)
    unknown = [f for f in REFRACTORY_FACTS if base[f] is None]
    keep = [f for f in unknown if used is None or f in used]
    if not keep:
        return []

    def with_record(i: int, names: list[str]) -> dict[str, Value | None]:
        lines = list(profile.prior_lines)
        lines[i] = lines[i].model_copy(update={"refractory_to": names})
        return _line_facts(profile.model_copy(update={"prior_lines": lines}), vocabulary)

    out: list[tuple[str, dict[str, Value]]] = []
    seen: set[tuple[tuple[str, Value], ...]] = set()
    for i in unrecorded:
        line = profile.prior_lines[i]
        reps: dict[tuple[tuple[str, Value | None], ...], str] = {}
        for agent in line.agent_list:
            name = agent if isinstance(agent, str) else agent.investigational
            alone = with_record(i, [name])
            # keyed by the values the record gives (not only which facts it decides): bortezomib and
            # lenalidomide decide the same facts with different values, and both must be tried
            reps.setdefault(tuple((f, alone[f]) for f in unknown if alone[f] is not None), name)
        names = [n for k, n in reps.items() if k]
        if len(names) <= _MAX_ALTERNATIVE_GROUPS:
            subsets = [list(c) for k in range(len(names) + 1) for c in itertools.combinations(names, k)]
        else:
            subsets = [[], *([n] for n in names), names]
        for subset in subsets:
            if not subset and line.best_response in NON_RESPONSE:
                continue  # no response is refractoriness: 'refractory to none' is not a possible record
            facts = with_record(i, subset)
            assignment = {f: v for f in keep if (v := facts[f]) is not None}
            key = tuple(sorted(assignment.items()))
            if key in seen or not assignment:
                continue
            seen.add(key)
            label = f"line {i + 1}: refractory to {', '.join(subset)}" if subset else f"line {i + 1}: refractory to none"
            out.append((label, assignment))
    return out


def engine_facts(facts: dict[str, FactValue]) -> dict[str, Value]:
    """The flat fact asserted into the engine: unknown facts are left out, never null."""
    return {name: fv.value for name, fv in facts.items() if fv.value is not None}
