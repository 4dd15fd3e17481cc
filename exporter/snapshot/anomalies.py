"""States real storage can hold that no write path makes: found in one read, a pure function.

The exporter publishes these as the chain computes from them (``check_read`` refuses only
what no honest node can serve) and flags each one, by rule and subnet, so that an operator
knows the numbers stand on an unusual state (docs/chain-states.md says what each means and
what to do). Each rule counts its offending entries:

- ``take_above_max``: ChildkeyTake entries (of those read: the tracked validators') above
  MaxChildkeyTake (the sudo setter lowered the bound and touches no stored take);
- ``min_take_above_max``: MinChildkeyTake (chain-wide, netuid None) or a subnet's
  MinChildkeyTakePerSubnet above MaxChildkeyTake;
- ``parents_do_not_mirror_children``: parent -> child edges that ChildKeys and ParentKeys do
  not both list with the same proportion (leftovers of old hotkey swaps, a dissolution's cleanup);
- ``duplicate_parent``: ParentKeys lists naming a parent more than once (its stake counts
  once per entry, as ``get_inherited_for_hotkey_on_subnet`` iterates the list);
- ``pending_self_or_duplicate``: pending child sets naming their parent or a child twice (a
  swap's rewrite; the chain drops the one and keeps the last of the other when it applies);
- ``permit_without_hotkey``: permitted uids without a Keys entry (they weigh 0 at the epoch);
- ``duplicate_hotkey``: uids whose hotkey another uid of the subnet holds too (the chain
  skips the subnet's epochs, so its permits stay as they are).

Zero TotalHotkeyAlpha rows are no anomaly: a zero stake.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import compress
from typing import Optional

from exporter.snapshot.model import Anomaly, ChainRead

RULES = (
    "take_above_max",
    "min_take_above_max",
    "parents_do_not_mirror_children",
    "duplicate_parent",
    "pending_self_or_duplicate",
    "permit_without_hotkey",
    "duplicate_hotkey",
)


def find_anomalies(read: ChainRead, kept: Optional[dict] = None) -> tuple[Anomaly, ...]:
    """Every (rule, netuid) with offending entries in ``read``, by rule (``RULES``' order) then netuid.

    ``kept``: a dict the caller keeps from build to build (the ``StakeMemo``'s): the counts of the
    links and of the uids are taken from it while their maps equal those they were counted from
    (mostly the very objects: the reader hands out the last read's when nothing in them changed).
    Counting them again costs ~15 ms CPU on the larger chain (``bench.stages``' 7,172 edges and
    32,512 uids), about a fifth of a build with the stake memo."""
    live = frozenset(read.netuids)
    counts: dict[tuple[str, Optional[int]], int] = defaultdict(int)
    _takes(read, live, counts)
    _pending(read, live, counts)
    for key, inputs, count_part in (("links", (read.children, read.parents), _links), ("uids", (read.hotkeys, read.permits), _uids)):
        last = kept.get(key) if kept is not None else None
        if last is not None and last[1] == live and all(a is b or a == b for a, b in zip(last[0], inputs)):
            part = last[2]
        else:
            part = defaultdict(int)
            count_part(read, live, part)
            if kept is not None:
                kept[key] = (inputs, live, part)
        for found, n in part.items():
            counts[found] += n
    order = {rule: i for i, rule in enumerate(RULES)}
    return tuple(Anomaly(rule, netuid, count) for (rule, netuid), count in
                 sorted(counts.items(), key=lambda kv: (order[kv[0][0]], -1 if kv[0][1] is None else kv[0][1])))


def epoch_skipped(anomalies: tuple[Anomaly, ...]) -> frozenset[int]:
    """The subnets whose next epoch the chain skips (``is_epoch_input_state_consistent``: a hotkey
    twice in Keys): their permits stay as they are."""
    return frozenset(a.netuid for a in anomalies if a.rule == "duplicate_hotkey" and a.netuid is not None)


def _takes(read: ChainRead, live: frozenset, counts: dict) -> None:
    top = read.max_take
    if read.min_take > top:
        counts[("min_take_above_max", None)] += 1
    for netuid, minimum in (read.min_take_per_subnet or {}).items():
        if minimum > top and netuid in live:
            counts[("min_take_above_max", netuid)] += 1
    if read.takes and max(read.takes.values()) > top:
        for (_, netuid), take in read.takes.items():
            if take > top and netuid in live:
                counts[("take_above_max", netuid)] += 1


def _links(read: ChainRead, live: frozenset, counts: dict) -> None:
    down = {(p, c, n): q for (p, n), links in read.children.items() if n in live for q, c in links}
    up: dict = {}
    for (c, n), links in read.parents.items():
        if n not in live:
            continue
        for q, p in links:
            up[(p, c, n)] = q  # a parent listed twice: its last entry (flagged below)
        if len(links) > 1 and len({p for _, p in links}) != len(links):
            counts[("duplicate_parent", n)] += 1
    if down != up:
        for edge in down.keys() | up.keys():
            if down.get(edge) != up.get(edge):
                counts[("parents_do_not_mirror_children", edge[2])] += 1


def _pending(read: ChainRead, live: frozenset, counts: dict) -> None:
    for (netuid, parent), (links, _) in read.pending.items():
        children = [child for _, child in links]
        if netuid in live and (parent in children or len(set(children)) != len(children)):
            counts[("pending_self_or_duplicate", netuid)] += 1


def _uids(read: ChainRead, live: frozenset, counts: dict) -> None:
    hotkeys = read.hotkeys
    for netuid, permits in read.permits.items():
        if netuid == 0 or netuid not in live:
            continue  # root's uids are not read
        for uid in compress(range(len(permits)), permits):  # the permitted uids, picked in C
            if (netuid, uid) not in hotkeys:
                counts[("permit_without_hotkey", netuid)] += 1
    if len({(n, h) for (n, _), h in hotkeys.items()}) == len(hotkeys):
        return  # the usual read: no hotkey holds two uids
    held = Counter((n, h) for (n, _), h in hotkeys.items())
    for (netuid, _), times in held.items():
        if times > 1:
            counts[("duplicate_hotkey", netuid)] += times
