"""Epochs on the simulated chain: validator permits and pending child sets, by the chain's rule.

Written from subtensor's own code (classic schedule, the runtimes up to at
least spec 393), independently of the exporter:

* ``coinbase/run_coinbase.rs`` ``should_run_epoch`` / ``blocks_until_next_epoch``:
  the epoch of subnet n runs at block b when ``tempo - (b + n + 1) % (tempo + 1) == 0``,
  i.e. ``(b + n + 1) % (tempo + 1) == tempo``; tempo 0 never. (The function's doc
  comment says "``== 0``"; its own table - tempo 100, netuid 0: first epoch at
  block 99 - and its code say ``== tempo``, which is what the chain does.)
* ``coinbase/block_step.rs``: within a block, the coinbase runs the epochs
  first; then ``try_set_pending_children`` applies, on every subnet whose epoch
  slot is this block, each pending child set whose cooldown block is *before*
  this block. A set applied at epoch block E therefore counts from the next epoch.
* ``epoch/run_epoch.rs`` ``epoch_mechanism`` and ``epoch/math.rs``
  ``is_topk_nonzero``: stake weights (``staking/stake_utils.rs``
  ``get_stake_weights_for_network``), zeroed below ``StakeThreshold`` except the
  owner's uid, normalised (I64F64 then narrowed to I32F32), top k non-zero by a
  stable ascending sort, and the owner's uid always permitted.
* ``staking/set_children.rs`` ``persist_child_parent_relations``: how an applied
  set rewrites ``ChildKeys`` and ``ParentKeys``.

Arithmetic is exact on integers: a stake weight is carried as its value times
2^32 (the chain's stake weight has 32 fractional bits: proportions and
TaoWeight are truncated to U96F32 before they multiply whole rao).

Root (netuid 0) runs no epoch here, and no child sets are applied on it (the
chain refuses child keys on root). ``SubtokenEnabled`` is not consulted: every
subnet is taken to have had its start call (without one the chain applies a
pending set at the next epoch whatever its cooldown).
"""

from __future__ import annotations

import contextlib
import hashlib

from fractions import Fraction
from typing import Any, Iterable, Optional, Sequence

from bittensor._transport.codec import ss58_decode

from simnode.state import ChainState

__all__ = [
    "advance_to",
    "apply_pending_children",
    "block_step",
    "epoch_permits",
    "is_epoch_block",
    "next_epoch_block",
    "select_permits",
    "stake_weights",
]

PALLET = "SubtensorModule"
U64_MAX = 2**64 - 1
ROOT = 0
ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"  # ss58 of 32 zero bytes
_ONE = 2**32  # one, in the 32-fractional-bit scale stake weights are carried in
_UNSET = object()


# -- schedule ------------------------------------------------------------------


def is_epoch_block(block: int, netuid: int, tempo: int) -> bool:
    """Whether subnet ``netuid``'s epoch runs at ``block`` (classic schedule)."""
    return tempo > 0 and (block + netuid + 1) % (tempo + 1) == tempo


def next_epoch_block(block: int, netuid: int, tempo: int) -> Optional[int]:
    """The first block after ``block`` at which the subnet's epoch runs; None for tempo 0."""
    if tempo <= 0:
        return None
    period = tempo + 1
    until = tempo - (block + netuid + 1) % period  # 0: the epoch runs at ``block`` itself
    return block + (until or period)


# -- reading the pending storage --------------------------------------------------


