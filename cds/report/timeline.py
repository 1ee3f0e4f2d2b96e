"""Geometry of the prior-lines timeline drawn as inline SVG in the HTML report.

`layout(lines)` takes the view's ``lines`` (see `cds.report.view`)
and returns plain numbers and strings (boxes, labels, colours) that the HTML
template only loops over; text is escaped by the template like everything
else. One column per prior line, left to right in treatment order; one box per
agent, coloured by drug class; a refractory agent is outlined in black,
hatched and marked "R"; a bar under the columns marks BCMA exposure. Nothing
here depends on the time of day, so the drawing is deterministic.
"""

from __future__ import annotations

from typing import Any

# (key, legend label, colour). Okabe-Ito colours: distinguishable with the
# common colour-vision deficiencies; the "R" mark and the hatching carry
# refractoriness without colour, for black-and-white printing.
CATEGORIES: tuple[tuple[str, str, str], ...] = (
    ("imid", "IMiD", "#E69F00"),
    ("pi", "PI", "#56B4E9"),
    ("anti_cd38", "Anti-CD38", "#009E73"),
    ("bcma", "BCMA-directed", "#CC79A7"),
    ("gprc5d", "GPRC5D-directed", "#0072B2"),
    ("chemo", "Chemotherapy", "#D55E00"),
    ("other", "Other", "#8C959F"),
)
CATEGORY_LABEL = {k: label for k, label, _ in CATEGORIES}
CATEGORY_COLOUR = {k: colour for k, _, colour in CATEGORIES}

COL_W = 172  # column width
GAP = 26  # space between columns (holds the arrow)
PAD = 8
CHIP_H = 22
CHIP_GAP = 5
TOP = 56  # first agent box
CHAR_W = 6.4  # rough width of one character at 11.5px, to decide when to squeeze a name
REGIMEN_CHARS = 30  # per label line (two lines at most)


def category(drug_class: str, targets: tuple[str, ...] | list[str]) -> str:
    """The timeline category of a drug: its target antigen first (BCMA, GPRC5D), then its class."""
    if "BCMA" in targets:
        return "bcma"
    if "GPRC5D" in targets:
        return "gprc5d"
    return {"imid": "imid", "pi": "pi", "anti_cd38": "anti_cd38", "chemotherapy": "chemo"}.get(drug_class, "other")


