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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Literal, NamedTuple, cast, get_args

from cds.model.profile import (
    NON_RESPONSE,
    BestResponse,
    Day,
    PatientProfile,
    PriorLine,
    _named,
    line_drugs,
    months_between,
)
from cds.model.vocabulary import Drug, Resolution, Vocabulary, read_cytogenetics
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
    cytogenetics: list[str],
    tested_list: list[str] | None,
    vocabulary: Vocabulary,
    values: dict[str, Value | None],
    texts: dict[str, str] | None,
) -> None:
    found = set(cytogenetics)
    tested = vocabulary.cytogenetics_tested(cytogenetics, tested_list)
    for abn, fact in CYTO_FACT.items():
        values[fact] = True if abn in found else False if abn in tested else None
    value, explanation = cytogenetic_risk(found, tested, vocabulary)
    values["high_risk_cytogenetics"] = value
    if texts is not None:
        for abn, fact in CYTO_FACT.items():
            if abn in found:
                texts[fact] = f"cytogenetics tested: {abn} detected"
            elif abn in tested:
                texts[fact] = f"cytogenetics tested: {abn} not detected"
            else:
                texts[fact] = f"not in the tested panel (cytogenetics_tested): {abn} unknown"
        texts["high_risk_cytogenetics"] = explanation


#: the facts the profile states, each from the field of its name (unknown when left out), and its labs
_STATED: tuple[str, ...] = (
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
)
_LAB_FACTS: tuple[str, ...] = (
    "soluble_bcma_ng_ml",
    "ferritin_ng_ml",
    "crp_mg_l",
    "igg_g_l",
    "neutrophils_10e9_l",
    "platelets_10e9_l",
)
_stated_of = attrgetter(*_STATED)
_labs_of = attrgetter(*_LAB_FACTS)
_NO_LABS: tuple[None, ...] = (None,) * len(_LAB_FACTS)
_CYTO_FACTS: tuple[str, ...] = (*CYTO_FACT.values(), "high_risk_cytogenetics")
_NAMES: tuple[str, ...] = tuple(FACTS)
#: the cytogenetics values (`_derive_cytogenetics`) per (cytogenetics, cytogenetics_tested) as tuples, with the
#: vocabulary they were read with; bounded (2,048)
_CYTO_VALUES: dict[tuple[tuple[str, ...], tuple[str, ...] | None], tuple[Vocabulary, dict[str, Value | None]]] = {}
#: every fact unknown, in FACTS order: what `_derive` writes the values of a `Derived` in
_UNKNOWN: dict[str, Value | None] = dict.fromkeys(_NAMES)
_make_fact = cast(Callable[[type[FactValue], tuple[str, Value | None, "str | Explainer", bool]], FactValue], tuple.__new__)


def derive(
    profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None = None, lazy: bool = False
) -> dict[str, FactValue]:
    """Every fact of `FACTS`, each with how it was obtained.

    `default_evaluation_date` (``YYYY-MM-DD``: the date of the evaluation time the report is stamped
    with) stands for the profile's `evaluation_date` when the profile gives none; without either, the
    date-relative facts are unknown. With `lazy`, the explanations are written only when one is
    first read (`Explainer`): the helpers below write the values, and the explanations only when
    given a `texts` dict to write them in.
    """
    if lazy:
        return derive_values(profile, vocabulary, default_evaluation_date).facts()
    texts: dict[str, str] = {"age": "from the profile", "ecog": "from the profile"}
    values, not_applying = _derive(profile, vocabulary, default_evaluation_date, texts)
    return _facts_of(values, not_applying, map(texts.__getitem__, _NAMES))


class Derived:
    """The values of `derive(profile, vocabulary, default_evaluation_date, lazy=True)` before they are made
    `FactValue`s (`facts()`): what an evaluation reads of them (`values`: every fact of `FACTS`, None when
    unknown or when it does not apply; `not_applying`: the facts that do not apply) costs no FactValue."""

    __slots__ = ("_args", "not_applying", "values")

    def __init__(self, profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None):
        self._args = (profile, vocabulary, default_evaluation_date)
        self.values, self.not_applying = _derive(profile, vocabulary, default_evaluation_date, None)

    def facts(self) -> dict[str, FactValue]:
        """`derive(..., lazy=True)`: the explanations written on first use (`Explainer`)."""
        return _facts_of(self.values, self.not_applying, repeat(Explainer(*self._args)))

    def known(self) -> dict[str, Value]:
        """`engine_facts(self.facts())`: the known facts, in `FACTS` order (that of `values`)."""
        return {name: v for name, v in self.values.items() if v is not None}


def derive_values(profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None = None) -> Derived:
    """`derive(profile, vocabulary, default_evaluation_date, lazy=True)`, its FactValues made on demand."""
    return Derived(profile, vocabulary, default_evaluation_date)


def _facts_of(values: dict[str, Value | None], not_applying: set[str], how: Iterable[str | Explainer]) -> dict[str, FactValue]:
    applies: Iterable[bool] = repeat(True) if not not_applying else [name not in not_applying for name in _NAMES]
    # FactValue(...) of each fact in FACTS order, without its Python-level __new__
    return dict(zip(_NAMES, map(_make_fact, repeat(FactValue), zip(_NAMES, map(values.__getitem__, _NAMES), how, applies))))


