"""A small chain state with the tricky cases, and its hand-computed expectations.

Netuid 1 holds: a parent P with five children whose proportions sum to
u64::MAX (and root stake), a child M with two parents, a validator Z with zero
own stake inheriting from a parent NP that holds no permit, takes at 0 and at
the maximum, and two pending child sets (one a revocation). Netuid 2 holds one
ordinary validator; netuid 0 (root) gives P a root permit, which is not in scope.

The expected numbers below were worked out by hand from the chain's U96F32 /
I64F64 arithmetic (see the derivations), not by the exporter's code.
"""

from __future__ import annotations

import bittensor_core

MAX = 2**64 - 1
RAO = 10**9
FIFTH = MAX // 5  # exact: 2**64 - 1 is divisible by 5, so five of them sum to MAX
HALF = MAX // 2
QUARTER = MAX // 4
TAO_WEIGHT = MAX // 5  # w = 858993459 / 2**32 in U96F32


def hotkey(i: int) -> str:
    return bittensor_core.ss58_encode(bytes([i]) * 32, 42)


P, C1, C2, C3, C4, C5, M, P2, P3, Z, NP, V2, OWNER = (hotkey(i) for i in range(1, 14))
CHILDREN = (C1, C2, C3, C4, C5)
COLD = {h: hotkey(100 + i) for i, h in enumerate((P, C1, C2, C3, C4, C5, M, P2, P3, Z, NP, V2))}

# netuid 1 uids: 0 P, 1-5 C1-C5, 6 M, 7 P2, 8 P3, 9 Z, 10 NP (no permit)
UIDS_1 = (P, C1, C2, C3, C4, C5, M, P2, P3, Z, NP)
PERMITS_1 = (True,) * 10 + (False,)

OWN_ALPHA_1 = {P: 1000 * RAO, C1: 10 * RAO, C2: 10 * RAO, C3: 10 * RAO, C4: 10 * RAO, C5: 10 * RAO,
               M: 50 * RAO, P2: 300 * RAO, P3: 500 * RAO, Z: 0, NP: 2_000_000 * RAO}
ROOT = {P: 2000 * RAO, P3: 100 * RAO, V2: 10 * RAO}
OWN_ALPHA_2 = {V2: 5000 * RAO}
TAKES_1 = {C1: 0, C2: 11796, C3: 5000, M: 3000}

CHILD_KEYS = {
    (P, 1): [(FIFTH, c) for c in CHILDREN],
    (P2, 1): [(HALF, M)],
    (P3, 1): [(MAX, M)],
    (NP, 1): [(QUARTER, Z)],
}
PENDING = {
    (1, P2): ([(MAX, M)], 7300),  # P2 will give M everything
    (1, P): ([], 7400),  # P revokes all its children
}


def parent_keys() -> dict:
    mirror: dict = {}
    for (parent, netuid), links in CHILD_KEYS.items():
        for proportion, child in links:
            mirror.setdefault((child, netuid), []).append((proportion, parent))
    return mirror


def storage_writes() -> list[tuple[str, str, list, object]]:
    """(pallet, item, params, value) for every storage entry of this chain state."""
    s = "SubtensorModule"
    writes = [
        (s, "TaoWeight", [], TAO_WEIGHT),
        (s, "StakeThreshold", [], 1000 * RAO),
        (s, "MinChildkeyTake", [], 0),
        (s, "MaxChildkeyTake", [], 11796),
        (s, "PendingChildKeyCooldown", [], 7200),
        (s, "TotalNetworks", [], 3),
    ]
    subnets = {0: ((P, V2), (True, False)), 1: (UIDS_1, PERMITS_1), 2: ((V2, OWNER), (True, False))}
    for netuid, (hotkeys, permits) in subnets.items():
        writes += [
            (s, "NetworksAdded", [netuid], True),
            (s, "SubnetworkN", [netuid], len(hotkeys)),
            (s, "MaxAllowedValidators", [netuid], 64),
            (s, "ValidatorPermit", [netuid], list(permits)),
            (s, "SubnetOwnerHotkey", [netuid], OWNER),
        ]
        for uid, h in enumerate(hotkeys):
            writes += [(s, "Keys", [netuid, uid], h), (s, "Uids", [netuid, h], uid)]
    for netuid, stakes in ((1, OWN_ALPHA_1), (2, OWN_ALPHA_2), (0, ROOT)):
        writes += [(s, "TotalHotkeyAlpha", [h, netuid], v) for h, v in stakes.items() if v]
    writes += [(s, "ChildkeyTake", [h, 1], t) for h, t in TAKES_1.items() if t]
    writes += [(s, "ChildKeys", [p, n], links) for (p, n), links in CHILD_KEYS.items()]
    writes += [(s, "ParentKeys", [c, n], links) for (c, n), links in parent_keys().items()]
    writes += [(s, "PendingChildKeys", [n, p], (links, cd)) for (n, p), (links, cd) in PENDING.items()]
    writes += [(s, "Owner", [h], c) for h, c in COLD.items()]
    return writes


