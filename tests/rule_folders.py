"""Generated rule folders for the capacity tests and the benchmark: the real rules grown k-fold.

`grow(dst, factor)` writes a copy of rules/ with ``factor - 1`` extra copies of every family
file under a new family name, family code and rule IDs (``CAUT-CART-001`` -> ``CAUTB-CART-001``; `copy_codes`),
same options, citations and fixtures (inline, or in ``tests/<family>.yaml`` keyed by rule ID). Every second copy has its thresholds shifted so that its
conditions differ from the original's while every fixture still holds: on an integer fact the
comparison is rewritten to an equivalent one with another operator (``ecog >= 3`` -> ``ecog > 2``),
on a number it moves 0.005 (``crp_mg_l >= 50`` -> ``crp_mg_l >= 49.995``,
``creatinine_clearance_ml_min < 30`` -> ``... < 29.995``: less than the finest step a boundary fixture
takes, 0.01, e.g. neutrophils 0.99 against ``< 1.0``), named settings written out as numbers.

``python tests/rule_folders.py DST FACTOR`` writes one from the command line.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"

_COMPARISON = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")
# (integer fact: equivalent operator and literal) / (number: literal moved 0.005)
_INTEGER = {">=": (">", -1), ">": (">=", 1), "<=": ("<", 1), "<": ("<=", -1)}
_NUMBER = {">=": -0.005, ">": 0.005, "<=": 0.005, "<": -0.005}


def _fact_types() -> dict[str, str]:
    from cds.model.facts import FACTS

    return {name: spec.type for name, spec in FACTS.items()}


def _shift(text: str, settings: dict, types: dict[str, str]) -> str:
    m = _COMPARISON.match(text)
    if not m:
        return text
    fact, op, raw = m.groups()
    value = settings[raw[1:]]["value"] if raw.startswith("$") else yaml.safe_load(raw)
    if types.get(fact) == "int":
        new_op, delta = _INTEGER[op]
        return f"{fact} {new_op} {int(value) + delta}"
    return f"{fact} {op} {float(value) + _NUMBER[op]}"


def _shift_condition(when: object, settings: dict, types: dict[str, str]) -> object:
    if isinstance(when, str):
        return _shift(when, settings, types)
    if isinstance(when, dict):
        return {k: [_shift_condition(item, settings, types) for item in v] for k, v in when.items()}
    return when


def _letter(copy: int) -> str:
    return chr(ord("A") + copy)  # copy 1 -> B, ..., 9 -> J


def copy_codes(factor: int, src: Path = RULES) -> dict[str, list[str]]:
    """Family code -> the family codes of its copies 1 .. factor-1 (``ELIG`` -> ``ELIGB``, ``ELIGC``, ...).

    A code is 2-6 capital letters, so a six-letter code loses its last letter (``COURSE`` -> ``COURSB``);
    where that meets an original code or another copy's (``COURSE`` + ``E``), the next of a few other
    spellings is taken (``COURQE``). Every code in the grown folder is distinct.
    """
    codes = [yaml.safe_load(p.read_text(encoding="utf-8"))["code"] for p in sorted(src.glob("*.yaml"))]
    used = set(codes)
    out: dict[str, list[str]] = {}
    for code in codes:
        out[code] = []
        for copy in range(1, factor):
            letter = _letter(copy)
            for new in (code[:5] + letter, code[:4] + "Q" + letter, code[:4] + "X" + letter, code[:3] + "QX" + letter):
                if new not in used:
                    break
            else:
                raise ValueError(f"no free family code for copy {copy} of {code}")
            used.add(new)
            out[code].append(new)
    return out


def grow(dst: Path, factor: int, src: Path = RULES, shift_every: int = 2) -> Path:
    """Write `src` grown `factor`-fold into `dst` (see the module docstring); returns `dst`."""
    if not 1 <= factor <= 25:
        raise ValueError("factor must be between 1 and 25")
    dst = Path(dst)
    shutil.copytree(src, dst)
    settings = yaml.safe_load((src / "catalog" / "settings.yaml").read_text(encoding="utf-8"))["settings"]
    types = _fact_types()
    codes = copy_codes(factor, src)
    for path in sorted(src.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        code = data["code"]
        for copy in range(1, factor):
            letter = _letter(copy)
            new_code = codes[code][copy - 1]
            out = dict(data, family=f"{data['family']}_{letter.lower()}", code=new_code)
            out["description"] = f"Generated copy {copy} of {path.name} (capacity tests). {data['description']}"
            rules = []
            for rule in data["rules"]:
                rule = dict(rule, id=new_code + rule["id"][len(code) :])
                if copy % shift_every == 1 and rule.get("when") is not None:
                    rule["when"] = _shift_condition(rule["when"], settings, types)
                rules.append(rule)
            out["rules"] = rules
            target = dst / f"{path.stem}_{letter.lower()}.yaml"
            _dump(target, out)
            fixtures = src / "tests" / path.name  # the family's fixtures, where they live beside the rules
            if fixtures.is_file():
                tests = yaml.safe_load(fixtures.read_text(encoding="utf-8"))
                moved = {new_code + rid[len(code) :]: spec for rid, spec in (tests.get("fixtures") or {}).items()}
                _dump(dst / "tests" / target.name, dict(tests, rules=target.name, fixtures=moved))
    return dst


def _dump(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(grow(Path(sys.argv[1]), int(sys.argv[2])))


def with_weight(dst: Path, rule_id: str, weight: int) -> Path:
    """A copy of the packaged rules at `dst` with one rule's weight changed (diff-rules and re-evaluation tests)."""
    shutil.copytree(RULES, dst)
    for path in dst.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        m = re.search(rf"- id: {re.escape(rule_id)}\n(?:(?!\n  - id:).)*?\n(\s+)weight: (\d+)", text, re.S)
        if m:
            start, end = m.span(2)
            path.write_text(text[:start] + str(weight) + text[end:], encoding="utf-8")
            return dst
    raise AssertionError(f"rule {rule_id} with a weight not found")
