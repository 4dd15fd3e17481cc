"""The chain reader's plan, against an in-memory storage source holding literal decoded values.

``ChainReader.read_from`` is driven here without a node, a websocket or a codec:
``FakeSource`` answers ``values``/``batch``/``scan`` from the literal storage of
tests/tricky_chain.py and records every call, so each test sees exactly which
items and keys each stage asked for. (That the fake decodes like the real
thing is checked in tests/test_storage_reader.py, which runs the same plan over
a real codec and the simulated node's storage, in process.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional

import pytest

from exporter.chain.reader import ChainReader
from exporter.chain.stages import MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED
from exporter.config import ScopeConfig, WatchedHotkey
from exporter.snapshot.model import ChainRead
from tests import tricky_chain as t
from tests.test_snapshot import chain_read

SUBTENSOR = "SubtensorModule"
# Items only newer runtimes declare: absent unless a test's FakeSource lists them.
OPTIONAL_ITEMS = (MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED, "LastEpochBlock", "PendingEpochAt", "DissolveCleanupQueue",
                  "ActivityCutoffFactorMilli", "TaoDividendsPerSubnet")
ZERO_ACCOUNT = t.hotkey(0)  # what the chain returns for a missing AccountId value
BLOCK, BLOCK_HASH, SPEC = 100, "0xab", 393
NOW_MS = 1_767_225_600_000

# Missing keys decode to the item's default, like the real reader: ValueQuery
# items to their type's zero, OptionQuery items (Uids) to None.
DEFAULTS = {"Keys": ZERO_ACCOUNT, "Owner": ZERO_ACCOUNT, "TotalHotkeyAlpha": 0, "ChildkeyTake": 0, "Uids": None,
            "Tempo": 360, "SubnetOwnerHotkey": ZERO_ACCOUNT, "MaxAllowedValidators": 128,
            "LastEpochBlock": 0, "PendingEpochAt": 0, "DissolveCleanupQueue": [],
            "ActivityCutoff": 5000, "MechanismCountCurrent": 1, "Delegates": 11_796, "CKBurn": 0,
            "AlphaDividendsPerSubnet": 0, "RootAlphaDividendsPerSubnet": 0}
STAGES = (
    # 1: constants, the subnet list, permits and every childkey map
    {"TaoWeight", "StakeThreshold", "MinChildkeyTake", "MaxChildkeyTake", "PendingChildKeyCooldown", "Now",
     "NetworksAdded", "ValidatorPermit", "SubnetworkN",
     "ChildKeys", "ParentKeys", "PendingChildKeys"},
    # 2: hotkeys behind every uid, uids of watched hotkeys, tempos and owners
    {"Keys", "Uids", "MaxAllowedValidators", "Tempo", "SubnetOwnerHotkey"},
    # 3: stakes, takes, coldkeys
    {"TotalHotkeyAlpha", "ChildkeyTake", "Owner"},
    # 4: weight-setting activity and earnings of the tracked validators (exporter/chain/activity.py)
    {"ActivityCutoff", "MechanismCountCurrent", "LastUpdate", "Active", "ValidatorTrust", "Dividends", "Emission",
     "StakeWeight", "AlphaDividendsPerSubnet", "RootAlphaDividendsPerSubnet", "Delegates", "CKBurn"},
)


@dataclass(frozen=True)
class Call:
    method: str  # values | batch | scan
    items: tuple[str, ...]
    keys: tuple = ()  # batch: the params asked for, as tuples
    shards: Optional[int] = None  # scan
    max_keys: Optional[int] = None  # scan: the cap it was given


class FakeSource:
    """The ``StorageReader`` interface over literal decoded values: item -> {params tuple: value}."""

    def __init__(self, storage: dict[str, dict[tuple, Any]], *, optional_items: Iterable[str] = (),
                 fail: Iterable[str] = (), hang: Iterable[str] = ()):
        self.block_hash = BLOCK_HASH
        self.storage = storage
        self.optional_items = set(optional_items)
        self.fail, self.hang = set(fail), set(hang)  # items whose read raises / never answers
        self.cancelled: list[str] = []
        self.calls: list[Call] = []

    @classmethod
    def of(cls, writes: Iterable[tuple[str, str, list, Any]], **kwargs) -> "FakeSource":
        storage: dict[str, dict[tuple, Any]] = {}
        for _pallet, item, params, value in writes:
            storage.setdefault(item, {})[tuple(params)] = value
        return cls(storage, **kwargs)

    def has_runtime_api(self, api: str, method: str) -> bool:
        return False  # literal storage only: no runtime to call

    async def runtime_call(self, api: str, method: str, params) -> Any:
        raise AssertionError("called a runtime API the source does not declare")

    def has_item(self, item: str, pallet: str = SUBTENSOR) -> bool:
        return item not in OPTIONAL_ITEMS or item in self.optional_items

    async def _answer(self, item: str) -> None:
        await asyncio.sleep(0)  # like a request: the others of its stage start meanwhile
        if item in self.fail:
            raise ConnectionError(f"reading {item}: the node went away")
        if item in self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(item)
                raise

    def _get(self, item: str, params: tuple) -> Any:
        assert self.has_item(item), f"{item} read though the runtime does not declare it"
        return self.storage.get(item, {}).get(params, DEFAULTS.get(item))

    async def values(self, reads, pallet: str = SUBTENSOR) -> list[Any]:
        self.calls.append(Call("values", tuple(item for item, _ in reads), tuple(tuple(p) for _, p in reads)))
        for item, _ in reads:
            await self._answer(item)
        return [self._get(item, tuple(params)) for item, params in reads]

    async def batch(self, item: str, params_list, pallet: str = SUBTENSOR) -> list[Any]:
        keys = tuple(tuple(p) for p in params_list)
        self.calls.append(Call("batch", (item,), keys))
        await self._answer(item)
        return [self._get(item, k) for k in keys]

    async def scan(self, item: str, params=(), *, shards: int = 1, max_keys: Optional[int] = None,
                   pallet: str = SUBTENSOR) -> list[tuple[Any, Any]]:
        assert not params, "the reader scans whole maps"
        assert self.has_item(item), f"{item} scanned though the runtime does not declare it"
        self.calls.append(Call("scan", (item,), shards=shards, max_keys=max_keys))
        await self._answer(item)
        return [(k[0] if len(k) == 1 else k, v) for k, v in self.storage.get(item, {}).items()]

    # -- what was asked -------------------------------------------------------

    def asked(self, item: str) -> list[tuple]:
        """Every key ``batch`` was asked for on ``item``, in order, over all calls."""
        return [k for c in self.calls if c.method == "batch" and c.items == (item,) for k in c.keys]

    def items_in_order(self) -> list[str]:
        return [item for c in self.calls for item in c.items]


def tricky_writes() -> list[tuple[str, str, list, Any]]:
    return [*t.storage_writes(), ("Timestamp", "Now", [], NOW_MS)]


def read(source: FakeSource, scope: ScopeConfig, reader: Optional[ChainReader] = None) -> ChainRead:
    reader = reader or ChainReader(max_in_flight=4)
    # The activity part is test_chain_activity.py's: the rest is compared with the literal read.
    return replace(asyncio.run(reader.read_from(source, scope, block=BLOCK, spec_version=SPEC)), activity=None)


SCOPE = ScopeConfig(min_stake_weight=100, watch=(WatchedHotkey(t.P, "parent"),))
# The permit holders of the subnets (not root) in scope, and the watched P.
CANDIDATES_1 = [h for h, ok in zip(t.UIDS_1, t.PERMITS_1) if ok]
CANDIDATES = {*((h, 1) for h in CANDIDATES_1), (t.V2, 2)}


def test_the_read_equals_the_literal_chain_read():
    got = read(FakeSource.of(tricky_writes()), SCOPE)
    expected = chain_read(
        # Keys are read for every uid of every subnet but root: permit holders are
        # tracked, the others (NP on netuid 1, OWNER on netuid 2) contend for permits.
        hotkeys={(n, uid): h for (n, uid), h in chain_read().hotkeys.items() if n != 0},
        # P is watched: its uids on every subnet, root included; it is not registered on netuid 2.
        watched_uids={(0, t.P): 0, (1, t.P): 0},
        # Coldkeys only for tracked validators: NP has no permit and is not watched.
        coldkeys={h: c for h, c in t.COLD.items() if h != t.NP},
        subnet_sizes={0: 2, 1: 11, 2: 2},
        owners={1: t.OWNER, 2: t.OWNER},
        tempos={1: 360, 2: 360},  # the tricky chain sets none: the runtime's default
        max_validators={1: 64, 2: 64},  # read for subnets only
    )
    assert got == expected
    assert got.min_take_per_subnet is None and got.suspended is None


def test_stages_run_in_order_with_a_fixed_number_of_bulk_calls():
    source = FakeSource.of(tricky_writes())
    read(source, SCOPE)
    order = source.items_in_order()
    stage_of = {item: i for i, stage in enumerate(STAGES) for item in stage}
    assert set(order) == set().union(*STAGES)
    assert [stage_of[item] for item in order] == sorted(stage_of[item] for item in order)
    assert [c.method for c in source.calls].count("values") == 3  # SubtensorModule's plain items, Timestamp.Now, CKBurn
    assert len(source.calls) == 2 + 6 + 5 + 3 + 12


def test_only_watched_hotkeys_uids_are_requested():
    source = FakeSource.of(tricky_writes())
    read(source, SCOPE)
    assert source.asked("Uids") == [(0, t.P), (1, t.P), (2, t.P)], "each subnet, root included, for the one watched hotkey"

    unwatched = FakeSource.of(tricky_writes())
    assert read(unwatched, replace(SCOPE, watch=())).watched_uids == {}
    assert unwatched.asked("Uids") == []


def test_hotkeys_are_requested_for_every_uid_below_the_subnet_size():
    source = FakeSource.of(tricky_writes())
    read(source, SCOPE)
    assert source.asked("Keys") == [(1, uid) for uid in range(11)] + [(2, 0), (2, 1)]


def test_uids_registered_since_the_last_epoch_are_read_too():
    """ValidatorPermit is as long as the subnet was at its last epoch; SubnetworkN says how many uids there are now."""
    writes = [w for w in tricky_writes() if w[1:3] != ("SubnetworkN", [2])] + [("SubtensorModule", "SubnetworkN", [2], 3)]
    source = FakeSource.of(writes)
    got = read(source, SCOPE)
    assert (2, 2) in source.asked("Keys")
    assert (2, 2) not in got.hotkeys, "an empty key of a uid without a permit is nobody, not an error"


def test_a_subnet_size_the_chain_cannot_have_is_refused_before_reading_it():
    from exporter.snapshot.read_rules import InvalidRead
    writes = [w for w in tricky_writes() if w[1:3] != ("SubnetworkN", [2])] + [("SubtensorModule", "SubnetworkN", [2], 10**9)]
    source = FakeSource.of(writes)
    with pytest.raises(InvalidRead, match="SubnetworkN"):
        read(source, SCOPE)
    assert source.asked("Keys") == []


def test_stakes_are_requested_for_every_uid_their_parents_and_root_only():
    source = FakeSource.of(tricky_writes())
    read(source, SCOPE)
    asked = source.asked("TotalHotkeyAlpha")
    assert len(asked) == len(set(asked)), "no key twice"
    # Every registered uid (NP and OWNER contend for permits); their parents are registered too.
    registered = {(h, 1) for h in t.UIDS_1} | {(t.V2, 2), (t.OWNER, 2)}
    assert set(asked) == registered | {(h, 0) for h, _ in registered}


def test_takes_and_coldkeys_only_for_candidates():
    source = FakeSource.of(tricky_writes())
    read(source, SCOPE)
    assert set(source.asked("ChildkeyTake")) == CANDIDATES
    assert set(source.asked("Owner")) == {(h,) for h, _ in CANDIDATES}


def test_a_watched_hotkey_without_a_permit_is_a_candidate():
    source = FakeSource.of(tricky_writes())
    got = read(source, replace(SCOPE, watch=(WatchedHotkey(t.NP, "no permit"),)))
    assert got.watched_uids == {(1, t.NP): 10}
    assert (t.NP, 1) in source.asked("ChildkeyTake") and (t.NP,) in source.asked("Owner")
    assert got.coldkeys[t.NP] == t.COLD[t.NP]


def test_the_subnet_filter_narrows_the_export_not_the_read():
    """History follows the chain: a change on a subnet outside the filter is still recorded,
    so the read is the same with or without the filter."""
    everything = FakeSource.of(tricky_writes())
    filtered = FakeSource.of(tricky_writes())
    got = read(filtered, replace(SCOPE, netuids=(2,)))
    assert got == read(everything, SCOPE)
    assert filtered.calls == everything.calls


def test_zero_values_are_dropped_defaults_are_not_invented():
    got = read(FakeSource.of(tricky_writes()), SCOPE)
    assert (t.Z, 1) not in got.stake, "Z's zero stake is not stored"
    assert (t.C1, 1) not in got.takes and (t.C4, 1) not in got.takes
    assert got.takes[(t.C2, 1)] == 11796


def test_empty_child_and_parent_vectors_are_dropped_but_a_pending_revocation_is_kept():
    writes = tricky_writes() + [
        (SUBTENSOR, "ChildKeys", [t.V2, 2], []),
        (SUBTENSOR, "ParentKeys", [t.V2, 2], []),
        (SUBTENSOR, "ChildKeys", [t.M, 1], []),
    ]
    got = read(FakeSource.of(writes), SCOPE)
    assert (t.V2, 2) not in got.children and (t.V2, 2) not in got.parents and (t.M, 1) not in got.children
    assert got.pending[(1, t.P)] == ((), 7400), "an empty pending set is a scheduled revocation"


def test_networks_added_false_is_not_a_subnet():
    got = read(FakeSource.of(tricky_writes() + [(SUBTENSOR, "NetworksAdded", [7], False)]), SCOPE)
    assert got.netuids == (0, 1, 2)


def test_optional_items_are_read_only_when_the_runtime_declares_them():
    source = FakeSource.of(tricky_writes())
    got = read(source, SCOPE)
    assert MIN_TAKE_PER_SUBNET not in source.items_in_order()
    assert THRESHOLD_SUSPENDED not in source.items_in_order()
    assert got.min_take_per_subnet is None and got.suspended is None


def test_optional_items_present_but_empty_are_empty_not_none():
    source = FakeSource.of(tricky_writes(), optional_items=(MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED))
    got = read(source, SCOPE)
    assert {MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED} <= set(source.items_in_order())
    assert got.min_take_per_subnet == {} and got.suspended == {}


@pytest.mark.parametrize("hotkey_first", [True, False], ids=["hotkey-netuid", "netuid-hotkey"])
def test_optional_items_when_present(hotkey_first):
    def suspended_key(hotkey, netuid):
        return [hotkey, netuid] if hotkey_first else [netuid, hotkey]

    writes = tricky_writes() + [
        (SUBTENSOR, MIN_TAKE_PER_SUBNET, [1], 6000),
        (SUBTENSOR, MIN_TAKE_PER_SUBNET, [2], 0),
        (SUBTENSOR, THRESHOLD_SUSPENDED, suspended_key(t.C1, 1), True),
        (SUBTENSOR, THRESHOLD_SUSPENDED, suspended_key(t.M, 1), False),
    ]
    only_min_take = read(FakeSource.of(writes, optional_items=(MIN_TAKE_PER_SUBNET,)), SCOPE)
    assert only_min_take.min_take_per_subnet == {1: 6000, 2: 0}
    assert only_min_take.suspended is None

    both = read(FakeSource.of(writes, optional_items=(MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED)), SCOPE)
    assert both.suspended == {(t.C1, 1): True, (t.M, 1): False}


def test_a_suspension_keyed_by_the_hotkey_alone_makes_its_edges_inert_but_on_subnets_it_owns():
    """The chain's layout (``ChildkeyThresholdSuspended[hotkey] = ()``): ``get_children`` and
    ``get_parents`` skip the hotkey's edges on every subnet but one whose owner hotkey it is."""
    writes = tricky_writes() + [
        (SUBTENSOR, THRESHOLD_SUSPENDED, [t.P3], ()),
        (SUBTENSOR, THRESHOLD_SUSPENDED, [t.NP], ()),
        (SUBTENSOR, "SubnetOwnerHotkey", [1], t.NP),  # NP owns subnet 1: its edge to Z stays live
    ]
    got = read(FakeSource.of(writes, optional_items=(THRESHOLD_SUSPENDED,)), SCOPE)
    assert got.suspended == {(t.P3, 1): True, (t.P3, 2): True, (t.NP, 1): False, (t.NP, 2): True}
    assert (t.P3, 1) not in got.children, "get_children returns nothing for a suspended parent"
    assert got.parents[(t.M, 1)] == ((t.HALF, t.P2),), "get_parents skips it"
    assert got.children[(t.NP, 1)] == ((t.QUARTER, t.Z),) and got.parents[(t.Z, 1)] == ((t.QUARTER, t.NP),)