def _tint(colour: str, amount: float = 0.22) -> str:
    """The colour mixed with white (amount = share of the colour)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))

    def mix(c: int) -> int:
        return round(255 - (255 - c) * amount)

    return f"#{mix(r):02X}{mix(g):02X}{mix(b):02X}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _wrap2(text: str, limit: int) -> list[str]:
    """At most two lines of at most `limit` characters, words kept whole where possible."""
    if not text.strip():
        return []
    first = ""
    words = text.split()
    while words and len((first + " " + words[0]).strip()) <= limit:
        first = (first + " " + words.pop(0)).strip()
    if not first:  # one very long word
        return [_clip(text, limit)]
    rest = " ".join(words)
    return [first, _clip(rest, limit)] if rest else [first]


def dates(line: dict[str, Any], following: dict[str, Any] | None = None) -> str:
    """'2021-03 – 2022-08 · VGPR · progression 2022-09' from what the line records ('' if nothing).

    `following`: the next line, if any. A line without end_date is "ongoing" only when it is the last one;
    before a later line it ended by that line's start ("by 2022-04"), or "end not recorded" when that line
    has no start date either (no end date is made up)."""
    start, end = line.get("start_date"), line.get("end_date")
    if end:
        shown_end = end
    elif following is None:
        shown_end = "ongoing"
    elif following.get("start_date"):
        shown_end = f"by {following['start_date']}"
    else:
        shown_end = "end not recorded"
    parts = []
    if start or end:
        parts.append(f"{start or '?'} \u2013 {shown_end}" if start else f"until {end}")
    if line.get("best_response"):
        parts.append(str(line["best_response"]))
    if line.get("progression_date"):
        parts.append(f"PD {line['progression_date']}")
    return _clip(" \u00b7 ".join(parts), 34)


def layout(lines: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(lines)
    two_line_labels = any(len(_wrap2(line["regimen"] or "", REGIMEN_CHARS)) > 1 for line in lines)
    top = TOP if two_line_labels else TOP - 13
    dated = any(dates(line) for line in lines)
    following: list[dict[str, Any] | None] = [*lines[1:], None]
    dates_y = top  # the row under the regimen label (the agents move down one row)
    if dated:
        top += 13
    most = max((len(line["agents"]) for line in lines), default=1)
    has_asct = any(line["autologous_transplant"] for line in lines)
    chips_bottom = top + most * (CHIP_H + CHIP_GAP) - CHIP_GAP
    asct_y = chips_bottom + 8
    bcma_lines = [line["index"] for line in lines if line["bcma_directed"]]
    bar_y = (asct_y + 20 if has_asct else chips_bottom + 10) + 4
    legend_y = bar_y + (30 if bcma_lines else 6) + 8
    width = PAD * 2 + n * COL_W + (n - 1) * GAP

    columns = []
    for i, line in enumerate(lines):
        x = PAD + i * (COL_W + GAP)
        regimen = line["regimen"] or ""
        chips = []
        for j, agent in enumerate(line["agents"]):
            y = top + j * (CHIP_H + CHIP_GAP)
            avail = COL_W - 6 - 12 - (20 if agent["refractory"] else 0)
            label = _clip(agent["generic"], 34)
            squeeze = len(label) * CHAR_W > avail
            colour = CATEGORY_COLOUR[agent["category"]]
            chips.append(
                {
                    "x": x,
                    "y": y,
                    "w": COL_W,
                    "h": CHIP_H,
                    "fill": _tint(colour),
                    "colour": colour,
                    "label": label,
                    "text_x": x + 12,
                    "text_y": y + 15,
                    "text_length": avail if squeeze else None,
                    "refractory": agent["refractory"],
                    "badge_x": x + COL_W - 19,
                    "badge_y": y + 3,
                    "tooltip": f"{agent['generic']}: {agent['category_label']}"
                    + (" (refractory)" if agent["refractory"] else ""),
                }
            )
        columns.append(
            {
                "x": x,
                "cx": x + COL_W / 2,
                "heading": f"Line {line['index']}",
                "regimen": [{"text": t, "y": 30 + k * 13} for k, t in enumerate(_wrap2(regimen, REGIMEN_CHARS))],
                "regimen_full": regimen,
                "regimen_clipped": " ".join(_wrap2(regimen, REGIMEN_CHARS)) != " ".join(regimen.split()),
                "dates": dates(line, following[i]),
                "dates_y": dates_y,
                "chips": chips,
                "asct": line["autologous_transplant"],
                "asct_y": asct_y,
                "arrow": None if i == n - 1 else {"x1": x + COL_W + 5, "x2": x + COL_W + GAP - 5, "y": top + CHIP_H / 2},
            }
        )

    bcma_bar = None
    if bcma_lines:
        first, last = bcma_lines[0], n
        x1 = PAD + (first - 1) * (COL_W + GAP)
        x2 = PAD + (last - 1) * (COL_W + GAP) + COL_W
        bcma_bar = {
            "x": x1,
            "y": bar_y,
            "w": x2 - x1,
            "colour": CATEGORY_COLOUR["bcma"],
            "label": f"BCMA-exposed from line {first}",
            "text_x": x1 + 6,
            "text_y": bar_y + 20,
        }

    legend = []
    lx: float = PAD
    for _key, label, colour in CATEGORIES:
        legend.append({"x": lx, "y": legend_y, "fill": _tint(colour), "colour": colour, "label": label, "text_x": lx + 20})
        lx += 20 + len(label) * CHAR_W + 16
    height = legend_y + 44
    return {
        "width": round(max(width, lx, 500 + PAD, bcma_bar["text_x"] + 14 + len(bcma_bar["label"]) * CHAR_W if bcma_bar else 0)),
        "height": height,
        "columns": columns,
        "bcma_bar": bcma_bar,
        "legend": legend,
        "legend_refractory": {"x": PAD, "y": legend_y + 22},
        "legend_y": legend_y,
    }
