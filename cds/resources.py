"""Where the data lives: rule files, templates, the source documents.

In a source checkout the rule files and templates are the top-level ``rules/``
and ``reports/templates/`` folders. A non-editable install (``pip install .``)
copies them into the package as ``cds/_data/rules`` and
``cds/_data/templates`` (see ``pyproject.toml``), which is looked at first.
``CDS_RULES_DIR`` overrides the rule folder (used by ``cds diff-rules`` and by
tests that load a deliberately broken rule set).
"""

from __future__ import annotations

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
