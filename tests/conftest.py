"""Shared fixtures. Every test uses the real rule files and the real durable-rules engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cds.decide.pipeline import Evaluator, default_evaluator

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "patient_profiles"
RULES = ROOT / "rules"


def seeds_dir() -> Path:
    env = os.environ.get("CDS_SEEDS_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    """The rule set of this checkout, compiled once for the whole session."""
    return default_evaluator(str(RULES))


@pytest.fixture(scope="session")
def ruleset(evaluator):
    return evaluator.ruleset


def load_case(name: str) -> dict:
    return json.loads((PROFILES / f"{name}.json").read_text(encoding="utf-8"))


def case_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.json"))
