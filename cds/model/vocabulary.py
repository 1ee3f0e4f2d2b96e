"""The clinical vocabulary: drugs, regimen labels and cytogenetic abnormalities.

Loaded from ``rules/catalog/``: ``drugs.yaml`` (names, brands and
abbreviations -> generic drug, class and target), ``regimens.yaml`` (regimen
labels -> their agents) and ``cytogenetics.yaml`` (the abnormalities a profile
can list, their engine facts and whether the sources count them high-risk).

Drug lookup is case-insensitive and ignores surrounding whitespace. What
people write after a drug name that does not change the drug -- a route
("Darzalex SC", "bortezomib IV"), a dose ("Revlimid 25mg"), "maintenance", or
a US biologic suffix ("teclistamab-cqyv") -- is accepted and dropped, and the
resolution says what was dropped so that the report can show it. Regimen
labels ("KRd", "Dara-VRd") match ignoring case, spaces and hyphens.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError

from cds.datafile import RULE_FILE_LIMIT, parse_yaml, read_capped
from cds.errors import ReadError, RuleSetError
from cds.model.base import Strict, schema_problems
from cds.usercache import cached

Target = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,19}$")]


class DrugSpec(Strict):
    name: str = Field(min_length=2)
    drug_class: str = Field(alias="class")
    target: Target | list[Target] | None = None
    aliases: list[str] = Field(default_factory=list)
    rxnorm: list[Annotated[str, Field(pattern=r"^[0-9]{1,10}$")]] = Field(
        default_factory=list
    )  # RxNorm codes (FHIR import), verified only


class SupportiveSpec(Strict):
    """A drug given with myeloma therapy that is not part of a regimen (FHIR import lists it as such)."""

    name: str = Field(min_length=2)
    category: str = Field(min_length=2)
    aliases: list[str] = Field(default_factory=list)


class VocabularyFile(Strict):
    classes: dict[str, str]
    drugs: list[DrugSpec]
    supportive: list[SupportiveSpec] = Field(default_factory=list)


class RegimenSpec(Strict):
    label: str = Field(min_length=1, max_length=40)
    aliases: list[str] = Field(default_factory=list)
    agents: list[str] = Field(min_length=1)


class RegimensFile(Strict):
    regimens: list[RegimenSpec]


class CytogeneticSpec(Strict):
    name: str = Field(min_length=3, max_length=30)
    fact: str = Field(pattern=r"^cyto_[a-z0-9_]+$")
    high_risk: bool | Literal["unclassified"]  # unclassified: the sources do not classify it
    probe: str | None = Field(default=None, min_length=1, max_length=30)  # one probe detecting several (1q)
    basis: str = Field(min_length=10)
    typos: list[str] = Field(default_factory=list)


class CytogeneticsFile(Strict):
    abnormalities: list[CytogeneticSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Drug:
    name: str
    drug_class: str
    targets: tuple[str, ...]
    investigational: bool = False


@dataclass(frozen=True)
class Resolution:
    """How a name as written was read: the drug, and what was dropped from the text ('' if nothing)."""

    written: str
    drug: Drug
    dropped: str = ""


@dataclass(frozen=True)
class Regimen:
    label: str
    agents: tuple[str, ...]  # generic names


@dataclass(frozen=True)
class Cytogenetic:
    name: str
    fact: str
    high_risk: bool | str  # True, False or "unclassified" (the sources do not classify it)
    basis: str
    typos: tuple[str, ...]
    probe: str = ""  # the FISH probe that detects it (its own name unless the catalogue says otherwise)


def _key(text: str) -> str:
    return " ".join(text.strip().lower().split())


def _label_key(text: str) -> str:
    return re.sub(r"[\s_-]+", "", text.strip().lower())


def _cyto_key(text: str) -> str:
    return re.sub(r"[\s()_,;:.-]+", "", text.strip().lower())


# What may follow a drug name without changing the drug: a route, a dose, a schedule word.
_ROUTE = r"(?:s\.?c\.?|subq|sub-?cut(?:aneous)?|subcutaneous(?:ly)?|i\.?v\.?|intravenous(?:ly)?|p\.?o\.?|oral(?:ly)?|i\.?m\.?)"
_DOSE = r"(?:\d+(?:[.,]\d+)?\s*(?:mg|g|mcg|µg|ug|mg/m2|mg/m²|mg/kg|mg/d|mg/day)?(?:/(?:day|d|week|wk|m2|m²|kg))?)"
_UNIT = r"(?:mg|g|mcg|µg|ug|mg/m2|mg/m²|mg/kg)"
_SCHEDULE = r"(?:maintenance|weekly|daily|biweekly|monthly|continuous|x\d+)"
_DROPPABLE = re.compile(rf"^(?:{_ROUTE}|{_DOSE}|{_UNIT}|{_SCHEDULE}|\((?:{_ROUTE}|{_DOSE}|{_SCHEDULE})\))$", re.IGNORECASE)
_US_SUFFIX = re.compile(r"^(?P<base>.+?)-(?P<suffix>[a-z]{4})$")  # FDA biologic suffix: teclistamab-cqyv


class Vocabulary:
    def __init__(
        self,
        spec: VocabularyFile,
        regimens: RegimensFile | None = None,
        cytogenetics: CytogeneticsFile | None = None,
    ):
        self.classes = dict(spec.classes)
        self._by_key: dict[str, Drug] = {}
        self._memo: dict[str, Resolution | None] = {}  # raw name as written -> resolution (hot path of every evaluation)
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
        self.drugs: tuple[Drug, ...] = tuple(sorted({d.name: d for d in self._by_key.values()}.values(), key=lambda d: d.name))
        # the target every drug of a class shares (an investigational agent of that class gets it)
        self.class_targets: dict[str, tuple[str, ...]] = {}
        for cls in self.classes:
            members = [set(d.targets) for d in self.drugs if d.drug_class == cls]
            common = set.intersection(*members) if members else set()
            self.class_targets[cls] = tuple(sorted(common))

        self._regimens: dict[str, Regimen] = {}
        for r in regimens.regimens if regimens is not None else ():
            agents = []
            for a in r.agents:
                member = self._by_key.get(_key(a))
                if member is None:
                    problems.append(f"catalog/regimens.yaml [{r.label}] agents: unknown agent {a!r}")
                else:
                    agents.append(member.name)
            regimen = Regimen(r.label, tuple(agents))
            for name in (r.label, *r.aliases):
                k = _label_key(name)
                if k in self._regimens:
                    problems.append(f"catalog/regimens.yaml [{r.label}]: {name!r} is also {self._regimens[k].label}")
                if _key(name) in self._by_key:
                    problems.append(f"catalog/regimens.yaml [{r.label}]: {name!r} is also a drug name")
                self._regimens[k] = regimen

        self.cytogenetics: tuple[Cytogenetic, ...] = tuple(
            Cytogenetic(c.name, c.fact, c.high_risk, " ".join(c.basis.split()), tuple(c.typos), c.probe or c.name)
            for c in (cytogenetics.abnormalities if cytogenetics is not None else ())
        )
        self._cyto_by_key: dict[str, str] = {}
        self._cyto_typos: dict[str, str] = {}
        for c in self.cytogenetics:
            if c.name.lower() in self._cyto_by_key:
                problems.append(f"catalog/cytogenetics.yaml [{c.name}]: listed twice")
            self._cyto_by_key[c.name.lower()] = c.name
            for t in (c.name, *c.typos):
                k = _cyto_key(t)
                if self._cyto_typos.get(k, c.name) != c.name:
                    problems.append(f"catalog/cytogenetics.yaml [{c.name}] typos: {t!r} also suggests {self._cyto_typos[k]}")
                self._cyto_typos[k] = c.name
        # what every evaluation with cytogenetics asks (`cds.model.facts`), worked out once
        self._cyto_names = tuple(c.name for c in self.cytogenetics)
        self._cyto_panel = frozenset(self._cyto_names)
        self._high_risk = tuple(c.name for c in self.cytogenetics if c.high_risk is True)
        self._unclassified = tuple(c.name for c in self.cytogenetics if c.high_risk == "unclassified")
        if len({c.fact for c in self.cytogenetics}) != len(self.cytogenetics):
            problems.append("catalog/cytogenetics.yaml: two abnormalities share a fact name")
        if problems:
            raise RuleSetError(problems)

    # --------------------------------------------------------------------------- drugs

    def resolve(self, name: str) -> Resolution | None:
        """The drug a name as written stands for, and what was dropped to find it; None if unknown."""
        try:
            return self._memo[name]
        except KeyError:
            pass
        found = self._resolve(name)
        if len(self._memo) > 10_000:  # bounded: arbitrary input cannot grow it without limit
            self._memo.clear()
        self._memo[name] = found
        return found

    def by_rxnorm(self, code: str) -> Drug | None:
        """The drug an RxNorm code names (only codes listed in the vocabulary)."""
        return self._by_rxnorm.get(code.strip())

    def supportive(self, name: str) -> tuple[str, str] | None:
        """(name, category) of a supportive drug (antiviral, G-CSF, IVIG, ...), or None."""
        return self._supportive.get(_key(name))

    def _resolve(self, name: str) -> Resolution | None:
        key = _key(name)
        drug = self._by_key.get(key)
        if drug is not None:
            return Resolution(name, drug)
        words = key.split(" ")
        dropped: list[str] = []
        while len(words) > 1 and _DROPPABLE.match(words[-1]):
            dropped.insert(0, words.pop())
            drug = self._by_key.get(" ".join(words))
            if drug is not None:
                return Resolution(name, drug, " ".join(name.split()[len(words) :]))
        m = _US_SUFFIX.match(" ".join(words))
        if m and m.group("base") in self._by_key:
            drug = self._by_key[m.group("base")]
            tail = " ".join(name.split()[len(words) :])
            return Resolution(name, drug, ("-" + m.group("suffix") + (" " + tail if tail else "")).strip())
        return None

    def lookup(self, name: str) -> Drug | None:
        found = self.resolve(name)
        return found.drug if found is not None else None

    def investigational(self, name: str, drug_class: str, target: tuple[str, ...] | None) -> Drug:
        """The drug an investigational-agent entry stands for (its class checked by the caller)."""
        targets = target if target else self.class_targets.get(drug_class, ())
        return Drug(name=f"{name} (investigational)", drug_class=drug_class, targets=tuple(targets), investigational=True)

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

    # --------------------------------------------------------------------------- regimens

    def regimen(self, name: str) -> Regimen | None:
        """The known regimen a label names (ignoring case, spaces and hyphens), or None for free text."""
        return self._regimens.get(_label_key(name))

    def regimen_labels(self) -> list[Regimen]:
        """Every known regimen once, in the catalogue's order."""
        return list({r.label: r for r in self._regimens.values()}.values())

    def regimen_items(self) -> list[tuple[str, list[str]]]:
        """Every regimen label with its agents (generic names), in the catalogue's order."""
        return [(r.label, list(r.agents)) for r in self.regimen_labels()]

    # --------------------------------------------------------------------------- cytogenetics

    def cytogenetic(self, name: str) -> str | None:
        """The catalogue's spelling of an abnormality (case-insensitive), or None."""
        return self._cyto_by_key.get(name.strip().lower())

    def cytogenetic_suggestions(self, name: str) -> list[str]:
        k = _cyto_key(name)
        if k in self._cyto_typos:
            return [self._cyto_typos[k]]
        matches = difflib.get_close_matches(k, list(self._cyto_typos), n=6, cutoff=0.7)
        return list(dict.fromkeys(self._cyto_typos[m] for m in matches))[:3]

    @property
    def cytogenetic_names(self) -> tuple[str, ...]:
        return self._cyto_names

    @property
    def high_risk_cytogenetics(self) -> tuple[str, ...]:
        return self._high_risk

    @property
    def unclassified_cytogenetics(self) -> tuple[str, ...]:
        """Abnormalities the sources do not classify (t(14;20)): with one, the risk is unknown."""
        return self._unclassified

    def cytogenetics_tested(self, found: list[str], tested: list[str] | None) -> frozenset[str]:
        """The abnormalities a profile's result speaks for: every one when `tested` is None (the whole
        panel, the meaning of `cytogenetics` alone), else those sharing a probe with one tested or found."""
        if tested is None:
            return self._cyto_panel
        probes = {c.probe for c in self.cytogenetics if c.name in set(found) | set(tested)}
        return frozenset(c.name for c in self.cytogenetics if c.probe in probes)


