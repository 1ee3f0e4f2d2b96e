"""Facts the rules can test: profile facts and facts derived from the prior lines.

`FACTS` is the catalogue (name, type, range, whether it can be unknown, plain
description). Rules may only name facts listed here; `cds rules check` uses
the ranges to find conditions that can never hold, and the unknown-facts
analysis uses them to try every possible value of a missing fact.

`derive(profile, vocabulary)` computes every fact with a one-line explanation
of how it was obtained. A fact the profile leaves out is ``None`` (unknown);
facts derived from the prior lines are always known.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal, NamedTuple

from cds.model.profile import CYTOGENETIC_ABNORMALITIES, PatientProfile
from cds.model.vocabulary import Vocabulary

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

    def accepts(self, value: object) -> bool:
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "enum":
            return isinstance(value, str) and value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return not (self.type == "int" and not isinstance(value, int))


CYTO_FACT = {
    "del(17p)": "cyto_del17p",
    "t(4;14)": "cyto_t4_14",
    "t(14;16)": "cyto_t14_16",
    "t(11;14)": "cyto_t11_14",
    "gain(1q)": "cyto_gain1q",
    "amp(1q)": "cyto_amp1q",
    "del(1p)": "cyto_del1p",
}
# High-risk cytogenetics as the sources define them for CAR-T outcome
# analyses: "del(17p), t(4;14), t(14;16), 1q gain/amplification" (001).
HIGH_RISK_CYTOGENETICS = ("del(17p)", "t(4;14)", "t(14;16)", "gain(1q)", "amp(1q)")

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
        "prior_allogeneic_transplant",
        "bool",
        "Prior allogeneic stem-cell transplant",
        True,
        input_field="prior_allogeneic_transplant",
    ),
    FactSpec(
        "soluble_bcma_ng_ml", "float", "Serum soluble BCMA (ng/mL)", True, 0, 1_000_000, input_field="labs.soluble_bcma_ng_ml"
    ),
    FactSpec("ferritin_ng_ml", "float", "Serum ferritin (ng/mL)", True, 0, 1_000_000, input_field="labs.ferritin_ng_ml"),
    FactSpec("crp_mg_l", "float", "C-reactive protein (mg/L)", True, 0, 1_000_000, input_field="labs.crp_mg_l"),
    *[
        FactSpec(fact, "bool", f"{abn} detected", True, group="cytogenetics", input_field="cytogenetics")
        for abn, fact in CYTO_FACT.items()
    ],
    FactSpec(
        "high_risk_cytogenetics",
        "bool",
        "Any high-risk abnormality: del(17p), t(4;14), t(14;16), gain(1q) or amp(1q)",
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
    FactSpec("refractory_imid", "bool", "Refractory to an IMiD"),
    FactSpec("refractory_pi", "bool", "Refractory to a proteasome inhibitor"),
    FactSpec("refractory_anti_cd38", "bool", "Refractory to an anti-CD38 antibody"),
    FactSpec("refractory_anti_slamf7", "bool", "Refractory to an anti-SLAMF7 antibody"),
    FactSpec("refractory_lenalidomide", "bool", "Refractory to lenalidomide"),
    FactSpec("refractory_pomalidomide", "bool", "Refractory to pomalidomide"),
    FactSpec("refractory_bortezomib", "bool", "Refractory to bortezomib"),
    FactSpec("refractory_carfilzomib", "bool", "Refractory to carfilzomib"),
    FactSpec("exposed_lenalidomide", "bool", "Exposed to lenalidomide"),
    FactSpec("exposed_pomalidomide", "bool", "Exposed to pomalidomide"),
    FactSpec("partner_imid_available", "bool", "An IMiD the patient is not refractory to remains (lenalidomide or pomalidomide)"),
    FactSpec("partner_pi_available", "bool", "A PI the patient is not refractory to remains (bortezomib or carfilzomib)"),
    FactSpec("triple_class_exposed", "bool", "Exposed to an IMiD, a PI and an anti-CD38 antibody"),
    FactSpec("triple_class_refractory", "bool", "Refractory to an IMiD, a PI and an anti-CD38 antibody"),
    FactSpec(
        "penta_refractory", "bool", "Refractory to lenalidomide, pomalidomide, bortezomib, carfilzomib and an anti-CD38 antibody"
    ),
    FactSpec("refractory_to_last_line", "bool", "Refractory to (progressed on) the most recent line"),
    FactSpec("bcma_exposed", "bool", "Any prior BCMA-directed therapy"),
    FactSpec("bcma_refractory", "bool", "Refractory to a BCMA-directed therapy"),
    FactSpec("bcma_adc_exposed", "bool", "Prior BCMA antibody-drug conjugate"),
    FactSpec("bcma_adc_refractory", "bool", "Refractory to a BCMA antibody-drug conjugate"),
    FactSpec("bcma_bispecific_exposed", "bool", "Prior BCMA bispecific antibody"),
    FactSpec("bcma_bispecific_refractory", "bool", "Refractory to a BCMA bispecific antibody"),
    FactSpec("bcma_car_t_exposed", "bool", "Prior BCMA CAR-T"),
    FactSpec("bcma_car_t_refractory", "bool", "Refractory to (no response or early progression after) a BCMA CAR-T"),
    FactSpec("gprc5d_exposed", "bool", "Prior GPRC5D-directed therapy (bispecific or CAR-T)"),
    FactSpec("gprc5d_refractory", "bool", "Refractory to a GPRC5D-directed therapy"),
    FactSpec("t_cell_redirecting_exposed", "bool", "Prior T-cell redirecting therapy (any CAR-T or bispecific)"),
]
FACTS: dict[str, FactSpec] = {f.name: f for f in _F}


class FactValue(NamedTuple):
    name: str
    value: Value | None  # None: unknown
    explanation: str

    @property
    def known(self) -> bool:
        return self.value is not None


def _fmt_lines(hits: list[tuple[str, int]]) -> str:
    """'lenalidomide (line 1), daratumumab (line 2)' from (agent, line_no) pairs."""
    return ", ".join(f"{a} (line {n})" for a, n in hits)


def derive(profile: PatientProfile, vocabulary: Vocabulary) -> dict[str, FactValue]:
    out: dict[str, FactValue] = {}

    def put(name: str, value: Value | None, explanation: str) -> None:
        assert name in FACTS, name
        out[name] = FactValue(name, value, explanation)

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
        "prior_allogeneic_transplant",
    ):
        value = getattr(profile, name)
        put(name, value, "from the profile" if value is not None else "not given in the profile: unknown")
    labs = profile.labs
    for name in ("soluble_bcma_ng_ml", "ferritin_ng_ml", "crp_mg_l"):
        value = getattr(labs, name) if labs is not None else None
        put(name, value, "from the profile (labs)" if value is not None else "not measured/not given: unknown")

    if profile.cytogenetics is None:
        for fact in (*CYTO_FACT.values(), "high_risk_cytogenetics"):
            put(fact, None, "cytogenetics not tested/not given: unknown")
    else:
        found = set(profile.cytogenetics)
        for abn, fact in CYTO_FACT.items():
            put(fact, abn in found, f"cytogenetics tested: {abn} {'detected' if abn in found else 'not detected'}")
        hr = sorted(found & set(HIGH_RISK_CYTOGENETICS), key=CYTOGENETIC_ABNORMALITIES.index)
        put(
            "high_risk_cytogenetics",
            bool(hr),
            f"high-risk abnormality detected: {', '.join(hr)}" if hr else "cytogenetics tested: no high-risk abnormality",
        )

    # --- derived from the prior lines (always known)
    lines = profile.prior_lines
    put("prior_line_count", len(lines), f"{len(lines)} prior line(s) listed")
    asct = [n for n, line in enumerate(lines, 1) if line.autologous_transplant]
    put(
        "prior_autologous_transplant",
        bool(asct),
        f"autologous transplant in line {', '.join(map(str, asct))}" if asct else "no line lists an autologous transplant",
    )

    # One pass over the lines: every exposure (generic name, line number, refractory),
    # grouped by the keys the facts below ask about.
    groups: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for n, line in enumerate(lines, 1):
        refractory = {vocabulary.lookup(a).name for a in line.refractory_to}  # type: ignore[union-attr]
        for agent in line.agents:
            drug = vocabulary.lookup(agent)
            assert drug is not None  # validated in profile.check_agents
            hit = (drug.name, n, drug.name in refractory)
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

    def flag(fact: str, group: str, refractory_only: bool, what: str) -> list[tuple[str, int]]:
        h = [(name, n) for name, n, refr in groups.get(group, ()) if refr or not refractory_only]
        verb = "refractory to" if refractory_only else "exposed to"
        put(fact, bool(h), f"{verb} {_fmt_lines(h)}" if h else f"no line shows the patient {verb} {what}")
        return h

    cls_hits = {}
    for c, label in (
        ("imid", "an IMiD"),
        ("pi", "a PI"),
        ("anti_cd38", "an anti-CD38 antibody"),
        ("anti_slamf7", "an anti-SLAMF7 antibody"),
    ):
        cls_hits[("exposed", c)] = flag(f"exposed_{c}", "class:" + c, False, label)
        cls_hits[("refractory", c)] = flag(f"refractory_{c}", "class:" + c, True, label)
    refr_drug = {}
    for d in ("lenalidomide", "pomalidomide", "bortezomib", "carfilzomib"):
        refr_drug[d] = flag(f"refractory_{d}", "drug:" + d, True, d)
    for d in ("lenalidomide", "pomalidomide"):
        flag(f"exposed_{d}", "drug:" + d, False, d)

    free_imid = [d for d in ("lenalidomide", "pomalidomide") if not refr_drug[d]]
    put(
        "partner_imid_available",
        bool(free_imid),
        f"not refractory to {' or '.join(free_imid)}" if free_imid else "refractory to both lenalidomide and pomalidomide",
    )
    free_pi = [d for d in ("bortezomib", "carfilzomib") if not refr_drug[d]]
    put(
        "partner_pi_available",
        bool(free_pi),
        f"not refractory to {' or '.join(free_pi)}" if free_pi else "refractory to both bortezomib and carfilzomib",
    )

    for kind in ("exposed", "refractory"):
        parts = [cls_hits[(kind, c)] for c in ("imid", "pi", "anti_cd38")]
        ok = all(parts)
        if ok:
            expl = f"triple-class {kind}: " + "; ".join(_fmt_lines(p[:1] if kind == "exposed" else p) for p in parts)
        else:
            missing = [lbl for p, lbl in zip(parts, ("IMiD", "PI", "anti-CD38 antibody")) if not p]
            expl = f"not triple-class {kind}: no {', '.join(missing)} {'exposure' if kind == 'exposed' else 'refractoriness'}"
        put(f"triple_class_{kind}", ok, expl)

    penta_parts = [refr_drug[d] for d in ("lenalidomide", "pomalidomide", "bortezomib", "carfilzomib")] + [
        cls_hits[("refractory", "anti_cd38")]
    ]
    if all(penta_parts):
        put("penta_refractory", True, "penta-refractory: " + "; ".join(_fmt_lines(p[:1]) for p in penta_parts))
    else:
        names = ("lenalidomide", "pomalidomide", "bortezomib", "carfilzomib", "an anti-CD38 antibody")
        missing = [nm for p, nm in zip(penta_parts, names) if not p]
        put("penta_refractory", False, f"not penta-refractory: not refractory to {', '.join(missing)}")

    last = lines[-1]
    if last.refractory_to:
        put("refractory_to_last_line", True, f"line {len(lines)} (most recent): refractory to {', '.join(last.refractory_to)}")
    else:
        put("refractory_to_last_line", False, f"line {len(lines)} (most recent) lists no refractoriness")

    flag("bcma_exposed", "bcma", False, "a BCMA-directed therapy")
    flag("bcma_refractory", "bcma", True, "a BCMA-directed therapy")
    for modality, label in (("bcma_adc", "a BCMA ADC"), ("bcma_bispecific", "a BCMA bispecific"), ("bcma_car_t", "a BCMA CAR-T")):
        flag(f"{modality}_exposed", "bcma:" + modality, False, label)
        flag(f"{modality}_refractory", "bcma:" + modality, True, label)
    flag("gprc5d_exposed", "gprc5d", False, "a GPRC5D-directed therapy")
    flag("gprc5d_refractory", "gprc5d", True, "a GPRC5D-directed therapy")
    flag("t_cell_redirecting_exposed", "t_cell_redirecting", False, "a CAR-T or bispecific antibody")

    missing = set(FACTS) - set(out)
    assert not missing, missing
    return {name: out[name] for name in FACTS}


def engine_facts(facts: dict[str, FactValue]) -> dict[str, Value]:
    """The flat fact asserted into the engine: unknown facts are left out, never null."""
    return {name: fv.value for name, fv in facts.items() if fv.value is not None}
