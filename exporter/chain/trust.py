"""What an endpoint is trusted with: which chain it serves, what its head's number names, and
(with ``chain.cross_check``) whether a second endpoint agrees on the head.

Every answer is an endpoint's word; these are the checks that need the wire (the rest is
``snapshot/validate.py``'s, on the read itself):

- the chain's identity: ``chain_getBlockHash(0)``, the genesis hash, is pinned
  (``chain.genesis_hash``); an endpoint of another chain is refused at connect, before its
  metadata or any state is read (``WrongChain``);
- the head's number: ``chain_getBlockHash(number)`` must be the head's hash (a node answers the
  canonical hash at a number, and a finalized block is canonical), so a header whose number was
  rewritten is refused however plausible the number;
- the events read: no block of them stamped after the head;
- with two endpoints or more and ``chain.cross_check``: the finalized hash at the height both
  endpoints have reached must be the same on both (``EndpointsDisagree``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional

from bittensor._transport.interface import SubstrateConnection

from exporter.snapshot.model import ChainRead, EventWindow
from exporter.snapshot.read_rules import InvalidRead, check_block_hash

# Another endpoint's word on the head being read: (block, block_hash, source) -> None, raising if it disagrees.
Witness = Callable[[int, str, Any], Awaitable[None]]


class WrongChain(Exception):
    """The endpoint serves another chain than the one configured (its genesis hash differs)."""

    reason = "wrong_chain"


class EndpointsDisagree(Exception):
    """Two endpoints name different blocks at the same finalized height."""

    reason = "endpoints_disagree"


async def check_genesis(conn: SubstrateConnection, expected: str, label: str) -> None:
    """Raise ``WrongChain`` unless ``conn``'s block 0 is ``expected``. Asked before anything else (the
    SDK keeps the answer for its metadata cache, so it costs no request later)."""
    genesis = await conn.genesis_hash()
    if not isinstance(genesis, str) or genesis.lower() != expected.lower():
        raise WrongChain(f"{label} serves another chain: its genesis hash (block 0) is {_brief(genesis)}, "
                         f"chain.genesis_hash is {expected}")


async def number_is_the_head(source: Any, block: int) -> None:
    """The header's number names the head: ``chain_getBlockHash(block)`` is the head's hash."""
    answer = await source.rpc("chain_getBlockHash", [block])
    if not isinstance(answer, str) or answer.lower() != source.block_hash.lower():
        raise InvalidRead("block_number_mismatch",
                          f"the finalized head's header says block {block}, whose hash the endpoint says is {_brief(answer)}")


def check_window_times(window: EventWindow, read: ChainRead) -> None:
    """No block of the events read is stamped after the head (whose stamp the gate judges against the clock)."""
    latest = max(window.times.values(), default=None)
    if latest is not None and latest * 1000 > read.timestamp_ms:
        raise InvalidRead("event_time_ahead", f"a block before {read.block} is stamped {latest:.0f} s, after the head's "
                                              f"Timestamp.Now {read.timestamp_ms / 1000:.0f} s")


async def finalized_head(conn: SubstrateConnection) -> tuple[int, str]:
    """(number, hash) of ``conn``'s finalized head, both checked for shape."""
    head = await conn.get_chain_finalised_head()
    check_block_hash(head)
    number = await conn.get_block_number(head)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise InvalidRead("block_number", f"header number {_brief(number)}")
    return number, head


async def agree_at_common_height(block: int, block_hash: str, source: Any, witness: SubstrateConnection,
                                 witness_label: str) -> None:
    """Raise ``EndpointsDisagree`` unless the witness names the same block at the height both reached.

    The witness ahead (or level): its hash at ``block`` must be ``block_hash``. The witness behind:
    the reading endpoint's hash at the witness's head must be the witness's head, and a block the
    witness knows must have the same number there (a header number rewritten on an honest block).
    """
    number, head = await finalized_head(witness)
    if number >= block:
        theirs = await witness.rpc_request("chain_getBlockHash", [block])
        ours, height = block_hash, block
    else:
        (ours, header) = await asyncio.gather(source.rpc("chain_getBlockHash", [number]),
                                              witness.rpc_request("chain_getHeader", [block_hash]))
        theirs, height = head, number
        known = header.get("number") if isinstance(header, dict) else None
        if known is not None and _number(known) != block:
            raise EndpointsDisagree(f"block {block_hash} is block {block} here and block {_brief(known)} "
                                    f"at {witness_label}")
    if not isinstance(theirs, str) or not isinstance(ours, str) or theirs.lower() != ours.lower():
        raise EndpointsDisagree(f"at finalized height {height} this endpoint has block {_brief(ours)} and "
                                f"{witness_label} has {_brief(theirs)}")


def _number(value: object) -> Optional[int]:
    """A header number as nodes send it (hex string; an int from some)."""
    try:
        return int(value, 16) if isinstance(value, str) else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _brief(value: Optional[object]) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."
