"""The formats of the rule folder's own files, as the load validates them (`cds.knowledge.validate`): a rule file
``rules/<family>.yaml`` (`RuleFile`, its rules `RuleSpec`), the fixtures of a rule file ``rules/tests/<family>.yaml``
(`FixtureFile`), ``catalog/options.yaml`` (`OptionsFile`), ``catalog/settings.yaml`` (`SettingsFile`) and the
evidence registry's ``evidence/sources.yaml`` (`SourcesFile`) and ``evidence/*.yaml`` (`EvidenceFile`).

Apart from `cds.knowledge.ruleset` (what a loaded rule set is made of, and what the rule-set cache keeps) because
only a load from the YAML needs them: a process that gets its rule set from the cache (`cds evaluate`) never
creates these classes (about 20M instructions of a cold start). `cds schemas` writes the JSON Schemas of
``RuleFile`` and ``FixtureFile`` from them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from cds.knowledge.evidence import ID_PATTERN, EvidenceEntry, Measure, Source
from cds.knowledge.ruleset import RULE_ID, Fixtures, Kind, OptionSpec, SettingSpec
from cds.model.base import Strict

__all__ = [
    "EvidenceFile",
    "FixtureFile",
    "KeyFigureSpec",
    "OptionsFile",
    "ProductsSpec",
    "ReviewDate",
    "RuleFile",
    "RuleSpec",
    "SettingsFile",
    "SourcesFile",
]


def _quoted_date(value: object) -> object:
    if isinstance(value, date):
        raise ValueError(f'write the date in quotes ("{value.isoformat()}"): unquoted, YAML reads it as a date, not text')
    return value


def _review_date(value: str) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if day.year < 2000:
        raise ValueError(f"{value!r} is before any of the sources")
    return value


#: the date of a rule's last clinical review against its sources (ONC HTI-1 asks for revision dates)
ReviewDate = Annotated[str, BeforeValidator(_quoted_date), Field(pattern=r"^\d{4}-\d{2}-\d{2}$"), AfterValidator(_review_date)]


class KeyFigureSpec(Strict):
    """The figure page 1 shows for the rule's option: one figure of one cited evidence entry."""

    evidence: str = Field(pattern=ID_PATTERN, description="a cited evidence ID")
    measure: Measure
    arm: str | None = Field(default=None, description="the figure's arm, exactly as the registry gives it")
    timepoint: str | None = None
    when: object = Field(default=None, description="narrows the rule's population to the trial's")


class ProductsSpec(Strict):
    """Which of an option's products the evidence supports where the rule fires (page 1 names only these)."""

    products: list[str] = Field(min_length=1, description="drug names or aliases of the option's classes, as page 1 shows them")
    why: str = Field(
        min_length=10,
        max_length=120,
        description="page 1's words after the products: 'the only product with trial evidence here'",
    )


class RuleSpec(Strict):
    id: str = Field(pattern=RULE_ID)
    title: str = Field(min_length=5, max_length=160)
    kind: Kind
    options: list[str] = Field(min_length=1)
    weight: int | None = Field(default=None, ge=1, le=1000)
    when: object = None
    rationale: str = Field(min_length=10)
    cites: list[str] = Field(min_length=1)
    category: (
        Literal["eligibility", "efficacy", "safety", "monitoring", "logistics", "regulatory", "sequencing", "access"] | None
    ) = None
    status: Literal["active", "retired"] = "active"
    last_reviewed: ReviewDate | None = Field(
        default=None, description="date of the rule's last clinical review (YYYY-MM-DD); default: the file's last_reviewed"
    )
    key_figures: list[KeyFigureSpec] = []
    unmet: str | None = Field(default=None, min_length=3, max_length=80)
    favourable: bool = False
    restricts_products: ProductsSpec | None = None
    page1_first: bool = False

    @model_validator(mode="after")
    def _weight_matches_kind(self) -> RuleSpec:
        if self.kind in ("prefer", "deprefer") and self.weight is None:
            raise ValueError(f"a {self.kind} rule needs a weight")
        if self.kind not in ("prefer", "deprefer") and self.weight is not None:
            raise ValueError(f"a {self.kind} rule takes no weight")
        if self.key_figures and self.kind not in ("prefer", "require"):
            raise ValueError("key_figures: only a prefer or require rule names the figure page 1 shows for its option")
        if self.unmet is not None and self.kind != "require":
            raise ValueError("unmet: only a require rule has a reason for not holding")
        if self.favourable and self.kind != "caution":
            raise ValueError("favourable: only a caution rule is marked favourable")
        if self.page1_first and (self.kind != "caution" or self.favourable):
            raise ValueError("page1_first: only a caution rule not marked favourable goes first on page 1")
        if self.restricts_products is not None and (self.kind != "caution" or self.favourable or len(self.options) != 1):
            raise ValueError(
                "restricts_products: only a caution rule of one option, not marked favourable, restricts its products"
            )
        return self


class FixtureFile(Strict):
    """``rules/tests/<family>.yaml``: the fixtures of the rules of one rule file, by rule ID."""

    rules: str = Field(pattern=r"^[a-z0-9_]+\.yaml$", description="the rule file (in the rule folder) whose rules these are")
    fixtures: dict[str, Fixtures] = Field(description="rule ID -> the profiles on which it must fire and must stay silent")


class RuleFile(Strict):
    family: str = Field(pattern=r"^[a-z_]+$")
    code: str = Field(pattern=r"^[A-Z]{2,6}$")
    description: str
    last_reviewed: ReviewDate | None = Field(
        default=None, description="date the family's rules were last reviewed against the sources, unless a rule gives its own"
    )
    rules: list[RuleSpec]


class OptionsFile(Strict):
    options: list[OptionSpec] = Field(min_length=1)


class SettingsFile(Strict):
    settings: dict[str, SettingSpec]


class EvidenceFile(Strict):
    """``evidence/<file>.yaml``: entries of the evidence registry (cds.knowledge.evidence)."""

    entries: list[EvidenceEntry]


class SourcesFile(Strict):
    """``evidence/sources.yaml``: the sources the entries cite."""

    sources: list[Source]
