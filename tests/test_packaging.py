"""A non-editable install carries the rules and templates and works from any folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import PROFILES, ROOT

import schemas


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("cds_myeloma-*.whl")
    return whl


def test_wheel_contains_rules_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted(p.relative_to(ROOT / "rules").as_posix() for p in (ROOT / "rules").rglob("*.yaml")):
        assert f"cds/_data/rules/{path}" in names
    assert "cds/_data/templates/report.html" in names and "cds/_data/templates/report.md" in names


def test_installed_wheel_evaluates_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CDS_RULES_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(target)
    code = (
        "import cds, cds.resources as r, sys; "
        "assert str(r.rules_dir()).startswith(sys.argv[1]), r.rules_dir(); "
        "from cds.apps.cli import main; sys.argv=['cds','evaluate',sys.argv[2],'--format','json']; main()"
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target), str(PROFILES / "frail_ecog3.json")],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = schemas.validate(schemas.REPORT, json.loads(proc.stdout))  # a subprocess: not seen by conftest's check
    assert report["options"][0]["id"] == "bcma_bispecific"
