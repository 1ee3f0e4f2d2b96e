"""Where the data lives: rule files, templates, the source documents.

In a source checkout the rule files and templates are the top-level ``rules/``
and ``reports/templates/`` folders. A non-editable install (``pip install .``)
copies them into the package as ``cds/_data/rules`` and
``cds/_data/templates`` (see ``pyproject.toml``), which is looked at first.
``CDS_RULES_DIR`` overrides the rule folder (used by ``cds diff-rules`` and by
tests that load a deliberately broken rule set).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent
_CHECKOUT = _PKG.parent


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[-1]


def rules_dir() -> Path:
    env = os.environ.get("CDS_RULES_DIR")
    if env:
        return Path(env)
    return _first_existing(_PKG / "_data" / "rules", _CHECKOUT / "rules")


def packaged_rules_dir() -> Path:
    """The rule folder shipped with this version of cds (``CDS_RULES_DIR`` does not change it): where the
    fact catalogue reads the cytogenetics list that the engine's facts are built from."""
    return _first_existing(_PKG / "_data" / "rules", _CHECKOUT / "rules")


def templates_dir() -> Path:
    return _first_existing(_PKG / "_data" / "templates", _CHECKOUT / "reports" / "templates")


def seeds_dir() -> Path:
    """The source documents: ``CDS_SEEDS_DIR`` or ``../shared/seeds`` beside the checkout."""
    env = os.environ.get("CDS_SEEDS_DIR")
    if env:
        return Path(env)
    return _CHECKOUT.parent / "shared" / "seeds"


def _strict_loader():
    """A safe YAML loader (libyaml's C parser when PyYAML has it) that refuses duplicate keys.

    PyYAML keeps the last of two equal keys, so a second ``options:`` line in a
    rule would silently retarget it; here it is an error naming the key and line.
    """
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: let the base constructor report it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


_LOADER = None

# Documents known already (cds.knowledge.rulecache): sha256 of a YAML text -> the document it parses to, as
# JSON. Keyed by the text itself, so a known document is only ever used for exactly the text it came from.
_KNOWN: dict[str, str] = {}
# While the rule-set cache records (cds.knowledge.rulecache.documents): the documents parsed meanwhile.
_RECORDING: dict[str, str] | None = None


def load_yaml(text: str) -> object:
    """Parse YAML safely and strictly (no duplicate keys), fast where libyaml is available."""
    global _LOADER
    digest = None
    if _KNOWN or _RECORDING is not None:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        known = _KNOWN.get(digest)
        if known is not None:
            if _RECORDING is not None:  # another folder's cache knew it: this folder's cache needs it too
                _RECORDING[digest] = known
            return json.loads(known)
    import yaml

    if _LOADER is None:
        _LOADER = _strict_loader()
    doc = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a *safe* loader class
    if _RECORDING is not None and digest is not None:
        as_json = _as_json(doc)
        if as_json is not None:
            _RECORDING[digest] = as_json
    return doc


def _as_json(doc: object) -> str | None:
    """`doc` as JSON if JSON gives back exactly the same document (not for dates, non-string keys, NaN, ...)."""
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == doc else None
