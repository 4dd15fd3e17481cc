"""Chain actions on the simulated node: each changes storage and deposits the event exactly as
subtensor's extrinsic or block step does, in the pending block, laid out by its runtime.

Written from subtensor's own code (``pallets/subtensor/src/``): ``staking/set_children.rs``
(``do_set_childkey_take``, ``do_schedule_children``, ``do_set_pending_children``),
``swap/swap_hotkey.rs``, ``staking/stake_utils.rs`` (``StakeAdded``/``StakeRemoved``),
``subnets/uids.rs`` ``replace_neuron``, ``subnets/subnet.rs`` / ``coinbase/root.rs``
(networks) and ``utils/misc.rs`` (the setters). Each extrinsic returns its index in the
pending block; checks the chain makes on the caller (ownership, rate limits, bounds) are
left to the test. Commit the block yourself (``state.commit_block()``).

    state = ChainState(393)
    set_childkey_take(state, hotkey, 3, 1_000)          # ChildkeyTake + ChildKeyTakeSet
    schedule_children(state, parent, 3, [(U64_MAX // 2, hotkey)])
    state.commit_block()
    advance_to(state, 7_500)                             # epochs apply due sets: SetChildren
"""

from __future__ import annotations

from typing import Optional, Sequence

from simnode.dissolution import dissolve_network
from simnode.epoch import PALLET, _Storage, apply_pending_children
from simnode.state import ChainState

__all__ = [
    "add_network",
    "add_stake",
    "apply_pending_children",
    "dissolve_network",
    "register_neuron",
    "remove_network",
    "remove_stake",
    "schedule_children",
    "set_childkey_take",
    "set_max_allowed_validators",
    "set_max_childkey_take",
    "set_min_childkey_take",
    "set_min_childkey_take_per_subnet",
    "set_stake_threshold",
    "set_subnet_owner_hotkey",
    "swap_hotkey",
]

# The runtimes in simnode/metadata (365, 393) predate the 2026 fixes: a hotkey swap drops the
# ChildkeyTake (GHSA-2026-014) and replacing a uid keeps its ValidatorPermit (2026-05-27).
LAST_SPEC_BEFORE_2026_FIXES = 393


def _declares(state: ChainState, item: str) -> bool:
    try:
        state.runtime.storage_entry(PALLET, item)
    except KeyError:
        return False
    return True


def _pending_block(state: ChainState) -> int:
    return state.head.number + 1


def set_childkey_take(state: ChainState, hotkey: str, netuid: int, take: int) -> int:
    """``set_childkey_take``: ``ChildkeyTake[hotkey, netuid]`` and ``ChildKeyTakeSet``
    (hotkey, take; runtimes that add the netuid get it too)."""
    state.set("ChildkeyTake", [hotkey, netuid], take)
    return state.emit(PALLET, "ChildKeyTakeSet", {"T::AccountId": hotkey, "NetUid": netuid, "u16": take})


def schedule_children(
    state: ChainState, parent: str, netuid: int, children: Sequence[tuple[int, str]], *, cooldown: Optional[int] = None
) -> int:
    """``set_children`` after the subnet's start call: ``PendingChildKeys[netuid, parent] =
    (children, block + PendingChildKeyCooldown)`` and ``SetChildrenScheduled(parent, netuid,
    cooldown_block, children)``; an empty ``children`` schedules a revocation. ``cooldown``
    overrides the stored PendingChildKeyCooldown."""
    if cooldown is None:
        cooldown = _Storage(state).one("PendingChildKeyCooldown")
    cooldown_block = _pending_block(state) + cooldown
    children = [(int(p), child) for p, child in children]
    state.set("PendingChildKeys", [netuid, parent], (children, cooldown_block))
    return state.emit(PALLET, "SetChildrenScheduled", [parent, netuid, cooldown_block, children])


def set_min_childkey_take(state: ChainState, take: int) -> int:
    """``sudo_set_min_childkey_take``: ``MinChildkeyTake`` and ``MinChildKeyTakeSet(take)``."""
    state.set("MinChildkeyTake", [], take)
    return state.emit(PALLET, "MinChildKeyTakeSet", [take])


