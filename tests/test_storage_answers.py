"""The bulk check of a state_queryStorageAt answer agrees with the loop that names each problem.

``_answered_as_asked`` accepts only the usual answer, and gives exactly what the
loop gives for it; anything else it leaves to the loop (None), which refuses it
with its rule or normalises it (keys echoed in upper case).
"""

from __future__ import annotations

import random

import pytest

from exporter.chain import answers, reuse
from exporter.chain.answers import MAX_VALUE_BYTES, answered as _answered, answered_as_asked as _answered_as_asked
from exporter.snapshot.read_rules import InvalidRead

BLOCK = "0x" + "ab" * 32
KEYS = [f"0x{0xabcdef00 + i:064x}" for i in range(50)]  # letters, so upper case differs


def _answer(values: dict) -> list:
    return [{"block": BLOCK, "changes": [[k, v] for k, v in values.items()]}]


def _loop_only(monkeypatch, response, keys, listed=False):
    monkeypatch.setattr(answers, "answered_as_asked", lambda *args, **kwargs: None)
    return _answered(response, keys, BLOCK, listed=listed)


@pytest.mark.parametrize("in_order", [True, False], ids=["in the order asked", "in another order"])
@pytest.mark.parametrize("seed", range(5))
def test_a_usual_answer_is_what_the_loop_makes_of_it(seed, in_order, monkeypatch):
    rng = random.Random(seed)
    values = {k: rng.choice([None, "0x", "0x" + "00" * rng.randrange(40)]) for k in KEYS}
    order = list(values)
    if not in_order:
        rng.shuffle(order)
    response = _answer({k: values[k] for k in order})
    fast = _answered_as_asked(response, KEYS, BLOCK, listed=False)
    assert fast == values
    assert fast == _loop_only(monkeypatch, response, KEYS)


def _bad(change):
    response = _answer({k: "0x01" for k in KEYS})
    change(response)
    return response


BAD = {
    "two change sets": lambda r: r.append({"block": BLOCK, "changes": []}),
    "another block": lambda r: r[0].update(block="0x" + "cd" * 32),
    "an empty value": lambda r: r[0]["changes"][3].__setitem__(1, ""),
    "a value without 0x": lambda r: r[0]["changes"][3].__setitem__(1, "01"),
    "a value that is a number": lambda r: r[0]["changes"][3].__setitem__(1, 1),
    "a value too large": lambda r: r[0]["changes"][3].__setitem__(1, "0x" + "00" * (MAX_VALUE_BYTES + 1)),
    "a key twice": lambda r: r[0]["changes"].__setitem__(4, [KEYS[3], "0x01"]),
    "a key never asked": lambda r: r[0]["changes"].__setitem__(4, ["0x" + "ff" * 32, "0x01"]),
    "a key in upper case": lambda r: r[0]["changes"].__setitem__(4, [KEYS[4].upper().replace("0X", "0x"), "0x01"]),
    "a key missing": lambda r: r[0]["changes"].pop(),
    "a change of three": lambda r: r[0]["changes"][3].append("0x"),
    "a change that is a mapping": lambda r: r[0]["changes"].__setitem__(3, {"key": KEYS[3]}),
}


@pytest.mark.parametrize("name", BAD)
def test_anything_else_is_left_to_the_loop(name, monkeypatch):
    response = _bad(BAD[name])
    assert _answered_as_asked(response, KEYS, BLOCK, listed=False) is None
    try:
        loop = _loop_only(monkeypatch, response, KEYS)
    except InvalidRead:
        loop = "refused"
    monkeypatch.undo()
    try:
        whole = _answered(response, KEYS, BLOCK, listed=False)
    except InvalidRead:
        whole = "refused"
    assert whole == loop