def big_chain(validators_per_subnet: int, subnets: int) -> list[tuple[str, str, list, Any]]:
    """``subnets`` subnets of permitted validators, each with a parent, a take and a coldkey."""
    writes = [(SUBTENSOR, item, [], value) for item, value in
              (("TaoWeight", t.TAO_WEIGHT), ("StakeThreshold", 0), ("MinChildkeyTake", 0),
               ("MaxChildkeyTake", 11796), ("PendingChildKeyCooldown", 7200))]
    writes.append(("Timestamp", "Now", [], NOW_MS))
    for netuid in range(1, subnets + 1):
        writes += [(SUBTENSOR, "NetworksAdded", [netuid], True),
                   (SUBTENSOR, "MaxAllowedValidators", [netuid], 64),
                   (SUBTENSOR, "ValidatorPermit", [netuid], [True] * validators_per_subnet)]
        for uid in range(validators_per_subnet):
            hotkey, parent = f"hk-{netuid}-{uid}", f"parent-{netuid}-{uid}"
            writes += [(SUBTENSOR, "Keys", [netuid, uid], hotkey),
                       (SUBTENSOR, "TotalHotkeyAlpha", [hotkey, netuid], 10 * t.RAO),
                       (SUBTENSOR, "ChildkeyTake", [hotkey, netuid], 100),
                       (SUBTENSOR, "Owner", [hotkey], f"cold-{hotkey}"),
                       (SUBTENSOR, "ChildKeys", [parent, netuid], [(t.MAX, hotkey)]),
                       (SUBTENSOR, "ParentKeys", [hotkey, netuid], [(t.MAX, parent)])]
    return writes