def _derive(
    profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None, texts: dict[str, str] | None
) -> tuple[dict[str, Value | None], set[str]]:
    """(every fact's value, the facts that do not apply); the explanations into `texts` when given."""
    # without texts (`Derived`): every fact's key in FACTS order from the start (written in place, the order
    # kept), so that `Derived.known` reads the values in order
    values: dict[str, Value | None] = {} if texts is not None else _UNKNOWN.copy()
    values["age"] = profile.age
    values["ecog"] = profile.ecog
    stated = _stated_of(profile)
    values.update(zip(_STATED, stated))
    labs = profile.labs
    measured = _labs_of(labs) if labs is not None else _NO_LABS
    values.update(zip(_LAB_FACTS, measured))
    if texts is not None:
        texts.update(
            (name, "from the profile" if v is not None else "not given in the profile: unknown")
            for name, v in zip(_STATED, stated)
        )
        texts.update(
            (name, "from the profile (labs)" if v is not None else "not measured/not given: unknown")
            for name, v in zip(_LAB_FACTS, measured)
        )
    if profile.cytogenetics is None:
        values.update(dict.fromkeys(_CYTO_FACTS))
        if texts is not None:
            texts.update(dict.fromkeys(_CYTO_FACTS, "cytogenetics not tested/not given: unknown"))
    elif texts is None:  # the values once per distinct result (as written) and vocabulary
        tested = profile.cytogenetics_tested
        key = (tuple(profile.cytogenetics), None if tested is None else tuple(tested))
        made = _CYTO_VALUES.get(key)
        if made is None or made[0] is not vocabulary:
            cyto: dict[str, Value | None] = {}
            _derive_cytogenetics(profile.cytogenetics, tested, vocabulary, cyto, None)
            if len(_CYTO_VALUES) >= 2048:
                _CYTO_VALUES.clear()
            made = _CYTO_VALUES[key] = (vocabulary, cyto)
        values.update(made[1])
    else:
        _derive_cytogenetics(profile.cytogenetics, profile.cytogenetics_tested, vocabulary, values, texts)
    if texts is None:
        not_applying_ = _derive_from_entries(profile, vocabulary, default_evaluation_date, values)
        if not_applying_ is not None:
            assert len(values) == len(FACTS), sorted(set(values) ^ set(FACTS))  # no name outside FACTS
            return values, not_applying_
    drugs = [line_drugs(line, vocabulary) for line in profile.prior_lines]  # once, for both helpers
    line_groups = _derive_lines(profile, vocabulary, drugs, values, texts)
    not_applying = _derive_course(profile, vocabulary, drugs, default_evaluation_date, values, texts, line_groups)
    # every fact once (a name outside FACTS fails here; with texts, one left out too, else in _facts_of)
    assert len(values) == len(FACTS), sorted(set(values) ^ set(FACTS))
    return values, not_applying


#: the groups of drugs `_derive_lines` and `_derive_course` ask about, per drug (`_groups_of`): by name,
#: with the drug they were worked out for
_GROUPS: dict[str, tuple[Drug, frozenset[str]]] = {}


def _groups_of(drug: Drug) -> frozenset[str]:
    """The groups a drug counts under: its class (``class:<class>``), its name (``drug:<name>``), ``bcma``
    and ``bcma:<class>`` for a BCMA-directed one, ``gprc5d``, ``t_cell_redirecting`` (a CAR-T or
    bispecific), ``salvage_chemotherapy``, ``car_t``, ``bcma_car_t`` and ``bispecific``. Worked out once
    per drug: a vocabulary's drugs are the same objects in every profile (`Vocabulary.resolve`), so the
    groups kept under the drug's name are reused for that very object only (`is`, not a hash of its fields)."""
    known = _GROUPS.get(drug.name)
    if known is not None and known[0] is drug:
        return known[1]
    cls = drug.drug_class
    bcma = "BCMA" in drug.targets
    car_t = cls.endswith("_car_t")
    bispecific = cls.endswith("_bispecific")
    keys = {"class:" + cls, "drug:" + drug.name}
    if bcma:
        keys |= {"bcma", "bcma:" + cls}
    if "GPRC5D" in drug.targets:
        keys.add("gprc5d")
    if car_t or bispecific:
        keys.add("t_cell_redirecting")
    if drug.name in SALVAGE_CHEMOTHERAPY_AGENTS:
        keys.add("salvage_chemotherapy")
    if car_t:
        keys.add("car_t")
        if bcma:
            keys.add("bcma_car_t")
    if bispecific:
        keys.add("bispecific")
    if len(_GROUPS) > 10_000:  # bounded: investigational agents of arbitrary input cannot grow it without limit
        _GROUPS.clear()
    groups = frozenset(keys)
    _GROUPS[drug.name] = (drug, groups)
    return groups


def _named_in(names: list[str], found: list[Resolution], vocabulary: Vocabulary) -> set[str]:
    """`named_drugs` of a line whose drugs `found` (its `line_drugs`) are read already."""
    out = set()
    for name in names:
        drug = _named(name, found, vocabulary)
        assert drug is not None  # validated by parse_profile
        out.add(drug.name)
    return out


