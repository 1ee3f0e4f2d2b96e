"""What one durable-rules ruleset can hold, computed from its JSON definition; the split into shards.

durable-rules 2.0.28's C core (``src/rules/`` of the sdist; line numbers below are that release's)
has fixed table sizes, and past most of them it does not fail cleanly: it hangs, reads or writes
out of bounds, or fires the wrong rule. This module rebuilds, in Python, the alpha network the
compiler builds from a definition (``createAlpha``/``findAlpha``/``linkAlpha``, rete.c:773-1345)
and computes from it every quantity those tables bound. `plan` packs the rules, in order, into as
few rulesets ("shards") as keep every quantity within its bound; `cds.engine.durable` compiles
exactly that plan and `cds rules check` reports it, so a rule folder that passes the check cannot
overflow the engine. Every number here was reproduced against the real engine (tests/test_capacity.py).

How the compiler builds the network. A pattern's ``$and`` is a chain (each item under the
previous one, rete.c:1187); an ``$or`` makes a fresh, never shared *forward node* (an ``$nex`` test
on the property ``$forward``, rete.c:1110), builds every branch under the current node and links
the forward node below each branch's end (rete.c:1231). A leaf test is shared with an existing
child of the same node with the same property, operator and literal (rete.c:962). ``$nex`` tests
and forward nodes go into a node's ``nextList``, all other tests into its hash set; the pattern's
rule hangs in the ``betaList`` of its last node.

Table sizes, per alpha node unless said otherwise (limit = the most that is safe):

=====================  =====  ==========================================================
hash set               511    NEXT_BUCKET_LENGTH 512 (rules.h:47): at 512 children every assert
                              loops forever (events.c:1749), at 513 the compiler does (rete.c:1001)
nextList               127    NEXT_LIST_LENGTH 128 (rules.h:48): at 128 the walk reads past the
                              list (SIGSEGV); beyond, error 107 or an out-of-bounds write (rete.c:810)
betaList               255    BETA_LIST_LENGTH 256 (rules.h:49): at 256 the walk fires another
                              rule's action; beyond, error 108 or an out-of-bounds write (rete.c:788)
expression sequence    31     MAX_SEQUENCE_EXPRESSIONS 32 (rete.h:41), per pattern, 2 per
                              ``$and``/``$or``: 16 groups give error 113
actions per ruleset    4096   MAX_ACTIONS (rete.c:41): error 106
fact properties        254    MAX_OBJECT_PROPERTIES 255 (state.h:20): at 255 the fact is dropped
                              and ``assert_facts`` returns 0 with a garbage state offset
=====================  =====  ==========================================================

Property names are compared by their 32-bit FNV-1a hash only (state.c:157), so the names one
ruleset reads must hash apart. The node, string and expression pools grow by ``realloc``: no limit.

The stack bound. ``handleAlpha`` (events.c:1705) walks the network with a 64-entry stack
(MAX_STACK_SIZE, events.c:18): it pops a node, pushes every ``nextList`` child whose property the
fact lacks (every forward node, every ``$nex`` test on an absent fact) and every hash-set child whose
test holds, then runs the node's rules. Pushing a 65th entry returns error 303 (checked, events.c:1734,
1753, 1776: the stack itself is never overrun). Let width(X) be the most children of X that can be
pending at once for one fact::

    width(X) = #forward children
             + sum over properties p of max(#$nex tests on p, #JSON types among the == tests on p
                                                            + #other tests on p)

Two ``==`` tests on one property with distinct literals of one JSON type never both hold, whatever
the type of the fact's value: durable coerces the value once, then compares exactly (strings with
strncmp over the longer length, so distinct literals without a quote differ). That is why the
discriminators ``t`` and ``cds_scope`` cost one entry however many values they are tested against.
The walk is last-in first-out, so while a child C of X is processed at most width(X) - 1 of its
siblings wait below it::

    W(X) = width(X) + max(0, max over children C of W(C) - 1),     pending <= max(1, W(root))

This is an upper bound over all possible facts (it assumes the worst child is processed first and
that every test can hold). An exact simulation of the walk agreed with the engine's 303 on every
one of 3,000 generated profiles at six rule-set sizes, and the bound was at most 9 above the worst
simulated stack (docs: /work/coord/notes/engine.md, phase 1). A shard may have at most
`MAX_PENDING` = 32 pending, half the stack, so that a mistake in this model has a margin before it
could matter.

Why the engine crashed rather than reporting 303: ``createStateNode`` (state.c:828) leaves a session's
action context uninitialised and ``delete_state``/``abandon_action`` free it (state.c:930,
events.c:2403); a 303 leaves a fresh session with no action started, so cleaning it up freed heap
garbage. `cds.engine.durable` primes every ruleset's session slots once (see there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

STACK_SIZE = 64  # MAX_STACK_SIZE, events.c:18
MAX_PENDING = 32  # the safe bound every shard keeps (half the stack)
HASH_SET = 511  # NEXT_BUCKET_LENGTH 512 - 1
NEXT_LIST = 127  # NEXT_LIST_LENGTH 128 - 1
BETA_LIST = 255  # BETA_LIST_LENGTH 256 - 1
SEQUENCE = 31  # MAX_SEQUENCE_EXPRESSIONS 32 - 1
ACTIONS = 4096  # MAX_ACTIONS
FACT_PROPERTIES = 254  # MAX_OBJECT_PROPERTIES 255 - 1
#: properties the C core itself puts in facts or tests (`$forward`: forward nodes; `$s`: the state fact)
RESERVED = ("$forward", "$s", "id", "sid")

_OPS = {"$lt": "lt", "$lte": "lte", "$gt": "gt", "$gte": "gte", "$neq": "neq", "$ex": "ex", "$nex": "nex"}


def fnv1a(name: str) -> int:
    """The 32-bit hash durable-rules identifies a property by (fnv1Hash32, state.c:157)."""
    h = 0x811C9DC5
    for byte in name.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return h


def _literal(value: object) -> tuple[str, object]:
    """The literal as the compiler stores it: its JSON type and value (what `findAlpha` compares)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("double", value)
    if isinstance(value, str):
        return ("string", value)
    raise ValueError(f"durable-rules cannot test against {value!r}")


