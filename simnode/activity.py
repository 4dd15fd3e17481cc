"""Weight sets, delegate takes and what an epoch writes about validators, on the simulated chain.

Written from subtensor's code, independently of the exporter:

* ``subnets/weights.rs``: a weight set writes the block into ``LastUpdate[netuid + mechanism x 4096][uid]``
  and deposits ``WeightsSet(netuid_index, uid)``;
* ``staking/decrease_take.rs`` / ``increase_take.rs``: ``Delegates[hotkey]``, ``TakeDecreased`` /
  ``TakeIncreased(coldkey, hotkey, take)``;
* ``epoch/run_epoch.rs``: inactive where ``LastUpdate + cutoff < block`` (``Active`` is its negation);
  stake weights zeroed below ``StakeThreshold`` but the owner's, normalised (``StakeWeight``);
  active stake masked by the permits held before the epoch;
* ``coinbase/run_coinbase.rs``: each hotkey's dividends split with its parents
  (``get_parent_child_dividends_distribution``), split into alpha and root parts by its own
  stake, scaled to the pending emissions, the delegate take removed, recorded in
  ``AlphaDividendsPerSubnet`` / ``RootAlphaDividendsPerSubnet``.

Not the chain: there is no weight matrix here, so Yuma consensus is stood in for. A validator's
vtrust is a fixed quality drawn from its hotkey (0.80-1.00) while it is active and holds a
permit, else 0; its dividend share is its active stake times that quality, normalised; a
subnet's validators share ``VALIDATOR_ALPHA_PER_BLOCK`` a block since the last epoch. What the
exporter reads is storage, so any consistent model serves; what matters is that the storage
changes when, and as, the chain's actions change it.
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

from simnode.epoch import PALLET, ROOT, U64_MAX, _ONE, _owner_uid, _q, _stake_weights_scaled, _Storage
from simnode.state import ChainState

MECHANISM_STRIDE = 4096
VALIDATOR_ALPHA_PER_BLOCK = 410_000_000  # rao a block to a subnet's validators (half of ~0.82 alpha)
ROOT_ALPHA_PER_BLOCK = 90_000_000  # rao a block paid for root stake
U16_MAX = 65535


def _pending_block(state: ChainState) -> int:
    return state.head.number + 1


def set_weights(state: ChainState, netuid: int, uid: int, *, mechanism: int = 0) -> int:
    """``set_weights`` by the hotkey at ``uid``: its ``LastUpdate`` entry becomes the block."""
    return set_weights_of(state, netuid, [uid], mechanism=mechanism)[0]


def set_weights_of(state: ChainState, netuid: int, uids: Sequence[int], *, mechanism: int = 0) -> list[int]:
    """``set_weights`` by each of ``uids``, one extrinsic each, in the pending block."""
    st = _Storage(state)
    index = netuid + mechanism * MECHANISM_STRIDE
    vector = list(st.one("LastUpdate", [index]) or [])
    vector += [0] * (max([st.one("SubnetworkN", [netuid]), *(uid + 1 for uid in uids)]) - len(vector))
    for uid in uids:
        vector[uid] = _pending_block(state)
    state.set("LastUpdate", [index], vector)
    return [state.emit(PALLET, "WeightsSet", [index, uid]) for uid in uids]


def set_delegate_take(state: ChainState, hotkey: str, take: int) -> int:
    """``decrease_take`` / ``increase_take``: ``Delegates[hotkey]`` and its event."""
    st = _Storage(state)
    old = st.one("Delegates", [hotkey])
    state.set("Delegates", [hotkey], take)
    coldkey = st.one("Owner", [hotkey])
    return state.emit(PALLET, "TakeDecreased" if take < old else "TakeIncreased", [coldkey, hotkey, take])


def set_activity_cutoff(state: ChainState, netuid: int, blocks: int) -> int:
    """``sudo_set_activity_cutoff``: ``ActivityCutoff[netuid]`` and ``ActivityCutoffSet``."""
    state.set("ActivityCutoff", [netuid], blocks)
    return state.emit(PALLET, "ActivityCutoffSet", [netuid, blocks])


def cutoff_blocks(st: _Storage, netuid: int) -> int:
    """``get_activity_cutoff_blocks``: from the factor where the runtime has it, else ``ActivityCutoff``."""
    try:
        st.runtime.storage_entry(PALLET, "ActivityCutoffFactorMilli")
    except Exception:  # noqa: BLE001 - the runtime does not declare it
        return st.one("ActivityCutoff", [netuid])
    return max(1, st.one("ActivityCutoffFactorMilli", [netuid]) * st.one("Tempo", [netuid]) // 1000)


def quality(hotkey: str) -> int:
    """The stand-in vtrust of an active permit holder, as a u16: 0.80-1.00 by its hotkey."""
    draw = int.from_bytes(hashlib.blake2b(hotkey.encode(), digest_size=4).digest(), "little") % 1001
    return U16_MAX * (800 + draw // 5) // 1000


def run_epoch_outputs(st: _Storage, netuid: int, block: int, permits_before: Sequence[bool],
                      previous_dividends: Sequence[str] = ()) -> list[str]:
    """What subnet ``netuid``'s epoch at ``block`` writes about its validators; returns the hotkeys
    now holding dividends (the next epoch clears their entries, as ``clear_prefix`` does)."""
    state = st.state
    n = st.one("SubnetworkN", [netuid])
    hotkeys = st.many("Keys", [(netuid, uid) for uid in range(n)], default=None)
    last = list(st.one("LastUpdate", [netuid]) or []) + [0] * n
    cutoff = cutoff_blocks(st, netuid)
    active = [last[uid] + cutoff >= block for uid in range(n)]
    weights = _stake_weights_scaled(st, netuid)
    owner = _owner_uid(st, netuid)
    threshold = st.one("StakeThreshold")
    filtered = [w if uid == owner or w // _ONE >= threshold else 0 for uid, w in enumerate(weights)]
    total = sum(filtered)
    permitted = [uid < len(permits_before) and permits_before[uid] for uid in range(n)]
    trust = [quality(hotkeys[uid]) if active[uid] and permitted[uid] and hotkeys[uid] else 0 for uid in range(n)]
    raw = [filtered[uid] * trust[uid] if active[uid] and permitted[uid] else 0 for uid in range(n)]
    raw_total = sum(raw)
    tempo = st.one("Tempo", [netuid])
    pending = VALIDATOR_ALPHA_PER_BLOCK * (tempo + 1)
    emission = [pending * r // raw_total if raw_total else 0 for r in raw]
    state.set("Active", [netuid], active)
    state.set("StakeWeight", [netuid], [U16_MAX * w // total if total else 0 for w in filtered])
    state.set("ValidatorTrust", [netuid], trust)
    state.set("Dividends", [netuid], [U16_MAX * r // raw_total if raw_total else 0 for r in raw])
    state.set("Emission", [netuid], emission)
    split: dict[str, int] = {}
    paid = [(hotkeys[uid], amount) for uid, amount in enumerate(emission) if amount and hotkeys[uid]]
    inputs = SplitInputs(st, netuid, [hotkey for hotkey, _ in paid])
    for validator, amount in paid:
        for hotkey, share in dividends_distribution(st, validator, netuid, amount, inputs):
            split[hotkey] = split.get(hotkey, 0) + share
    return _record_dividends(st, inputs, split, ROOT_ALPHA_PER_BLOCK * (tempo + 1), pending, previous_dividends)


class SplitInputs:
    """What the dividend split reads for some hotkeys of one subnet (and their parents), read in
    batches: an epoch splits the dividends of every validator of the subnet."""

    def __init__(self, st: _Storage, netuid: int, hotkeys: Sequence[str]):
        self.netuid = netuid
        self.tao_weight, self.min_take, self.burn = _q(st.one("TaoWeight")), st.one("MinChildkeyTake"), _q(st.one("CKBurn"))
        hotkeys = list(dict.fromkeys(hotkeys))
        self.children = dict(zip(hotkeys, st.many("ChildKeys", [(h, netuid) for h in hotkeys])))
        self.parents = dict(zip(hotkeys, st.many("ParentKeys", [(h, netuid) for h in hotkeys])))
        self.take = dict(zip(hotkeys, st.many("ChildkeyTake", [(h, netuid) for h in hotkeys])))
        everyone = list(dict.fromkeys([*hotkeys, *(p for links in self.parents.values() for _, p in links or [])]))
        self.alpha = dict(zip(everyone, st.many("TotalHotkeyAlpha", [(h, netuid) for h in everyone])))
        self.root = dict(zip(everyone, st.many("TotalHotkeyAlpha", [(h, ROOT) for h in everyone])))
        self.owner = dict(zip(everyone, st.many("Owner", [(h,) for h in everyone])))


def dividends_distribution(st: _Storage, hotkey: str, netuid: int, dividends: int,
                           inputs: Optional[SplitInputs] = None) -> list[tuple[str, int]]:
    """``get_parent_child_dividends_distribution``: (parent, alpha rao) for each parent, then the
    hotkey's own part (what it keeps of its own stake's share and its takes)."""
    x = inputs if inputs is not None else SplitInputs(st, netuid, [hotkey])
    scale = _ONE  # U96F32 values are carried as integers times 2^32
    tao_weight = x.tao_weight
    take_q = max(x.take[hotkey], x.min_take) * scale // U16_MAX
    remaining = scale
    for proportion, _ in x.children[hotkey] or []:
        remaining = max(0, remaining - _q(proportion))
    alpha, root = x.alpha[hotkey], x.root[hotkey]
    own = (alpha * remaining + (root * remaining * tao_weight >> 32)) >> 32  # get_self_contribution: a u64
    total = own * scale
    contributions = []
    for proportion, parent in x.parents[hotkey] or []:
        q = _q(proportion)
        c = x.alpha[parent] * q + (x.root[parent] * q * tao_weight >> 32)
        contributions.append((parent, c))
        total += c
    validating = dividends * scale
    remaining_emission, kept_total, tuples = validating, 0, []
    owner = x.owner[hotkey]
    for parent, c in contributions:
        factor = c * scale // total if total else 0
        share = validating * factor >> 32
        remaining_emission -= share
        if x.owner[parent] != owner:
            burnt, kept = x.burn * share >> 32, take_q * share >> 32
            share -= burnt + kept
            kept_total += kept
        tuples.append((parent, share // scale))
    tuples.append((hotkey, (remaining_emission + kept_total) // scale))
    return tuples


def _record_dividends(st: _Storage, inputs: SplitInputs, split: dict[str, int], pending_root: int, pending_alpha: int,
                      previous: Sequence[str]) -> list[str]:
    """``calculate_dividend_distribution`` and ``distribute_dividends_and_incentives``' records."""
    state, netuid, tao_weight = st.state, inputs.netuid, inputs.tao_weight
    alpha_parts, root_parts = {}, {}
    for hotkey, dividend in sorted(split.items()):
        alpha = inputs.alpha[hotkey]
        root_alpha = inputs.root[hotkey] * tao_weight  # times 2^32
        total = alpha * _ONE + root_alpha
        root_divs = dividend * root_alpha // total if total else 0
        alpha_parts[hotkey], root_parts[hotkey] = dividend - root_divs, root_divs
    root_item = "RootAlphaDividendsPerSubnet"
    for hotkey in previous:
        state.delete("AlphaDividendsPerSubnet", [netuid, hotkey])
        state.delete(root_item, [netuid, hotkey])
    alpha_total, root_total = sum(alpha_parts.values()), sum(root_parts.values())
    takes = dict(zip(split, st.many("Delegates", [(h,) for h in split])))
    for hotkey in split:
        for item, parts, pending, whole in ((  "AlphaDividendsPerSubnet", alpha_parts, pending_alpha, alpha_total),
                                            (root_item, root_parts, pending_root, root_total)):
            amount = pending * parts[hotkey] // whole if whole else 0
            amount -= amount * takes[hotkey] // U16_MAX
            if amount:
                state.set(item, [netuid, hotkey], amount)
    return sorted(split)


def seed(state: ChainState, netuids: Sequence[int], *, block: Optional[int] = None) -> None:
    """A world's starting activity: every uid set weights at ``block`` (the pending block), and
    an epoch's outputs as if one had just run on each subnet with the permits as they are."""
    st = _Storage(state)
    block = _pending_block(state) if block is None else block
    takes = {}
    for netuid in netuids:
        if netuid == ROOT:
            continue
        n = st.one("SubnetworkN", [netuid])
        state.set("LastUpdate", [netuid], [block] * n)
        permits = list(st.one("ValidatorPermit", [netuid]) or [])
        for hotkey, permit in zip(st.many("Keys", [(netuid, uid) for uid in range(len(permits))], default=None), permits):
            if permit and hotkey and hotkey not in takes:
                draw = quality(hotkey)  # some delegates lowered their take from the default 18 %
                takes[hotkey] = draw % 11_797 if draw % 3 == 0 else None
    for hotkey, take in takes.items():
        if take is not None:
            state.set("Delegates", [hotkey], take)
    for netuid in netuids:
        if netuid != ROOT:
            run_epoch_outputs(st, netuid, block, list(st.one("ValidatorPermit", [netuid]) or []))
