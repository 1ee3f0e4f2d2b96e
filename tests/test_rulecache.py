"""The rule-set cache (cds.knowledge.rulecache): the same rule set, without parsing the YAML again, and only
from this user's own files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import RULES

from cds import datafile
from cds.api import load_ruleset
from cds.knowledge import rulecache
from cds.knowledge import validate as validate_module


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The documents' cache; the validated rule set's (which would skip the parsing these tests watch) is not read."""
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datafile, "_KNOWN", {})  # documents this process knows already do not count
    monkeypatch.setattr(rulecache, "cached_ruleset", lambda directory: None)
    return tmp_path / "cache" / "rules"


@pytest.fixture
def ruleset_cache(tmp_path, monkeypatch):
    """The validated rule set's cache; `validations` counts the loads that validated."""
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "cache"))
    validations = []

    def counted(directory, fixtures=False):
        validations.append(directory)
        return real(directory, fixtures=fixtures)

    real = validate_module.validate
    monkeypatch.setattr(validate_module, "validate", counted)
    return tmp_path / "cache" / "ruleset", validations


def _tree(x):
    """Everything an object holds, as pickle sees it (type names, fields, items in order): equal trees, equal rule sets."""
    if isinstance(x, type):
        return f"{x.__module__}.{x.__qualname__}"
    if isinstance(x, (str, int, float, bool, type(None), Path)):
        return (type(x).__name__, x)
    if isinstance(x, dict):
        return ("dict", [(_tree(k), _tree(v)) for k, v in x.items()])
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_tree(v) for v in x])
    if isinstance(x, (set, frozenset)):
        return (type(x).__name__, sorted(repr(_tree(v)) for v in x))
    reduced = x.__reduce_ex__(5)
    return (_tree(type(x)), _tree(reduced[1]), _tree(reduced[2] if len(reduced) > 2 else None))


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


def test_a_second_load_gives_exactly_the_validated_rule_set_without_validating(ruleset_cache):
    folder, validations = ruleset_cache
    first = load_ruleset(RULES)
    (cached,) = folder.iterdir()
    assert os.stat(cached).st_mode & 0o777 == 0o600
    second = load_ruleset(RULES)
    assert validations == [RULES]  # the second load did not validate
    assert second is not first
    assert _tree(second) == _tree(first)
    assert len(second.rules) > 100 and second.registry.entries and second.vocabulary.drugs
    # what it was compared with is what a validation gives
    assert _tree(validate_module.validate(RULES).ruleset) == _tree(first)


def test_a_cached_rule_set_is_used_only_for_the_folder_and_files_it_came_from(ruleset_cache, tmp_path):
    folder, validations = ruleset_cache
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    before = load_ruleset(rules)
    (cached,) = folder.iterdir()
    path = rules / "eligibility.yaml"
    text = path.read_text(encoding="utf-8")
    rule = next(r for r in before.rules if r.file == path.name)
    assert f'title: "{rule.title}"' in text
    path.write_text(text.replace(f'title: "{rule.title}"', 'title: "A title changed after caching"', 1), encoding="utf-8")
    # even a file renamed to the new key (by this user) names the key it was written for inside
    cached.rename(folder / f"{rulecache.ruleset_key(rules)}.pickle")
    after = load_ruleset(rules)
    assert after.rule(rule.id).title == "A title changed after caching"
    assert len(validations) == 2
    load_ruleset(RULES)  # the same files in another folder: a rule set naming that folder
    assert len(validations) == 3


def test_a_rule_set_cache_file_others_could_write_is_not_read(ruleset_cache):
    folder, validations = ruleset_cache
    load_ruleset(RULES)
    (cached,) = folder.iterdir()
    os.chmod(cached, 0o664)
    load_ruleset(RULES)
    assert len(validations) == 2


def test_loads_with_fixtures_or_with_problems_are_not_kept_as_rule_sets(ruleset_cache, tmp_path):
    from cds.errors import RuleSetError

    folder, validations = ruleset_cache
    load_ruleset(RULES, fixtures=True)
    load_ruleset(RULES, fixtures=True)
    assert len(validations) == 2
    assert not folder.exists() or list(folder.iterdir()) == []
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    (rules / "broken.yaml").write_text("rules: [unclosed\n", encoding="utf-8")
    with pytest.raises(RuleSetError):
        load_ruleset(rules)
    with pytest.raises(RuleSetError):
        load_ruleset(rules)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_the_cytogenetics_catalogue_is_validated_once_per_text(ruleset_cache, tmp_path, monkeypatch):
    from cds.model.vocabulary import read_cytogenetics

    path = tmp_path / "cytogenetics.yaml"
    shutil.copyfile(RULES / "catalog" / "cytogenetics.yaml", path)
    first = read_cytogenetics(path)
    _no_yaml(monkeypatch)
    again = read_cytogenetics(path)
    assert again == first and again is not first
    path.write_text(path.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="YAML parsed"):
        read_cytogenetics(path)


def test_the_default_site_is_validated_once_per_rule_set(ruleset_cache, monkeypatch):
    import dataclasses

    from cds.knowledge import site

    ruleset = load_ruleset(RULES)
    monkeypatch.setattr(site, "_DEFAULTS", {})  # not the site an earlier test of this process loaded: this one is cached
    first = site.default_site(ruleset)
    assert first is not None and first.default
    monkeypatch.setattr(site, "_DEFAULTS", {})
    loads = []
    real = site.load_site
    monkeypatch.setattr(site, "load_site", lambda *a, **k: loads.append(a) or real(*a, **k))
    again = site.default_site(load_ruleset(RULES))  # a rule set read from the cache, as a new process gets it
    assert again == first and again is not first
    assert loads == []
    monkeypatch.setattr(site, "_DEFAULTS", {})
    changed = dataclasses.replace(ruleset)  # equal, but not an object load_ruleset gave: no key
    site.default_site(changed)
    assert len(loads) == 1
