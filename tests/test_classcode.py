"""The dataclass method code kept in the user's cache (cds.apps.classcode): the same classes, compiled once."""

from __future__ import annotations

import dataclasses
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cds.apps import classcode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def base(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CDS_CACHE_DIR", str(folder))
    return folder


def _make() -> type:
    @dataclasses.dataclass(frozen=True, slots=True, order=True)
    class Point:
        x: int
        y: int = 2
        tags: list[str] = dataclasses.field(default_factory=list)

    return Point


def _methods(cls: type) -> dict[str, object]:
    """The generated methods' code, as what defines them: bytecode, constants, names."""
    out = {}
    for name in ("__init__", "__repr__", "__eq__", "__lt__", "__hash__", "__setattr__", "__delattr__"):
        fn = getattr(cls, name)
        code = getattr(fn, "__wrapped__", fn).__code__  # __repr__ is wrapped (recursion guard)
        out[name] = (code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_filename)
    return out


def _table(base: Path) -> list[Path]:
    return sorted((base / "classcode").glob("*.marshal"))


def test_classes_are_the_same_compiled_kept_and_read_back(base):
    plain = _make()
    with classcode.kept():
        first = _make()  # compiled, and the table written at the end
    assert len(_table(base)) == 1
    written = _table(base)[0].read_bytes()
    with classcode.kept():
        second = _make()  # every text found in the table: nothing compiled, nothing written
    assert _table(base)[0].read_bytes() == written
    for cls in (first, second):
        assert _methods(cls) == _methods(plain)
        p = cls(1, tags=["a"])
        assert repr(p).endswith("Point(x=1, y=2, tags=['a'])")
        assert p == cls(1, 2, ["a"]) and p != cls(1, 3)
        assert cls(1) < cls(2)
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.x = 3  # type: ignore[misc]
        assert cls.__slots__ == ("x", "y", "tags")
        assert cls(0).tags is not cls(0).tags  # default_factory: one list per instance


def test_dataclasses_is_left_as_it_was(base):
    before = vars(dataclasses)["_create_fn"]
    with pytest.raises(RuntimeError), classcode.kept():
        assert vars(dataclasses)["_create_fn"] is not before
        raise RuntimeError
    assert vars(dataclasses)["_create_fn"] is before


def test_a_damaged_or_foreign_table_is_compiled_again(base):
    with classcode.kept():
        _make()
    (table,) = _table(base)
    for damaged in (b"", b"cds-classcode/1\n\x00garbage", b"something else\n", table.read_bytes()[:-40]):
        table.write_bytes(damaged)
        with classcode.kept():
            cls = _make()
        assert cls(5).y == 2
        assert table.read_bytes().startswith(b"cds-classcode/1\n")  # rewritten whole


def test_a_table_others_can_write_is_not_read(base):
    with classcode.kept():
        _make()
    (table,) = _table(base)
    os.chmod(table, 0o666)
    marker = base / "ran"
    # a table someone else wrote: its code would run as this user's; it is never loaded
    evil = compile(f"open({str(marker)!r}, 'w').close()\ndef __create_fn__(**k):\n return None", "<string>", "exec")
    data = marshal.loads(table.read_bytes().split(b"\n", 1)[1])
    table.write_bytes(b"cds-classcode/1\n" + marshal.dumps(dict.fromkeys(data, evil)))
    os.chmod(table, 0o666)
    with classcode.kept():
        cls = _make()
    assert not marker.exists()
    assert cls(1).y == 2


def test_no_cache_means_dataclasses_unchanged(monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", "off")
    before = vars(dataclasses)["_create_fn"]
    with classcode.kept():
        assert vars(dataclasses)["_create_fn"] is before


def test_cds_evaluate_prints_the_same_with_and_without_it(tmp_path):
    case = ROOT / "patient_profiles" / "fit_tcr_bcma_naive.json"
    cmd = [sys.executable, "-m", "cds", "evaluate", str(case), "--format", "json", "--timestamp", "2026-01-01T00:00:00Z"]

    def run(cache: str) -> bytes:
        env = {**os.environ, "CDS_CACHE_DIR": cache}
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True).stdout

    without = run("off")
    cache = str(tmp_path / "cache")
    assert run(cache) == without  # compiled and kept
    assert len(_table(Path(cache))) == 1
    assert run(cache) == without  # read back


def test_the_command_line_imports_no_plugin_machinery_and_pydantic_finds_no_plugins(tmp_path):
    """`cds` runs with pydantic's plugins off; its stand-in loader answers as pydantic's own does then."""
    case = ROOT / "patient_profiles" / "fit_tcr_bcma_naive.json"
    env = {**os.environ, "CDS_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-X", "importtime", "-m", "cds", "evaluate", str(case), "--format", "json"]
    imported = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in imported.splitlines() if line.startswith("import time:")}
    assert "pydantic.main" in modules  # the list is real
    assert "importlib.metadata" not in modules
    # pydantic's own loader, with the switch cds sets: no plugins, which is what the stand-in returns
    real = "import os; os.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'; from pydantic.plugin._loader import get_plugins; print(tuple(get_plugins()))"
    assert subprocess.run([sys.executable, "-c", real], env=env, capture_output=True, text=True, check=True).stdout == "()\n"


def test_no_pydantic_plugins_is_undone_when_it_ends(monkeypatch):
    from cds.apps import cli

    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    had = sys.modules.pop(cli._PLUGIN_LOADER, None)
    try:
        with cli._no_pydantic_plugins():
            assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
            from pydantic import TypeAdapter
            from pydantic.plugin._loader import get_plugins

            assert tuple(get_plugins()) == ()
            assert TypeAdapter(list[int]).validate_python([1, 2]) == [1, 2]  # validators are built as usual
        assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ
        assert cli._PLUGIN_LOADER not in sys.modules
    finally:
        if had is not None:
            sys.modules[cli._PLUGIN_LOADER] = had