def test_a_listed_key_without_a_value_is_left_to_the_loop():
    response = _answer({k: None for k in KEYS})
    assert _answered_as_asked(response, KEYS, BLOCK, listed=False) is not None
    assert _answered_as_asked(response, KEYS, BLOCK, listed=True) is None
    with pytest.raises(InvalidRead, match="listed"):
        _answered(response, KEYS, BLOCK, listed=True)


class CountingCodec:
    """Builds a key from the params as the real codec would be asked, counting what it builds."""

    def __init__(self):
        self.built = 0

    def storage_key_batch(self, entry, params_list):
        self.built += len(params_list)
        return [f"{entry}:{p!r}".encode() for p in params_list]


def test_the_key_cache_builds_each_key_once_per_codec_and_drops_what_is_no_longer_asked():
    codec, cache = CountingCodec(), reuse.KeyCache()
    params = [["5Hot", n] for n in range(2000)]
    want = reuse.build_keys(CountingCodec(), "E", params)
    cache.start(codec)
    assert cache.hex_keys(codec, "E", ("P", "I"), params) == want
    assert codec.built == 2000
    cache.start(codec)  # the next read: the same keys are not built again, a new one is
    new = reuse.build_keys(CountingCodec(), "E", [["5New", 1]])
    assert cache.hex_keys(codec, "E", ("P", "I"), params[:100] + [["5New", 1]]) == want[:100] + new
    assert codec.built == 2001
    cache.start(codec)  # 2,001 kept, 101 asked: more than twice, dropped
    assert cache.hex_keys(codec, "E", ("P", "I"), params[:100]) == want[:100]
    assert codec.built == 2101
    other = CountingCodec()  # another runtime: nothing carried over
    cache.start(other)
    assert cache.hex_keys(other, "E", ("P", "I"), params) == want and other.built == 2000
    assert cache.hex_keys(codec, "E", ("P", "I"), params) == want, "a codec not started is not cached"


PREFIX = "0x" + "ab" * 32
PAGE = [PREFIX + f"{i:04x}" + "cd" * 16 for i in range(1, 200, 3)]


def _page_by_loop(monkeypatch, answer, start):
    monkeypatch.setattr(answers, "page_as_asked", lambda *args: False)
    try:
        return answers.page_keys(answer, PREFIX, start)
    except InvalidRead as refused:
        return refused.rule
    finally:
        monkeypatch.undo()


PAGES = {
    "the usual page": (PAGE, PREFIX),
    "after a start key": (PAGE[5:], PAGE[4]),
    "an empty page": ([], PREFIX),
    "not after the start": (PAGE[5:], PAGE[5]),
    "descending": (PAGE[::-1], PREFIX),
    "a key twice": (PAGE[:3] + PAGE[2:], PREFIX),
    "a key outside the prefix": (PAGE[:3] + ["0x" + "ac" * 32 + "00"], PREFIX),
    "a key in upper case": (PAGE[:3] + [PAGE[3].upper().replace("0X", "0x")] + PAGE[4:], PREFIX),
    "a key of an odd length": (PAGE[:3] + [PAGE[3] + "0"] + PAGE[4:], PREFIX),
    "a key not hex": (PAGE[:3] + [PAGE[3][:-2] + "zz"] + PAGE[4:], PREFIX),
    "a key that is a number": (PAGE[:3] + [7] + PAGE[4:], PREFIX),
}


@pytest.mark.parametrize("name", PAGES)
def test_a_key_page_checked_in_bulk_is_what_the_loop_makes_of_it(name, monkeypatch):
    answer, start = PAGES[name]
    loop = _page_by_loop(monkeypatch, list(answer), start)
    try:
        bulk = answers.page_keys(list(answer), PREFIX, start)
    except InvalidRead as refused:
        bulk = refused.rule
    assert bulk == loop
    if name in ("the usual page", "after a start key", "an empty page"):
        assert answers.page_as_asked(list(answer), PREFIX, start), "the usual page needs no loop"
    else:
        assert not answers.page_as_asked(list(answer), PREFIX, start)