class _Storage:
    """Batched reads of a ChainState's pending storage (what the block being built sees).

    ``ChainState.get`` computes one key per call; an epoch reads about a thousand
    entries, so keys are made in one batch per item and looked up in the pending
    dict directly.
    """

    def __init__(self, state: Optional[ChainState], *, runtime: Any = None, raw: Optional[dict] = None):
        """``state``'s pending storage, or (``runtime``, ``raw``) a committed block's storage."""
        self.state = state
        self.runtime = state.runtime if state is not None else runtime
        self._raw = state._pending if state is not None else raw  # read only; writes go through ChainState.set/delete
        self._entries: dict[str, tuple[str, Any]] = {}

    def _entry(self, item: str) -> tuple[str, Any]:
        """(value type, the value an absent key reads as: the item's default, or None)."""
        found = self._entries.get(item)
        if found is None:
            entry = self.runtime.storage_entry(PALLET, item)
            default = None
            if entry.modifier == "Default" and entry.default_bytes is not None:
                default = self.runtime.decode(entry.value_type, bytes(entry.default_bytes))
            found = self._entries[item] = (entry.value_type, default)
        return found

    def many(self, item: str, params: Sequence[Sequence], default: Any = _UNSET) -> list:
        """Values of ``item`` for each parameter set; absent ones read as ``default``
        (unset: the item's own default, as a storage query on the chain would)."""
        if not params:
            return []
        value_type, item_default = self._entry(item)
        if default is _UNSET:
            default = item_default
        keys = self.runtime.storage_key_batch(PALLET, item, [list(p) for p in params])
        raws = [self._raw.get(bytes(key)) for key in keys]
        present = [raw for raw in raws if raw is not None]
        decoded = iter(self.runtime.batch_decode([value_type] * len(present), present) if present else ())
        return [default if raw is None else next(decoded) for raw in raws]

    def one(self, item: str, params: Sequence = (), default: Any = _UNSET) -> Any:
        return self.many(item, [params], default)[0]

    def has(self, item: str, params: Sequence = ()) -> bool:
        return bytes(self.runtime.storage_key(PALLET, item, list(params))) in self._raw

    def key_params(self, items: Iterable[str]) -> dict[str, list]:
        """The key parameters of every pending entry of each item: one pass over the storage."""
        prefixes = {bytes(self.runtime.storage_prefix(PALLET, item)): item for item in items}
        found: dict[str, list] = {item: [] for item in prefixes.values()}
        with (self.state._lock if self.state is not None else contextlib.nullcontext()):  # a consistent key set
            keys = [(key, prefixes[key[:32]]) for key in self._raw if key[:32] in prefixes]
        for key, item in keys:
            found[item].append(self.runtime.decode_storage_key_params(PALLET, item, key, 0))
        return found


# -- the epoch's permits -----------------------------------------------------------


def _q(proportion: int) -> int:
    """A u64 proportion as the chain's U96F32 fraction, times 2^32 (truncated)."""
    return proportion * _ONE // U64_MAX


def _stake_weights_scaled(st: _Storage, netuid: int) -> list[int]:
    """Each uid's stake weight times 2^32 (exact): A_inh + T_inh * q(TaoWeight)."""
    return [w for _, _, _, w in _stake_parts(st, netuid)]


def _stake_parts(st: _Storage, netuid: int) -> list[tuple[Optional[str], int, int, int]]:
    """Per uid: (hotkey, inherited alpha, inherited root (rao), stake weight times 2^32)."""
    n = st.one("SubnetworkN", [netuid])
    hotkeys = st.many("Keys", [(netuid, uid) for uid in range(n)], default=None)
    registered = list(dict.fromkeys(hk for hk in hotkeys if hk is not None))
    children = dict(zip(registered, st.many("ChildKeys", [(hk, netuid) for hk in registered])))
    parents = dict(zip(registered, st.many("ParentKeys", [(hk, netuid) for hk in registered])))
    inert = _inert_parents(st, netuid, {*registered, *(p for links in parents.values() for _, p in links)})
    if inert:  # get_children returns nothing for them, get_parents skips them
        children = {hk: [] if hk in inert else links for hk, links in children.items()}
        parents = {hk: [(q, p) for q, p in links if p not in inert] for hk, links in parents.items()}
    # Own stakes of every hotkey that matters: the registered ones and their parents.
    holders = registered + sorted({p for links in parents.values() for _, p in links} - set(registered))
    alpha = dict(zip(holders, st.many("TotalHotkeyAlpha", [(hk, netuid) for hk in holders])))
    root = dict(zip(holders, st.many("TotalHotkeyAlpha", [(hk, ROOT) for hk in holders])))
    tao_weight = _q(st.one("TaoWeight"))

    def inherited(hk: str, stake: dict[str, int]) -> int:
        own = stake[hk]
        given = sum(own * _q(p) for p, _ in children[hk])
        received = sum(stake[parent] * _q(p) for p, parent in parents[hk])
        return (max(own * _ONE - given, 0) + received) // _ONE  # floored to whole rao

    parts = {}
    for hk in registered:
        a, t = (inherited(hk, alpha), inherited(hk, root)) if children[hk] or parents[hk] else (alpha[hk], root[hk])
        parts[hk] = (hk, a, t, a * _ONE + t * tao_weight)
    return [(None, 0, 0, 0) if hk is None else parts[hk] for hk in hotkeys]


