"""The chain's stake-weight arithmetic, reproduced bit for bit in integers.

The subtensor pallet computes inherited stake in ``U96F32`` fixed point
(``staking/stake_utils.rs``: ``get_inherited_for_hotkey_on_subnet``,
``get_tao_inherited_for_hotkey_on_subnet``) and the stake weight in
``I64F64`` (``get_stake_weights_for_hotkey_on_subnet``). Floats would drift
from the chain by a few rao, so every step here uses Python integers holding
the raw fixed-point bits, truncating exactly where the ``fixed`` crate does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from exporter.snapshot.units import U64_MAX

_FRAC32 = 32  # U96F32 fractional bits
_FRAC64 = 64  # I64F64 fractional bits
_U96F32_MAX = 2**128 - 1
_I64F64_MAX = 2**127 - 1


def u96f32_from_int(value: int) -> int:
    return min(value << _FRAC32, _U96F32_MAX)


def u96f32_ratio(numerator: int) -> int:
    """``U96F32::from_num(numerator).safe_div(U96F32::from_num(u64::MAX))``."""
    return (numerator << _FRAC32) // U64_MAX


def u96f32_mul(a: int, b: int) -> int:
    return min((a * b) >> _FRAC32, _U96F32_MAX)


def u96f32_to_u64(value: int) -> int:
    return min(value >> _FRAC32, U64_MAX)


def tao_weight_u96f32(tao_weight_raw: int) -> int:
    """``get_tao_weight()``: the stored u64 as a U96F32 share of u64::MAX."""
    return u96f32_ratio(tao_weight_raw)


@dataclass(frozen=True, slots=True)
class InheritedStake:
    """One hotkey's stake on one subnet as the chain sees it (all amounts in rao).

    ``*_fixed`` fields are raw U96F32 bits (value * 2**32); ``stake_weight_fixed``
    is raw I64F64 bits (value * 2**64).
    """

    own: int
    to_children_fixed: int
    from_parents_fixed: int
    inherited: int
    root: int
    root_inherited: int
    stake_weight_fixed: int


def _share_sum(stake: int, proportions: Iterable[int]) -> int:
    """Sum over proportions of ``stake * normalize(p)``, each product truncated."""
    base = u96f32_from_int(stake)
    total = 0
    for proportion in proportions:
        total = min(total + u96f32_mul(base, u96f32_ratio(proportion)), _U96F32_MAX)
    return total


def _inherit(own: int, child_proportions: list[int], parent_shares: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(to_children, from_parents, finalized u64) for one stake kind."""
    to_children = _share_sum(own, child_proportions)
    from_parents = 0
    for proportion, parent_stake in parent_shares:
        share = u96f32_mul(u96f32_from_int(parent_stake), u96f32_ratio(proportion))
        from_parents = min(from_parents + share, _U96F32_MAX)
    finalized = max(u96f32_from_int(own) - to_children, 0)
    finalized = min(finalized + from_parents, _U96F32_MAX)
    return to_children, from_parents, u96f32_to_u64(finalized)


def inherited_stake(
    *,
    own_alpha: int,
    own_root: int,
    child_proportions: list[int],
    parents: list[tuple[int, int, int]],
    tao_weight_raw: int,
) -> InheritedStake:
    """The chain's inherited alpha, inherited root and stake weight for (h, n != 0).

    ``parents`` holds ``(proportion, parent_alpha_on_n, parent_root)`` per
    ParentKeys entry; ``child_proportions`` the proportions of ChildKeys[h, n].
    Inheritance is one hop: the parents' *own* stakes, never their inherited ones.
    """
    to_children, from_parents, alpha_inh = _inherit(
        own_alpha, child_proportions, [(p, alpha) for p, alpha, _ in parents]
    )
    _, _, root_inh = _inherit(own_root, child_proportions, [(p, root) for p, _, root in parents])
    return InheritedStake(
        own=own_alpha,
        to_children_fixed=to_children,
        from_parents_fixed=from_parents,
        inherited=alpha_inh,
        root=own_root,
        root_inherited=root_inh,
        stake_weight_fixed=stake_weight_fixed(alpha_inh, root_inh, tao_weight_raw),
    )


def stake_weight_fixed(alpha_inherited: int, root_inherited: int, tao_weight_raw: int) -> int:
    """I64F64 bits of alpha_inh + root_inh * tao_weight, the weight widened losslessly
    from 32 to 64 fractional bits before the truncating multiply."""
    return stake_weight_with(alpha_inherited, root_inherited, tao_weight_i64f64(tao_weight_raw))


def tao_weight_i64f64(tao_weight_raw: int) -> int:
    """TaoWeight as the I64F64 bits ``stake_weight_with`` multiplies by: the U96F32 share
    widened losslessly to 64 fractional bits. Once per read, not once per uid."""
    return tao_weight_u96f32(tao_weight_raw) << (_FRAC64 - _FRAC32)


def stake_weight_with(alpha_inherited: int, root_inherited: int, tao_weight_fixed: int) -> int:
    """``stake_weight_fixed`` with TaoWeight already as I64F64 bits (``tao_weight_i64f64``).

    The chain's truncating I64F64 multiply ``((root << 64) * weight) >> 64`` drops only
    zero bits (root is an integer), so it is exactly ``root * weight``."""
    return min((alpha_inherited << _FRAC64) + root_inherited * tao_weight_fixed, _I64F64_MAX)


def effective_take(take: int, min_take: int, min_take_subnet: int | None = None) -> int:
    """The childkey take the chain applies: never below the global or subnet minimum."""
    return max(take, min_take, min_take_subnet or 0)
