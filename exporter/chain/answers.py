"""Checks of what an endpoint answers to the storage reader: nothing is taken on trust.

A ``state_getKeysPaged`` page is a list of at most the keys asked for, strictly ascending,
after the start key and under the prefix. A ``state_queryStorageAt`` answer is for the block
asked about and holds every key asked for and no other; every listed key has a value; no
value is larger than any item the exporter reads can be. Anything else is an
``InvalidRead`` naming what is wrong.

The usual answer is checked in bulk (C loops over every key and value, ~130,000 a mainnet
read); only an unusual one goes through the per-item loops, which name the problem or
normalise what may be normalised (upper-case hex).
"""

from __future__ import annotations

import re
from itertools import repeat
from operator import itemgetter
from typing import Any, Optional

from exporter.snapshot.read_rules import InvalidRead

PAGE_SIZE = 1000  # the node-side cap on state_getKeysPaged
# The largest value read is a ValidatorPermit of MaxAllowedUids (<= 4096) bools;
# anything past 64 KiB is not one of the exporter's items.
MAX_VALUE_BYTES = 1 << 16
HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def page_keys(answer: Any, prefix: str, start: str, asked: int = PAGE_SIZE) -> list[str]:
    """A ``state_getKeysPaged`` answer, checked: at most the ``asked`` keys, ascending, after ``start``, under ``prefix``."""
    if answer is None:
        raise InvalidRead("null_answer", f"state_getKeysPaged under {prefix[:18]}... answered null")
    if not isinstance(answer, list):
        raise InvalidRead("malformed_answer", f"state_getKeysPaged answered a {type(answer).__name__}, not a list")
    if len(answer) > asked:
        raise InvalidRead("page_too_long", f"state_getKeysPaged answered {len(answer)} keys for {asked} asked")
    if page_as_asked(answer, prefix, start):
        return answer
    keys = []
    previous = start
    for key in answer:
        key = hex_key(key, "state_getKeysPaged")
        if not key.startswith(prefix):
            raise InvalidRead("key_outside_prefix", f"{key[:80]} listed under prefix {prefix}")
        if key <= previous:
            rule = "keys_not_after_start" if previous == start else "keys_not_ascending"
            raise InvalidRead(rule, f"{key[:80]} listed after {previous[:80]}")
        keys.append(key)
        previous = key
    return keys


def page_as_asked(answer: list, prefix: str, start: str) -> bool:
    """Whether a key page is the usual one, checked in bulk (C loops instead of a pattern match
    and two comparisons per key in Python): strings of lowercase hex bytes under ``prefix``,
    strictly ascending after ``start``. Anything else is left to ``page_keys``' loop, which
    normalises upper case or names the problem."""
    if not answer:
        return True
    if set(map(type, answer)) != {str} or not all(map(str.startswith, answer, repeat(prefix))):
        return False
    # The prefix is 0x and hex bytes; then every key is when its length is even and the
    # parts past the prefix, joined, are lowercase hex digits.
    if any(n % 2 for n in set(map(len, answer))) or not HEX.fullmatch(prefix):
        return False
    cut = len(prefix)
    suffixes = "".join([key[cut:] for key in answer]).encode("ascii", "replace")  # "?" for anything else
    if suffixes.translate(None, b"0123456789abcdef"):  # a character left that is not lowercase hex
        return False
    return answer[0] > start and all(map(str.__lt__, answer, answer[1:]))


