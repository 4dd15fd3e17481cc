"""Property-based tests (hypothesis): the config parser and the stake arithmetic."""

from __future__ import annotations

import math
import tempfile
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import Config
from exporter.config_error import ConfigError
from exporter.config_load import load_config, parse_config
from exporter.yaml_safe import parse_yaml
from exporter.snapshot.stake_math import inherited_stake
from exporter.snapshot.units import U64_MAX
from tests.oracle import q

# --- config ---------------------------------------------------------------------------

KNOWN = ["chain", "refresh", "scope", "history", "web", "log", "endpoints", "timeout_seconds", "max_in_flight",
         "interval_seconds", "min_stake_weight", "netuids", "watch", "hotkey", "alias", "expected_take", "path",
         "listen_address", "level", "format", "api_enabled", "samples_scope"]
# Everything YAML's safe loader can produce, huge and odd values included.
scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.integers() | st.integers(0, 3).map(lambda k: 10 ** (5000 + k))
           | st.floats(allow_nan=True) | st.text(max_size=30) | st.text(min_size=100, max_size=120).map(lambda t: t * 5)
           | st.dates() | st.datetimes() | st.binary(max_size=10))
keys = st.sampled_from(KNOWN) | st.text(max_size=12) | st.integers() | st.none() | st.booleans() | st.dates()
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_any_document_gives_a_config_or_a_list_of_problems(document):
    try:
        config = parse_config(document)
    except ConfigError as error:
        assert error.problems and all(isinstance(p, str) and ":" in p for p in error.problems)
        assert all(len(p) < 400 for p in error.problems), "a bad value is quoted bounded"
    else:
        assert isinstance(config, Config)
        assert 1 <= config.interval_seconds <= 86400 and config.chain.endpoints
        assert 0 not in config.scope.netuids


# Text that looks like a config file, then mangled: YAML syntax, anchors, tags, odd bytes.
yaml_tokens = st.sampled_from([
    "chain:", "refresh:", "scope:", "history:", "netuids:", "watch:", "interval_seconds:", "endpoints:", "path:",
    "  ", "\n", "\t", "- ", "[", "]", "{", "}", ", ", ": ", "&a ", "*a", "!!binary ", "!!set ", "!!python/name:os.system",
    "? ", "<<: ", "---\n", "...", "'", '"', "#", "|", ">", "0", "1", "-1", "1e400", "9" * 30, ".nan", "~", "null",
    "2024-13-45", "2024-01-01", "ws://node:9944", "\x00", "\ufeff", "\u2028", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n",
])
config_texts = st.lists(yaml_tokens, max_size=60).map("".join) | st.text(max_size=200)


@settings(max_examples=300, deadline=None)
@given(config_texts)
def test_any_text_gives_a_config_or_one_bounded_error(text):
    try:
        config = parse_config(parse_yaml(text))
    except ConfigError as error:
        assert error.problems and len(str(error)) < 10_000
    else:
        assert isinstance(config, Config)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | config_texts.map(lambda t: t.encode("utf-8", "surrogatepass")) | config_texts.map(
    lambda t: t.encode("utf-16", "surrogatepass")))
def test_any_bytes_in_a_file_give_a_config_or_one_bounded_error(data):
    with tempfile.NamedTemporaryFile(suffix=".yaml") as file:
        file.write(data)
        file.flush()
        try:
            load_config(file.name, environ={})
        except ConfigError as error:
            assert error.problems and len(str(error)) < 10_000


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["interval_seconds", "timeout_seconds", "stale_after_seconds"]),
                       st.integers(-100, 10**6) | st.floats(allow_nan=True, allow_infinity=True), min_size=1))
def test_refresh_numbers_are_accepted_exactly_when_in_range(refresh):
    limits = {"interval_seconds": (1, 86400), "timeout_seconds": (1, 3600), "stale_after_seconds": (1, 7 * 86400)}
    valid = all(lo <= v <= hi for k, v in refresh.items() for lo, hi in [limits[k]] if v == v)
    valid = valid and all(v == v for v in refresh.values())
    try:
        parse_config({"refresh": refresh})
    except ConfigError:
        assert not valid
    else:
        assert valid


# --- stake arithmetic -------------------------------------------------------------------

@st.composite
def subnets(draw):
    """Hotkeys on one subnet with own and root stakes, and child edges only among them."""
    n = draw(st.integers(2, 10))
    own = draw(st.lists(st.integers(0, 10**16), min_size=n, max_size=n))
    root = draw(st.lists(st.integers(0, 10**16), min_size=n, max_size=n))
    children: dict[int, list[tuple[int, int]]] = {}
    for parent in range(n):
        others = [h for h in range(n) if h != parent]
        kids = draw(st.lists(st.sampled_from(others), unique=True, max_size=min(5, len(others))))
        if not kids:
            continue
        total = draw(st.integers(0, U64_MAX))
        cuts = sorted(draw(st.lists(st.integers(0, total), min_size=len(kids) - 1, max_size=len(kids) - 1)))
        parts = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
        children[parent] = list(zip(parts, kids))
    return own, root, children


def compute(own, root, children, tao_weight=U64_MAX // 5):
    parents: dict[int, list[tuple[int, int]]] = {}
    for parent, links in children.items():
        for proportion, child in links:
            parents.setdefault(child, []).append((proportion, parent))
    return [
        inherited_stake(
            own_alpha=own[h], own_root=root[h],
            child_proportions=[p for p, _ in children.get(h, [])],
            parents=[(p, own[j], root[j]) for p, j in parents.get(h, [])],
            tao_weight_raw=tao_weight,
        )
        for h in range(len(own))
    ]


@settings(max_examples=300, deadline=None)
@given(subnets())
def test_inheritance_moves_stake_but_creates_none(subnet):
    """With every parent on the subnet, what parents give is exactly what children get
    (the same truncated products), so only each hotkey's final floor to whole rao is lost."""
    own, root, children = subnet
    results = compute(own, root, children)
    n = len(own)
    assert sum(own) - n < sum(r.inherited for r in results) <= sum(own)
    assert sum(root) - n < sum(r.root_inherited for r in results) <= sum(root)
    assert sum(r.to_children_fixed for r in results) == sum(r.from_parents_fixed for r in results)


@settings(max_examples=300, deadline=None)
@given(subnets(), st.integers(0, U64_MAX))
def test_matches_the_exact_formula(subnet, tao_weight):
    own, root, children = subnet
    results = compute(own, root, children, tao_weight)
    parents: dict[int, list[tuple[int, int]]] = {}
    for parent, links in children.items():
        for proportion, child in links:
            parents.setdefault(child, []).append((proportion, parent))
    for h, r in enumerate(results):
        given_ = sum((own[h] * q(p) for p, _ in children.get(h, [])), Fraction(0))
        received = sum((own[j] * q(p) for p, j in parents.get(h, [])), Fraction(0))
        t_given = sum((root[h] * q(p) for p, _ in children.get(h, [])), Fraction(0))
        t_received = sum((root[j] * q(p) for p, j in parents.get(h, [])), Fraction(0))
        assert r.inherited == math.floor(own[h] - given_ + received)
        assert r.root_inherited == math.floor(root[h] - t_given + t_received)
        assert Fraction(r.stake_weight_fixed, 2**64) == r.inherited + r.root_inherited * q(tao_weight)
        assert r.stake_weight_fixed >= r.inherited << 64