@dataclass
class _PropTests:
    """The children of one node that test one property (what `width` counts)."""

    nex: int = 0  # $nex tests
    types: set[str] = field(default_factory=set)  # JSON types of == tests that share a hash slot
    other: int = 0  # every other test


class _Node:
    __slots__ = ("betas", "forward", "hashset", "literal", "next_list", "op", "parents", "prop")

    def __init__(self, op: str, prop: str | None, literal: tuple[str, object] | None, forward: bool = False):
        self.op, self.prop, self.literal, self.forward = op, prop, literal, forward
        self.hashset: list[_Node] = []
        self.next_list: list[_Node] = []
        self.parents: list[_Node] = []
        self.betas = 0

    def width(self) -> int:
        """The most children handleAlpha can push at once for one fact."""
        forward = 0
        per: dict[str | None, _PropTests] = {}
        for c in self.next_list:
            if c.forward:
                forward += 1
            else:
                per.setdefault(c.prop, _PropTests()).nex += 1
        for c in self.hashset:
            entry = per.setdefault(c.prop, _PropTests())
            assert c.literal is not None  # only forward nodes test no literal, and they are in next_list
            kind, value = c.literal
            if c.op == "eq" and not (kind == "string" and isinstance(value, str) and ('"' in value or "\\" in value)):
                entry.types.add(kind)
            else:
                entry.other += 1
        return forward + sum(max(t.nex, len(t.types) + t.other) for t in per.values())


@dataclass(frozen=True)
class Tables:
    """The largest use of every fixed table in one ruleset."""

    hash_set: int = 0
    next_list: int = 0
    beta_list: int = 0
    sequence: int = 0
    actions: int = 0
    properties: int = 0  # properties of the largest fact asserted into it