def answered(response: Any, keys: list[str], block_hash: str, *, listed: bool) -> dict[str, Optional[str]]:
    """A ``state_queryStorageAt`` answer, checked: for ``block_hash``, every key in ``keys`` once and no other."""
    if response is None:
        raise InvalidRead("null_answer", f"state_queryStorageAt of {len(keys)} keys answered null")
    if not isinstance(response, list):
        raise InvalidRead("malformed_answer", f"state_queryStorageAt answered a {type(response).__name__}, not a list")
    found = answered_as_asked(response, keys, block_hash, listed=listed)
    if found is not None:
        return found
    asked = set(keys)
    found = {}
    for group in response:
        if not isinstance(group, dict) or not isinstance(group.get("changes"), list):
            raise InvalidRead("malformed_answer", "state_queryStorageAt: a change set without a list of changes")
        block = group.get("block")
        if block is not None and (not isinstance(block, str) or block.lower() != block_hash.lower()):
            raise InvalidRead("answer_from_other_block", f"values of block {str(block)[:80]} for block {block_hash}")
        for change in group["changes"]:
            if not isinstance(change, (list, tuple)) or len(change) != 2:
                raise InvalidRead("malformed_answer", "state_queryStorageAt: a change is not a [key, value] pair")
            key, value = change[0], change[1]
            if type(key) is not str or key not in asked:
                # Our keys are lowercase hex, so a key found as is needs no pattern check
                # (~100,000 a refresh); anything else is normalised, then must be one asked.
                key = hex_key(key, "state_queryStorageAt")
            if key not in asked:
                raise InvalidRead("unrequested_key", f"state_queryStorageAt answered {key[:80]}, never asked")
            if key in found:
                raise InvalidRead("duplicate_key", f"state_queryStorageAt answered {key[:80]} twice")
            if value is not None:
                if not isinstance(value, str) or not value.startswith("0x"):
                    raise InvalidRead("malformed_answer", f"the value of {key[:80]} is not 0x-prefixed hex")
                if len(value) > 2 + 2 * MAX_VALUE_BYTES:
                    raise InvalidRead("value_too_large", f"the value of {key[:80]} has {(len(value) - 2) // 2} bytes")
            elif listed:
                raise InvalidRead("listed_key_without_value", f"{key[:80]} was listed at this block but has no value")
            found[key] = value
    if len(found) != len(asked):
        raise InvalidRead("missing_keys", f"state_queryStorageAt answered {len(found)} of {len(asked)} keys")
    return found


def answered_as_asked(response: list, keys: list[str], block_hash: str, *, listed: bool) -> Optional[dict[str, Optional[str]]]:
    """The usual answer checked in bulk (C loops instead of ~100,000 Python iterations a refresh):
    one change set for ``block_hash`` of ``[key, value]`` lists, every key of ``keys`` (distinct)
    once and as asked, each value None (unless ``listed``) or 0x-prefixed within ``MAX_VALUE_BYTES``.
    Anything else: None, and ``answered``' loop names the problem or normalises the keys."""
    values = values_in_order(response, keys, block_hash, listed=listed)
    if values is not None:
        # Keyed by our own key strings, whose hashes every lookup that follows already knows.
        return dict(zip(keys, values))
    changes = _changes(response, keys, block_hash)
    if changes is None:
        return None
    found = dict(changes)
    if len(found) != len(changes) or found.keys() != set(keys):
        return None
    return found if _values_fit(list(found.values()), listed) else None


def values_in_order(response: Any, keys: list[str], block_hash: str, *, listed: bool) -> Optional[list[Optional[str]]]:
    """The values of ``keys`` (distinct), in their order, when the answer is the usual one and
    lists them in the order asked, as Substrate does (``answered_as_asked``' checks); else None."""
    changes = _changes(response, keys, block_hash)
    if changes is None or list(map(itemgetter(0), changes)) != keys:
        return None
    values = list(map(itemgetter(1), changes))
    return values if _values_fit(values, listed) else None


def _changes(response: Any, keys: list[str], block_hash: str) -> Optional[list]:
    """The one change set's ``[key, value]`` lists, as many as ``keys``, for ``block_hash``; else None."""
    if type(response) is not list or len(response) != 1 or type(response[0]) is not dict:
        return None
    changes, block = response[0].get("changes"), response[0].get("block")
    if type(changes) is not list or len(changes) != len(keys):
        return None
    if block is not None and (type(block) is not str or block.lower() != block_hash.lower()):
        return None
    if changes and (set(map(type, changes)) != {list} or set(map(len, changes)) != {2}):
        return None
    return changes


def _values_fit(values: list, listed: bool) -> bool:
    """Each value None (unless ``listed``) or 0x-prefixed text within ``MAX_VALUE_BYTES``."""
    present = list(filter(None, values))  # drops None, and "" (counted below as not hex)
    absent = values.count(None)
    if len(present) + absent != len(values) or (listed and absent):
        return False
    if set(map(type, present)) - {str} or not all(map(str.startswith, present, repeat("0x"))):
        return False
    return not present or max(map(len, present)) <= 2 + 2 * MAX_VALUE_BYTES


def hex_key(key: Any, method: str) -> str:
    if not isinstance(key, str) or not HEX.fullmatch(key):
        raise InvalidRead("malformed_answer", f"{method}: key {str(key)[:80]} is not 0x-prefixed hex")
    return key.lower()
