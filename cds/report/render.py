"""Rendering the report: JSON, or Markdown and HTML through the Jinja templates in ``reports/templates``.

HTML autoescaping for the HTML template; in the Markdown template every value is
Markdown-escaped (`md_text`: only what would be syntax at that place, no HTML
entities), so profile text cannot inject Markdown, HTML or links.
Jinja is imported on first use, so that JSON output never pays for it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from cds.report.jsontext import dumps_indented
from cds.report.model import Report
from cds.report.timeline import layout as timeline_layout
from cds.resources import templates_dir
from cds.usercache import cache_dir, read_private, write_private

if TYPE_CHECKING:
    from pathlib import Path

    from jinja2 import BytecodeCache, Environment
    from jinja2.bccache import Bucket


def to_json(report: Report) -> str:
    """The JSON output: `Report.to_dict()` (schemas/report.schema.json), indented, UTF-8."""
    return dumps_indented(report.to_dict()) + "\n"  # json.dumps(..., indent=2, ensure_ascii=False)'s text


# Markdown: what must be escaped inline (values never start a block: whitespace collapses and every
# value follows template text). Anything else is left as written: no HTML entities, no "\\-".
_URLISH = re.compile(r"(?i)(?:\b(?:https?|ftp)://|\bwww\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_INLINE = re.compile(
    r"[`*|]"  # code, emphasis, table cells: special anywhere
    r"|\[(?=[^\]]*\][(\[])"  # a link or image: [text](url), [text][ref]
    r"|\\(?=[!-/:-@\[-`{-~])"  # a backslash that would escape the next character
    r"|<(?=[A-Za-z/!?])"  # an HTML tag or autolink
    r"|&(?=#?\w+;)"  # an entity
    r"|(?<=\S)~|~(?=~)"  # strikethrough (a tilde that could close, or a double tilde)
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # emphasis with underscores (not inside a word)
)


def md_text(value: Any) -> str:
    """A value as Markdown text: on one line, with only the characters escaped that would be syntax there.

    A bare URL or e-mail address becomes a code span, so that it is shown but never made a link.
    """
    text = " ".join(str(value).split())
    out, last = [], 0
    for m in _URLISH.finditer(text):
        out.append(_INLINE.sub(lambda c: "\\" + c.group(0), text[last : m.start()]))
        fence = "``" if "`" in m.group(0) else "`"
        out.append(f"{fence}{m.group(0)}{fence}" if fence == "`" else f"{fence} {m.group(0)} {fence}")
        last = m.end()
    out.append(_INLINE.sub(lambda c: "\\" + c.group(0), text[last:]))
    return "".join(out)


def _code(value: Any) -> Markup:
    """A value as a Markdown code span (its content is literal: nothing to escape inside)."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}")  # noqa: S704 - Markdown, not HTML


def _link(target: Any, text: str) -> Markup:
    """A Markdown link to a file this program wrote (a relative path: no scheme, no spaces or brackets)."""
    path = str(target)
    if re.search(r"[\s()<>\[\]]|^[a-z]+:", path):
        return Markup(_code(path))  # noqa: S704 - not a safe link target: shown, not linked
    return Markup(f"[{md_text(text)}]({path})")  # noqa: S704 - Markdown, not HTML


def _md_finalize(value: Any) -> Any:
    """Every {{ value }} of the Markdown template is Markdown-escaped unless a filter marked it (Markup)."""
    if isinstance(value, Markup):
        return value
    return md_text(_fmt(value) if isinstance(value, bool) or value is None else value)


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


_ENVS: dict[str, Environment] = {}


def _private_bytecode_cache(folder: Path) -> BytecodeCache:
    """Jinja's compiled templates in this user's own cache folder, read and written only through
    `cds.usercache` (private files, atomic writes). A cache that cannot be read or written (full disk,
    file-size limit) only costs time: it is never an error, and the report is still written."""
    from jinja2 import BytecodeCache

    class PrivateBytecodeCache(BytecodeCache):
        def load_bytecode(self, bucket: Bucket) -> None:
            data = read_private(folder / f"{bucket.key}.cache")
            if data is not None:
                bucket.bytecode_from_string(data)

        def dump_bytecode(self, bucket: Bucket) -> None:
            try:
                data = bucket.bytecode_to_string()
            except (OSError, ValueError):  # pragma: no cover - marshal of Jinja's own code objects
                return
            write_private(folder / f"{bucket.key}.cache", data)

    return PrivateBytecodeCache()


def environment(kind: str = "html") -> Environment:
    """The Jinja environment for "html" (HTML autoescaping) or "markdown" (Markdown escaping of every
    value, `_md_finalize`), created on first use (JSON output never imports Jinja: faster start-up)."""
    env = _ENVS.get(kind)
    if env is None:
        import jinja2
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        # compiled templates are cached per Jinja version and kind (the two compile differently); Jinja
        # recompiles a template whose source changed. The folder is this user's own (cds.usercache).
        folder = cache_dir(f"jinja-{jinja2.__version__}-{kind}")
        # Markdown: every value is escaped by finalize (md_text); HTML: autoescaped
        env = Environment(
            loader=FileSystemLoader(str(templates_dir())),
            bytecode_cache=_private_bytecode_cache(folder) if folder is not None else None,
            autoescape=kind == "html",  # noqa: S701
            finalize=_md_finalize if kind == "markdown" else None,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["fmt"] = _fmt
        env.filters["css_string"] = _css_string
        env.filters["code"] = _code
        env.filters["link"] = _link
        _ENVS[kind] = env
    return env


def render(report: Report, fmt: str) -> str:
    """The report as "json", "markdown" or "html" (the templates get `cds.report.view.report_view`)."""
    if fmt == "json":
        return to_json(report)
    from cds.report.view import report_view

    template = {"markdown": "report.md", "html": "report.html"}[fmt]
    view = report_view(report)
    timeline = timeline_layout(view["lines"]) if fmt == "html" else None
    return environment(fmt).get_template(template).render(r=view, timeline=timeline)


def render_board(board: Any, fmt: str) -> str:
    """`cds board` as "html" or "markdown": a table of the week's patients (board is `cds.cohort.board.Board`)."""
    from cds.report.view import board_view

    template = {"markdown": "board.md", "html": "board.html"}[fmt]
    return environment(fmt).get_template(template).render(b=board_view(board))
