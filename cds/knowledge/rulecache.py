"""The rule-set cache: the rule folder's YAML documents as JSON, in the user's cache folder.

Parsing the rule folder's YAML is most of what loading it costs (a few
hundred kilobytes through PyYAML); JSON of the same documents reads a hundred
times faster. `documents(directory)` wraps a load (`cds.knowledge.ruleset.load_ruleset`):

- The cache file is named by a key over everything the documents depend on:
  the rule-set hash (every YAML file of the folder, `ruleset_digest`), every
  source file of the cds package (the YAML reader and its checks among them),
  the versions of PyYAML, pydantic, pydantic-core and Python
  (`cds.usercache.code_fingerprint`). A change to any of them is a different file.
- What is cached is data, never code or objects: per YAML text (by its sha256),
  the document it parses to, as JSON. A document is used only for exactly the
  text it came from (`cds.datafile.parse_yaml`), and it then goes through the
  complete validation (`cds.knowledge.validate.validate`) like any parsed file,
  so the cache saves parsing only; it can never change what is validated.
- The file is read only from this user's own cache folder and only if no other
  user could have written it (`cds.usercache`); it is written only after a load
  that found no problem. A missing, unreadable or malformed cache file means
  "parse the YAML", never an error. ``CDS_CACHE_DIR=off`` turns it off.

At most `KEEP` cache files are kept (the oldest go first).

The validated rule set itself (`cached_ruleset` / `store_ruleset`, folder ``ruleset``): a
load without fixtures that found no problem is kept as a pickle of the `RuleSet` it returned,
so that the next process skips the YAML, the schema validation and every check. Exactly what
validation gave, by construction: the file is named by a key over the folder's path as given,
its rule-set hash, every cds source file, the packaged cytogenetics catalogue (the fact
catalogue is built from it), and the versions of PyYAML, pydantic, pydantic-core and Python;
the key is written again inside the file and must match. A pickle can run code when it is
loaded, so (issue 11) it is read only from this user's own cache folder, only if nobody else
could have written the file (`cds.usercache.read_pickle`: owner and mode), and through an
unpickler that builds nothing but the classes of cds's own modules and pathlib's paths; anything
else, a file that does not load, or anything but a `RuleSet` means "validate", never an error.
A JSON form validated on reading would cost what the validation costs.

The rule set kept is exactly the content its key names: `load_ruleset` reads every file of the
folder once, first (`cds.knowledge.ruleset.rule_folder_snapshot`), validates those bytes and stamps
their hash, and `store_ruleset` keys the file by that hash (`RuleSet.digest`), not by the folder
hashed again (it may have been edited meanwhile). The hash covers files and folders reached through
symbolic links (a linked evidence folder is read by the load, so it counts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cds import datafile
from cds.errors import RuleSetError
from cds.knowledge.ruleset import ruleset_digest
from cds.resources import packaged_rules_dir
from cds.usercache import cache_dir, code_fingerprint, read_pickle, read_private, write_pickle, write_private

if TYPE_CHECKING:
    from cds.knowledge.ruleset import RuleSet

FORMAT = "cds-rule-documents/1"
RULESET_FORMAT = "cds-ruleset/1"
KEEP = 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def cache_key(directory: Path) -> str:
    return hashlib.sha256(f"{FORMAT}\0{code_fingerprint()}\0{ruleset_digest(directory)}".encode()).hexdigest()


def _read(path: Path, key: str) -> dict[str, str] | None:
    """The documents of a cache file, if it is this user's own and well formed."""
    data = read_private(path)
    if data is None:
        return None
    try:
        content = json.loads(data)
    except ValueError:
        return None
    if not isinstance(content, dict) or content.get("format") != FORMAT or content.get("key") != key:
        return None
    docs = content.get("documents")
    if not isinstance(docs, dict) or not all(
        isinstance(k, str) and _SHA256.match(k) and isinstance(v, str) for k, v in docs.items()
    ):
        return None
    return docs


def _prune(folder: Path, pattern: str = "*.json") -> None:
    with contextlib.suppress(OSError):
        files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[KEEP:]:
            old.unlink()


