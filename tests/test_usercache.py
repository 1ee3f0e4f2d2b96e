"""The user's cache folder: never read what another user could have written (cds.usercache)."""

from __future__ import annotations

import os

import pytest

from cds.usercache import cache_dir, read_pickle, read_private, write_pickle, write_private


@pytest.fixture
def base(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CDS_CACHE_DIR", str(folder))
    return folder


def test_the_folder_is_created_private_and_files_round_trip(base):
    folder = cache_dir("things")
    assert folder == base / "things"
    assert os.stat(folder).st_mode & 0o777 == 0o700
    write_private(folder / "a.json", b"{}")
    assert os.stat(folder / "a.json").st_mode & 0o777 == 0o600
    assert read_private(folder / "a.json") == b"{}"
    assert [p.name for p in folder.iterdir()] == ["a.json"]  # no temporary file left


def test_off_means_no_cache(monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", "off")
    assert cache_dir("things") is None


def test_a_folder_others_can_write_is_not_used(base):
    assert cache_dir("things") is not None
    os.chmod(base, 0o777)
    assert cache_dir("things") is None
    os.chmod(base, 0o700)
    os.chmod(base / "things", 0o775)
    assert cache_dir("things") is None


def test_a_symbolic_link_is_not_followed(base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    base.mkdir(mode=0o700)
    (base / "things").symlink_to(elsewhere)
    assert cache_dir("things") is None
    (elsewhere / "a.json").write_bytes(b"{}")
    os.chmod(elsewhere / "a.json", 0o600)
    (base / "a.json").symlink_to(elsewhere / "a.json")
    assert read_private(base / "a.json") is None


def test_a_file_others_can_write_or_own_is_not_read(base):
    folder = cache_dir("things")
    path = folder / "a.json"
    write_private(path, b"{}")
    os.chmod(path, 0o666)
    assert read_private(path) is None
    os.chmod(path, 0o600)
    assert read_private(path) == b"{}"
    if os.getuid() == 0:  # CI runs as root: hand the file to another user
        os.chown(path, 65534, 65534)
        assert read_private(path) is None


class _Runs:
    """A pickle that would run a command when loaded (the class is os.system, not one of cds's)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_is_read_only_after_its_header_and_builds_only_cds_classes(base, tmp_path):
    from cds.knowledge.ruleset import Leaf

    folder = cache_dir("things")
    path = folder / "a.pickle"
    write_pickle(path, "format/1 key", [Leaf("ecog", ">=", 3), tmp_path])
    assert read_pickle(path, "format/1 key") == [Leaf("ecog", ">=", 3), tmp_path]
    assert read_pickle(path, "format/1 other") is None  # another key's file
    marker = tmp_path / "ran"
    write_pickle(path, "format/1 key", _Runs(f"touch {marker}"))
    assert read_pickle(path, "format/1 key") is None
    assert not marker.exists()
    write_pickle(path, "format/1 key", [Leaf("ecog", ">=", 3)])
    os.chmod(path, 0o666)
    assert read_pickle(path, "format/1 key") is None  # others could have written it