def _inert_parents(st: _Storage, netuid: int, hotkeys: Iterable[str]) -> set[str]:
    """The hotkeys whose child relations on ``netuid`` are inert (``set_children.rs``
    ``childkeys_suspended``): flagged in ``ChildkeyThresholdSuspended`` (keyed by hotkey
    alone; runtimes that declare it) and not the subnet's owner hotkey. Empty on older runtimes."""
    try:
        st.runtime.storage_entry(PALLET, "ChildkeyThresholdSuspended")
    except Exception:  # noqa: BLE001 - the runtime does not declare it
        return set()
    owner = st.one("SubnetOwnerHotkey", [netuid]) if st.has("SubnetOwnerHotkey", [netuid]) else None
    return {hk for hk in hotkeys if hk != owner and st.has("ChildkeyThresholdSuspended", [hk])}


def _select_scaled(weights: Sequence[int], threshold: int, owner_uid: Optional[int], k: int) -> list[bool]:
    """``select_permits`` on stake weights times 2^32."""
    filtered = [w if uid == owner_uid or w // _ONE >= threshold else 0 for uid, w in enumerate(weights)]
    total = sum(filtered)
    # I64F64 w / total, narrowed to I32F32: floor(w / total * 2^32).
    shares = [w * _ONE // total for w in filtered] if total else [0] * len(filtered)
    permits = [share != 0 for share in shares]
    if len(shares) >= k:
        by_share = sorted(range(len(shares)), key=shares.__getitem__)  # stable: ties keep uid order
        for uid in by_share[: len(shares) - k]:
            permits[uid] = False
    if owner_uid is not None and 0 <= owner_uid < len(permits):
        permits[owner_uid] = True
    return permits


def select_permits(
    weights: Sequence[Fraction | int], threshold: int, owner_uid: Optional[int], k: int
) -> list[bool]:
    """Permits by uid from stake weights (rao, exact with at most 32 fractional bits).

    Zeroed where ``floor(weight) < threshold`` except the owner's uid; shares
    ``floor(weight * 2^32 / sum)``; ``is_topk_nonzero(shares, k)``; then the
    owner's uid is permitted whatever its rank.
    """
    scaled = []
    for w in weights:
        w = Fraction(w) * _ONE
        if w.denominator != 1:
            raise ValueError(f"stake weight {w / _ONE} has more than 32 fractional bits")
        scaled.append(int(w))
    return _select_scaled(scaled, threshold, owner_uid, k)


def _owner_uid(st: _Storage, netuid: int) -> Optional[int]:
    if not st.has("SubnetOwnerHotkey", [netuid]):  # the chain's try_get: unset is no owner
        return None
    return st.one("Uids", [netuid, st.one("SubnetOwnerHotkey", [netuid])])


def selective_metagraph(runtime: Any, storage: dict, netuid: int, indexes: Sequence[int]) -> Optional[dict]:
    """What ``SubnetInfoRuntimeApi.get_selective_metagraph`` answers for a block's storage:
    the requested fields of hotkeys (52), validator permits (57), inherited alpha (67),
    inherited root (68) and stake weight floored to rao (69); None if the subnet does not exist."""
    st = _Storage(None, runtime=runtime, raw=storage)
    if not st.one("NetworksAdded", [netuid], default=False):
        return None
    parts = _stake_parts(st, netuid)
    fields = {
        52: ("hotkeys", lambda: [hk or ZERO_ACCOUNT for hk, *_ in parts]),
        57: ("validator_permit", lambda: list(st.one("ValidatorPermit", [netuid]) or [])),
        67: ("alpha_stake", lambda: [a for _, a, _, _ in parts]),
        68: ("tao_stake", lambda: [t for _, _, t, _ in parts]),
        69: ("total_stake", lambda: [w // _ONE for *_, w in parts]),
    }
    return {"netuid": netuid, **{fields[i][0]: fields[i][1]() for i in indexes if i in fields}}


def stake_weights(state: ChainState, netuid: int) -> list[Fraction]:
    """Each uid's stake weight on the pending storage (rao, exact), as the epoch computes it."""
    return [Fraction(w, _ONE) for w in _stake_weights_scaled(_Storage(state), netuid)]


def epoch_permits(state: ChainState, netuid: int) -> list[bool]:
    """The ValidatorPermit vector (by uid, length SubnetworkN) an epoch of ``netuid``
    would write now, from the pending storage. Writes nothing."""
    return _epoch_permits(_Storage(state), netuid)


def keys_consistent(st: _Storage, netuid: int) -> bool:
    """``is_epoch_input_state_consistent``: no hotkey twice in the subnet's Keys; else the chain
    skips the epoch (the schedule advances, the permits stay, due pending sets still apply)."""
    hotkeys = [hk for hk in st.many("Keys", [(netuid, uid) for uid in range(st.one("SubnetworkN", [netuid]))], default=None)
               if hk is not None]
    return len(set(hotkeys)) == len(hotkeys)


def _epoch_permits(st: _Storage, netuid: int) -> list[bool]:
    return _select_scaled(
        _stake_weights_scaled(st, netuid),
        st.one("StakeThreshold"),
        _owner_uid(st, netuid),
        st.one("MaxAllowedValidators", [netuid]),
    )


# -- pending child sets --------------------------------------------------------------


def _by_account(links: dict[str, int]) -> list[tuple[int, str]]:
    """(proportion, hotkey) pairs in the chain's BTreeMap order: by public key bytes."""
    return [(links[hk], hk) for hk in sorted(links, key=ss58_decode)]


def _upsert(links: list, proportion: int, hotkey: str) -> list:
    for i, (_, who) in enumerate(links):
        if who == hotkey:
            return links[:i] + [(proportion, hotkey)] + links[i + 1 :]
    return links + [(proportion, hotkey)]


def _apply_child_set(st: _Storage, netuid: int, parent: str, children: list) -> bool:
    """Persist one pending set (``persist_pending_chidren_ok``); False when the chain would
    refuse it silently (a child that is also a parent of ``parent``, proportions over u64)."""
    state = st.state

    def write(item: str, hotkey: str, links: list) -> None:  # no empty vectors in storage
        if links:
            state.set(item, [hotkey, netuid], [tuple(link) for link in links])
        else:
            state.delete(item, [hotkey, netuid])

    new = {child: p for p, child in children if child != parent}  # last duplicate wins
    own_parents = {p_hk: p for p, p_hk in st.one("ParentKeys", [parent, netuid]) if p_hk != parent}
    if sum(new.values()) > U64_MAX or any(child in own_parents for child in new):
        return False
    old = [child for _, child in st.one("ChildKeys", [parent, netuid])]
    write("ChildKeys", parent, _by_account(new))
    touched = list(new) + [child for child in old if child not in new]
    for child, links in zip(touched, st.many("ParentKeys", [(c, netuid) for c in touched])):
        if child in new:
            links = _upsert(list(links), new[child], parent)
        else:
            links = [link for link in links if link[1] != parent]
        write("ParentKeys", child, links)
    # The parent's own parents are rewritten in account order and mirrored in their ChildKeys.
    write("ParentKeys", parent, _by_account(own_parents))
    grand = list(own_parents)
    for grandparent, links in zip(grand, st.many("ChildKeys", [(g, netuid) for g in grand])):
        write("ChildKeys", grandparent, _upsert(list(links), own_parents[grandparent], parent))
    return True


def _apply_pending(st: _Storage, netuid: int, parent: str, children: list) -> bool:
    """One due pending set in the block step (``persist_pending_chidren_ok``): persisted with the
    chain's ``SetChildren(parent, netuid, children)`` (phase Initialization: subtensor's
    ``on_initialize``), or dropped silently - no event - when the chain refuses it or, on runtimes
    that declare ``ChildkeyThresholdSuspended``, the parent is flagged below the threshold then
    (except on a subnet it owns). The caller removes the ``PendingChildKeys`` row either way."""
    if _parent_suspended(st, netuid, parent) or not _apply_child_set(st, netuid, parent, children):
        return False
    st.state.emit(PALLET, "SetChildren", [parent, netuid, [tuple(c) for c in children]], phase="Initialization")
    return True


def _parent_suspended(st: _Storage, netuid: int, parent: str) -> bool:
    try:
        st.runtime.storage_entry(PALLET, "ChildkeyThresholdSuspended")
    except Exception:  # noqa: BLE001 - older runtimes do not declare it
        return False
    if st.has("SubnetOwnerHotkey", [netuid]) and st.one("SubnetOwnerHotkey", [netuid]) == parent:
        return False
    return st.has("ChildkeyThresholdSuspended", [parent])


def apply_pending_children(state: ChainState, netuid: int, block: Optional[int] = None) -> list[str]:
    """``do_set_pending_children(netuid)`` on the pending storage at ``block`` (default: the
    pending block): every set of the subnet whose cooldown block is before ``block`` is applied
    (``SetChildren``) or dropped, and its row removed. Returns the parents whose set applied."""
    st = _Storage(state)
    block = state.head.number + 1 if block is None else block
    parents = [p for n, p in st.key_params(["PendingChildKeys"])["PendingChildKeys"] if n == netuid]
    applied = []
    for parent in sorted(parents, key=lambda hk: hk):
        children, cooldown = st.one("PendingChildKeys", [netuid, parent])
        if cooldown < block:
            if _apply_pending(st, netuid, parent, children):
                applied.append(parent)
            state.delete("PendingChildKeys", [netuid, parent])
    return applied


# -- blocks ------------------------------------------------------------------------


def run_epoch_outputs(*args, **kwargs):  # activity.py builds on this module: imported when first used
    from simnode.activity import run_epoch_outputs as run
    return run(*args, **kwargs)


def _storage_order(hotkey: str) -> bytes:
    """PendingChildKeys::iter_prefix(netuid) visits parents by their Blake2_128Concat key: the order
    sets apply in (it matters when one set makes a parent of another set's parent its child)."""
    key = bytes.fromhex(ss58_decode(hotkey))
    return hashlib.blake2b(key, digest_size=16).digest() + key


class _Chain:
    """What the block step needs across blocks: read once, then kept up to date by the step
    itself (nothing else writes while ``advance_to`` runs)."""

    def __init__(self, state: ChainState):
        self.st = _Storage(state)
        found = self.st.key_params(["NetworksAdded", "PendingChildKeys", "AlphaDividendsPerSubnet", "RootAlphaDividendsPerSubnet"])
        self.dividends: dict[int, list[str]] = {}  # netuid -> hotkeys with dividends recorded
        for netuid, hotkey in found["AlphaDividendsPerSubnet"] + found["RootAlphaDividendsPerSubnet"]:
            self.dividends.setdefault(netuid, []).append(hotkey)
        netuids = sorted(params[0] for params in found["NetworksAdded"])
        self.tempos = dict(zip(netuids, self.st.many("Tempo", [(n,) for n in netuids])))
        self.pending: dict[int, set[str]] = {}
        for netuid, parent in found["PendingChildKeys"]:
            self.pending.setdefault(netuid, set()).add(parent)

    def step(self, block: int) -> list[int]:
        st, state = self.st, self.st.state
        due = [n for n, tempo in self.tempos.items() if n != ROOT and is_epoch_block(block, n, tempo)]
        for netuid in due:  # 1. the epochs of this block (skipped where Keys holds a hotkey twice)
            if keys_consistent(st, netuid):
                before = st.one("ValidatorPermit", [netuid]) or []
                state.set("ValidatorPermit", [netuid], _epoch_permits(st, netuid))
                self.dividends[netuid] = run_epoch_outputs(st, netuid, block, before,
                                                           sorted(set(self.dividends.get(netuid, ()))))
        for netuid in due:  # 2. then the pending child sets that have cooled down
            parents = sorted(self.pending.get(netuid, ()), key=_storage_order)
            rows = st.many("PendingChildKeys", [(netuid, p) for p in parents], default=None)
            for parent, row in zip(parents, rows):
                if row is None:
                    self.pending[netuid].discard(parent)
                    continue
                children, cooldown = row
                if cooldown < block:
                    _apply_pending(st, netuid, parent, children)
                    state.delete("PendingChildKeys", [netuid, parent])
                    self.pending[netuid].discard(parent)
        return due


def block_step(state: ChainState, block: int) -> list[int]:
    """Run block ``block``'s step on the pending storage without committing: the epochs
    due at it (writing ValidatorPermit), then the pending child sets of those subnets
    whose cooldown is before ``block``. Returns the netuids whose epoch ran."""
    return _Chain(state).step(block)


def advance_to(state: ChainState, block: int) -> dict[int, list[int]]:
    """Commit blocks one by one up to ``block``, running each block's step before its commit.

    Returns {block: netuids whose epoch ran} for the blocks where any did. Assumes
    nothing else writes to ``state`` meanwhile.
    """
    head = state.head.number
    if block < head:
        raise ValueError(f"block {block} is before the head #{head}")
    ran: dict[int, list[int]] = {}
    chain = _Chain(state) if block > head else None
    for number in range(head + 1, block + 1):
        due = chain.step(number)
        if due:
            ran[number] = due
        committed, _ = state.commit_block()
        assert committed == number
    return ran