#: (fact, group, what) of the exposure facts and of the refractoriness facts of a group of drugs
_EXPOSURE: tuple[tuple[str, str, str], ...] = (
    ("exposed_imid", "class:imid", "an IMiD"),
    ("exposed_pi", "class:pi", "a PI"),
    ("exposed_anti_cd38", "class:anti_cd38", "an anti-CD38 antibody"),
    ("exposed_anti_slamf7", "class:anti_slamf7", "an anti-SLAMF7 antibody"),
    ("exposed_lenalidomide", "drug:lenalidomide", "lenalidomide"),
    ("exposed_pomalidomide", "drug:pomalidomide", "pomalidomide"),
    ("bcma_exposed", "bcma", "a BCMA-directed therapy"),
    ("bcma_adc_exposed", "bcma:bcma_adc", "a BCMA ADC"),
    ("bcma_bispecific_exposed", "bcma:bcma_bispecific", "a BCMA bispecific"),
    ("bcma_car_t_exposed", "bcma:bcma_car_t", "a BCMA CAR-T"),
    ("gprc5d_exposed", "gprc5d", "a GPRC5D-directed therapy"),
    ("t_cell_redirecting_exposed", "t_cell_redirecting", "a CAR-T or bispecific antibody"),
)
_REFRACTORINESS: tuple[tuple[str, str, str], ...] = (
    ("refractory_imid", "class:imid", "an IMiD"),
    ("refractory_pi", "class:pi", "a PI"),
    ("refractory_anti_cd38", "class:anti_cd38", "an anti-CD38 antibody"),
    ("refractory_anti_slamf7", "class:anti_slamf7", "an anti-SLAMF7 antibody"),
    ("refractory_lenalidomide", "drug:lenalidomide", "lenalidomide"),
    ("refractory_pomalidomide", "drug:pomalidomide", "pomalidomide"),
    ("refractory_bortezomib", "drug:bortezomib", "bortezomib"),
    ("refractory_carfilzomib", "drug:carfilzomib", "carfilzomib"),
    ("bcma_refractory", "bcma", "a BCMA-directed therapy"),
    ("bcma_adc_refractory", "bcma:bcma_adc", "a BCMA ADC"),
    ("bcma_bispecific_refractory", "bcma:bcma_bispecific", "a BCMA bispecific"),
    ("bcma_car_t_refractory", "bcma:bcma_car_t", "a BCMA CAR-T"),
    ("gprc5d_refractory", "gprc5d", "a GPRC5D-directed therapy"),
    ("refractory_chemotherapy", "class:chemotherapy", "a cytotoxic chemotherapy"),
    (
        "refractory_salvage_chemotherapy",
        "salvage_chemotherapy",
        "an agent of the salvage chemotherapy regimens (cyclophosphamide, doxorubicin, cisplatin, etoposide)",
    ),
)
_PARTNERS: tuple[tuple[str, tuple[str, str], str], ...] = (
    ("partner_imid_available", ("lenalidomide", "pomalidomide"), "refractory to both lenalidomide and pomalidomide"),
    ("partner_pi_available", ("bortezomib", "carfilzomib"), "refractory to both bortezomib and carfilzomib"),
)
_TRIPLE: tuple[tuple[str, str], ...] = (("imid", "IMiD"), ("pi", "PI"), ("anti_cd38", "anti-CD38 antibody"))
_PENTA: tuple[tuple[str, str], ...] = (
    ("refractory_lenalidomide", "lenalidomide"),
    ("refractory_pomalidomide", "pomalidomide"),
    ("refractory_bortezomib", "bortezomib"),
    ("refractory_carfilzomib", "carfilzomib"),
    ("refractory_anti_cd38", "an anti-CD38 antibody"),
)


def _kleene_and(states: list[Value | None]) -> bool | None:
    """True when every part is true, false when one is false, else unknown (the parts: True, False or None)."""
    if None not in states and False not in states:
        return True
    if False in states:
        return False
    return None


# the tables above as the value loops of `_derive_lines` read them
_EXPOSURE_FACTS = tuple(fact for fact, _, _ in _EXPOSURE)
_EXPOSURE_GROUPS = tuple(group for _, group, _ in _EXPOSURE)
_REFRACTORINESS_GROUPS = tuple((fact, group) for fact, group, _ in _REFRACTORINESS)
_PARTNER_FACTS = tuple((fact, tuple("refractory_" + d for d in pair)) for fact, pair, _ in _PARTNERS)
_TRIPLE_EXPOSED = tuple("exposed_" + c for c, _ in _TRIPLE)
_TRIPLE_REFRACTORY = tuple("refractory_" + c for c, _ in _TRIPLE)
_PENTA_FACTS = tuple(f for f, _ in _PENTA)