class Network:
    """The alpha network durable-rules builds for a ruleset definition, as far as its limits go."""

    def __init__(self) -> None:
        self.root = _Node("type", None, None)
        self.actions = 0
        self.properties: set[str] = set()
        self._largest: dict[str, int] = dict.fromkeys(("hash_set", "next_list", "beta_list", "sequence"), 0)
        self._w: dict[int, int] = {}  # id(node) -> W(node), dropped for a node and its ancestors on change

    def add(self, definition: dict[str, Any]) -> None:
        """Add one rule (``{"all": [{"m": expr}, ...], "pri": n}``) as the compiler would."""
        self.actions += 1
        for key in ("all", "any"):
            for pattern in definition.get(key, ()):
                ((_alias, expr),) = pattern.items()
                sequence = [0]
                end = self._alpha(expr, self.root, sequence)
                end.betas += 1
                self._grow(beta_list=end.betas, sequence=sequence[0])

    def _grow(self, **sizes: int) -> None:
        largest = self._largest
        for k, v in sizes.items():
            if v > largest[k]:
                largest[k] = v

    def _changed(self, node: _Node) -> None:
        todo = [node]
        while todo:
            n = todo.pop()
            if self._w.pop(id(n), None) is not None or n is node:
                todo.extend(n.parents)

    def _link(self, parent: _Node, child: _Node) -> None:
        if child.op == "nex":
            parent.next_list.append(child)
            self._grow(next_list=len(parent.next_list))
        else:
            parent.hashset.append(child)
            self._grow(hash_set=len(parent.hashset))
        child.parents.append(parent)
        self._changed(parent)

    def _alpha(self, expr: dict[str, Any], parent: _Node, sequence: list[int]) -> _Node:
        ((key, value),) = expr.items()
        if key == "$and":  # rete.c:1187: a chain
            sequence[0] += 2
            node = parent
            for item in value:
                node = self._alpha(item, node, sequence)
            return node
        if key == "$or":  # rete.c:1231: a fresh forward node below every branch
            sequence[0] += 2
            forward = _Node("nex", "$forward", None, forward=True)
            for item in value:
                self._link(self._alpha(item, parent, sequence), forward)
            return forward
        if key in _OPS:
            op = _OPS[key]
            ((prop, literal),) = value.items()
        else:
            op, prop, literal = "eq", key, value
        lit = _literal(literal)
        self.properties.add(prop)
        for child in parent.next_list if op == "nex" else parent.hashset:  # rete.c:962: shared tests
            if not child.forward and child.prop == prop and child.op == op and child.literal == lit:
                return child
        node = _Node(op, prop, lit)
        self._link(parent, node)
        return node

    def pending(self) -> int:
        """Upper bound on the alpha nodes pending at once on handleAlpha's stack, over all facts."""
        w = self._w

        def walk(node: _Node) -> int:
            got = w.get(id(node))
            if got is None:
                deeper = max((walk(c) for c in (*node.next_list, *node.hashset)), default=0)
                got = w[id(node)] = node.width() + max(0, deeper - 1)
            return got

        return max(1, walk(self.root))

    def tables(self, bookkeeping: Iterable[str] = ()) -> Tables:
        extra = set(bookkeeping) - self.properties
        return Tables(**self._largest, actions=self.actions, properties=len(self.properties | extra))

    def problems(self, bookkeeping: Iterable[str] = (), bound: int = MAX_PENDING) -> list[str]:
        """Every limit this ruleset exceeds, one phrase each (empty: it is safe to compile and run)."""
        t = self.tables(bookkeeping)
        out = []
        pending = self.pending()
        if pending > bound:
            out.append(
                f"up to {pending} alpha nodes could be pending at once (the safe bound is {bound}, the stack {STACK_SIZE})"
            )
        for got, limit, what in (
            (t.hash_set, HASH_SET, "tests under one alpha node"),
            (t.next_list, NEXT_LIST, "'is unknown' tests and 'any' branches under one alpha node"),
            (t.beta_list, BETA_LIST, "rules ending at one alpha node"),
            (t.sequence, SEQUENCE, "expression-sequence entries in one pattern (2 per all/any/in)"),
            (t.actions, ACTIONS, "rules in one ruleset"),
            (t.properties, FACT_PROPERTIES, "properties in one fact"),
        ):
            if got > limit:
                out.append(f"{got} {what} (durable-rules holds {limit})")
        names = sorted(self.properties | set(bookkeeping) | set(RESERVED))
        seen: dict[int, str] = {}
        for name in names:
            other = seen.setdefault(fnv1a(name), name)
            if other != name:
                out.append(f"the property names {other!r} and {name!r} have the same durable-rules hash")
        return out


@dataclass(frozen=True)
class Shard:
    rule_ids: tuple[str, ...]
    pending: int  # the bound of `Network.pending`, with the sentinel rule
    tables: Tables


@dataclass(frozen=True)
class Plan:
    shards: tuple[Shard, ...]
    #: (rule ID, why): rules that exceed a limit even in a ruleset of their own
    problems: tuple[tuple[str, str], ...]
    bound: int = MAX_PENDING

    def summary(self) -> str:
        rules = sum(len(s.rule_ids) for s in self.shards)
        worst = max((s.pending for s in self.shards), default=0)
        return (
            f"durable-rules capacity: {rules} rules in {len(self.shards)} ruleset(s), at most {worst} alpha nodes "
            f"pending (safe bound {self.bound}, stack {STACK_SIZE})"
        )


def plan(
    rules: Sequence[tuple[str, dict[str, Any]]],
    sentinel: dict[str, Any],
    bookkeeping: Iterable[str] = (),
    bound: int = MAX_PENDING,
) -> Plan:
    """Pack `rules` (ID, definition), in order, into rulesets that each stay within every limit.

    Each ruleset also holds `sentinel`. A rule is added to the current ruleset while the whole
    stays within every limit; otherwise it starts the next one. A rule that exceeds a limit
    in a ruleset of its own is reported in `Plan.problems` and placed nowhere.
    """
    keep = tuple(bookkeeping)

    def fresh() -> Network:
        net = Network()
        net.add(sentinel)
        return net

    groups: list[list[str]] = []
    problems: list[tuple[str, str]] = []
    current: list[str] = []
    net = fresh()
    for rule_id, definition in rules:
        net.add(definition)
        if not net.problems(keep, bound):
            current.append(rule_id)
            continue
        alone = fresh()
        alone.add(definition)
        why = alone.problems(keep, bound)
        if why:
            problems.append((rule_id, "; ".join(why)))
            placed = set(current)
            net = _build(sentinel, [d for r, d in rules if r in placed])  # the ruleset without it
            continue
        if current:
            groups.append(current)
        current, net = [rule_id], alone
    if current:
        groups.append(current)
    defs = dict(rules)
    shards = []
    for ids in groups:
        final = _build(sentinel, [defs[r] for r in ids])
        shards.append(Shard(tuple(ids), final.pending(), final.tables(keep)))
    return Plan(tuple(shards), tuple(problems), bound)


def _build(sentinel: dict[str, Any], definitions: Iterable[dict[str, Any]]) -> Network:
    net = Network()
    net.add(sentinel)
    for d in definitions:
        net.add(d)
    return net
