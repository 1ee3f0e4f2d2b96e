"""Drug vocabulary: names, brands and abbreviations -> generic drug, class and target.

Loaded from ``rules/catalog/drugs.yaml``. Lookup is case-insensitive and
ignores surrounding whitespace. Regimen labels ("KRd", "DPd") are known too,
so that listing one as an agent gets an error naming its agents instead of
"unknown drug".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cds.errors import RuleSetError
from cds.resources import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DrugSpec(_Strict):
    name: str = Field(min_length=2)
    drug_class: str = Field(alias="class")
    target: str | list[str] | None = None
    aliases: list[str] = []
    rxnorm: list[Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]] = []  # RxNorm codes (FHIR import), verified only


class SupportiveSpec(_Strict):
    """A drug given with myeloma therapy that is not part of a regimen (FHIR import lists it as such)."""

    name: str = Field(min_length=2)
    category: str = Field(min_length=2)
    aliases: list[str] = []


class VocabularyFile(_Strict):
    classes: dict[str, str]
    drugs: list[DrugSpec]
    regimens: dict[str, list[str]]
    supportive: list[SupportiveSpec] = []


@dataclass(frozen=True)
class Drug:
    name: str
    drug_class: str
    targets: tuple[str, ...]

    @property
    def is_bcma_directed(self) -> bool:
        return "BCMA" in self.targets

    @property
    def is_gprc5d_directed(self) -> bool:
        return "GPRC5D" in self.targets


def _key(text: str) -> str:
    return " ".join(text.strip().lower().split())


class Vocabulary:
    def __init__(self, spec: VocabularyFile):
        self.classes = dict(spec.classes)
        self._by_key: dict[str, Drug] = {}
        self._memo: dict[str, Drug | None] = {}  # raw name as written -> drug (lookup is on every evaluation's hot path)
        self._regimens = {_key(k): (k, v) for k, v in spec.regimens.items()}
        self._by_rxnorm: dict[str, Drug] = {}
        self._supportive: dict[str, tuple[str, str]] = {}  # key -> (name, category)
        problems = []
        for d in spec.drugs:
            if d.drug_class not in self.classes:
                problems.append(f"catalog/drugs.yaml [{d.name}] class: unknown class {d.drug_class!r}")
            targets = tuple(d.target) if isinstance(d.target, list) else ((d.target,) if d.target else ())
            drug = Drug(name=d.name, drug_class=d.drug_class, targets=targets)
            for alias in [d.name, *d.aliases]:
                k = _key(alias)
                if k in self._by_key and self._by_key[k].name != d.name:
                    problems.append(f"catalog/drugs.yaml [{d.name}] aliases: {alias!r} already names {self._by_key[k].name}")
                self._by_key[k] = drug
            for code in d.rxnorm:
                if code in self._by_rxnorm and self._by_rxnorm[code].name != d.name:
                    problems.append(f"catalog/drugs.yaml [{d.name}] rxnorm: {code} already names {self._by_rxnorm[code].name}")
                self._by_rxnorm[code] = drug
        for sup in spec.supportive:
            for alias in [sup.name, *sup.aliases]:
                k = _key(alias)
                if k in self._by_key:
                    problems.append(
                        f"catalog/drugs.yaml supportive [{sup.name}]: {alias!r} is also a myeloma drug ({self._by_key[k].name})"
                    )
                self._supportive[k] = (sup.name, sup.category)
        for label, (orig, agents) in self._regimens.items():
            for a in agents:
                if _key(a) not in self._by_key:
                    problems.append(f"catalog/drugs.yaml regimens.{orig}: unknown agent {a!r}")
            if label in self._by_key:
                problems.append(f"catalog/drugs.yaml regimens.{orig}: label is also a drug name")
        if problems:
            raise RuleSetError(problems)
        self.drugs: tuple[Drug, ...] = tuple(sorted({d.name: d for d in self._by_key.values()}.values(), key=lambda d: d.name))

    def lookup(self, name: str) -> Drug | None:
        try:
            return self._memo[name]
        except KeyError:
            drug = self._memo[name] = self._by_key.get(_key(name))
            if len(self._memo) > 10_000:  # bounded: arbitrary input cannot grow it without limit
                self._memo.clear()
            return drug

    def by_rxnorm(self, code: str) -> Drug | None:
        """The drug an RxNorm code names (only codes listed in the vocabulary)."""
        return self._by_rxnorm.get(code.strip())

    def supportive(self, name: str) -> tuple[str, str] | None:
        """(name, category) of a supportive drug (antiviral, G-CSF, IVIG, ...), or None."""
        return self._supportive.get(_key(name))

    def regimen_items(self) -> list[tuple[str, list[str]]]:
        """Every regimen label with its agents, in the catalogue's order."""
        return list(self._regimens.values())

    def regimen(self, name: str) -> tuple[str, list[str]] | None:
        return self._regimens.get(_key(name))

    def suggestions(self, name: str, n: int = 3) -> list[str]:
        matches = difflib.get_close_matches(_key(name), list(self._by_key), n=n * 2, cutoff=0.6)
        out: list[str] = []
        for m in matches:
            label = self._by_key[m].name if m == _key(self._by_key[m].name) else f"{m} ({self._by_key[m].name})"
            if label not in out:
                out.append(label)
        return out[:n]

    def names(self) -> list[str]:
        return sorted(self._by_key)


def load_vocabulary(path: Path) -> Vocabulary:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RuleSetError([f"catalog/drugs.yaml: cannot be read: {exc}"]) from None
    try:
        spec = VocabularyFile.model_validate(raw)
    except ValidationError as exc:
        raise RuleSetError([f"catalog/drugs.yaml {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from None
    return Vocabulary(spec)