_File = TypeVar("_File", bound=Strict)


def _read(path: Path, label: str, model: type[_File]) -> _File:
    try:
        data = read_capped(path, RULE_FILE_LIMIT, "a rule-folder file")
    except ReadError as exc:
        raise RuleSetError([f"{label}: {exc.problem}"]) from None
    return _validated(data, label, model)


def _validated(data: bytes, label: str, model: type[_File]) -> _File:
    try:
        raw = parse_yaml(data)
    except ReadError as exc:
        raise RuleSetError([f"{label}: {exc.problem}"]) from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RuleSetError(schema_problems(exc, raw, label)) from None


_CYTOGENETICS_FORMAT = "cds-cytogenetics/1"


def read_cytogenetics(path: Path) -> CytogeneticsFile:
    """The cytogenetics catalogue, validated; a file validated before comes from this user's cache.

    Every process reads the packaged one (the fact catalogue is built from it, `cds.model.facts`),
    so the validated catalogue is kept (`cds.usercache.cached`, folder ``cytogenetics``) under
    a key over the file's bytes and `cds.usercache.code_fingerprint` (the cds sources, the versions
    of PyYAML, pydantic and Python): the same bytes, read and validated by the same code, give the
    same catalogue. A file with a problem is never kept.
    """
    label = "catalog/cytogenetics.yaml"
    try:
        data = read_capped(path, RULE_FILE_LIMIT, "a rule-folder file")
    except ReadError as exc:
        raise RuleSetError([f"{label}: {exc.problem}"]) from None
    return cached("cytogenetics", _CYTOGENETICS_FORMAT, data, CytogeneticsFile, lambda: _validated(data, label, CytogeneticsFile))


def load_vocabulary(path: Path) -> Vocabulary:
    """The vocabulary of a catalogue folder, from the path of its ``drugs.yaml`` (with ``regimens.yaml``
    and ``cytogenetics.yaml`` beside it)."""
    spec = _read(path, "catalog/drugs.yaml", VocabularyFile)
    regimens = _read(path.with_name("regimens.yaml"), "catalog/regimens.yaml", RegimensFile)
    cyto = read_cytogenetics(path.with_name("cytogenetics.yaml"))
    return Vocabulary(spec, regimens, cyto)
