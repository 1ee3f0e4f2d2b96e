"""The cached rule set is always the content of the folder it is stamped with (principle 4).

Real rule folders (copies of rules/), a real cache folder (CDS_CACHE_DIR in a tmp path) and real
processes: what one process keeps, the next one reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cds.errors import RuleSetError
from cds.knowledge import validate as validate_module
from cds.knowledge.ruleset import load_ruleset, ruleset_digest
from cds.resources import packaged_rules_dir

OLD_TITLE = "Follow serum BCMA after CAR-T"
NEW_TITLE = "Follow serum BCMA after CART!"  # same length: same file size


def _copy(tmp_path: Path, name: str = "rules") -> Path:
    folder = tmp_path / name
    shutil.copytree(packaged_rules_dir(), folder)
    return folder


def _edit(folder: Path, keep_mtime: bool = True) -> None:
    """Change one rule title in place, keeping the file's size (and its mtime, like `touch -r`)."""
    path = folder / "monitoring.yaml"
    st = path.stat()
    text = path.read_text()
    assert OLD_TITLE in text and len(OLD_TITLE) == len(NEW_TITLE)
    path.write_text(text.replace(OLD_TITLE, NEW_TITLE))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def _load_in_process(folder: Path, cache: Path) -> dict[str, str]:
    """A new process loads `folder` with the cache `cache`: its stamp, folder and the title of MON-CART-002."""
    code = (
        "import json, sys; from pathlib import Path; from cds.knowledge.ruleset import load_ruleset;"
        "rs = load_ruleset(Path(sys.argv[1]));"
        "print(json.dumps({'digest': rs.digest, 'directory': str(rs.directory), 'title': rs.rule('MON-CART-002').title}))"
    )
    env = {**os.environ, "CDS_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_edited_folder_same_size_and_mtime_is_not_served_from_the_cache(tmp_path: Path, cache: Path) -> None:
    folder = _copy(tmp_path)
    first = _load_in_process(folder, cache)
    assert first["title"] == OLD_TITLE and list((cache / "ruleset").glob("*.pickle"))
    _edit(folder)  # same path, same size, same mtime
    second = _load_in_process(folder, cache)
    assert second["title"] == NEW_TITLE
    assert second["digest"] == ruleset_digest(folder) != first["digest"]


def test_two_folders_with_the_same_content_each_get_their_own_stamp(tmp_path: Path, cache: Path) -> None:
    a, b = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    ra, rb = _load_in_process(a, cache), _load_in_process(b, cache)
    assert ra["directory"] == str(a) and rb["directory"] == str(b)
    assert ra["digest"] == rb["digest"]  # same bytes, same hash: the stamp names the content
    _edit(b)
    assert _load_in_process(b, cache)["title"] == NEW_TITLE
    assert _load_in_process(a, cache)["title"] == OLD_TITLE


def test_a_folder_edited_while_it_loads_is_stamped_with_what_was_loaded(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit lands after the load started (a checkout or rebase of the worktree meanwhile):
    the rule set must carry the hash of the bytes it was built from, and the cache must not keep the
    old rules under the new content's key for the next process."""
    folder = _copy(tmp_path)
    monkeypatch.setenv("CDS_CACHE_DIR", str(cache))
    before = ruleset_digest(folder)
    real = validate_module.product_problems
    edited: list[bool] = []

    def check_then_edit(*args: object) -> list[str]:
        if not edited:  # every rule file is read by now: edit one on disk before the load ends
            _edit(folder, keep_mtime=False)
            edited.append(True)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(validate_module, "product_problems", check_then_edit)
    loaded = load_ruleset(folder)
    assert edited
    # what was read first is what is validated and stamped: the old title, under the old content's hash
    assert (loaded.rule("MON-CART-002").title, loaded.digest) == (OLD_TITLE, before)
    monkeypatch.setattr(validate_module, "product_problems", real)
    after = _load_in_process(folder, cache)  # the next process, the folder as it is now
    assert after["title"] == NEW_TITLE and after["digest"] == ruleset_digest(folder)


def test_a_symlinked_catalogue_or_evidence_folder_counts_in_the_hash(tmp_path: Path, cache: Path) -> None:
    folder = _copy(tmp_path)
    moved = tmp_path / "evidence-elsewhere"
    (folder / "evidence").rename(moved)
    (folder / "evidence").symlink_to(moved)
    before = ruleset_digest(folder)
    first = _load_in_process(folder, cache)
    text = (moved / "sources.yaml").read_text()
    (moved / "sources.yaml").write_text(text + "\n# edited\n")
    assert ruleset_digest(folder) != before
    assert _load_in_process(folder, cache)["digest"] != first["digest"]


def test_a_symlink_loop_in_the_rule_folder_is_not_followed_forever(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "catalog" / "loop").symlink_to(folder / "catalog")
    assert ruleset_digest(folder)  # terminates


def test_a_file_added_while_the_folder_loads_is_refused(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _copy(tmp_path)
    monkeypatch.setenv("CDS_CACHE_DIR", str(cache))
    real = validate_module.product_problems

    def check_then_add(*args: object) -> list[str]:
        shutil.copy(folder / "monitoring.yaml", folder / "catalog" / "extra.yaml")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(validate_module, "product_problems", check_then_add)
    with pytest.raises(RuleSetError, match="added or removed while the rule folder loaded"):
        load_ruleset(folder)
    assert not list((cache / "ruleset").glob("*.pickle"))  # nothing kept
