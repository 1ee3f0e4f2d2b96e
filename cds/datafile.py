"""Reading files as data, within bounds: every file cds reads (profiles, site files, rule folders) comes through here.

Nothing a user can write makes cds read without end, use memory out of
proportion or crash the interpreter:

* `read_capped` reads at most `limit` bytes (plus one, to know there are more),
  so that ``/dev/zero``, a FIFO or a huge file fails in milliseconds, naming the limit.
* `parse_yaml` is the one YAML reader of the package. Before building anything it
  walks the parser's events (libyaml's C parser, iterative) and refuses nesting
  deeper than `YAML_DEPTH_LIMIT` (PyYAML's C composer is recursive and overflows
  the C stack on ~10^5 nested ``[``: a segfault, not an exception) and anchors and
  aliases (``&a`` / ``*a``: a small file can expand exponentially; no cds file needs
  them). A key given twice in one mapping is an error, not "the last one wins".
  Only then does the fast C loader build the data, with PyYAML's safe constructors.

A document parsed before (cds.knowledge.rulecache: the rule folder's documents kept
as JSON in the user's cache, keyed by the sha256 of each text) is taken from `_KNOWN`
instead of parsed again; only documents that passed these checks are ever recorded.

Every problem is a `cds.errors.ReadError` whose ``problem`` is one line without
the file's name; the loaders add their label (``invalid site file x.yaml: ...``,
``eligibility.yaml: ...``) and turn it into their own error (SiteError,
RuleSetError, ProfileError).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from cds.errors import ReadError, printable

KIB = 1024
MIB = 1024 * KIB

PROFILE_LIMIT = 1 * MIB  # a patient profile file, and one line of a JSONL cohort
SITE_LIMIT = 1 * MIB  # a site-settings file
RULE_FILE_LIMIT = 4 * MIB  # each YAML file of a rule folder (rules, catalogues, evidence)
YAML_DEPTH_LIMIT = 64  # nesting of mappings and sequences in any YAML file (the rule files use at most 8)


def size_text(limit: int) -> str:
    """1048576 -> '1 MiB' (the limits are whole KiB or MiB)."""
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % KIB == 0:
        return f"{limit // KIB} KiB"
    return f"{limit:,} bytes"


def over_limit(limit: int, what: str) -> str:
    return f"larger than {size_text(limit)}, the limit for {what}"


# While a rule folder loads (cds.knowledge.ruleset.load_ruleset): path -> the bytes the rule-set hash was computed
# from, read once, so that the rules validated are exactly the ones the hash stamps even if the files change meanwhile.
_SNAPSHOT: dict[str, bytes] | None = None


def read_capped(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of `path`, at most `limit` of them (a pipe or a device is read up to the limit, never to its end).

    Raises ReadError: no such file, is a directory, cannot be read (reason), or larger than the limit.
    `what` names the kind of file in the last message ("a patient profile").
    """
    if _SNAPSHOT is not None:  # a rule folder loading: its files as they were when its hash was computed
        known = _SNAPSHOT.get(os.fspath(path))
        if known is not None and len(known) <= limit:
            return known
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise ReadError("no such file") from None
    except IsADirectoryError:
        raise ReadError(f"is a directory, not {what}") from None
    except OSError as exc:
        if exc.errno == errno.EISDIR:  # pragma: no cover - some platforms report it as a plain OSError
            raise ReadError(f"is a directory, not {what}") from None
        raise ReadError(f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ReadError(over_limit(limit, what))
    return data


# --------------------------------------------------------------------------- YAML

_LOADER: Any = None

# Documents known already (cds.knowledge.rulecache): sha256 of a YAML text -> the document it parses to, as
# JSON. Keyed by the text itself, so a known document is only ever used for exactly the text it came from.
_KNOWN: dict[str, str] = {}
# While the rule-set cache records (cds.knowledge.rulecache.documents): the documents parsed meanwhile.
_RECORDING: dict[str, str] | None = None


def _strict_loader() -> Any:
    """A safe YAML loader (libyaml's C parser when PyYAML has it) that refuses duplicate keys."""
    import yaml
    from yaml.nodes import MappingNode

    class NoDuplicateKeys(yaml.constructor.SafeConstructor):
        def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: let the base constructor report it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    # the C loader is chosen at run time (PyYAML built without libyaml has only SafeLoader): a class made by type()
    return type("StrictLoader", (NoDuplicateKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})


def _where(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _check_shape(text: str, loader_class: Any, depth_limit: int) -> None:
    """Walk the parser's events (no objects built): refuse deep nesting and anchors/aliases, stopping at the first."""
    import yaml

    loader = loader_class(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise ReadError(f"aliases (*{printable(event.anchor, 40)}) are not allowed{_where(event.start_mark)}")
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                raise ReadError(f"anchors (&{printable(event.anchor, 40)}) are not allowed{_where(event.start_mark)}")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > depth_limit:
                    raise ReadError(f"nested more than {depth_limit} levels deep{_where(event.start_mark)}")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _yaml_problem(exc: Exception) -> str:
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [p for p in (exc.context, exc.problem) if p]
        mark = exc.problem_mark or exc.context_mark
        return "not valid YAML: " + printable(", ".join(parts) or "syntax error", 200) + _where(mark)
    return "not valid YAML: " + printable(" ".join(str(exc).split()), 200)


def parse_yaml(data: bytes | str, depth_limit: int = YAML_DEPTH_LIMIT) -> object:
    """Parse YAML text (bytes are UTF-8) safely and strictly. Raises ReadError.

    Safe: only plain data (mappings, sequences, strings, numbers, booleans, null, dates).
    Strict: no key twice in a mapping, no anchors or aliases, at most `depth_limit` levels.
    """
    import yaml

    global _LOADER
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReadError(f"not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
    digest = None
    if _KNOWN or _RECORDING is not None:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        known = _KNOWN.get(digest)
        if known is not None:
            if _RECORDING is not None:  # another folder's cache knew it: this folder's cache needs it too
                _RECORDING[digest] = known
            return json.loads(known)
    if _LOADER is None:
        _LOADER = _strict_loader()
    try:
        _check_shape(text, _LOADER, depth_limit)
        doc = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a *safe* loader class
    except yaml.YAMLError as exc:
        raise ReadError(_yaml_problem(exc)) from None
    except (RecursionError, MemoryError):  # pragma: no cover - bounded by the depth check and the size caps
        raise ReadError("not valid YAML: too large or too deeply nested") from None
    if _RECORDING is not None and digest is not None:
        as_json = _as_json(doc)
        if as_json is not None:
            _RECORDING[digest] = as_json
    return doc


def _as_json(doc: object) -> str | None:
    """`doc` as JSON if JSON gives back exactly the same document (not for dates, non-string keys, NaN, ...)."""
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == doc else None


def read_yaml(path: Path, limit: int = RULE_FILE_LIMIT, what: str = "a rule-folder file") -> object:
    """`read_capped` then `parse_yaml`."""
    return parse_yaml(read_capped(path, limit, what))
