"""The chain's raw units and their conversions: the one place for each.

The chain stores amounts in rao (10^9 per TAO or alpha), proportions and
TaoWeight as u64 fractions of u64::MAX, and takes as u16 fractions of 65535.
Everything downstream of the snapshot speaks units (alpha, TAO) and ratios 0-1.
"""

from __future__ import annotations

RAO_PER_UNIT = 10**9
U64_MAX = 2**64 - 1
TAKE_DENOMINATOR = 65535  # a take is a u16 fraction of this, not of 2**16


def to_units(rao: float) -> float:
    """Rao -> alpha or TAO. Float division, as the exposition has always rendered it."""
    return rao / float(RAO_PER_UNIT)


def to_rao(units: float) -> int:
    """Alpha or TAO (a config value) -> whole rao."""
    return int(round(units * RAO_PER_UNIT))


def u64_ratio(value: int) -> float:
    """A u64 fraction of u64::MAX (child proportion, TaoWeight) -> 0-1."""
    return value / U64_MAX


def take_ratio(value: int) -> float:
    """A u16 take -> 0-1."""
    return value / TAKE_DENOMINATOR