# Hand-computed expectations, in rao (stake weight in rao units of alpha).
# q(FIFTH) = floor(2**32 * FIFTH / MAX) = 858993459; q(HALF) = 2147483647;
# q(QUARTER) = 1073741823; q(MAX) = 2**32; w = q(TAO_WEIGHT) = 858993459.
EXPECTED = {
    # each child: A_in = 1000e9 * 858993459 / 2**32 = 199_999_999_953.4339 (kept fractional),
    # A_inh = floor(10e9 + A_in) = 209_999_999_953; T_inh = floor(2000e9 * q / 2**32) = 399_999_999_906;
    # SW = A_inh + T_inh * w / 2**32 = 289_999_999_915.5735...
    "child": dict(own=10 * RAO, root=0, to_children=0.0, from_parents=199_999_999_953.43387,
                  inherited=209_999_999_953, inherited_root=399_999_999_906, stake_weight=289_999_999_915.57355,
                  parents=1, children=0),
    # P gives 5 * 1000e9 * 858993459 / 2**32 = 999_999_999_767.169 away: the truncated
    # proportions leave floor(1000e9 / 2**32) = 232 rao; root likewise leaves 465.
    P: dict(own=1000 * RAO, root=2000 * RAO, to_children=999_999_999_767.1693, from_parents=0.0,
            inherited=232, inherited_root=465, stake_weight=324.99999997834675, parents=0, children=5),
    # M: A_in = 300e9 * 2147483647 / 2**32 + 500e9 = 649_999_999_930.1508; A_inh = 699_999_999_930;
    # T_inh = 100e9 (all of P3's root); SW = 699_999_999_930 + 100e9 * w / 2**32.
    M: dict(own=50 * RAO, root=0, to_children=0.0, from_parents=649_999_999_930.1508,
            inherited=699_999_999_930, inherited_root=100 * RAO, stake_weight=719_999_999_925.3434,
            parents=2, children=0),
    # Z: nothing of its own; A_inh = floor(2_000_000e9 * 1073741823 / 2**32) = 499_999_999_534_338.
    Z: dict(own=0, root=0, to_children=0.0, from_parents=499_999_999_534_338.7,
            inherited=499_999_999_534_338, inherited_root=0, stake_weight=499_999_999_534_338.0,
            parents=1, children=0),
    # P2 keeps floor(300e9 - 300e9 * 2147483647 / 2**32) = 150_000_000_069.
    P2: dict(own=300 * RAO, root=0, to_children=149_999_999_930.15082, from_parents=0.0,
             inherited=150_000_000_069, inherited_root=0, stake_weight=150_000_000_069.0, parents=0, children=1),
}
TAKE_MAX_RATIO = 11796 / 65535
# With min_stake_weight 100 alpha and P watched: in scope on netuid 1 are the five
# children (~290), M (~720), Z (~499,999), P2 (150) and P (watched); P3 has 0 and
# NP holds no permit. V2 (5000 + 10 * w) is in scope on netuid 2.
IN_SCOPE_1 = {P, *CHILDREN, M, Z, P2}
