"""Read whether validators set weights and what they earned: per-subnet vectors, in bulk.

Every item here is a vector by uid keyed by netuid (one key per subnet, a handful of
requests for all of them) or a value per (netuid, hotkey) of the validators tracked
(permit holders and watched hotkeys: batched, 2,500 keys a request). Nothing is read per
validator. Items only some runtimes declare are detected from the connected runtime's
metadata: ``ActivityCutoffFactorMilli`` (dynamic tempo) replaces ``ActivityCutoff``,
``TaoDividendsPerSubnet`` stands in for ``RootAlphaDividendsPerSubnet`` in some runtimes,
``MechanismCountCurrent`` says which subnets have more mechanisms than one (their
``LastUpdate`` rows are keyed by netuid + mechanism x 4096).

Called by the chain reader once the tracked validators are known, at the same block.
"""

from __future__ import annotations

from typing import Any, Optional

from exporter.config import ScopeConfig
from exporter.snapshot.activity_model import MECHANISM_STRIDE, ActivityRead
from exporter.snapshot.model import ChainRead, frozen
from exporter.snapshot.scope import tracked_candidates
from exporter.snapshot.read_rules import InvalidRead
from exporter.chain.storage import gather_or_cancel

CUTOFF_FACTOR = "ActivityCutoffFactorMilli"
CUTOFF = "ActivityCutoff"
ROOT_DIVIDENDS = ("RootAlphaDividendsPerSubnet", "TaoDividendsPerSubnet")
MECHANISM_COUNT = "MechanismCountCurrent"
VECTORS = ("Active", "ValidatorTrust", "Dividends", "Emission", "StakeWeight")
MAX_MECHANISMS = 16  # the runtime's MaxMechanismCount is far below; a larger count is refused
MAX_VECTOR = 4096  # uids a subnet can have (MaxAllowedUids is u16 and capped well below this)


async def read_activity(source: Any, read: ChainRead, scope: ScopeConfig) -> ActivityRead:
    """The activity and earnings values of ``read``'s subnets in scope and tracked validators."""
    # Every subnet, whatever the netuid filter: history follows every tracked validator.
    subnets = [n for n in read.netuids if n != 0]
    known = set(subnets)
    tracked = sorted((n, h) for (h, n) in tracked_candidates(read, scope.watched_hotkeys) if n in known)
    hotkeys = sorted({h for _, h in tracked})
    cutoff_item = CUTOFF_FACTOR if source.has_item(CUTOFF_FACTOR) else CUTOFF
    root_item = next((item for item in ROOT_DIVIDENDS if source.has_item(item)), None)
    by_subnet = [[n] for n in subnets]
    by_validator = [list(k) for k in tracked]

    def batch(item: Optional[str], params: list, absent: Any = None):
        """``item`` at ``params``; where the runtime lacks it (an older block), what was not said."""
        if item is not None and source.has_item(item):
            return source.batch(item, params)
        return _constant([absent] * len(params))

    plain = [("CKBurn", [])] if source.has_item("CKBurn") else []
    (cutoffs, mechanisms, last, *vectors, alpha, root, takes, constants) = await gather_or_cancel(
        batch(cutoff_item, by_subnet),
        batch(MECHANISM_COUNT, by_subnet, 1),
        batch("LastUpdate", by_subnet),
        *(batch(item, by_subnet) for item in VECTORS),
        batch("AlphaDividendsPerSubnet", by_validator),
        batch(root_item, by_validator),
        batch("Delegates", [[h] for h in hotkeys]),
        source.values(plain) if plain else _constant([]),
    )
    mechanisms = [_mechanism_count(n, m) for n, m in zip(subnets, mechanisms)]
    extra = [[n + m * MECHANISM_STRIDE] for n, count in zip(subnets, mechanisms) for m in range(1, count)]
    more = await source.batch("LastUpdate", extra) if extra else []
    last_update = {n: _vector(v) for n, v in zip(subnets, last)}
    last_update.update({params[0]: _vector(v) for params, v in zip(extra, more)})
    active, trust, dividends, emission, stake_weight = (
        frozen({n: _vector(v) for n, v in zip(subnets, values)}) for values in vectors)
    return ActivityRead(
        cutoff_item=cutoff_item,
        cutoffs=frozen({n: int(v) for n, v in zip(subnets, cutoffs) if v is not None}),
        mechanisms=frozen(dict(zip(subnets, mechanisms))),
        last_update=frozen(last_update),
        active=frozen({n: tuple(map(bool, v)) for n, v in active.items()}),
        validator_trust=trust,
        dividends=dividends,
        emission=emission,
        stake_weight=stake_weight,
        alpha_dividends=frozen({k: int(v) for k, v in zip(tracked, alpha) if v}),
        root_dividends=frozen({k: int(v) for k, v in zip(tracked, root) if v}),
        root_dividends_item=root_item,
        delegate_takes=frozen({h: int(v) for h, v in zip(hotkeys, takes) if v is not None}),
        ck_burn=int(constants[0] or 0) if constants else 0,
    )


async def _constant(values: list) -> list:
    return values


def _mechanism_count(netuid: int, value: Any) -> int:
    count = int(value or 1)
    if not 1 <= count <= MAX_MECHANISMS:
        raise InvalidRead("activity", f"MechanismCountCurrent[{netuid}] = {count}: the runtime allows 1 to {MAX_MECHANISMS}")
    return count


def _vector(value: Optional[Any]) -> tuple:
    """A per-uid vector as ints or booleans (AlphaBalance decodes as an int, or in some SDKs a
    one-field wrapper: unwrapped). Most vectors are plain: converted at C speed."""
    values = tuple(value or ())
    if len(values) > MAX_VECTOR:
        raise InvalidRead("activity", f"a per-uid vector of {len(values)} entries: a subnet has at most {MAX_VECTOR} uids")
    if values and not all(type(x) is int or type(x) is bool for x in values):
        values = tuple(_number(x) for x in values)
    return values


def _number(x: Any) -> int:
    if isinstance(x, dict) and len(x) == 1:
        x = next(iter(x.values()))
    if isinstance(x, (list, tuple)) and len(x) == 1:
        x = x[0]
    return int(x)
