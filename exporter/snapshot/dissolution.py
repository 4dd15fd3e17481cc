"""Keep a dissolving subnet's leftovers out of a read: a netuid outside NetworksAdded is not a subnet.

Since subtensor PR #2412 (June 2026) ``do_dissolve_network`` only removes the netuid from
``NetworksAdded`` and queues it in ``DissolveCleanupQueue``; ``on_idle`` then deletes its
storage in metered phases over many blocks (``subnets/dissolution.rs``): the stake totals,
then ``SubnetworkN``/``ValidatorPermit``, then ``Keys``/``Uids``/``PendingChildKeys``, then
``ChildkeyTake``, ``ChildKeys``, ``ParentKeys``, and more. Between two phases the maps hold a
netuid the chain no longer treats as a subnet (``ChildKeys`` gone, ``ParentKeys`` still
there, say). The chain computes nothing from those entries, so neither does the exporter:
``without_dissolved`` drops them from a read before anything is derived from it, and names
the netuids whose cleanup is not finished (``ChainRead.dissolving``).

Pure: literal values in, a read out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Optional

from exporter.snapshot.model import ChainRead, frozen
from exporter.snapshot.read_rules import MAX_NETUIDS, InvalidRead

# The maps a read scans whole that a dissolution's cleanup deletes, each with where the netuid
# sits in its key: an entry of a netuid outside NetworksAdded is a leftover, evidence that
# the cleanup is still running. (MinChildkeyTakePerSubnet and ChildkeyThresholdSuspended are
# dropped for such a netuid too, but say nothing about a dissolution: the cleanup does not
# delete them.)
LEFTOVER_MAPS = ("permits", "subnet_sizes", "children", "parents", "pending")


def without_dissolved(read: ChainRead, queue: Optional[Iterable[Any]] = None) -> ChainRead:
    """``read`` with only the subnets that exist: netuids in ``NetworksAdded`` and not in
    ``queue`` (``DissolveCleanupQueue``, None where the runtime lacks it); every entry of
    another netuid is dropped, and ``dissolving`` lists the queued netuids and those that
    left such entries behind. The very ``read`` (``dissolving`` updated) when nothing is dropped.

    Raises ``InvalidRead`` for a queue naming root or a netuid beyond the chain's range, or a
    leftover of such a netuid: the chain has neither, and each would be a series.
    """
    queued = frozenset(int(n) for n in queue or ())
    if queued and not all(0 < n < MAX_NETUIDS for n in queued):
        raise InvalidRead("netuid_out_of_range", f"DissolveCleanupQueue lists {sorted(queued)[:3]}... "
                          f"(root cannot be dissolved; bound {MAX_NETUIDS})")
    netuids = tuple(n for n in read.netuids if n not in queued)
    live = frozenset(netuids)
    leftovers: set[int] = set()
    kept = {
        "permits": _live(read.permits, _first, live, leftovers),
        "subnet_sizes": _live(read.subnet_sizes, _first, live, leftovers),
        "children": _live(read.children, _second, live, leftovers),
        "parents": _live(read.parents, _second, live, leftovers),
        "pending": _live(read.pending, _first_of_pair, live, leftovers),
    }
    if read.min_take_per_subnet is not None:
        kept["min_take_per_subnet"] = _live(read.min_take_per_subnet, _first, live, set())
    if read.suspended is not None:  # keyed (hotkey, None) where the runtime keys it by hotkey alone
        kept["suspended"] = _live(read.suspended, _second, live | {None}, set())
    beyond = [n for n in leftovers if not 0 <= n < MAX_NETUIDS]
    if beyond:
        raise InvalidRead("netuid_out_of_range", f"entries of netuid {min(beyond)} (bound {MAX_NETUIDS})")
    dissolving = tuple(sorted(queued | leftovers))
    changed = {name: mapping for name, mapping in kept.items() if mapping is not getattr(read, name)}
    if netuids == read.netuids and not changed:
        return read if read.dissolving == dissolving else replace(read, dissolving=dissolving)
    return replace(read, netuids=netuids, dissolving=dissolving, **changed)


def _first(key: Any) -> Any:
    return key


def _second(key: tuple) -> Any:
    return key[1]


def _first_of_pair(key: tuple) -> Any:
    return key[0]


def _live(mapping: Mapping, netuid_of: Callable[[Any], Any], live: frozenset, leftovers: set) -> Mapping:
    """``mapping`` without the entries of netuids outside ``live`` (added to ``leftovers``); the
    very mapping when it has none (the usual read: one pass over its keys, in C)."""
    others = set(map(netuid_of, mapping)) - live
    if not others:
        return mapping
    leftovers.update(others)
    return frozen({key: value for key, value in mapping.items() if netuid_of(key) not in others})
