"""The evidence registry: every source a rule cites, with figures exactly as given.

Files: ``rules/evidence/sources.yaml`` (the source documents) and every other
``rules/evidence/*.yaml`` (entries). An entry is either a statement (a short
verbatim quote that a rule relies on) or a study result (trial, real-world
series) with its population, n and figures. Figures are kept as the strings
the source prints ("34.9m", "not reached", "71 vs 42%"), never re-typed as
numbers, so that the report prints exactly what the source says.

Where two sources, or a table and its own text, disagree, both entries stay
and each names the other under ``conflicts`` with the measure concerned; the
report shows both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

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
        return name


class Conflict(Strict):
    with_: str = Field(alias="with", pattern=ID_PATTERN)
    measure: Measure
    note: str = Field(min_length=3)


class EvidenceEntry(Strict):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["statement", "trial", "real_world", "regulatory"]
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


class _EvidenceFile(Strict):
    entries: list[EvidenceEntry]


class _SourcesFile(Strict):
    sources: list[Source]


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
    problems: list[str] = []
    sources_path = evidence_dir / "sources.yaml"
    if not sources_path.is_file():
        raise RuleSetError([f"{sources_path}: missing (the evidence registry needs its source list)"])
    raw = _load_yaml(sources_path)
    try:
        sources_file = _SourcesFile.model_validate(raw)
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
            ef = _EvidenceFile.model_validate(raw)
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
        for c in entry.conflicts:
            other = entries.get(c.with_)
            if other is None:
                problems.append(f"{entry_files[eid]} [{eid}] conflicts: unknown evidence ID {c.with_!r}")
            elif not any(k.with_ == eid for k in other.conflicts):
                problems.append(f"{entry_files[eid]} [{eid}] conflicts: {c.with_} does not link back")
    if problems:
        raise RuleSetError(problems)
    return Registry(sources=sources, entries=entries, entry_files=entry_files)


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Collapse whitespace so that quotes survive the sources' line breaks."""
    return _WS.sub(" ", text).strip()


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