def test_no_request_per_validator():
    calls = []
    for validators, subnets in ((1, 1), (5, 2), (64, 4)):
        source = FakeSource.of(big_chain(validators, subnets))
        got = read(source, ScopeConfig(min_stake_weight=0))
        assert len(got.hotkeys) == validators * subnets
        assert len(source.asked("TotalHotkeyAlpha")) == 4 * validators * subnets  # self, parent; subnet, root
        calls.append([(c.method, c.items) for c in source.calls])
    assert calls[0] == calls[1] == calls[2], "the same bulk calls whatever the number of validators"


def test_scans_are_sharded_by_the_map_sizes_the_last_read_saw():
    reader = ChainReader(max_in_flight=4)
    first = FakeSource.of(tricky_writes())
    read(first, SCOPE, reader)
    # Nothing seen yet: assume two pages' worth, at most 800 keys a shard -> 3 shards.
    assert {c.shards for c in first.calls if c.method == "scan"} == {3}

    # ParentKeys now holds 5,000 entries and ChildKeys 26,000 (empty vectors, dropped).
    grown = FakeSource.of(tricky_writes()).storage
    grown["ParentKeys"].update(dict.fromkeys(((f"gone-{i}", 1) for i in range(5000 - len(grown["ParentKeys"]))), []))
    grown["ChildKeys"].update(dict.fromkeys(((f"gone-{i}", 1) for i in range(26_000 - len(grown["ChildKeys"]))), []))
    second = FakeSource(grown)
    read(second, SCOPE, reader)
    assert {c.shards for c in second.calls if c.method == "scan"} == {1}, "every map was small last time"

    third = FakeSource(grown)
    read(third, SCOPE, reader)
    shards = {c.items[0]: c.shards for c in third.calls if c.method == "scan"}
    assert shards["ParentKeys"] == 7, "ceil(5000 / 800)"
    assert shards["ChildKeys"] == 32, "ceil(26000 / 800) = 33, capped"
    assert shards["NetworksAdded"] == 1


