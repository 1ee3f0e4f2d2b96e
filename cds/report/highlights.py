"""What page 1 highlights per option, chosen from rule data: its key figure, its caution, why it is excluded.

- The key figure: a figure a rule names for its option (``key_figures`` in the rule
  file, checked by `cds rules check` to be a figure of that option's arm), from a rule
  that fired (or held) for this patient, and only where the key figure's own ``when``
  (the trial's population, where the rule covers more) holds for the patient's facts;
  the strongest evidence level first. No rule naming one: no key figure, never a
  figure of another arm or population.
- The caution: the patient's own first. A caution is the patient's own when its
  condition is about this patient's facts: it would not hold for a patient about whom
  nothing is known (a caution without a condition, or one that holds because a fact
  is unknown, is generic). Within each group safety first, then a caution its rule marks
  ``page1_first`` (it decides what the board does now: bridging for disease that cannot wait),
  then by category, then rule order. A note
  marked ``favourable`` in its rule file (it favours the option or reassures: "not an
  exclusion") is never the caution; with only such notes, page 1 shows none.
- The products: where a fired caution restricts the option to some of the products its title
  lists (``restricts_products``: PROD-CART-003, only cilta-cel has trial evidence at 1 prior
  line), those products and why; the first such caution in rule order. A favourable note never
  restricts (the rule check refuses it).
- The exclusion: the first reason in plain words: an ``exclude`` rule's title, a
  ``require`` rule's ``unmet`` text, or what is not known when an unknown fact left
  the requirement unconfirmed.

A key figure's ``when`` is evaluated by `cds.knowledge.ruleset.condition_holds` over the
same facts the engine receives; it only picks what page 1 shows and never a ranking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cds.decide.ranking import Reason
from cds.decide.unknowns import field_description
from cds.knowledge.evidence import LEVEL_ORDER
from cds.knowledge.ruleset import Rule, RuleSet, condition_holds
from cds.model.facts import FACTS
from cds.report import model as m

# caution categories, most important first (a caution without one comes last)
_CATEGORY_ORDER = ("safety", "eligibility", "efficacy", "access", "logistics", "regulatory", "sequencing", "monitoring")


def key_figure(ruleset: RuleSet, rationale: Sequence[Reason], facts: Mapping[str, object]) -> m.KeyFigure | None:
    """The strongest figure the option's fired rules name for this patient (None when none does)."""
    found: list[tuple[int, int, m.KeyFigure]] = []
    for r in rationale:
        rule = ruleset.rule(r.rule_id)
        for k in rule.key_figures:
            if not condition_holds(k.condition, facts):
                continue
            entry = ruleset.registry.get(k.evidence)
            fig = next(f for f in entry.figures if (f.measure, f.arm, f.timepoint) == (k.measure, k.arm, k.timepoint))
            figure = m.KeyFigure(
                evidence=entry.id,
                rule_id=rule.id,
                measure=fig.measure,
                label=fig.display_measure(),
                value=fig.value,
                arm=fig.arm,
                timepoint=fig.timepoint,
            )
            found.append((LEVEL_ORDER.index(entry.level), len(found), figure))
    return min(found, key=lambda t: t[:2])[2] if found else None


def patient_specific(rule: Rule) -> bool:
    """Whether a rule's condition is about this patient's facts: it would not hold with nothing known."""
    return rule.condition is not None and not condition_holds(rule.condition, {})


def key_caution(ruleset: RuleSet, cautions: Sequence[Reason]) -> str | None:
    """The rule ID of the caution page 1 shows (see the module docstring)."""

    def order(t: tuple[int, Reason]) -> tuple[int, int, int, int]:
        n, c = t
        rule = ruleset.rule(c.rule_id)
        category = _CATEGORY_ORDER.index(c.category) if c.category in _CATEGORY_ORDER else len(_CATEGORY_ORDER)
        safety = c.category == "safety"
        return (0 if patient_specific(rule) else 1, 0 if safety else 1 if rule.page1_first else 2, category, n)

    ranked = sorted(((n, c) for n, c in enumerate(cautions) if not ruleset.rule(c.rule_id).favourable), key=order)
    return ranked[0][1].rule_id if ranked else None


def products_supported(ruleset: RuleSet, cautions: Sequence[Reason]) -> m.ProductsSupported | None:
    """The products of the option a fired caution restricts it to (see the module docstring), or None."""
    for c in cautions:
        restricted = ruleset.rule(c.rule_id).restricts_products
        if restricted is not None:
            return m.ProductsSupported(rule_id=c.rule_id, products=list(restricted.products), why=restricted.why)
    return None


def _sentence(text: str) -> str:
    """'no t(11;14)' -> 'No t(11;14)'; a leading symbol such as 't(11;14)' is left as written."""
    return text[0].upper() + text[1:] if len(text) > 1 and text[0].islower() and text[1].islower() else text


def exclusion_reason(ruleset: RuleSet, reasons: Sequence[Reason]) -> str:
    """The first reason an option is excluded, in a few plain words."""
    return _sentence(_exclusion_reason(ruleset, reasons))


def _exclusion_reason(ruleset: RuleSet, reasons: Sequence[Reason]) -> str:
    if not reasons:
        return "excluded"
    first = reasons[0]
    rule = ruleset.rule(first.rule_id)
    if rule.kind != "require":
        return rule.title
    if first.unknown_facts:
        names = [FACTS[f].description if f in FACTS else field_description(f) for f in first.unknown_facts]
        return "not known: " + ", ".join(dict.fromkeys(names))
    return rule.unmet or f"requirement not met: {rule.title}"