class Documents:
    """What `documents` yields: `store()` after a load without problems writes the cache (when it was missed)."""

    def __init__(self, path: Path | None, key: str, hit: bool):
        self._path, self._key, self.hit = path, key, hit

    def store(self) -> None:
        if self.hit or self._path is None or datafile._RECORDING is None:
            return
        content = {"format": FORMAT, "key": self._key, "documents": dict(sorted(datafile._RECORDING.items()))}
        write_private(self._path, json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())
        _prune(self._path.parent)


@contextlib.contextmanager
def documents(directory: Path) -> Iterator[Documents]:
    """Within: the rule folder's documents come from the cache when it has them, else are recorded for `store()`."""
    folder = cache_dir("rules")
    if folder is None:
        yield Documents(None, "", hit=False)
        return
    try:
        key = cache_key(directory)
    except OSError:  # a file that cannot be read: the load reports it
        yield Documents(None, "", hit=False)
        return
    path = folder / f"{key}.json"
    docs = _read(path, key)
    if docs is not None:
        datafile._KNOWN.update(docs)
        yield Documents(path, key, hit=True)
        return
    datafile._RECORDING = {}
    try:
        yield Documents(path, key, hit=False)
    finally:
        datafile._RECORDING = None


# --------------------------------------------------------------------------- the validated rule set


def ruleset_key(directory: Path, digest: str | None = None) -> str:
    """The name of the rule-set cache file for `directory`: everything a validated rule set depends on.

    `digest`: the rule-set hash of the bytes the rule set was validated from (`RuleSet.digest`), when
    storing it: never the folder hashed again afterwards, which may have changed since (a checkout)."""
    h = hashlib.sha256()
    for part in (
        RULESET_FORMAT,
        code_fingerprint(),  # every cds source file; PyYAML's, pydantic's, pydantic-core's and Python's versions
        str(directory),  # the RuleSet names its folder as it was given
        ruleset_digest(directory) if digest is None else digest,
    ):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    h.update((packaged_rules_dir() / "catalog" / "cytogenetics.yaml").read_bytes())
    return h.hexdigest()


def _ruleset_file(directory: Path, digest: str | None = None) -> tuple[Path, str] | None:
    folder = cache_dir("ruleset")
    if folder is None:
        return None
    try:
        key = ruleset_key(directory, digest)
    except (OSError, RuleSetError):  # a file that cannot be read (or is too large): the load reports it
        return None
    return folder / f"{key}.pickle", key


# the rule sets this process loaded without problems (object id -> the object, its key): what `loaded_key` knows
_LOADED: dict[int, tuple[RuleSet, str]] = {}


def loaded_key(ruleset: RuleSet) -> str | None:
    """The cache key of a rule set `load_ruleset` returned (read from the cache or just validated), else None.

    What is derived from such a rule set alone can be cached under it (`cds.knowledge.site.default_site`);
    a rule set built any other way (or changed with `dataclasses.replace`: a new object) has no key."""
    known = _LOADED.get(id(ruleset))
    return known[1] if known is not None and known[0] is ruleset else None


def cached_ruleset(directory: Path) -> RuleSet | None:
    """The rule set a load of `directory` (without fixtures) validated before, if this user's cache has it."""
    from cds.knowledge.ruleset import RuleSet

    where = _ruleset_file(directory)
    if where is None:
        return None
    path, key = where
    ruleset = read_pickle(path, f"{RULESET_FORMAT} {key}")
    if type(ruleset) is not RuleSet:
        return None
    _LOADED[id(ruleset)] = (ruleset, key)
    return ruleset


def store_ruleset(directory: Path, ruleset: RuleSet) -> None:
    """Keep the rule set a load of `directory` (without fixtures) found no problem in."""
    where = _ruleset_file(directory, ruleset.digest)  # the hash of what was validated (load_ruleset's snapshot)
    if where is None:
        return
    path, key = where
    _LOADED[id(ruleset)] = (ruleset, key)
    write_pickle(path, f"{RULESET_FORMAT} {key}", ruleset)
    _prune(path.parent, "*.pickle")
