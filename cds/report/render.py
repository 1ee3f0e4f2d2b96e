"""Rendering the report: JSON, or Markdown and HTML through the Jinja templates in ``reports/templates``.

Autoescaping is on for both templates; the Markdown template additionally
escapes Markdown syntax in anything that comes from the profile (`md` filter).
Jinja is imported on first use, so that JSON output never pays for it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from cds.report.model import Report
from cds.report.timeline import layout as timeline_layout
from cds.resources import templates_dir

if TYPE_CHECKING:
    from jinja2 import Environment


def to_json(report: Report) -> str:
    """The JSON output: `Report.to_dict()` (schemas/report.schema.json), indented, UTF-8."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


# Markdown syntax characters; '<', '>' and '&' are left to the HTML escape that follows.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def _md(value: Any) -> Markup:
    """Escape Markdown syntax, then HTML, in a value that comes from the profile.

    Whitespace (line breaks included) collapses to single spaces, so that a
    value cannot start a new Markdown block or break a table row.
    """
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    # HTML-escape last, so that the entities it writes (&#39;, &lt;) are not broken by a backslash
    return Markup(str(escape(text)))  # noqa: S704 - escaped just above


def _cell(value: Any) -> Markup:
    """Rule and registry text in Markdown: HTML-escaped, on one line, table pipes escaped."""
    text = str(escape(" ".join(str(value).split())))
    return Markup(text.replace("|", "\\|"))  # noqa: S704 - HTML-escaped just above


def _css_string(value: Any) -> Markup:
    """A CSS string literal: every character but letters, digits and spaces as a CSS escape."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == " ") else f"\\{ord(c):06x}" for c in str(value))
    return Markup(f'"{out}"')  # noqa: S704 - only letters, digits, spaces and CSS escapes


def _fmt(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


_ENV: Environment | None = None


def environment() -> Environment:
    """The Jinja environment, created on first use (JSON output never imports Jinja: faster start-up)."""
    global _ENV
    if _ENV is None:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

        env = Environment(
            loader=FileSystemLoader(str(templates_dir())),
            autoescape=select_autoescape(enabled_extensions=("html", "md", "j2"), default_for_string=True, default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["md"] = _md
        env.filters["fmt"] = _fmt
        env.filters["css_string"] = _css_string
        env.filters["cell"] = _cell
        _ENV = env
    return _ENV


def render(report: Report, fmt: str) -> str:
    """The report as "json", "markdown" or "html" (the templates get `cds.report.view.report_view`)."""
    if fmt == "json":
        return to_json(report)
    from cds.report.view import report_view

    template = {"markdown": "report.md", "html": "report.html"}[fmt]
    view = report_view(report)
    timeline = timeline_layout(view["lines"]) if fmt == "html" else None
    return environment().get_template(template).render(r=view, timeline=timeline)