def set_max_childkey_take(state: ChainState, take: int) -> int:
    """``sudo_set_max_childkey_take``: ``MaxChildkeyTake`` and ``MaxChildKeyTakeSet(take)``. Like the
    chain, it touches no stored take: lowering the bound leaves the takes above it as they are."""
    state.set("MaxChildkeyTake", [], take)
    return state.emit(PALLET, "MaxChildKeyTakeSet", [take])


def set_min_childkey_take_per_subnet(state: ChainState, netuid: int, take: int) -> int:
    """``sudo_set_min_childkey_take_per_subnet`` (runtimes from mid-2026): ``MinChildkeyTakePerSubnet[netuid]``
    and ``MinChildKeyTakePerSubnetSet(netuid, take)``. The bounds the extrinsic checks at the time are the
    test's; a later lowered MaxChildkeyTake leaves the minimum above it."""
    if not _declares(state, "MinChildkeyTakePerSubnet"):
        raise ValueError(f"runtime {state.pending_spec_version} has no MinChildkeyTakePerSubnet")
    state.set("MinChildkeyTakePerSubnet", [netuid], take)
    return state.emit(PALLET, "MinChildKeyTakePerSubnetSet", [netuid, take])


def set_max_allowed_validators(state: ChainState, netuid: int, k: int) -> int:
    """``sudo_set_max_allowed_validators``: ``MaxAllowedValidators[netuid]`` and ``MaxAllowedValidatorsSet``."""
    state.set("MaxAllowedValidators", [netuid], k)
    return state.emit(PALLET, "MaxAllowedValidatorsSet", [netuid, k])


def set_stake_threshold(state: ChainState, threshold: int) -> int:
    """``sudo_set_stake_threshold``: ``StakeThreshold`` and ``StakeThresholdSet``."""
    state.set("StakeThreshold", [], threshold)
    return state.emit(PALLET, "StakeThresholdSet", [threshold])


def set_subnet_owner_hotkey(state: ChainState, netuid: int, hotkey: str, *, extrinsic: Optional[int] = None) -> int:
    """``set_subnet_owner_hotkey``: ``SubnetOwnerHotkey[netuid]`` and ``SubnetOwnerHotkeySet``."""
    state.set("SubnetOwnerHotkey", [netuid], hotkey)
    return state.emit(PALLET, "SubnetOwnerHotkeySet", [netuid, hotkey], extrinsic=extrinsic)


def add_stake(
    state: ChainState, coldkey: str, hotkey: str, netuid: int, alpha: int, *, tao: Optional[int] = None, fee: int = 0
) -> int:
    """``add_stake``: ``TotalHotkeyAlpha[hotkey, netuid] += alpha`` and ``StakeAdded(coldkey,
    hotkey, tao, alpha, netuid, fee)`` (``tao`` defaults to ``alpha``: a price of 1)."""
    st = _Storage(state)
    state.set("TotalHotkeyAlpha", [hotkey, netuid], st.one("TotalHotkeyAlpha", [hotkey, netuid]) + alpha)
    return state.emit(PALLET, "StakeAdded", [coldkey, hotkey, alpha if tao is None else tao, alpha, netuid, fee])


def remove_stake(
    state: ChainState, coldkey: str, hotkey: str, netuid: int, alpha: int, *, tao: Optional[int] = None, fee: int = 0
) -> int:
    """``remove_stake``: ``TotalHotkeyAlpha[hotkey, netuid] -= alpha`` and ``StakeRemoved(coldkey,
    hotkey, tao, alpha, netuid, fee)``."""
    st = _Storage(state)
    left = st.one("TotalHotkeyAlpha", [hotkey, netuid]) - alpha
    if left < 0:
        raise ValueError(f"{hotkey} has less than {alpha} alpha on subnet {netuid}")
    state.set("TotalHotkeyAlpha", [hotkey, netuid], left)
    return state.emit(PALLET, "StakeRemoved", [coldkey, hotkey, alpha if tao is None else tao, alpha, netuid, fee])


