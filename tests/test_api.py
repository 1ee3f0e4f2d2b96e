"""The public API: `cds` (cds/__init__.py) and `cds.api`, what the applications and the end-to-end tests use."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import cds
import cds.api

ROOT = Path(__file__).resolve().parents[1]


def test_every_reexport_is_the_object_its_module_defines():
    for name, module in cds.api._REEXPORTS.items():
        assert getattr(cds.api, name) is getattr(importlib.import_module(module), name), name


def test_every_name_of_cds_is_the_apis_or_the_errors():
    for name in cds.__all__:
        if name == "__version__":
            continue
        where = cds._EXPORTS[name]
        assert where in ("cds.api", "cds.errors"), name
        assert getattr(cds, name) is getattr(importlib.import_module(where), name), name


def test_the_typed_names_are_the_reexported_names():
    """mypy reads the TYPE_CHECKING imports, the run time reads _REEXPORTS: the same names, from the same modules."""
    tree = ast.parse((ROOT / "cds" / "api.py").read_text(encoding="utf-8"))
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module is not None
                for alias in imp.names:
                    if alias.asname == alias.name:  # `import X as X`: re-exported (the others are local annotations)
                        typed[alias.name] = imp.module
    assert typed == cds.api._REEXPORTS


def test_importing_the_api_imports_nothing_else_of_cds():
    """`import cds, cds.api` stays cheap: every other module is imported when a name is first used."""
    code = "import sys, cds, cds.api; print(sorted(m for m in sys.modules if m == 'cds' or m.startswith('cds.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "['cds', 'cds.api']"


def test_an_unknown_name_is_an_attribute_error():
    for module in (cds, cds.api):
        try:
            module.no_such_name  # noqa: B018
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError(f"{module.__name__}.no_such_name did not raise")
