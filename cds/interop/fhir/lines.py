"""Lines of therapy and refractoriness, derived from dated drug exposures (no FHIR here).

No FHIR IG groups medications into lines or marks refractoriness, so both are derived
here by the algorithm the README documents ("Lines of therapy from FHIR"). It follows the
IMWG definition (Rajkumar et al., Blood 2015): a line is a planned course (induction,
transplant, consolidation and maintenance are one line); a new line starts when agents are
added or changed because of progression, relapse or toxicity, or when therapy resumes
after a planned observation period. Refractory: no response, or progression on therapy or
within 60 days of the last dose, per drug.

Input: `Exposure`s (one per medication resource, already matched to a vocabulary drug),
`Transplant`s, `Apheresis` dates and disease `Assessment`s. Output: `Line`s, each with
the rule that opened it and, per drug, why it joined; and per line the refractory and
intolerant drugs with the resources that show it. Every rule has an ID printed in the
import report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from .dates import Day

JOIN_WINDOW_DAYS = 30  # drugs first given within 30 days of a line's start belong to it
GAP_DAYS = 90  # more than 90 days without an anti-myeloma drug, then any drug: a new line
MAINTENANCE_DAYS = 180  # maintenance started within 180 days after the line's ASCT belongs to it
CONDITIONING_DAYS = 14  # high-dose melphalan within 14 days before an ASCT belongs to the ASCT's line
LYMPHODEPLETION_DAYS = 14  # fludarabine/cyclophosphamide within 14 days before a CAR-T infusion
APHERESIS_MAX_DAYS = 180  # an apheresis more than 180 days before an infusion is not its collection
REFRACTORY_DAYS = 60  # progression within 60 days after the last dose: refractory to that drug

LYMPHODEPLETION_DRUGS = frozenset({"fludarabine", "cyclophosphamide"})
CONDITIONING_DRUGS = frozenset({"melphalan"})
CAR_T_CLASSES = frozenset({"bcma_car_t", "gprc5d_car_t", "other_car_t"})
PARTNER_CLASSES = frozenset({"steroid"})  # part of a regimen, never open a line, refractoriness not derived

RULES = {
    "LOT-OPEN-FIRST": "the first anti-myeloma drug opens line 1",
    "LOT-OPEN-EXPLICIT": "the resource carries a line-of-therapy number different from the current line's",
    "LOT-OPEN-GAP": f"more than {GAP_DAYS} days without an anti-myeloma drug, then a drug: therapy resumed after an observation period",
    "LOT-OPEN-PROGRESSION": "a drug not yet in the line, given after a documented progression (disease status 'worsened') during the line",
    "LOT-OPEN-NEW-AGENT": f"a drug not yet in the line, first given more than {JOIN_WINDOW_DAYS} days after the line's start (agents added or changed)",
    "LOT-OPEN-CAR-T": "a CAR-T infusion opens a line with its apheresis, bridging therapy and lymphodepletion",
    "LOT-JOIN-EXPLICIT": "the same line-of-therapy number as the line",
    "LOT-JOIN-WINDOW": f"first given within {JOIN_WINDOW_DAYS} days of the line's start",
    "LOT-JOIN-CONTINUED": "a drug already in the line, given again without a gap",
    "LOT-JOIN-MAINTENANCE": f"maintenance: started within {MAINTENANCE_DAYS} days after the line's autologous transplant, no progression in between",
    "LOT-JOIN-CONDITIONING": f"high-dose melphalan within {CONDITIONING_DAYS} days before an autologous transplant (or partOf it): the transplant's line",
    "LOT-JOIN-LYMPHODEPLETION": f"fludarabine/cyclophosphamide within {LYMPHODEPLETION_DAYS} days before a CAR-T infusion: the CAR-T line",
    "LOT-JOIN-BRIDGING": "given between the apheresis and the CAR-T infusion: bridging therapy of the CAR-T line",
    "LOT-JOIN-PARTNER": "a steroid: joins the line running when it was given (steroids never open a line)",
    "LOT-JOIN-TRANSPLANT": "a transplant belongs to the line running on its date",
    "REF-NO-RESPONSE": "stopped with statusReason 'No response to treatment' (SNOMED 266721009)",
    "REF-PROGRESSION": f"progression (disease status 'worsened') while on the drug or within {REFRACTORY_DAYS} days after its last dose",
    "INTOL-NOT-TOLERATED": "stopped with statusReason 'Treatment not tolerated' (SNOMED 407563006)",
}


@dataclass(frozen=True)
class Exposure:
    """One medication resource: a drug given on a day or over a period."""

    ref: str  # "MedicationAdministration/abc"
    drug: str  # canonical vocabulary name
    drug_class: str
    start: Day
    end: Day  # == start for a single date
    line_number: int | None = None  # explicit line-of-therapy extension
    stop: str | None = None  # "no_response" | "not_tolerated" | "completed" | "patient_choice" | "other"
    ongoing: bool = False  # active / in-progress at export
    part_of: tuple[str, ...] = ()  # references (e.g. "Procedure/asct1")

    @property
    def first(self) -> date:
        return self.start.earliest

    @property
    def last(self) -> date:
        return max(self.end.latest, self.start.earliest)


@dataclass(frozen=True)
class Transplant:
    ref: str
    day: Day
    allogeneic: bool


@dataclass(frozen=True)
class Apheresis:
    ref: str
    day: Day


@dataclass(frozen=True)
class Assessment:
    """A disease-status or response Observation."""

    ref: str
    day: Day
    worsened: bool = False
    response: str | None = None  # IMWG category when it is a response assessment


@dataclass
class Member:
    exposure: Exposure
    rule: str  # the rule that put it in the line


@dataclass
class Line:
    opened_by: str
    start: date
    members: list[Member] = field(default_factory=list)
    transplants: list[Transplant] = field(default_factory=list)
    explicit_number: int | None = None
    car_t: Exposure | None = None
    apheresis: Apheresis | None = None
    opened_detail: str = ""
    # filled by derive_outcomes
    refractory: dict[str, list[str]] = field(default_factory=dict)  # drug -> [rule, refs...]
    intolerant: dict[str, list[str]] = field(default_factory=dict)
    progression: Assessment | None = None
    assessed_by: list[str] = field(default_factory=list)
    best_response: Assessment | None = None
    stop_reason: tuple[str, str] | None = None  # (value, ref)

    def drugs(self) -> list[str]:
        """Agents in order of first use (then name)."""
        first: dict[str, date] = {}
        for m in self.members:
            e = m.exposure
            if e.drug not in first or e.first < first[e.drug]:
                first[e.drug] = e.first
        return sorted(first, key=lambda d: (first[d], d))

    @property
    def last_activity(self) -> date:
        days = [m.exposure.last for m in self.members] + [t.day.latest for t in self.transplants]
        return max(days) if days else self.start

    @property
    def ongoing(self) -> bool:
        return any(m.exposure.ongoing for m in self.members)

    def start_day(self) -> Day:
        candidates = [m.exposure.start for m in self.members if m.exposure.first == self.start]
        if self.apheresis is not None and self.apheresis.day.earliest == self.start:
            candidates.append(self.apheresis.day)
        candidates += [t.day for t in self.transplants if t.day.earliest == self.start]
        return max(candidates, key=lambda d: d.precision == "day") if candidates else Day(self.start, self.start, "day")

    def end_day(self) -> Day | None:
        if self.ongoing:
            return None
        ends = [m.exposure.end for m in self.members] + [t.day for t in self.transplants]
        return max(ends, key=lambda d: d.latest) if ends else None

    def autologous_transplant(self) -> list[Transplant]:
        return [t for t in self.transplants if not t.allogeneic]

    def sources(self) -> list[str]:
        refs = [m.exposure.ref for m in self.members] + [t.ref for t in self.transplants]
        if self.apheresis is not None:
            refs.append(self.apheresis.ref)
        return list(dict.fromkeys(refs))


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _car_t_blocks(
    therapy: list[Exposure], apheresis: list[Apheresis]
) -> tuple[dict[str, tuple[Exposure, str]], dict[str, Apheresis]]:
    """For each CAR-T infusion: the exposures of its line (bridging, lymphodepletion), by ref.

    Returns ({exposure ref: (car_t exposure, rule)}, {car_t ref: apheresis}).
    """
    owner: dict[str, tuple[Exposure, str]] = {}
    aph_of: dict[str, Apheresis] = {}
    infusions = sorted((e for e in therapy if e.drug_class in CAR_T_CLASSES), key=lambda e: (e.first, e.ref))
    previous: date | None = None
    for car_t in infusions:
        infusion = car_t.first
        candidates = [
            a
            for a in apheresis
            if a.day.earliest < infusion
            and (infusion - a.day.earliest).days <= APHERESIS_MAX_DAYS
            and (previous is None or a.day.earliest > previous)
        ]
        aph = max(candidates, key=lambda a: (a.day.earliest, a.ref)) if candidates else None
        if aph is not None:
            aph_of[car_t.ref] = aph
        for e in therapy:
            if e is car_t or e.drug_class in CAR_T_CLASSES or e.ref in owner:
                continue
            if e.drug in LYMPHODEPLETION_DRUGS and infusion - _days(LYMPHODEPLETION_DAYS) <= e.first <= infusion:
                owner[e.ref] = (car_t, "LOT-JOIN-LYMPHODEPLETION")
            elif aph is not None and aph.day.earliest <= e.first < infusion:
                owner[e.ref] = (car_t, "LOT-JOIN-BRIDGING")
        previous = infusion
    return owner, aph_of


def _conditioning(therapy: list[Exposure], transplants: list[Transplant]) -> set[str]:
    autos = [t for t in transplants if not t.allogeneic]
    out = set()
    for e in therapy:
        if e.drug not in CONDITIONING_DRUGS:
            continue
        for t in autos:
            if t.ref in e.part_of or t.day.earliest - _days(CONDITIONING_DAYS) <= e.first <= t.day.latest:
                out.add(e.ref)
    return out


def split_lines(
    exposures: list[Exposure],
    transplants: Sequence[Transplant] = (),
    apheresis: Sequence[Apheresis] = (),
    assessments: Sequence[Assessment] = (),
) -> tuple[list[Line], list[tuple[Exposure, str]]]:
    """Group exposures into lines. Returns (lines in chronological order, exposures placed in no line with why)."""
    therapy = [e for e in exposures if e.drug_class not in PARTNER_CLASSES]
    partners = [e for e in exposures if e.drug_class in PARTNER_CLASSES]
    progressions = sorted((a for a in assessments if a.worsened), key=lambda a: a.day.earliest)
    block_owner, aph_of = _car_t_blocks(therapy, list(apheresis))
    conditioning = _conditioning(therapy, list(transplants))

    lines: list[Line] = []
    by_number: dict[int, Line] = {}
    placed: set[str] = set()
    events: list[tuple[date, int, str, Exposure | Transplant]] = [(e.first, 0, e.ref, e) for e in therapy]
    events += [(t.day.earliest, 1, t.ref, t) for t in transplants]
    events.sort(key=lambda x: (x[0], x[1], getattr(x[3], "drug", ""), x[2]))

    def open_line(rule: str, start: date, detail: str = "", number: int | None = None) -> Line:
        line = Line(opened_by=rule, start=start, explicit_number=number, opened_detail=detail)
        lines.append(line)
        if number is not None:
            by_number.setdefault(number, line)
        return line

    def add(line: Line, e: Exposure, rule: str) -> None:
        line.members.append(Member(e, rule))
        placed.add(e.ref)

    for day, _kind, ref, item in events:
        if ref in placed:
            continue
        current = lines[-1] if lines else None
        if isinstance(item, Transplant):  # a transplant joins the line running on its date
            t = item
            if current is None:
                current = open_line("LOT-OPEN-FIRST", day, f"{t.ref} on {t.day.iso()}")
            current.transplants.append(t)
            placed.add(ref)
            continue
        e = item
        # a CAR-T block (bridging, lymphodepletion, infusion) always opens its own line
        car_t = e if e.drug_class in CAR_T_CLASSES else (block_owner[e.ref][0] if e.ref in block_owner else None)
        if car_t is not None and e.line_number is None:
            aph = aph_of.get(car_t.ref)
            members = [(x, block_owner[x.ref][1]) for x in therapy if block_owner.get(x.ref, (None,))[0] is car_t]
            start = min([car_t.first] + [x.first for x, _ in members] + ([aph.day.earliest] if aph else []))
            detail = f"{car_t.drug} infused {car_t.start.iso()} ({car_t.ref})" + (
                f", apheresis {aph.day.iso()} ({aph.ref})" if aph else ""
            )
            line = open_line("LOT-OPEN-CAR-T", start, detail)
            line.car_t, line.apheresis = car_t, aph
            for x, rule in sorted(members, key=lambda m: (m[0].first, m[0].drug)):
                add(line, x, rule)
            add(line, car_t, "LOT-OPEN-CAR-T")
            continue
        if current is None:
            add(open_line("LOT-OPEN-FIRST", day, f"{e.drug} on {e.start.iso()} ({e.ref})", e.line_number), e, "LOT-OPEN-FIRST")
            continue
        if e.line_number is not None:
            target = by_number.get(e.line_number)
            if target is not None:
                add(target, e, "LOT-JOIN-EXPLICIT")
            else:
                detail = f"line number {e.line_number} on {e.ref}"
                add(open_line("LOT-OPEN-EXPLICIT", day, detail, e.line_number), e, "LOT-OPEN-EXPLICIT")
            continue
        if e.ref in conditioning:
            add(current, e, "LOT-JOIN-CONDITIONING")
            continue
        in_line = e.drug in {m.exposure.drug for m in current.members}
        autos = current.autologous_transplant()
        asct = autos[-1] if autos else None
        progressed = [p for p in progressions if current.start < p.day.earliest <= day]
        maintenance = (
            asct is not None
            and asct.day.earliest <= day <= asct.day.latest + _days(MAINTENANCE_DAYS)
            and not any(asct.day.earliest <= p.day.earliest <= day for p in progressions)
        )
        gap = (day - current.last_activity).days
        if maintenance:
            add(current, e, "LOT-JOIN-MAINTENANCE")
        elif progressed and not in_line:
            p = progressed[0]
            detail = f"progression {p.day.iso()} ({p.ref}), then {e.drug} on {e.start.iso()} ({e.ref})"
            add(open_line("LOT-OPEN-PROGRESSION", day, detail), e, "LOT-OPEN-PROGRESSION")
        elif gap > GAP_DAYS:
            detail = f"{gap} days after the previous line's last activity ({current.last_activity.isoformat()}); {e.drug} on {e.start.iso()} ({e.ref})"
            add(open_line("LOT-OPEN-GAP", day, detail), e, "LOT-OPEN-GAP")
        elif in_line:
            add(current, e, "LOT-JOIN-CONTINUED")
        elif (day - current.start).days <= JOIN_WINDOW_DAYS:
            add(current, e, "LOT-JOIN-WINDOW")
        else:
            detail = f"{e.drug} first given {e.start.iso()} ({e.ref}), {(day - current.start).days} days after the line's start"
            add(open_line("LOT-OPEN-NEW-AGENT", day, detail), e, "LOT-OPEN-NEW-AGENT")

    lines.sort(key=lambda ln: ln.start)
    unplaced: list[tuple[Exposure, str]] = []
    for s in sorted(partners, key=lambda x: (x.first, x.ref)):
        if s.line_number is not None and s.line_number in by_number:
            by_number[s.line_number].members.append(Member(s, "LOT-JOIN-EXPLICIT"))
            continue
        running = [ln for ln in lines if ln.start <= s.first]
        if running:
            running[-1].members.append(Member(s, "LOT-JOIN-PARTNER"))
        elif lines and (lines[0].start - s.first).days <= JOIN_WINDOW_DAYS:
            lines[0].members.append(Member(s, "LOT-JOIN-PARTNER"))
        else:
            unplaced.append((s, f"a {s.drug_class} given before any anti-myeloma drug (steroids never open a line)"))
    return lines, unplaced


def line_of(lines: list[Line], day: date) -> int | None:
    """Index of the line running on a day: the last one that started strictly before it."""
    idx = None
    for i, ln in enumerate(lines):
        if ln.start < day:
            idx = i
    return idx


_RESPONSE_ORDER = ("sCR", "CR", "VGPR", "PR", "MR", "SD", "PD")


def derive_outcomes(lines: list[Line], assessments: list[Assessment]) -> None:
    """Per line: progression, refractory and intolerant drugs, best response, stop reason (in place)."""
    for a in sorted(assessments, key=lambda a: (a.day.earliest, a.ref)):
        i = line_of(lines, a.day.earliest)
        if i is None:
            continue
        line = lines[i]
        line.assessed_by.append(a.ref)
        if a.worsened and line.progression is None:
            line.progression = a
        if a.response is not None:
            best = line.best_response
            if best is None or _RESPONSE_ORDER.index(a.response) < _RESPONSE_ORDER.index(best.response):
                line.best_response = a
    for line in lines:
        therapy = [
            m.exposure
            for m in line.members
            if m.exposure.drug_class not in PARTNER_CLASSES
            and m.rule not in ("LOT-JOIN-CONDITIONING", "LOT-JOIN-LYMPHODEPLETION")
        ]
        for e in therapy:
            if e.stop == "no_response":
                line.refractory.setdefault(e.drug, ["REF-NO-RESPONSE"]).append(e.ref)
            if e.stop == "not_tolerated":
                line.intolerant.setdefault(e.drug, ["INTOL-NOT-TOLERATED"]).append(e.ref)
        p = line.progression
        if p is not None:
            for drug in line.drugs():
                doses = [e for e in therapy if e.drug == drug]
                if not doses:
                    continue
                first = min(e.first for e in doses)
                last = max(e.last for e in doses)
                if first < p.day.earliest <= last + _days(REFRACTORY_DAYS) and drug not in line.refractory:
                    line.refractory[drug] = ["REF-PROGRESSION", p.ref, *[e.ref for e in doses]]
        line.stop_reason = _stop_reason(line)


def _stop_reason(line: Line) -> tuple[str, str] | None:
    if line.progression is not None:
        return "progression", line.progression.ref
    therapy = [m.exposure for m in line.members if m.exposure.drug_class not in PARTNER_CLASSES]
    for e in therapy:
        if e.stop == "no_response":
            return "progression", e.ref
    if not therapy or line.ongoing:
        return None
    last = max(e.last for e in therapy)
    for e in sorted(therapy, key=lambda x: x.ref):
        if e.last == last and e.stop in ("not_tolerated", "completed", "patient_choice", "other"):
            return ("toxicity" if e.stop == "not_tolerated" else e.stop), e.ref
    return None