def register_neuron(
    state: ChainState, netuid: int, uid: int, hotkey: str, *, clear_permit: Optional[bool] = None
) -> int:
    """``burned_register`` landing on ``uid``: a new uid when ``uid == SubnetworkN``, else
    ``replace_neuron`` (the old hotkey's ``Uids`` row goes, ``Keys``/``Uids`` name ``hotkey``)
    and ``NeuronRegistered(netuid, uid, hotkey)``. ``clear_permit`` (default: runtimes after
    393) clears the uid's ``ValidatorPermit`` and ``StakeWeight`` as ``clear_neuron`` does."""
    st = _Storage(state)
    n = st.one("SubnetworkN", [netuid])
    if uid > n:
        raise ValueError(f"uid {uid} is beyond SubnetworkN {n} of subnet {netuid}")
    if uid == n:
        state.set("SubnetworkN", [netuid], n + 1)
    else:
        old = st.one("Keys", [netuid, uid], default=None)
        if old is not None and old != hotkey:
            state.delete("Uids", [netuid, old])
        if clear_permit is None:
            clear_permit = state.pending_spec_version > LAST_SPEC_BEFORE_2026_FIXES
        if clear_permit:
            for item, off in (("ValidatorPermit", False), ("StakeWeight", 0)):
                values = list(st.one(item, [netuid]) or [])
                if uid < len(values):
                    values[uid] = off
                    state.set(item, [netuid], values)
    state.set("Keys", [netuid, uid], hotkey)
    state.set("Uids", [netuid, hotkey], uid)
    return state.emit(PALLET, "NeuronRegistered", [netuid, uid, hotkey])


def add_network(state: ChainState, netuid: int, *, tempo: int = 360, mechanism: int = 0, owner_hotkey: Optional[str] = None) -> int:
    """``register_network``: ``NetworksAdded``, ``Tempo``, an empty ``SubnetworkN``, ``TotalNetworks + 1``
    (and ``SubnetOwnerHotkey`` when given) and ``NetworkAdded(netuid, mechanism)``."""
    st = _Storage(state)
    state.set("NetworksAdded", [netuid], True)
    state.set("Tempo", [netuid], tempo)
    state.set("SubnetworkN", [netuid], 0)
    state.set("TotalNetworks", [], st.one("TotalNetworks") + 1)
    if owner_hotkey is not None:
        state.set("SubnetOwnerHotkey", [netuid], owner_hotkey)
    return state.emit(PALLET, "NetworkAdded", [netuid, mechanism])


def remove_network(state: ChainState, netuid: int) -> int:
    """``remove_network`` (dissolution up to spec 393): the subnet's rows go at once (those keyed by
    netuid alone and its uid maps, child keys, pending sets, takes and stakes) and
    ``NetworkRemoved(netuid)``. Newer runtimes delete them phase by phase: ``dissolve_network``."""
    st = _Storage(state)
    found = st.key_params(["Keys", "Uids", "ChildKeys", "ParentKeys", "PendingChildKeys", "ChildkeyTake", "TotalHotkeyAlpha"])
    for item, params in found.items():
        for key in params:
            if netuid in (key[0] if item in ("Keys", "Uids", "PendingChildKeys") else key[1],):
                state.delete(item, list(key))
    for item in ("NetworksAdded", "Tempo", "SubnetworkN", "SubnetOwnerHotkey", "MaxAllowedValidators",
                 "ValidatorPermit", "StakeWeight", "LastEpochBlock"):
        if _declares(state, item):  # LastEpochBlock: newer runtimes only
            state.delete(item, [netuid])
    state.set("TotalNetworks", [], max(0, st.one("TotalNetworks") - 1))
    return state.emit(PALLET, "NetworkRemoved", [netuid])


