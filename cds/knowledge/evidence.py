"""The evidence registry: every source a rule cites, with figures exactly as given.

Files: ``rules/evidence/sources.yaml`` (the source documents) and every other
``rules/evidence/*.yaml`` (entries). An entry is either a statement (a short
verbatim quote that a rule relies on) or a study result (trial, real-world
series) with its population, n and figures. Figures are kept as the strings
the source prints ("34.9m", "not reached", "71 vs 42%"), never re-typed as
numbers, so that the report prints exactly what the source says.

Where two sources, or a table and its own text, disagree, both entries stay
and each names the other under ``conflicts`` (kind ``sources``) with what they
disagree on; the report shows both. Where a source is wrong (or incomplete)
against the trial's publication, the entry keeps the figure exactly as the
source prints it and carries an ``erratum`` conflict: the source's words
(``printed``, verbatim in the quote), what the publication says
(``published``) and the publication (``reference``), which the report labels
as outside the sources and shows beside the figure.

Every entry carries its evidence ``level`` (`LEVEL_LABELS`): how strong the
basis is, from a randomized phase 3 trial to a review's or an expert's
statement. It is written per entry and checked against what the registry says
of the entry (`level_problems`): an entry whose quote says "randomized" is not
a single-arm trial; a randomized phase 3 needs phase III (or an erratum
correcting the phase to 3); a design the source does not state needs a
``design_reference`` (outside the sources).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from cds.datafile import read_yaml
from cds.errors import ReadError, RuleSetError
from cds.model.base import Strict, schema_problems

ID_PATTERN = r"^[A-Z0-9][A-Z0-9._-]*$"

Measure = Literal[
    "orr",
    "cr",
    "scr",
    "vgpr",
    "pr",
    "mrd_negative",
    "median_pfs",
    "median_os",
    "median_dor",
    "pfs_rate",
    "os_rate",
    "dor_rate",
    "efs_rate",
    "crs_any",
    "crs_grade3plus",
    "neurotox_any",
    "neurotox_grade3plus",
    "infusion_reactions",
    "other",
]

MEASURE_LABELS: dict[str, str] = {
    "orr": "ORR",
    "cr": "CR",
    "scr": "sCR",
    "vgpr": "VGPR",
    "pr": "PR",
    "mrd_negative": "MRD-negative",
    "median_pfs": "median PFS",
    "median_os": "median OS",
    "median_dor": "median DoR",
    "pfs_rate": "PFS rate",
    "os_rate": "OS rate",
    "dor_rate": "DoR rate",
    "efs_rate": "EFS rate",
    "crs_any": "CRS (any grade)",
    "crs_grade3plus": "grade >=3 CRS",
    "neurotox_any": "neurotoxicity/ICANS (any grade)",
    "neurotox_grade3plus": "grade >=3 neurotoxicity/ICANS",
    "infusion_reactions": "infusion reactions",
    "other": "other",
}


class Source(Strict):
    id: str = Field(pattern=r"^S\d{3}$")
    file: str = Field(pattern=r"^[0-9]{3}_[0-9a-f]{16}\.txt$")
    title: str = Field(min_length=3)
    citation: str = Field(min_length=3, description="journal reference or publisher as the document gives it")
    kind: Literal["review", "interview", "patient_education", "review_summary"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


#: a cell dose as the extracted sources print it ("450x106": the superscript of 10^6 was lost)
_CELL_DOSE = re.compile(r"(?<=\d)x106\b")


def display_cell_dose(text: str) -> str:
    """'450x106 cells' as the sources print it, shown as '450x10^6 cells' (the quote keeps the source's text)."""
    return _CELL_DOSE.sub("x10^6", text)


class Figure(Strict):
    measure: Measure
    value: str = Field(min_length=1, description="exactly as the source prints it")
    arm: str | None = None
    timepoint: str | None = None
    label: str | None = None

    @field_validator("label")
    @classmethod
    def _label_nonempty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("label must not be blank")
        return v

    def display_measure(self) -> str:
        name = self.label or MEASURE_LABELS[self.measure]
        if self.timepoint:
            name = f"{name} at {self.timepoint}"
        if self.arm:
            name = f"{name} ({self.arm})"
        return display_cell_dose(name)

    def display_value(self) -> str:
        """The value as printed, with a cell dose written 10^6 (the check against the quote uses `value`)."""
        return display_cell_dose(self.value)


# Evidence levels, strongest first (page 1 and the evidence tables print the label).
Level = Literal[
    "randomized_phase3",
    "randomized_phase2",
    "single_arm",
    "subgroup_analysis",
    "indirect_comparison",
    "real_world",
    "translational",
    "regulatory",
    "review_statement",
    "expert_statement",
]

LEVEL_LABELS: dict[str, str] = {
    "randomized_phase3": "randomized phase 3",
    "randomized_phase2": "randomized phase 2",
    "single_arm": "single-arm trial",
    "subgroup_analysis": "subgroup or post-hoc analysis",
    "indirect_comparison": "indirect comparison",
    "real_world": "real-world data",
    "translational": "translational",
    "regulatory": "regulatory",
    "review_statement": "review statement",
    "expert_statement": "expert statement",
}
LEVEL_ORDER: tuple[str, ...] = tuple(LEVEL_LABELS)  # strongest first

# What a conflict is about: a figure (then `measure` says which), or a field of the entry.
ConflictAbout = Literal["figure", "n", "phase", "population", "trial_number", "publication", "statement"]

ABOUT_LABELS: dict[str, str] = {
    "n": "number of patients",
    "phase": "phase",
    "population": "population",
    "trial_number": "trial registry number",
    "publication": "publication",
    "statement": "statement",
}

_ERRATUM_ONLY = ("printed", "published", "reference", "value")


class Conflict(Strict):
    """This entry against another entry (kind ``sources``) or against the trial's publication (kind ``erratum``)."""

    kind: Literal["sources", "erratum"] = "sources"
    with_: str | None = Field(default=None, alias="with", pattern=ID_PATTERN)
    about: ConflictAbout = "figure"
    measure: Measure | None = None
    value: str | None = Field(
        default=None, description="erratum on a figure: its value, when the entry has several of that measure"
    )
    printed: str | None = Field(default=None, min_length=1, description="erratum: the source's words, verbatim in the quote")
    published: str | None = Field(default=None, min_length=1, description="erratum: what the trial's publication says")
    reference: str | None = Field(default=None, min_length=10, description="erratum: the publication (outside the sources)")
    certain: bool = Field(default=True, description="erratum: False when the correction is probable, not confirmed")
    preferred: str | None = Field(default=None, pattern=ID_PATTERN, description="sources: the entry whose reading is preferred")
    note: str = Field(min_length=3)

    @model_validator(mode="after")
    def _shape(self) -> Conflict:
        if self.about == "figure" and self.measure is None:
            raise ValueError("a conflict about a figure names its measure")
        if self.about != "figure" and self.measure is not None:
            raise ValueError(f"'measure' is for a conflict about a figure, not about {self.about}")
        if self.kind == "sources":
            if self.with_ is None:
                raise ValueError("a conflict between sources names the other entry ('with')")
            given = [name for name in _ERRATUM_ONLY if getattr(self, name) is not None]
            if given or not self.certain:
                raise ValueError(f"{', '.join(given) or 'certain'}: only an erratum has these")
        else:
            if self.with_ is not None:
                raise ValueError("an erratum is against the trial's publication, not another entry: no 'with'")
            missing = [name for name in ("printed", "published", "reference") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"an erratum needs {', '.join(missing)}")
            if self.preferred is not None:
                raise ValueError("'preferred' is for a conflict between sources")
            if self.value is not None and self.about != "figure":
                raise ValueError("'value' names a figure: only for an erratum about a figure")
        return self

    def label(self) -> str:
        """What the conflict is about, in words: 'median PFS', 'phase', 'number of patients'."""
        return MEASURE_LABELS[self.measure] if self.measure is not None else ABOUT_LABELS[self.about]


class EvidenceEntry(Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["statement", "trial", "real_world", "regulatory"]
    level: Level
    design_reference: str | None = Field(
        default=None, min_length=10, description="outside the sources: the publication stating a design the source does not"
    )
    title: str = Field(min_length=3)
    source: str = Field(description="source document file name, as in sources.yaml")
    location: str | None = None
    quote: str = Field(min_length=10, max_length=900)
    trial: str | None = None
    agent: str | None = None
    publication: str | None = None
    population: str | None = None
    n: int | None = Field(default=None, ge=1)
    phase: str | None = None
    figures: list[Figure] = []
    conflicts: list[Conflict] = []
    note: str | None = None

    @property
    def errata(self) -> list[Conflict]:
        """Where the source is wrong against the trial's publication (outside the sources)."""
        return [c for c in self.conflicts if c.kind == "erratum"]

    @property
    def level_label(self) -> str:
        """The evidence level in words: 'randomized phase 3', 'single-arm trial', 'review statement'."""
        return LEVEL_LABELS[self.level]

    def published_phase(self) -> str | None:
        """The phase an erratum gives (the trial's publication), else the phase as printed."""
        corrected = next((c.published for c in self.errata if c.about == "phase"), None)
        return corrected or self.phase

    def field_value(self, about: str) -> str | None:
        """The entry's own text for what an erratum is about (None: the entry does not give it)."""
        value = {"n": self.n, "phase": self.phase, "population": self.population, "publication": self.publication}.get(about)
        return None if value is None else str(value)


@dataclass(frozen=True)
class Registry:
    sources: dict[str, Source]  # by file name
    entries: dict[str, EvidenceEntry]  # by id, in file order
    entry_files: dict[str, str]  # id -> file it was defined in

    def get(self, entry_id: str) -> EvidenceEntry:
        return self.entries[entry_id]

    def source_for(self, entry: EvidenceEntry) -> Source:
        return self.sources[entry.source]


def _load_yaml(path: Path) -> object:
    try:
        return read_yaml(path)
    except ReadError as exc:
        raise RuleSetError([f"evidence/{path.name}: {exc.problem}"]) from None


def load_registry(evidence_dir: Path) -> Registry:
    """Load and schema-validate the registry. Cross-checks live in rulecheck."""
    from cds.knowledge.rulefiles import EvidenceFile, SourcesFile  # the files' formats: only a load from the YAML needs them

    problems: list[str] = []
    sources_path = evidence_dir / "sources.yaml"
    if not sources_path.is_file():
        raise RuleSetError([f"{sources_path}: missing (the evidence registry needs its source list)"])
    raw = _load_yaml(sources_path)
    try:
        sources_file = SourcesFile.model_validate(raw)
    except ValidationError as exc:
        raise RuleSetError(schema_problems(exc, raw, "evidence/sources.yaml", "sources", "source")) from None
    sources = {s.file: s for s in sources_file.sources}

    entries: dict[str, EvidenceEntry] = {}
    entry_files: dict[str, str] = {}
    for path in sorted(evidence_dir.glob("*.yaml")):
        if path.name == "sources.yaml":
            continue
        raw = _load_yaml(path)
        try:
            ef = EvidenceFile.model_validate(raw)
        except ValidationError as exc:
            problems.extend(schema_problems(exc, raw, f"evidence/{path.name}", "entries", "entry"))
            continue
        for entry in ef.entries:
            if entry.id in entries:
                problems.append(f"evidence/{path.name} [{entry.id}]: duplicate evidence ID (also in {entry_files[entry.id]})")
                continue
            if entry.source not in sources:
                problems.append(f"evidence/{path.name} [{entry.id}] source: unknown source file {entry.source!r}")
            entries[entry.id] = entry
            entry_files[entry.id] = f"evidence/{path.name}"
    for eid, entry in entries.items():
        problems.extend(f"{entry_files[eid]} [{eid}] conflicts: {p}" for p in conflict_problems(entry, entries))
        if entry.source in sources:
            problems.extend(f"{entry_files[eid]} [{eid}] level: {p}" for p in level_problems(entry, sources[entry.source]))
    if problems:
        raise RuleSetError(problems)
    return Registry(sources=sources, entries=entries, entry_files=entry_files)


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Collapse whitespace so that quotes survive the sources' line breaks."""
    return _WS.sub(" ", text).strip()


def reciprocal(entry: EvidenceEntry, c: Conflict, other: EvidenceEntry) -> Conflict | None:
    """`other`'s conflict record that answers `entry`'s record `c` (same subject), if any."""
    for k in other.conflicts:
        if k.kind == "sources" and k.with_ == entry.id and k.about == c.about and k.measure == c.measure:
            return k
    return None


_LEVELS_BY_KIND: dict[str, tuple[str, ...]] = {
    "statement": ("review_statement", "expert_statement", "translational"),
    "regulatory": ("regulatory",),
    "real_world": ("real_world", "translational", "review_statement"),
    "trial": (
        "randomized_phase3",
        "randomized_phase2",
        "single_arm",
        "subgroup_analysis",
        "indirect_comparison",
        "translational",
        "review_statement",
        "expert_statement",
    ),
}
_RANDOMIZED = re.compile(r"\brandom", re.IGNORECASE)
_POST_HOC = re.compile(r"\bpost-hoc\b", re.IGNORECASE)
_INDIRECT = re.compile(r"\bmatching-\s?adjusted\b", re.IGNORECASE)
_REAL_WORLD = re.compile(r"\breal[- ]world\b|\bretrospective\b|\bobservational\b", re.IGNORECASE)
_PHASE = {"3": ("III", "3"), "2": ("II", "2")}
_SOURCE_KIND = {
    "review": "a review",
    "interview": "an interview",
    "patient_education": "patient information",
    "review_summary": "a review summary",
}


def _phase_is(phase: str | None, number: str) -> bool:
    if phase is None:
        return False
    words = phase.replace("phase", "").strip().upper()
    return words in _PHASE[number]


def level_problems(entry: EvidenceEntry, source: Source) -> list[str]:
    """Where an entry's level contradicts what the registry says of it (one line each; empty when consistent).

    The level is written per entry; this derives what the quote, the phase, the kind and the
    source document allow: a randomized design only where the quote says so (or a
    ``design_reference`` outside the sources does), the phase of a randomized trial from the
    phase as printed or as an erratum corrects it, real-world data where the source says
    real-world, retrospective or observational, an expert's statement only from an interview.
    """
    problems = []
    level, quote = entry.level, normalize_text(entry.quote)
    allowed = _LEVELS_BY_KIND[entry.kind]
    if level not in allowed:
        problems.append(f"{LEVEL_LABELS[level]!r} is not a level for a {entry.kind} entry ({', '.join(allowed)})")
    randomized_text = bool(_RANDOMIZED.search(quote))
    if randomized_text and level not in ("randomized_phase3", "randomized_phase2", "subgroup_analysis"):
        problems.append(f"the quote says randomized, so it is not {LEVEL_LABELS[level]!r}")
    if level in ("randomized_phase3", "randomized_phase2"):
        if not randomized_text and entry.design_reference is None:
            problems.append("randomized: the quote does not say so (give a design_reference, outside the sources)")
        number = "3" if level == "randomized_phase3" else "2"
        if not _phase_is(entry.published_phase(), number) and entry.design_reference is None:
            problems.append(f"{LEVEL_LABELS[level]}: the phase is {entry.published_phase() or 'not given'}")
    if level == "single_arm" and entry.phase is None and entry.n is None and entry.design_reference is None:
        problems.append("single-arm trial: the entry gives no phase or n (give a design_reference, outside the sources)")
    if _POST_HOC.search(quote) and level != "subgroup_analysis":
        problems.append("the quote says post-hoc: the level is subgroup_analysis")
    if _INDIRECT.search(quote) and level != "indirect_comparison":
        problems.append("the quote describes a matching-adjusted comparison: the level is indirect_comparison")
    if _REAL_WORLD.search(quote) and entry.kind != "statement" and level not in ("real_world", "translational"):
        problems.append(f"the quote describes real-world or retrospective data, not {LEVEL_LABELS[level]!r}")
    if level == "real_world" and entry.kind != "real_world":
        problems.append("real-world data: the entry's kind is real_world")
    if entry.kind == "statement" and source.kind == "interview" and level != "expert_statement":
        problems.append("a statement from an interview is an expert statement")
    if level == "expert_statement" and source.kind != "interview":
        problems.append(f"an expert statement comes from an interview; {source.id} is {_SOURCE_KIND[source.kind]}")
    if level == "review_statement" and source.kind not in ("review", "review_summary"):
        problems.append(f"a review statement comes from a review; {source.id} is {_SOURCE_KIND[source.kind]}")
    return problems


def conflict_problems(entry: EvidenceEntry, entries: dict[str, EvidenceEntry]) -> list[str]:
    """What is wrong with an entry's conflicts: unknown or one-sided links, an erratum on nothing the entry says."""
    problems = []
    quote = normalize_text(entry.quote)
    for c in entry.conflicts:
        if c.kind == "sources":
            assert c.with_ is not None  # the model says so
            other = entries.get(c.with_)
            if other is None:
                problems.append(f"unknown evidence ID {c.with_!r}")
                continue
            back = reciprocal(entry, c, other)
            if back is None:
                problems.append(f"{c.with_} does not link back (a conflict with {entry.id} about {c.label()})")
            elif back.preferred != c.preferred:
                problems.append(
                    f"{c.with_} prefers {back.preferred or 'neither'} on {c.label()}, this entry {c.preferred or 'neither'}"
                )
            if c.preferred is not None and c.preferred not in (entry.id, c.with_):
                problems.append(f"preferred {c.preferred!r} is neither side of the conflict")
            continue
        assert c.printed is not None  # an erratum has it (the model says so)
        if normalize_text(c.printed) not in quote:
            problems.append(f"erratum: printed {c.printed!r} is not in the entry's quote")
        if c.about == "figure":
            figs = [f for f in entry.figures if f.measure == c.measure and (c.value is None or f.value == c.value)]
            if not figs:
                problems.append(f"erratum: the entry has no {c.label()} figure{f' {c.value!r}' if c.value else ''}")
        elif c.about in ("n", "phase", "population", "publication") and entry.field_value(c.about) is None:
            problems.append(f"erratum about {c.about}: the entry gives no {c.about}")
    return problems


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def numbers_in(text: str) -> list[str]:
    return _NUMBER.findall(text)


def verify_against_sources(registry: Registry, seeds_dir: Path) -> list[str]:
    """Check every quote is verbatim in its source and every figure's numbers are in its quote.

    Returns one problem line per mismatch (empty when all is well).
    """
    import hashlib

    problems: list[str] = []
    texts: dict[str, str] = {}
    for fname, src in registry.sources.items():
        path = seeds_dir / fname
        if not path.is_file():
            problems.append(f"evidence/sources.yaml [{src.id}]: source file {fname} not found in {seeds_dir}")
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != src.sha256:
            problems.append(f"evidence/sources.yaml [{src.id}]: {fname} has changed (sha256 {digest})")
        texts[fname] = normalize_text(data.decode("utf-8"))
    for eid, entry in registry.entries.items():
        where = f"{registry.entry_files[eid]} [{eid}]"
        text = texts.get(entry.source)
        if text is None:
            continue
        quote = normalize_text(entry.quote)
        if quote not in text:
            problems.append(f"{where} quote: not found verbatim in {entry.source}")
        lowered = quote.lower()
        quote_numbers = set(numbers_in(quote))
        for fig in entry.figures:
            for num in numbers_in(fig.value):
                if num not in quote_numbers:
                    problems.append(f"{where} figure {fig.measure}={fig.value!r}: {num} is not in the quote")
            if not numbers_in(fig.value) and fig.value.lower() not in lowered:
                problems.append(f"{where} figure {fig.measure}={fig.value!r}: text not in the quote")
    return problems
