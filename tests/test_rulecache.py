"""The rule-set cache (cds.knowledge.rulecache): the same rule set, without parsing the YAML again, and only
from this user's own files."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import RULES

from cds import datafile
from cds.knowledge import rulecache
from cds.knowledge.ruleset import load_ruleset


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datafile, "_KNOWN", {})  # documents this process knows already do not count
    return tmp_path / "cache" / "rules"


def _signature(rs):
    return (rs.digest, [(r.id, r.condition, r.cites) for r in (*rs.rules, *rs.retired)], rs.options, rs.settings)


def _no_yaml(monkeypatch):
    """Parsing a file's YAML (cds.datafile.parse_yaml's loader) fails from now on."""

    def refuse(*args, **kwargs):
        raise AssertionError("YAML parsed although the cache has the documents")

    monkeypatch.setattr(datafile, "_LOADER", refuse)


def test_a_second_load_reads_the_cache_and_gives_the_same_rule_set(cache, monkeypatch):
    first = load_ruleset(RULES)
    (cached,) = cache.iterdir()
    assert os.stat(cached).st_mode & 0o777 == 0o600
    monkeypatch.setattr(datafile, "_KNOWN", {})
    _no_yaml(monkeypatch)
    assert _signature(load_ruleset(RULES)) == _signature(first)


def test_a_changed_rule_file_is_a_different_cache_entry(cache, tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    load_ruleset(folder)
    path = folder / "eligibility.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    load_ruleset(folder)
    assert len(list(cache.iterdir())) == 2


def test_a_cache_file_others_could_write_is_not_read(cache, monkeypatch):
    load_ruleset(RULES)
    (cached,) = cache.iterdir()
    os.chmod(cached, 0o666)
    monkeypatch.setattr(datafile, "_KNOWN", {})
    _no_yaml(monkeypatch)
    with pytest.raises(AssertionError, match="YAML parsed"):
        load_ruleset(RULES)


def test_a_document_is_used_only_for_the_text_it_came_from(cache, monkeypatch):
    """Even a cache file rewritten by its owner cannot put other rules in place of a file's text."""
    first = _signature(load_ruleset(RULES))
    (cached,) = cache.iterdir()
    content = json.loads(cached.read_text(encoding="utf-8"))
    content["documents"] = {"0" * 64: json.dumps({"family": "x"})}  # the hash of no file of the folder
    cached.write_text(json.dumps(content), encoding="utf-8")
    monkeypatch.setattr(datafile, "_KNOWN", {})
    assert _signature(load_ruleset(RULES)) == first


def test_a_folder_with_problems_is_not_cached(cache, tmp_path):
    from cds.errors import RuleSetError

    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    (folder / "broken.yaml").write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(RuleSetError):
        load_ruleset(folder)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_only_the_newest_cache_files_are_kept(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(rulecache, "KEEP", 2)
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    path = folder / "eligibility.yaml"
    for n in range(4):
        path.write_text(path.read_text(encoding="utf-8") + f"\n# {n}\n", encoding="utf-8")
        load_ruleset(folder)
    assert len(list(cache.iterdir())) == 2