def _derive_lines(
    profile: PatientProfile,
    vocabulary: Vocabulary,
    drugs: list[list[Resolution]],
    values: dict[str, Value | None],
    texts: dict[str, str] | None,
) -> list[frozenset[str]]:
    """Exposure (always known) and refractoriness (three-valued) from the prior lines (`drugs`: each line's
    `line_drugs`); the explanations only when given `texts`. Returns the groups (`_groups_of`) of each line's
    drugs."""
    lines = profile.prior_lines
    values["prior_line_count"] = len(lines)
    values["prior_autologous_transplant"] = any(line.autologous_transplant for line in lines)

    # One pass over the lines: the groups (`_groups_of`) some line's drug is in, those of a drug it is
    # refractory to, and those of a drug of a line that does not record refractoriness
    exposed: set[str] = set()
    refractory: set[str] = set()
    unrecorded: set[str] = set()
    inferred: dict[int, str] = {}  # line number -> why it is not refractory (refractory_to not recorded)
    # with texts: every exposure (generic name, line number, refractory: True, False or None) by group
    groups: dict[str, list[tuple[str, int, bool | None]]] | None = None if texts is None else defaultdict(list)
    line_groups: list[frozenset[str]] = []  # per line, the groups of its drugs
    for n, (line, found) in enumerate(zip(lines, drugs), 1):
        refractory_to: set[str] | None = None
        if line.refractory_to is not None:
            refractory_to = _named_in(line.refractory_to, found, vocabulary)
        elif (why := not_refractory_by_dates(line)) is not None:
            refractory_to, inferred[n] = set(), why
        keys_of = [_groups_of(r.drug) for r in found]
        every = frozenset().union(*keys_of)
        line_groups.append(every)
        exposed |= every
        if refractory_to is None:
            unrecorded |= every
        elif refractory_to:
            for r, keys in zip(found, keys_of):
                if r.drug.name in refractory_to:
                    refractory |= keys
        if groups is not None:
            for r, keys in zip(found, keys_of):
                # refractory to the drug: True, False, or None when the line does not record it
                hit = (r.drug.name, n, None if refractory_to is None else r.drug.name in refractory_to)
                for k in keys:
                    groups[k].append(hit)

    values.update(zip(_EXPOSURE_FACTS, map(exposed.__contains__, _EXPOSURE_GROUPS)))
    for fact, group in _REFRACTORINESS_GROUPS:
        values[fact] = True if group in refractory else None if group in unrecorded else False
    for fact, pair in _PARTNER_FACTS:
        states = [values[f] for f in pair]
        values[fact] = True if False in states else None if None in states else False
    values["triple_class_exposed"] = all(map(values.__getitem__, _TRIPLE_EXPOSED))
    values["triple_class_refractory"] = _kleene_and(list(map(values.__getitem__, _TRIPLE_REFRACTORY)))
    values["penta_refractory"] = _kleene_and(list(map(values.__getitem__, _PENTA_FACTS)))
    last = lines[-1]
    count = len(lines)
    if count in inferred:
        values["refractory_to_last_line"] = False
    elif last.refractory_to is None:
        values["refractory_to_last_line"] = None
    else:
        values["refractory_to_last_line"] = bool(last.refractory_to)
    if texts is None or groups is None:
        return line_groups

    # --- the explanations
    asct = [n for n, line in enumerate(lines, 1) if line.autologous_transplant]
    texts["prior_line_count"] = f"{count} prior line(s) listed"
    texts["prior_autologous_transplant"] = (
        f"autologous transplant in line {', '.join(map(str, asct))}" if asct else "no line lists an autologous transplant"
    )
    exposures: dict[str, list[tuple[str, int]]] = {}
    for fact, group, what in _EXPOSURE:
        h = exposures[fact] = [(name, n) for name, n, _ in groups.get(group, ())]
        texts[fact] = f"exposed to {_fmt_lines(h)}" if h else f"no line shows the patient exposed to {what}"
    refractory_hits: dict[str, list[tuple[str, int]]] = {}
    for fact, group, what in _REFRACTORINESS:
        hits = groups.get(group, [])
        value = values[fact]
        if value is True:
            h = refractory_hits[fact] = [(name, n) for name, n, r in hits if r]
            texts[fact] = f"refractory to {_fmt_lines(h)}"
        elif value is None:
            texts[fact] = (
                f"unknown: refractoriness not recorded for {_fmt_lines([(name, n) for name, n, r in hits if r is None])}"
            )
        else:
            by_dates = sorted({n for _, n, _ in hits if n in inferred})
            texts[fact] = f"no line shows the patient refractory to {what}" + "".join(
                f"; line {n} not refractory: {inferred[n]}" for n in by_dates
            )
    for fact, pair, both in _PARTNERS:
        free = [d for d in pair if values["refractory_" + d] is False]
        open_ = [d for d in pair if values["refractory_" + d] is None]
        if free:
            texts[fact] = f"not refractory to {' or '.join(free)}"
        elif open_:
            texts[fact] = f"unknown: refractoriness to {' and '.join(open_)} not recorded in every line that gave it"
        else:
            texts[fact] = both
    if values["triple_class_exposed"]:
        texts["triple_class_exposed"] = "triple-class exposed: " + "; ".join(
            _fmt_lines(exposures["exposed_" + c][:1]) for c, _ in _TRIPLE
        )
    else:
        missing = [label for c, label in _TRIPLE if not values["exposed_" + c]]
        texts["triple_class_exposed"] = f"not triple-class exposed: no {', '.join(missing)} exposure"
    value = values["triple_class_refractory"]
    if value is True:
        texts["triple_class_refractory"] = "triple-class refractory: " + "; ".join(
            _fmt_lines(refractory_hits["refractory_" + c]) for c, _ in _TRIPLE
        )
    elif value is False:
        missing = [label for c, label in _TRIPLE if values["refractory_" + c] is False]
        texts["triple_class_refractory"] = f"not triple-class refractory: no {', '.join(missing)} refractoriness"
    else:
        open_ = [label for c, label in _TRIPLE if values["refractory_" + c] is None]
        texts["triple_class_refractory"] = f"unknown: refractoriness to {', '.join(open_)} not recorded"
    value = values["penta_refractory"]
    if value is True:
        texts["penta_refractory"] = "penta-refractory: " + "; ".join(_fmt_lines(refractory_hits[f][:1]) for f, _ in _PENTA)
    elif value is False:
        missing = [name for f, name in _PENTA if values[f] is False]
        texts["penta_refractory"] = f"not penta-refractory: not refractory to {', '.join(missing)}"
    else:
        open_ = [name for f, name in _PENTA if values[f] is None]
        texts["penta_refractory"] = f"unknown: refractoriness to {', '.join(open_)} not recorded"
    if count in inferred:
        texts["refractory_to_last_line"] = f"line {count} (most recent) not refractory: {inferred[count]}"
    elif last.refractory_to is None:
        texts["refractory_to_last_line"] = f"unknown: refractoriness not recorded for line {count} (most recent)"
    elif last.refractory_to:
        texts["refractory_to_last_line"] = f"line {count} (most recent): refractory to {', '.join(last.refractory_to)}"
    else:
        texts["refractory_to_last_line"] = f"line {count} (most recent) lists no refractoriness"
    return line_groups


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


#: months_between of two dates as written, memoised (the same dates recur from profile to profile)
_MONTHS: dict[tuple[str, str], tuple[float, float]] = {}


def _months(start: str, end: str) -> tuple[float, float]:
    """`months_between` the dates `start` and `end` (partial dates as a profile writes them)."""
    key = (start, end)
    try:
        return _MONTHS[key]
    except KeyError:
        pass
    if len(_MONTHS) > 10_000:  # bounded: arbitrary input cannot grow it without limit
        _MONTHS.clear()
    interval = _MONTHS[key] = months_between(Day.parse(start), Day.parse(end))
    return interval