def swap_hotkey(state: ChainState, coldkey: str, old: str, new: str, *, carry_take: Optional[bool] = None,
                rebind_children_parents: bool = True) -> int:
    """``swap_hotkey`` on every subnet (``perform_hotkey_swap_on_one_subnet``): ``Owner``, uid
    maps, own stake (``TotalHotkeyAlpha``, added to ``new``'s), child and parent links (rebound
    to ``new``, who goes last in the lists it joins), pending sets of and naming ``old`` (rewritten
    old -> new with no self or duplicate check: a list can end up naming its parent or a child
    twice), the subnet owner hotkey (with its ``SubnetOwnerHotkeySet``), then ``HotkeySwapped``.

    ``carry_take`` (default: runtimes after 393) moves ``ChildkeyTake``; before the 2026 fix
    it is not moved, so ``new``'s take reads as the minimum. ``rebind_children_parents`` False:
    the swap of runtimes before October 2024 (subtensor issue #860, fixed by PR #863), which moved
    ``old``'s ChildKeys to ``new`` but left ``old`` in its children's ParentKeys: leftover parents
    that no longer mirror ChildKeys."""
    st = _Storage(state)
    if carry_take is None:
        carry_take = state.pending_spec_version > LAST_SPEC_BEFORE_2026_FIXES
    index = None
    owner = st.one("Owner", [old], default=None)
    if owner is not None:
        state.delete("Owner", [old])
        state.set("Owner", [new], owner)
    netuids = sorted(params[0] for params in st.key_params(["NetworksAdded"])["NetworksAdded"])
    for netuid in netuids:
        uid = st.one("Uids", [netuid, old], default=None)
        if uid is not None:
            state.delete("Uids", [netuid, old])
            state.set("Uids", [netuid, new], uid)
            state.set("Keys", [netuid, uid], new)
        if carry_take and st.has("ChildkeyTake", [old, netuid]):
            state.set("ChildkeyTake", [new, netuid], st.one("ChildkeyTake", [old, netuid]))
            state.delete("ChildkeyTake", [old, netuid])
        _swap_links(state, st, netuid, old, new, rebind_children_parents)
        if st.has("SubnetOwnerHotkey", [netuid]) and st.one("SubnetOwnerHotkey", [netuid]) == old:
            index = set_subnet_owner_hotkey(state, netuid, new, extrinsic=index)
        stake = st.one("TotalHotkeyAlpha", [old, netuid])
        if stake:
            state.delete("TotalHotkeyAlpha", [old, netuid])
            state.set("TotalHotkeyAlpha", [new, netuid], st.one("TotalHotkeyAlpha", [new, netuid]) + stake)
    fields = {"coldkey": coldkey, "old_hotkey": old, "new_hotkey": new}
    return state.emit(PALLET, "HotkeySwapped", fields, extrinsic=index)


def _swap_links(state: ChainState, st: _Storage, netuid: int, old: str, new: str, rebind_children_parents: bool = True) -> None:
    """``parent_child_swap_hotkey`` and the pending sets that name ``old``."""

    def write(item: str, hotkey: str, links: list) -> None:
        if links:
            state.set(item, [hotkey, netuid], [tuple(link) for link in links])
        else:
            state.delete(item, [hotkey, netuid])

    children = st.one("ChildKeys", [old, netuid])
    parents = st.one("ParentKeys", [old, netuid])
    for p, child in children if rebind_children_parents else ():  # the children's parent lists: old out, new in (at the end)
        links = [link for link in st.one("ParentKeys", [child, netuid]) if link[1] != old]
        write("ParentKeys", child, links + [(p, new)])
    for p, parent in parents:
        links = [link for link in st.one("ChildKeys", [parent, netuid]) if link[1] != old]
        write("ChildKeys", parent, links + [(p, new)])
    write("ChildKeys", old, [])
    write("ParentKeys", old, [])
    write("ChildKeys", new, list(children))
    write("ParentKeys", new, list(parents))
    if st.has("PendingChildKeys", [netuid, old]):
        row = st.one("PendingChildKeys", [netuid, old])
        state.delete("PendingChildKeys", [netuid, old])
        state.set("PendingChildKeys", [netuid, new], row)
    for (n, parent) in st.key_params(["PendingChildKeys"])["PendingChildKeys"]:
        if n != netuid:
            continue
        row = st.one("PendingChildKeys", [netuid, parent], default=None)
        if row is None:
            continue
        pending, cooldown = row
        for i, (p, child) in enumerate(pending):
            if child == old:
                state.set("PendingChildKeys", [netuid, parent], (pending[:i] + pending[i + 1 :] + [(p, new)], cooldown))
                break
