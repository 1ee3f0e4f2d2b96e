"""Building the report: the typed `cds.report.model.Report` from an evaluation.

`build_report` fills the model (the JSON output is exactly ``Report.to_dict()``);
`apply_site` adds availability at a centre as a new report; `cds.report.view`
turns a report into what the templates show and `cds.report.render` renders it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from cds.decide.pipeline import Evaluation
from cds.decide.ranking import RankedOption as RankedOptionResult
from cds.decide.ranking import Reason
from cds.decide.unknowns import Effect, UnknownFact
from cds.knowledge.evidence import Conflict, EvidenceEntry, display_cell_dose, reciprocal
from cds.knowledge.ruleset import RuleSet
from cds.knowledge.site import Site, availability
from cds.model.clock import evaluation_time
from cds.model.facts import FACTS, engine_facts, not_refractory_by_dates
from cds.model.profile import line_drugs, named_drugs
from cds.report import model as m
from cds.report.highlights import exclusion_reason, key_caution, key_figure, products_supported
from cds.report.timeline import category

DISCLAIMER = (
    "Decision support, not decision making: this report supports and does not replace the clinical "
    "judgement of the treating haematologist and the tumor board. Check every recommendation against "
    "its inputs, rules and sources."
)


def _reason(r: Reason, rs: RuleSet) -> m.Reason:
    return m.Reason(
        rule_id=r.rule_id,
        kind=r.kind,
        title=r.title,
        text=r.text,
        evidence=list(r.evidence),
        weight=r.weight,
        category=r.category,
        unknown_facts=list(r.unknown_facts),
        reviewed=rs.rule(r.rule_id).last_reviewed,
    )


def qualifier(arm: str | None, timepoint: str | None) -> str | None:
    """'arm, at timepoint' of a figure, or None."""
    parts = [p for p in (arm, f"at {timepoint}" if timepoint else None) if p]
    return ", ".join(parts) or None


_EVIDENCE: dict[tuple[str, str], m.Evidence] = {}  # (rule-set digest, entry ID): the same for every patient


def _evidence(entry: EvidenceEntry, ev: Evaluation) -> m.Evidence:
    key = (ev.ruleset.digest, entry.id)
    cached = _EVIDENCE.get(key)
    if cached is None:
        cached = _EVIDENCE[key] = _evidence_entry(entry, ev)
    return cached


def _evidence_entry(entry: EvidenceEntry, ev: Evaluation) -> m.Evidence:
    src = ev.ruleset.registry.source_for(entry)
    return m.Evidence(
        id=entry.id,
        kind=entry.kind,
        level=entry.level,
        level_label=entry.level_label,
        title=entry.title,
        source_id=src.id,
        source_file=entry.source,
        source_title=src.title,
        source_citation=src.citation,
        location=entry.location,
        quote=" ".join(entry.quote.split()),
        trial=entry.trial,
        agent=entry.agent,
        publication=entry.publication,
        design_reference=entry.design_reference,
        population=entry.population,
        n=entry.n,
        phase=entry.phase,
        note=entry.note,
        figures=[
            m.Figure(
                measure=f.measure,
                label=f.display_measure(),
                value=f.display_value(),
                arm=display_cell_dose(f.arm) if f.arm else f.arm,
                timepoint=f.timepoint,
            )
            for f in entry.figures
        ],
        conflicts=[
            m.EvidenceConflictRef(
                with_=c.with_,
                measure=c.measure,
                note=c.note,
                kind=c.kind,
                about=c.about,
                value=c.value,
                printed=c.printed,
                published=c.published,
                reference=c.reference,
                certain=c.certain,
                preferred=c.preferred,
            )
            for c in entry.conflicts
        ],
    )


def _conflict_side(e: EvidenceEntry, c: Conflict, ev: Evaluation) -> m.ConflictSide:
    """One entry's side of a conflict: its figures (or field, or the erratum's printed words) as printed."""
    figs = [f for f in e.figures if c.about == "figure" and f.measure == c.measure and c.value in (None, f.value)]
    if c.kind == "erratum":
        assert c.printed is not None
        shown = [c.printed]
    elif c.about == "figure":
        shown = []
        for f in figs:
            q = qualifier(f.arm, f.timepoint)
            shown.append((f"{f.label}: " if f.label else "") + f.display_value() + (f" ({q})" if q else ""))
    elif c.about == "n":
        shown = [f"n={e.n}"] if e.n is not None else []
    else:
        value = e.field_value(c.about)
        shown = [value] if value is not None else []
    return m.ConflictSide(
        evidence=e.id,
        title=e.title,
        source_id=ev.ruleset.registry.source_for(e).id,
        source_file=e.source,
        location=e.location,
        figures=[f.value for f in figs],
        shown=shown,
    )


def _lines(ev: Evaluation) -> list[m.Line]:
    """The prior lines with the class and target of every agent, from the vocabulary."""
    vocabulary = ev.ruleset.vocabulary
    out = []
    for n, line in enumerate(ev.profile.prior_lines, 1):
        refractory = named_drugs(line.refractory_to, line, vocabulary)
        agents = []
        for found in line_drugs(line, vocabulary):
            drug = found.drug
            agents.append(
                m.Agent(
                    name=found.written,
                    generic=drug.name,
                    drug_class=drug.drug_class,
                    targets=list(drug.targets),
                    category=category(drug.drug_class, drug.targets),
                    refractory=drug.name in refractory,
                )
            )
        out.append(
            m.Line(
                index=n,
                regimen=line.regimen,
                agents=agents,
                refractory_to=[x.generic for x in agents if x.refractory],
                autologous_transplant=bool(line.autologous_transplant),  # absent: none recorded in this line
                bcma_directed=any("BCMA" in x.targets for x in agents),
                refractoriness_recorded=line.refractory_to is not None,
                agents_from_regimen=line.agents_from_regimen,
                start_date=line.start_date,
                infusion_date=line.infusion_date,
                transplant_date=line.transplant_date,
                end_date=line.end_date,
                progression_date=line.progression_date,
                best_response=line.best_response,
                stop_reason=line.stop_reason,
                intolerant_to=(
                    None
                    if line.intolerant_to is None
                    else [x.generic for x in agents if x.generic in named_drugs(line.intolerant_to, line, vocabulary)]
                ),
                not_refractory_by_dates=not_refractory_by_dates(line),
            )
        )
    return out


def _synopsis(ev: Evaluation) -> list[str]:
    """A few words a chairperson reads out first: fitness, lines, refractoriness, prior BCMA."""
    f = {k: v.value for k, v in ev.facts.items()}
    p = ev.profile
    out = [f"{p.age} years", f"ECOG {p.ecog}"]
    if p.frailty:
        out.append(p.frailty)
    n = f["prior_line_count"]
    out.append(f"{n} prior line{'s' if n != 1 else ''}")
    if f["penta_refractory"]:
        out.append("penta-refractory")
    elif f["triple_class_refractory"]:
        out.append("triple-class refractory")
    elif f["triple_class_exposed"]:
        out.append("triple-class exposed")
    elif f["refractory_lenalidomide"]:
        out.append("lenalidomide-refractory")
    if f["bcma_exposed"]:
        out.append("BCMA-refractory" if f["bcma_refractory"] else "BCMA-exposed")
    else:
        out.append("BCMA-naive")
    if f["gprc5d_exposed"]:
        out.append("GPRC5D-exposed")
    if f["bcma_car_t_relapse_within_12_months"]:
        out.append("relapse within 12 months of BCMA CAR-T")
    if f["early_relapse_after_asct"]:
        out.append("early relapse after ASCT")
    intolerant = sorted({d for line in p.prior_lines for d in named_drugs(line.intolerant_to, line, ev.ruleset.vocabulary)})
    if intolerant:
        out.append("intolerant to " + ", ".join(intolerant))
    if f["high_risk_cytogenetics"]:
        found = set(p.cytogenetics or [])  # validated: the catalogue's spellings
        hr = [a for a in ev.ruleset.vocabulary.high_risk_cytogenetics if a in found]  # rules/catalog/cytogenetics.yaml
        out.append("high-risk cytogenetics: " + ", ".join(hr))
    if p.plasma_cell_leukemia:
        out.append("plasma cell leukaemia")
    if p.cns_involvement:
        out.append("CNS involvement")
    if p.extramedullary_disease:
        out.append("extramedullary disease")
    if p.rapidly_progressive:
        out.append("rapidly progressive")
    if p.dialysis:
        out.append("on dialysis")
    return out


def _origin(name: str) -> str:
    """'profile' for a fact the profile states (one cytogenetic finding included), else 'derived'."""
    spec = FACTS[name]
    if name == "high_risk_cytogenetics" or spec.derived:
        return "derived"
    if spec.input_field or name in ("age", "ecog"):
        return "profile"
    return "derived"


def _effect_text(effect: Effect, ev: Evaluation, field: str) -> str:
    titles = {o.id: o.title for o in ev.ruleset.options}
    parts = []
    base_top = ev.ranking.top
    if effect.top != base_top:
        parts.append(
            f"top option would be {titles.get(effect.top or '', 'none')} instead of {titles.get(base_top or '', 'none')}"
            if effect.top
            else "no option would remain"
        )
    if effect.newly_excluded:
        parts.append("excluded: " + ", ".join(titles[i] for i in effect.newly_excluded))
    if effect.newly_offered:
        parts.append("newly offered: " + ", ".join(titles[i] for i in effect.newly_offered))
    if not parts:
        parts.append("the order of the options would change")
    return f"If {field} were {effect.label}: " + "; ".join(parts) + "."


def build_report(ev: Evaluation, evaluated_at: str | None = None, site: Site | None = None) -> m.Report:
    """The report, with availability at `site` (None: the rule folder's default site, if it has one).

    Stamped with `evaluated_at` (None: the evaluation's own time, else `evaluation_time()`). An evaluation
    made at another instant cannot be stamped with this one (ValueError): the evaluation date the facts
    count to defaults to the stamp's date, so the two must be the same instant.
    """
    stamp, site = _stamp_and_site(ev, evaluated_at, site)
    return apply_site(_build_report(ev, stamp), site, ev)


def _stamp_and_site(ev: Evaluation, evaluated_at: str | None, site: Site | None) -> tuple[str, Site | None]:
    """The instant a report is stamped with, and its site (see `build_report`)."""
    from cds.knowledge.site import default_site

    stamp = evaluation_time(evaluated_at) if evaluated_at is not None or ev.evaluated_at is None else ev.evaluated_at
    if ev.evaluated_at is not None and stamp != ev.evaluated_at:
        raise ValueError(f"build_report: evaluated_at {stamp} is not the instant the evaluation was made at ({ev.evaluated_at})")
    return stamp, site if site is not None else default_site(ev.ruleset)


def build_card_data(ev: Evaluation, evaluated_at: str | None = None, site: Site | None = None, top: int = 3) -> dict[str, Any]:
    """The part of ``build_report(ev, evaluated_at, site).to_dict()`` a CDS Hooks card shows, without building
    the rest (evidence, derived facts, lines: about 2.6 ms of a report's 2.7): the stamp, the disclaimer, the
    synopsis, the first `top` options (id, rank, title, tied_with, why, availability, the cautions' rule_id and
    title, products_supported) and the unknown facts that matter (field, description, changes_top_option, each effect's text).
    The same keys in the same order with the same values as the report's JSON has them (`card_data_of` in
    cds.apps.http.card projects them out of a report; the tests compare the two), from the same functions.
    """
    from cds.knowledge.site import availability

    stamp, site = _stamp_and_site(ev, evaluated_at, site)
    rs = ev.ruleset
    access = ev.facts["car_t_center_access"].value if site is not None else None
    assert access is None or isinstance(access, bool)
    return {
        "patient_id": ev.profile.patient_id,
        "evaluated_at": evaluation_time(stamp),
        "engine_version": ev.engine_version,
        "ruleset_hash": rs.digest,
        "input_hash": ev.input_hash,
        "site_name": site.name if site is not None else None,
        "site_hash": site.digest if site is not None else None,
        "disclaimer": DISCLAIMER,
        "synopsis": _synopsis(ev),
        "options": [
            {
                "id": o.id,
                "rank": o.rank,
                "title": o.title,
                "tied_with": _tied_with(o, ev),
                "why": _why(o),
                "availability": m.to_data(availability(site, rs, o.id, access)) if site is not None else None,
                "cautions": [{"rule_id": c.rule_id, "title": c.title} for c in o.cautions],
                "products_supported": m.to_data(products_supported(rs, o.cautions)),
            }
            for o in ev.ranking.options[:top]
        ],
        "unknown_facts_that_matter": [
            {
                "field": u.field,
                "description": u.description,
                "changes_top_option": u.changes_top,
                "effects": [{"text": _effect_text(e, ev, u.field)} for e in u.effects],
            }
            for u in ev.unknown_facts
            if u.changes_top
        ],
    }


def _tied_with(o: RankedOptionResult, ev: Evaluation) -> list[str]:
    """The options with the same score: their relative order is the catalogue's, not a clinical preference."""
    return [t.id for t in ev.ranking.options if t.score == o.score and t.id != o.id]


def _why(o: RankedOptionResult) -> str:
    return m.why_text((r.weight, r.title) for r in o.rationale)


_NO_SITE = m.SiteSection(
    name=None,
    description="No site file: availability at the centre is not assessed.",
    file=None,
    hash=None,
    default=False,
    car_t_delivered_on_site=None,
    car_t_referral_possible=None,
    unavailable=[],
)


def apply_site(report: m.Report, site: Site | None, ev: Evaluation) -> m.Report:
    """A new report with availability at `site` (per option, the stamp and the ``site`` section); `report` is unchanged.

    Nothing the ranking decided changes: order, scores and exclusions stay as ranked.
    """
    if site is None:
        return dataclasses.replace(
            report,
            site_name=None,
            site_hash=None,
            options=[dataclasses.replace(o, availability=None) for o in report.options],
            excluded=[dataclasses.replace(x, availability=None) for x in report.excluded],
            site=_NO_SITE,
        )
    access = ev.facts["car_t_center_access"].value
    assert access is None or isinstance(access, bool)
    options = [dataclasses.replace(o, availability=availability(site, ev.ruleset, o.id, access)) for o in report.options]
    unavailable = [
        m.UnavailableOption(id=o.id, title=o.title, rank=o.rank, status=o.availability.status, reason=o.availability.note)
        for o in options
        if o.availability is not None and o.availability.status in ("unavailable", "not_reimbursed")
    ]
    return dataclasses.replace(
        report,
        site_name=site.name,
        site_hash=site.digest,
        options=options,
        excluded=[dataclasses.replace(x, availability=availability(site, ev.ruleset, x.id, access)) for x in report.excluded],
        site=m.SiteSection(
            name=site.name,
            description=" ".join(site.spec.description.split()),
            file=site.path.name if site.default else str(site.path),
            hash=site.digest,
            default=site.default,
            car_t_delivered_on_site=site.spec.car_t_delivered_on_site,
            car_t_referral_possible=site.spec.car_t_referral_possible,
            unavailable=unavailable,
        ),
    )


def _build_report(ev: Evaluation, evaluated_at: str | None = None) -> m.Report:
    rs = ev.ruleset
    cited: list[str] = []

    def cite(ids: Iterable[str]) -> None:
        for i in ids:
            if i not in cited:
                cited.append(i)

    options = []
    facts = engine_facts(ev.facts)
    for o in ev.ranking.options:
        for group in (o.rationale, o.cautions, o.next_steps):
            for r in group:
                cite(r.evidence)
        options.append(
            m.RankedOption(
                id=o.id,
                rank=o.rank,
                title=o.title,
                summary=o.summary,
                score=o.score,
                tied_with=_tied_with(o, ev),
                why=_why(o),
                # the rationale as the "why" reads it: largest contribution first, ties in rule order
                rationale=[_reason(r, rs) for r in m.by_contribution(o.rationale)],
                cautions=[_reason(r, rs) for r in o.cautions],
                next_steps=[_reason(r, rs) for r in o.next_steps],
                key_evidence=list(dict.fromkeys(e for r in m.by_contribution(o.rationale) for e in r.evidence)),
                availability=None,
                key_figure=key_figure(rs, o.rationale, facts),
                key_caution=key_caution(rs, o.cautions),
                products_supported=products_supported(rs, o.cautions),
            )
        )
    excluded = []
    for x in ev.ranking.excluded:
        for r in x.reasons:
            cite(r.evidence)
        excluded.append(
            m.ExcludedOption(
                id=x.id,
                title=x.title,
                reasons=[_reason(r, rs) for r in x.reasons],
                availability=None,
                reason=exclusion_reason(rs, x.reasons),
            )
        )

    def unknown(u: UnknownFact) -> m.UnknownFact:
        return m.UnknownFact(
            field=u.field,
            description=u.description,
            changes_top_option=u.changes_top,
            effects=[
                m.Effect(
                    if_value=e.label,
                    top_option=e.top,
                    ranking=list(e.order),
                    newly_excluded=list(e.newly_excluded),
                    newly_offered=list(e.newly_offered),
                    text=_effect_text(e, ev, u.field),
                )
                for e in u.effects
            ],
        )

    evidence = {i: _evidence(rs.registry.get(i), ev) for i in cited}
    conflicts = []
    seen_pairs: set[tuple[str | None, ...]] = set()
    for i in cited:
        entry = rs.registry.get(i)
        for c in entry.conflicts:
            if c.kind != "sources":
                continue
            assert c.with_ is not None
            key = (*sorted((i, c.with_)), c.about, c.measure)
            if key in seen_pairs:
                continue
            seen_pairs.add(key)
            other = rs.registry.get(c.with_)
            if c.with_ not in evidence:
                evidence[c.with_] = _evidence(other, ev)
            back = reciprocal(entry, c, other) or c
            conflicts.append(
                m.EvidenceConflict(
                    measure=c.label(),
                    note=c.note,
                    sides=[_conflict_side(entry, c, ev), _conflict_side(other, back, ev)],
                    about=c.about,
                    preferred=c.preferred,
                )
            )
    for i in list(evidence):  # every entry shown, including the other side of a conflict
        entry = rs.registry.get(i)
        for c in entry.errata:
            figure = next(
                (f for f in entry.figures if c.about == "figure" and f.measure == c.measure and c.value in (None, f.value)), None
            )
            conflicts.append(
                m.EvidenceConflict(
                    measure=figure.display_measure() if figure is not None else c.label(),
                    note=c.note,
                    sides=[_conflict_side(entry, c, ev)],
                    kind="erratum",
                    about=c.about,
                    published=c.published,
                    reference=c.reference,
                    certain=c.certain,
                )
            )

    settings_used = {}
    excluding = {r.rule_id for x in excluded for r in x.reasons}
    for rule in rs.rules:
        if rule.id in ev.fired or rule.id in excluding:
            from cds.knowledge.ruleset import leaves

            for leaf in leaves(rule.condition):
                if leaf.setting:
                    s = rs.settings[leaf.setting]
                    settings_used[leaf.setting] = m.SettingUsed(value=s.value, unit=s.unit, why=s.why)

    profile = ev.profile
    return m.Report(
        schema_version=m.SCHEMA_VERSION,
        patient_id=profile.patient_id,
        age=profile.age,
        evaluated_at=evaluation_time(evaluated_at),
        evaluation_date=m.EvaluationDate(date=ev.evaluation_date, source=ev.evaluation_date_source),
        engine_version=ev.engine_version,
        ruleset_hash=rs.digest,
        input_hash=ev.input_hash,
        site_name=None,
        site_hash=None,
        disclaimer=DISCLAIMER,
        synopsis=_synopsis(ev),
        lines=_lines(ev),
        options=options,
        excluded=excluded,
        site=_NO_SITE,
        derived_facts=[
            m.DerivedFact(
                name=name,
                description=FACTS[name].description,
                value=fv.value,
                known=fv.known,
                explanation=fv.explanation,
                origin=_origin(name),
                applies=fv.applies,
            )
            for name, fv in ev.facts.items()
        ],
        unknown_facts_that_matter=[unknown(u) for u in ev.unknown_facts if u.changes_top],
        unknown_facts_affecting_ranking=[unknown(u) for u in ev.unknown_facts if not u.changes_top],
        unknown_facts_without_effect=list(ev.unknown_without_effect),
        fired_rules=sorted(ev.fired),
        settings_used=settings_used,
        inputs=profile.model_dump(mode="json"),
        evidence=evidence,
        evidence_conflicts=conflicts,
        sources=[
            m.SourceDocument(id=s.id, file=s.file, title=s.title, citation=s.citation)
            for s in sorted(rs.registry.sources.values(), key=lambda s: s.id)
            if any(e.source_file == s.file for e in evidence.values())
        ],
    )