#: (fact, group of `_groups_of`, what) of the intolerance facts
_INTOLERANCE: tuple[tuple[str, str, str], ...] = tuple((f"intolerant_{key}", key, label) for key, label in INTOLERANCE_GROUPS)


def _derive_course(
    profile: PatientProfile,
    vocabulary: Vocabulary,
    drugs: list[list[Resolution]],
    default_evaluation_date: str | None,
    values: dict[str, Value | None],
    texts: dict[str, str] | None,
    line_groups: list[frozenset[str]],
) -> set[str]:
    """Facts from the dates, best responses, stop reasons and intolerances of the prior lines (profile v2)
    (`drugs`: each line's `line_drugs`; `line_groups`: the groups of each line's drugs, as `_derive_lines`
    returns them); the explanations only when given `texts`. Returns the facts that do not apply.

    A date-derived fact is unknown when a date it needs is missing (or when the dates' precision
    leaves the 12-month boundary open), never false; a fact about a therapy the patient never had
    does not apply (months since BCMA therapy) or is false (relapse within 12 months of a BCMA CAR-T).
    """
    lines = profile.prior_lines
    explain = texts is not None
    not_applying: set[str] = set()
    evaluation = profile.evaluation_date or default_evaluation_date
    # said once per fact when the date is the evaluation time's, not the profile's
    defaulted = (
        ""
        if not explain or profile.evaluation_date or evaluation is None
        else f"; {evaluation} is the evaluation time (no evaluation_date in the profile)"
    )

    def put(fact: str, value: Value | None, explanation: str) -> None:
        values[fact] = value
        if texts is not None:
            texts[fact] = explanation

    def names(n: int, group: str) -> str:
        return ", ".join(r.drug.name for r in drugs[n - 1] if group in _groups_of(r.drug))

    def months_since(fact: str, group: str, what: str) -> None:
        hits = [n for n, groups in enumerate(line_groups, 1) if group in groups]
        if not hits:
            put(fact, None, f"no prior {what}: does not apply" if explain else "")
            not_applying.add(fact)
            return
        parts = []
        for n in hits if explain else ():
            end = lines[n - 1].end_date
            if end is None:
                parts.append(f"{names(n, group)} (line {n}): end_date not given")
            elif evaluation is None:
                parts.append(f"{names(n, group)} (line {n}) ended {end}")
            else:
                lo, hi = _months(end, evaluation)
                parts.append(f"{names(n, group)} (line {n}) ended {end}, {_span(lo, hi)} months before {evaluation}")
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
            lo, hi = _months(last.end_date, evaluation)
            put(fact, _months_value(lo, hi), "; ".join(parts) + defaulted if explain else "")

    months_since("months_since_bcma_therapy", "bcma", "BCMA-directed therapy")
    months_since("months_since_gprc5d_therapy", "gprc5d", "GPRC5D-directed therapy")

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
        lo, hi = _months(origin, prog)
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

    car_t_lines = [n for n, groups in enumerate(line_groups, 1) if "car_t" in groups]
    if not car_t_lines:
        put("months_car_t_to_progression", None, "no prior CAR-T: does not apply")
        not_applying.add("months_car_t_to_progression")
    else:
        interval, how = to_progression(car_t_lines[-1], infusion=True)
        note = read_as_infusion(car_t_lines[-1:]) if explain else ""
        label = f"{names(car_t_lines[-1], 'car_t')} ({how}{'; ' + note if note else ''})" if explain else ""
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

    bcma_car_t_lines = [n for n, groups in enumerate(line_groups, 1) if "bcma_car_t" in groups]
    note = read_as_infusion(bcma_car_t_lines) if explain else ""
    within_12_months(
        "bcma_car_t_relapse_within_12_months",
        bcma_car_t_lines,
        lambda n, how: f"{names(n, 'bcma_car_t')} ({how})",
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
            lo, _hi = _months(line.end_date, prog)
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
    # leaves its agents' intolerance unknown, as does a line that does not record intolerant_to. One
    # pass: the keys (name and class) of the drugs the patient is intolerant to, and of those whose
    # tolerance is unknown; a drug's class is that of the last drug of its name (as `by_name` below)
    class_of = {r.drug.name: r.drug.drug_class for found in drugs for r in found}
    intolerant_keys: set[str] = set()
    unknown_keys: set[str] = set()
    for line, found in zip(lines, drugs):
        _line_intolerance(line, found, vocabulary, class_of, intolerant_keys, unknown_keys)
    for fact, key, _ in _INTOLERANCE:
        values[fact] = True if key in intolerant_keys else None if key in unknown_keys else False
    if texts is not None:
        _intolerance_texts(lines, drugs, vocabulary, values, texts)

    last = lines[-1]
    values["last_line_best_response"] = last.best_response
    stopped_in_response = stopped_unknown = False
    for line, found in zip(lines, drugs):
        if line.stop_reason == "toxicity" and any("bispecific" in _groups_of(r.drug) for r in found):
            if line.best_response in RESPONSE:
                stopped_in_response = True
            elif line.best_response is None:
                stopped_unknown = True
    values["bispecific_stopped_for_toxicity_in_response"] = True if stopped_in_response else None if stopped_unknown else False
    if texts is None:
        return not_applying

    responses = [f"line {n}: {line.best_response}" for n, line in enumerate(lines, 1) if line.best_response]
    if last.best_response is None:
        texts["last_line_best_response"] = "unknown: best_response of the most recent line not given" + (
            f" ({'; '.join(responses)})" if responses else ""
        )
    else:
        texts["last_line_best_response"] = "; ".join(responses)
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
    fact = "bispecific_stopped_for_toxicity_in_response"
    if stopped:
        texts[fact] = "; ".join(stopped)
    elif open_:
        texts[fact] = "unknown: " + "; ".join(open_)
    else:
        texts[fact] = "no bispecific line stopped for toxicity in response"
    return not_applying


def _intolerance_texts(
    lines: list[PriorLine],
    drugs: list[list[Resolution]],
    vocabulary: Vocabulary,
    values: dict[str, Value | None],
    texts: dict[str, str],
) -> None:
    """The explanations of the intolerance facts (their values in `values`)."""
    intolerant: list[tuple[str, int]] = []
    open_lines: list[int] = []
    for n, line in enumerate(lines, 1):
        if line.intolerant_to:
            intolerant += [(d, n) for d in sorted(_named_in(line.intolerant_to, drugs[n - 1], vocabulary))]
        elif line.stop_reason == "toxicity" and line.intolerant_to is None:
            treatment = [r.drug.name for r in drugs[n - 1] if r.drug.drug_class != "steroid"]
            if len(treatment) == 1:  # one agent besides steroids: the one stopped for toxicity
                intolerant.append((treatment[0], n))
            else:
                open_lines.append(n)
    by_name = {r.drug.name: r.drug for ds in drugs for r in ds}
    keys_of = {name: {name, d.drug_class} for name, d in by_name.items()}
    given_under: dict[str, list[tuple[str, int]]] = {}
    for n, ds in enumerate(drugs, 1):
        for r in ds:
            for k in keys_of[r.drug.name]:
                given_under.setdefault(k, []).append((r.drug.name, n))
    unrecorded_lines = {n for n, line in enumerate(lines, 1) if line.intolerant_to is None and n not in open_lines}
    named = set(intolerant)
    for fact, key, label in _INTOLERANCE:
        given_lines = given_under.get(key, [])
        value = values[fact]
        if value is True:
            texts[fact] = f"intolerant to {_fmt_lines([(d, n) for d, n in intolerant if key in keys_of[d]])}"
        elif value is None:
            giving = {n for _, n in given_lines}
            unsure = [n for n in open_lines if n in giving]
            if unsure:
                texts[fact] = f"unknown: line {', '.join(map(str, unsure))} stopped for toxicity without intolerant_to"
            else:
                # a line that gave it without recording intolerant_to: its tolerance is not recorded
                unrecorded = [(d, n) for d, n in given_lines if n in unrecorded_lines and (d, n) not in named]
                texts[fact] = f"unknown: intolerance not recorded for {_fmt_lines(unrecorded)}"
        elif not given_lines:
            texts[fact] = f"no line gave {label}"
        else:
            texts[fact] = f"no line records intolerance to {label}"


# --------------------------------------------------------------------------- the values without explanations
# What `_derive_lines` and `_derive_course` work out of the prior lines, when no explanation is asked for:
# each line's drugs read once per distinct line (`_LINES`: its agents, refractory_to, intolerant_to and
# stop_reason as written), as bit masks of the groups and intolerance keys the values test, and the values
# of a profile's masks made once per distinct masks (`_EXPOSURE_VALUES`, `_REFRACTORINESS_VALUES`,
# `_INTOLERANCE_VALUES`). The same formulas: the value tables below are `_derive_lines`' and `_derive_course`'s,
# and tests/test_facts_values.py compares every value with theirs.

#: the groups (`_groups_of`) the values read, each a bit
_GROUP_BIT: dict[str, int] = {
    g: 1 << i
    for i, g in enumerate(
        dict.fromkeys(
            (*_EXPOSURE_GROUPS, *(g for _, g in _REFRACTORINESS_GROUPS), "bcma", "gprc5d", "car_t", "bcma_car_t", "bispecific")
        )
    )
}
_BCMA, _GPRC5D, _CAR_T, _BCMA_CAR_T, _BISPECIFIC = (
    _GROUP_BIT[g] for g in ("bcma", "gprc5d", "car_t", "bcma_car_t", "bispecific")
)
_COURSE_BITS = _BCMA | _GPRC5D | _CAR_T | _BCMA_CAR_T | _BISPECIFIC
#: the intolerance keys (a drug's name or class), each a bit
_INTOLERANCE_BIT: dict[str, int] = {key: 1 << i for i, (key, _) in enumerate(INTOLERANCE_GROUPS)}


def _line_intolerance(
    line: PriorLine,
    found: list[Resolution],
    vocabulary: Vocabulary,
    class_of: Mapping[str, str],
    intolerant_keys: set[str],
    unknown_keys: set[str],
) -> None:
    """Add one line's intolerance keys (a drug's name and its class, `class_of`) to `intolerant_keys` and to
    `unknown_keys`: what `intolerant_to` names is not tolerated; a line that does not record it leaves its agents'
    tolerance unknown, except the one agent besides steroids of a line stopped for toxicity, which was not
    tolerated. `_derive_course` (every line of a profile) and `_line_entry` (one line, cached) both read it."""
    listed = line.intolerant_to
    if listed:
        for d in _named_in(listed, found, vocabulary):
            intolerant_keys.add(d)
            intolerant_keys.add(class_of[d])
    elif listed is None:
        stopped_agent = None  # the one agent besides steroids of a line stopped for toxicity
        if line.stop_reason == "toxicity":
            treatment = [r.drug.name for r in found if r.drug.drug_class != "steroid"]
            if len(treatment) == 1:
                stopped_agent = treatment[0]
                intolerant_keys |= {stopped_agent, class_of[stopped_agent]}
        for r in found:
            name = r.drug.name
            if name != stopped_agent:
                unknown_keys.add(name)
                unknown_keys.add(class_of[name])


def _group_mask(groups: Iterable[str]) -> int:
    mask = 0
    for g in groups:
        mask |= _GROUP_BIT.get(g, 0)
    return mask


def _intolerance_mask(keys: Iterable[str]) -> int:
    mask = 0
    for k in keys:
        mask |= _INTOLERANCE_BIT.get(k, 0)
    return mask


#: (the vocabulary it was read with, the groups of its drugs, whether it records refractory_to, the groups of
#: the drugs it is refractory to, the intolerance keys it makes true, those it leaves unknown) of a line
_LineEntry = tuple[Vocabulary, int, bool, int, int, int]
#: per (agents, refractory_to, intolerant_to, stop_reason) of a line, as tuples (None for a field not given);
#: bounded: 2,048 lines of at most 16 names
_LINES: dict[tuple[object, ...], _LineEntry] = {}


def _line_entry(line: PriorLine, vocabulary: Vocabulary) -> _LineEntry | None:
    """What the values read of one line (None for a line with an investigational agent: a drug's class is then
    that of the last drug of its name in the whole profile, which one line cannot tell)."""
    found = line_drugs(line, vocabulary)
    if any(r.drug.investigational for r in found):
        return None
    keys_of = [_groups_of(r.drug) for r in found]
    every = frozenset[str]().union(*keys_of)
    refractory: set[str] = set()
    if line.refractory_to:
        refractory_to = _named_in(line.refractory_to, found, vocabulary)
        for r, keys in zip(found, keys_of):
            if r.drug.name in refractory_to:
                refractory |= keys
    # as `_derive_course`: a drug's class is its own (a vocabulary drug's name has one class)
    class_of = {r.drug.name: r.drug.drug_class for r in found}
    intolerant_keys: set[str] = set()
    unknown_keys: set[str] = set()
    _line_intolerance(line, found, vocabulary, class_of, intolerant_keys, unknown_keys)
    return (
        vocabulary,
        _group_mask(every),
        line.refractory_to is not None,
        _group_mask(refractory),
        _intolerance_mask(intolerant_keys),
        _intolerance_mask(unknown_keys),
    )


_EXPOSURE_BITS = _group_mask(_EXPOSURE_GROUPS)
_REFRACTORINESS_BITS = _group_mask(g for _, g in _REFRACTORINESS_GROUPS)
_EXPOSURE_FACT_BITS = tuple(zip(_EXPOSURE_FACTS, map(_GROUP_BIT.__getitem__, _EXPOSURE_GROUPS)))
_REFRACTORINESS_FACT_BITS = tuple((fact, _GROUP_BIT[g]) for fact, g in _REFRACTORINESS_GROUPS)
#: the exposure values per mask of the exposure groups some line's drug is in; bounded (2,048 dicts of 13)
_EXPOSURE_VALUES: dict[int, dict[str, Value | None]] = {}
#: the refractoriness values per (refractory, unrecorded) masks of the refractoriness groups; bounded (2,048 dicts of 19)
_REFRACTORINESS_VALUES: dict[tuple[int, int], dict[str, Value | None]] = {}


def _exposure_values(exposed: int) -> dict[str, Value | None]:
    """The exposure facts of `_derive_lines` (the same formulas) from the mask of the exposure groups some
    line's drug is in."""
    made = _EXPOSURE_VALUES.get(exposed)
    if made is not None:
        return made
    values: dict[str, Value | None] = {fact: (exposed & bit) != 0 for fact, bit in _EXPOSURE_FACT_BITS}
    values["triple_class_exposed"] = all(map(values.__getitem__, _TRIPLE_EXPOSED))
    if len(_EXPOSURE_VALUES) >= 2048:
        _EXPOSURE_VALUES.clear()
    _EXPOSURE_VALUES[exposed] = values
    return values


def _refractoriness_values(refractory: int, unrecorded: int) -> dict[str, Value | None]:
    """The refractoriness facts of `_derive_lines` (the same formulas) from the masks of the refractoriness
    groups of a drug some line is refractory to and of those of a line not recording refractoriness."""
    key = (refractory, unrecorded)
    made = _REFRACTORINESS_VALUES.get(key)
    if made is not None:
        return made
    values: dict[str, Value | None] = {}
    for fact, bit in _REFRACTORINESS_FACT_BITS:
        values[fact] = True if refractory & bit else None if unrecorded & bit else False
    for fact, pair in _PARTNER_FACTS:
        states = [values[f] for f in pair]
        values[fact] = True if False in states else None if None in states else False
    values["triple_class_refractory"] = _kleene_and(list(map(values.__getitem__, _TRIPLE_REFRACTORY)))
    values["penta_refractory"] = _kleene_and(list(map(values.__getitem__, _PENTA_FACTS)))
    if len(_REFRACTORINESS_VALUES) >= 2048:
        _REFRACTORINESS_VALUES.clear()
    _REFRACTORINESS_VALUES[key] = values
    return values


#: the intolerance values per (intolerant, unknown) key masks; bounded (2,048 dicts of 9)
_INTOLERANCE_VALUES: dict[tuple[int, int], dict[str, Value | None]] = {}


def _intolerance_values(intolerant_mask: int, unknown_mask: int) -> dict[str, Value | None]:
    """The intolerance facts of `_derive_course` (the same formula) from the keys' masks."""
    key = (intolerant_mask, unknown_mask)
    made = _INTOLERANCE_VALUES.get(key)
    if made is not None:
        return made
    values: dict[str, Value | None] = {}
    for fact, k, _ in _INTOLERANCE:
        bit = _INTOLERANCE_BIT[k]
        values[fact] = True if intolerant_mask & bit else None if unknown_mask & bit else False
    if len(_INTOLERANCE_VALUES) >= 2048:
        _INTOLERANCE_VALUES.clear()
    _INTOLERANCE_VALUES[key] = values
    return values


def _interval_to_progression(line: PriorLine, infusion: bool, transplant: bool) -> tuple[float, float] | None:
    """The interval of `_derive_course`'s to_progression (without its explanation)."""
    prog, _ = _progression(line)
    if infusion and line.infusion_date is not None:
        origin = line.infusion_date
    elif transplant and line.transplant_date is not None:
        origin = line.transplant_date
    elif line.start_date is None:
        return None
    else:
        origin = line.start_date
    if prog is None:
        return None
    lo, hi = _months(origin, prog)
    if hi < 0:
        return None
    return lo, hi


def _relapse_within_12_months(lines: list[PriorLine], numbers: list[int], asct: bool) -> bool | None:
    """The value of `_derive_course`'s within_12_months: a BCMA CAR-T relapse (from the infusion), or with
    `asct` an early relapse after the autologous transplant (from it, and its after_the_transplant)."""
    if not numbers:
        return False
    results = []
    for n in numbers:
        line = lines[n - 1]
        interval = _interval_to_progression(line, not asct, asct)
        result = None if interval is None else _within(interval, EARLY_MONTHS)
        if result is False and asct and line.transplant_date is None:  # after_the_transplant
            result = None
            prog, _ = _progression(line)
            if line.end_date is not None and prog is not None and _months(line.end_date, prog)[0] > EARLY_MONTHS:
                result = False
        results.append(result)
    if True in results:
        return True
    if all(r is False for r in results):
        return False
    return None


def _derive_from_entries(
    profile: PatientProfile, vocabulary: Vocabulary, default_evaluation_date: str | None, values: dict[str, Value | None]
) -> set[str] | None:
    """The values `_derive_lines` and `_derive_course` write without `texts`, and the facts that do not apply;
    None (nothing written) for a profile with an investigational agent."""
    lines = profile.prior_lines
    count = len(lines)
    cache = _LINES
    exposed = refractory = unrecorded = intolerant = unknown = 0
    last_bcma = last_gprc5d = last_car_t = 0  # the last line (number) of each, 0 for none
    bcma_car_t: list[int] = []
    asct: list[int] = []
    last_inferred = stopped_in_response = stopped_unknown = False
    for n, line in enumerate(lines, 1):
        agents, refractory_to, intolerant_to, stop_reason = line.agents, line.refractory_to, line.intolerant_to, line.stop_reason
        key = (
            tuple(agents) if agents else (),
            None if refractory_to is None else tuple(refractory_to),
            None if intolerant_to is None else tuple(intolerant_to),
            stop_reason,
        )
        entry = cache.get(key)
        if entry is None or entry[0] is not vocabulary:
            entry = _line_entry(line, vocabulary)
            if entry is None:
                return None
            if len(agents or ()) + len(refractory_to or ()) + len(intolerant_to or ()) <= 16:  # kept: up to 16 names
                if len(cache) >= 2048:
                    cache.clear()
                cache[key] = entry
        _, every, recorded, refractory_of, intolerant_of, unknown_of = entry
        exposed |= every
        if recorded:
            refractory |= refractory_of
        elif not_refractory_by_dates(line) is None:
            unrecorded |= every
        elif n == count:
            last_inferred = True
        intolerant |= intolerant_of
        unknown |= unknown_of
        if every & _COURSE_BITS:
            if every & _BCMA:
                last_bcma = n
            if every & _GPRC5D:
                last_gprc5d = n
            if every & _CAR_T:
                last_car_t = n
            if every & _BCMA_CAR_T:
                bcma_car_t.append(n)
            if every & _BISPECIFIC and stop_reason == "toxicity":
                if line.best_response in RESPONSE:
                    stopped_in_response = True
                elif line.best_response is None:
                    stopped_unknown = True
        if line.autologous_transplant:
            asct.append(n)

    # as _derive_lines
    values["prior_line_count"] = count
    values["prior_autologous_transplant"] = bool(asct)
    values.update(_exposure_values(exposed & _EXPOSURE_BITS))
    values.update(_refractoriness_values(refractory & _REFRACTORINESS_BITS, unrecorded & _REFRACTORINESS_BITS))
    last = lines[-1]
    if last_inferred:
        values["refractory_to_last_line"] = False
    elif last.refractory_to is None:
        values["refractory_to_last_line"] = None
    else:
        values["refractory_to_last_line"] = bool(last.refractory_to)

    # as _derive_course
    not_applying: set[str] = set()
    evaluation = profile.evaluation_date or default_evaluation_date
    for fact, hit in (("months_since_bcma_therapy", last_bcma), ("months_since_gprc5d_therapy", last_gprc5d)):
        if not hit:
            values[fact] = None
            not_applying.add(fact)
            continue
        end = lines[hit - 1].end_date
        values[fact] = None if end is None or evaluation is None else _months_value(*_months(end, evaluation))
    if not last_car_t:
        values["months_car_t_to_progression"] = None
        not_applying.add("months_car_t_to_progression")
    else:
        interval = _interval_to_progression(lines[last_car_t - 1], True, False)
        values["months_car_t_to_progression"] = None if interval is None else _months_value(*interval)
    values["bcma_car_t_relapse_within_12_months"] = _relapse_within_12_months(lines, bcma_car_t, False) if bcma_car_t else False
    values["early_relapse_after_asct"] = _relapse_within_12_months(lines, asct, True) if asct else False
    values.update(_intolerance_values(intolerant, unknown))
    values["last_line_best_response"] = last.best_response
    values["bispecific_stopped_for_toxicity_in_response"] = True if stopped_in_response else None if stopped_unknown else False
    return not_applying


#: the facts that depend on refractoriness records (unknown when a line does not record it)
REFRACTORY_FACTS: tuple[str, ...] = tuple(f.name for f in _F if f.input_field == REFRACTORY_FIELD)
_MAX_ALTERNATIVE_GROUPS = 6


def _line_facts(profile: PatientProfile, vocabulary: Vocabulary) -> dict[str, Value | None]:
    out: dict[str, Value | None] = {}
    _derive_lines(profile, vocabulary, [line_drugs(line, vocabulary) for line in profile.prior_lines], out, None)
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
