"""`cds evaluate PATH` on a terminal: the page-1 summary in at most ~40 lines (rich).

Piped, or with --format, `cds evaluate` prints the full report instead. Every
line is cut to the terminal's width (never wrapped), so the count stays the
same on a narrow terminal; long lists are cut with "+N more" and the last
line says how to write the full report. Profile text is printed as text
(rich markup in it is not interpreted).
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from cds.api import AVAILABILITY_BADGE, Summary, TopOption, evaluation_date_text, tied_text, why_parts

MAX_LINES = 40
MAX_FACTS = 5
MAX_EXCLUDED = 8
# the page-1 badge's class (cds.report.view.AVAILABILITY_BADGE) -> terminal style
BADGE_STYLE = {"bad": "bold red", "info": "bold blue", "good": "green", "muted": "dim"}


def _line(*parts: tuple[str, str] | str) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        else:
            text.append(*part)
    return text


def summary_lines(s: Summary, path: str) -> list[Text]:
    """The summary as terminal lines (each one line, cut to the width when printed), at most MAX_LINES."""
    excluded = MAX_EXCLUDED
    while True:
        out = _lines(s, path, excluded)
        if len(out) <= MAX_LINES or excluded == 0:
            return out
        excluded -= 1


def _lines(s: Summary, path: str, max_excluded: int) -> list[Text]:
    out: list[Text] = [
        _line((f"Patient {s.patient_id}", "bold"), "  " + " · ".join(s.synopsis)),
        _line(
            (
                f"evaluated {s.evaluated_at[:10]} · evaluation date "
                f"{evaluation_date_text(s.evaluation_date, s.evaluation_date_source, short=True)} · "
                f"{s.engine_version} · rule set {s.ruleset_hash[:12]} · "
                f"site: {s.site_name or 'not assessed'}",
                "dim",
            )
        ),
        Text(""),
        _line(("Top options", "bold underline")),
    ]

    def option(o: TopOption, best: TopOption | None) -> None:
        label, css = AVAILABILITY_BADGE.get(o.availability_status or "", ("", "muted"))
        badge, style = label.lower(), BADGE_STYLE[css]
        out.append(
            _line(
                f"{o.rank:>2}  ",
                (o.heading if o.products_supported else o.short_title, "bold"),
                f"  score {o.score}{' (tie)' if o.tied else ''}",
                *([("  " + badge, style)] if badge else []),
            )
        )
        if best is not None:
            out.append(
                _line(
                    ("    best option available here: ", "bold blue"),
                    f"{best.short_title} (rank {best.rank}, score {best.score})",
                )
            )
        raised, lowered = why_parts((r.weight, r.text) for r in [*o.raised, *o.lowered])
        if raised:
            out.append(_line("    why: ", raised))
        if lowered:
            out.append(_line("    lowered by: ", (lowered, "yellow")))
        if o.key_figure:
            k = o.key_figure
            differ = ("  [sources differ: " + "; ".join(k.conflicts) + "]", "yellow") if k.conflicts else ""
            out.append(_line("    evidence: ", f"{k.study}: {k.measure} {k.value} ({k.source}; level: {k.level})", differ))
        if o.caution:
            out.append(_line("    caution: ", o.caution))

    for n, o in enumerate(s.options):
        option(o, s.best_available if n == 0 else None)
    if s.tied_with_third:
        out.append(_line("    ", tied_text(s) or ""))
    more = s.ranked_count - len(s.options) - len(s.tied_with_third)
    if more > 0:
        out.append(_line((f"    ... {more} more ranked option(s) in the full report", "dim")))
    out += [Text(""), _line(("Facts to obtain", "bold underline"))]
    if not s.facts_to_obtain:
        out.append(_line("  none: no missing fact would change the top option"))
    for f in s.facts_to_obtain[:MAX_FACTS]:
        out.append(_line("  • ", (f.description, "bold"), ": " + "; ".join(f.effects)))
    if len(s.facts_to_obtain) > MAX_FACTS:
        out.append(_line((f"  ... {len(s.facts_to_obtain) - MAX_FACTS} more in the full report", "dim")))
    out += [Text(""), _line(("Excluded", "bold underline"))]
    if not s.excluded:
        out.append(_line("  none"))
    for x in s.excluded[:max_excluded]:
        out.append(_line("  • ", (x.short_title, "bold"), ": " + x.reason))
    if len(s.excluded) > max_excluded:
        out.append(_line((f"  ... {len(s.excluded) - max_excluded} more in the full report", "dim")))
    out += [
        Text(""),
        _line(
            ("Full report: ", "dim"), "add --format html --output report.html", ("  (or --output report.pdf, .md, .json)", "dim")
        ),
    ]
    return out


def print_summary(s: Summary, path: str, console: Console | None = None) -> None:
    console = console or Console(highlight=False, soft_wrap=False)
    for line in summary_lines(s, path):
        console.print(line, markup=False, emoji=False, highlight=False, no_wrap=True, overflow="ellipsis", crop=True)
