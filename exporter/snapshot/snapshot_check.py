"""What is about to be rendered and recorded: no duplicate series, no number the chain's arithmetic cannot produce."""

from __future__ import annotations

import math
from typing import Optional

from exporter.snapshot.model import Snapshot
from exporter.snapshot.read_rules import MAX_CHILDREN, InvalidRead


class PassedValidators:
    """The validators one caller's last ``check_snapshot`` passed (the refresher keeps one):
    a ``ValidatorState`` is frozen and its rules read nothing else, so the very object passes
    again. The objects are held, so no other object can have their ids meanwhile."""

    __slots__ = ("ids", "objects")

    def __init__(self) -> None:
        self.ids: frozenset[int] = frozenset()
        self.objects: tuple = ()


def check_snapshot(snapshot: Snapshot, passed: Optional[PassedValidators] = None) -> None:
    """No duplicate series, no number the chain's arithmetic cannot produce, in what is
    exported and in what history records. ``passed``: what the caller's last check passed, not
    checked again (with the stake memo, all but the few validators whose inputs moved), then
    replaced by what this one passed."""
    _unique("validator", [(v.hotkey, v.netuid) for v in snapshot.validators])
    _unique("edge", [(e.parent, e.child, e.netuid) for e in snapshot.edges])
    _unique("pending set", [(p.parent, p.netuid) for p in snapshot.pending])
    _unique("identity", [i.hotkey for i in snapshot.identities])
    _unique("subnet", [s.netuid for s in snapshot.subnets])
    _unique("tracked validator", [(v.hotkey, v.netuid) for v in snapshot.tracked])
    # The tracked validators (what history records) include the exported ones
    # when the builder made the snapshot; a hand-made one may have only either.
    exported = set(map(id, snapshot.validators))
    validators = (*snapshot.validators, *(t for t in snapshot.tracked if id(t) not in exported))
    skip = passed.ids if passed is not None else frozenset()
    for v in validators:
        if id(v) not in skip:
            _check_validator(v)
    if passed is not None:
        passed.ids, passed.objects = frozenset(map(id, validators)), validators


def _check_validator(v) -> None:
    where = f"validator {v.hotkey} on netuid {v.netuid}"
    numbers = (v.own_alpha, v.root_tao, v.to_children_alpha, v.from_parents_alpha, v.inherited_alpha,
               v.inherited_root_tao, v.stake_weight, v.childkey_take, v.stored_childkey_take)
    if not all(math.isfinite(x) and x >= 0 for x in numbers):
        raise InvalidRead("impossible_number", f"{where}: a negative or non-finite amount")
    if v.to_children_alpha > v.own_alpha + 1:
        raise InvalidRead("gives_more_than_it_owns",
                          f"{where}: gives {v.to_children_alpha:.0f} rao of {v.own_alpha} own to children")
    # A u16 of 65535: any take, above a lowered MaxChildkeyTake included, is at most 1. Parents are
    # not bounded (ParentKeys may list any number, summing far above one), children are (ChildKeys).
    if v.childkey_take > 1 or v.stored_childkey_take > v.childkey_take:
        raise InvalidRead("impossible_number", f"{where}: take ratio {v.childkey_take} (stored {v.stored_childkey_take})")
    if v.children > MAX_CHILDREN:
        raise InvalidRead("too_many_children", f"{where}: {v.children} children")


def _unique(what: str, keys: list) -> None:
    if len(set(keys)) == len(keys):  # the usual case, decided in C
        return
    seen = set()
    for key in keys:
        if key in seen:
            raise InvalidRead("duplicate_series", f"{what} {key} twice")
        seen.add(key)
