"""An independent statement of the chain's stake formulas, for checking whole runs.

Written from ``chain-semantics.md`` with exact fractions: a proportion is
truncated to 32 fractional bits (U96F32 ``safe_div``), products of an integer
stake and such a proportion are then exact, and the chain floors the final
inherited amounts to whole rao. Nothing here is shared with the exporter.
"""

from __future__ import annotations

import math
from fractions import Fraction

MAX = 2**64 - 1


def q(proportion: int) -> Fraction:
    return Fraction(proportion * 2**32 // MAX, 2**32)


def expected(world, hotkey: str, netuid: int, tao_weight_raw: int) -> dict:
    """Own, inherited and stake-weight numbers (rao) of one hotkey on one subnet."""
    A = world.stake.get((hotkey, netuid), 0)
    T = world.stake.get((hotkey, 0), 0)
    children = world.child_keys.get((hotkey, netuid), [])
    parents = world.parent_keys.get((hotkey, netuid), [])
    given = sum((A * q(p) for p, _ in children), Fraction(0))
    received = sum((world.stake.get((j, netuid), 0) * q(p) for p, j in parents), Fraction(0))
    T_given = sum((T * q(p) for p, _ in children), Fraction(0))
    T_received = sum((world.stake.get((j, 0), 0) * q(p) for p, j in parents), Fraction(0))
    A_inh = math.floor(max(A - given, 0) + received)
    T_inh = math.floor(max(T - T_given, 0) + T_received)
    return {
        "own": A,
        "root": T,
        "to_children": given,
        "from_parents": received,
        "inherited": A_inh,
        "inherited_root": T_inh,
        "stake_weight": A_inh + T_inh * q(tao_weight_raw),
        "parents": len(parents),
        "children": len(children),
    }