def test_an_empty_chain_reads_as_empty():
    got = read(FakeSource.of(big_chain(0, 0)), SCOPE)
    assert got.netuids == () and got.hotkeys == {} and got.stake == {} and got.coldkeys == {}
    assert got.block == BLOCK and got.block_hash == BLOCK_HASH and got.spec_version == SPEC


@pytest.mark.parametrize("fail, hang", [("ParentKeys", "ChildKeys"), ("Now", "PendingChildKeys"),
                                        ("Uids", "Keys"), ("TotalHotkeyAlpha", "Owner")])
def test_a_failed_read_cancels_the_rest_of_its_stage(fail, hang):
    """Nothing of a failed read stays in flight: the session closes the connection right after."""
    source = FakeSource.of(tricky_writes(), fail={fail}, hang={hang})

    async def read_then_settle():
        with pytest.raises(ConnectionError, match=fail):
            await ChainReader(max_in_flight=4).read_from(source, SCOPE, block=BLOCK, spec_version=SPEC)
        for _ in range(10):  # let anything still running show itself
            await asyncio.sleep(0)
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(read_then_settle()) == set()
    assert source.cancelled == [hang]
    stage = next(i for i, items in enumerate(STAGES) if fail in items)
    assert not set(source.items_in_order()) & set().union(*STAGES[stage + 1:]), "no later stage starts"


def test_netuid_keyed_scans_are_capped_at_the_netuid_bound_and_no_other():
    source = FakeSource.of(tricky_writes(), optional_items=(MIN_TAKE_PER_SUBNET, THRESHOLD_SUSPENDED))
    read(source, SCOPE)
    caps = {c.items[0]: c.max_keys for c in source.calls if c.method == "scan"}
    netuid_keyed = {"NetworksAdded", "ValidatorPermit", "SubnetworkN", MIN_TAKE_PER_SUBNET}
    assert {item: cap for item, cap in caps.items() if item in netuid_keyed} == dict.fromkeys(netuid_keyed, 4096)
    hotkey_keyed = {"ChildKeys", "ParentKeys", "PendingChildKeys", THRESHOLD_SUSPENDED}
    assert {item: cap for item, cap in caps.items() if item in hotkey_keyed} == dict.fromkeys(hotkey_keyed), \
        "no key cap: the read's byte budget (test_scan_budget)"
