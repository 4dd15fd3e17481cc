"""The next epoch's permits from literal stake weights: the chain's rule, case by case."""

from __future__ import annotations

from exporter.snapshot.projection import project, project_permits

RAO = 10**9
ONE = 2**64  # I64F64 bits of one rao


def w(alpha: float) -> int:
    return int(alpha * RAO) * ONE


def test_top_k_by_stake_weight():
    assert project_permits([w(10), w(30), w(20), w(40)], 0, None, 2) == (False, True, False, True)


def test_equal_weights_keep_the_higher_uid():
    assert project_permits([w(10), w(10), w(10)], 0, None, 2) == (False, True, True)


def test_fewer_non_zero_uids_than_k_all_get_one():
    assert project_permits([0, w(5), 0, w(1)], 0, None, 3) == (False, True, False, True)


def test_the_threshold_compares_the_floor_of_the_stake_weight():
    at = 1000 * RAO * ONE  # exactly 1,000 alpha
    just_below = at - 1  # 999.999999999... alpha: its floor is 999,999,999,999 rao
    assert project_permits([at, just_below], 1000 * RAO, None, 2) == (True, False)


def test_the_owner_below_the_threshold_keeps_a_permit_and_competes_with_its_weight():
    # k = 1: uid 1 is strongest; the owner (uid 0, below the threshold) is outside the top 1 but gets an extra permit
    assert project_permits([w(5), w(2000), w(1500)], 1000 * RAO, 0, 1) == (True, True, False)
    # the owner's weight is not filtered: it takes one of the k slots when it ranks in them
    assert project_permits([w(5000), w(2000), w(1500)], 10_000 * RAO, 0, 2) == (True, False, False), \
        "others are below the threshold"


def test_weights_closer_than_the_i32f32_resolution_tie():
    big = w(1_000_000_000)  # 1e9 alpha: the sum is ~3e18 rao, so one share step is ~0.7 alpha
    assert project_permits([big + w(0.1), big, big], 0, None, 2) == (False, True, True), \
        "uid 0 is 0.1 alpha stronger, below the resolution: a tie, and the lower uid is dropped"


def test_rank_boundaries_and_next_epoch():
    p = project(1, 100, 360, [w(10), w(30), w(20), w(40)], 0, None, 2)
    assert (p.cutoff, p.first_out, p.next_epoch_block) == (w(30), w(20), 358)
    assert p.permits == (False, True, False, True)


def test_dynamic_tempo_takes_the_earlier_of_the_period_and_a_triggered_epoch():
    from exporter.snapshot.projection import next_epoch_block_dynamic
    assert next_epoch_block_dynamic(1000, 360, 900, 0) == 1260
    assert next_epoch_block_dynamic(1000, 360, 900, 1100) == 1100, "an owner-triggered epoch"
    assert next_epoch_block_dynamic(1300, 360, 900, 0) == 1301, "overdue (deferred by the epoch cap): the next block"
    assert next_epoch_block_dynamic(1000, 0, 900, 1100) is None, "tempo 0: never"


def test_the_reader_reads_the_dynamic_tempo_items_when_the_runtime_declares_them():
    import asyncio

    from exporter.chain.reader import ChainReader
    from exporter.config import ScopeConfig
    from exporter.snapshot.builder import build_snapshot
    from tests.test_chain_reader import BLOCK, SPEC, FakeSource, tricky_writes

    writes = [*tricky_writes(), ("SubtensorModule", "LastEpochBlock", [1], 90), ("SubtensorModule", "PendingEpochAt", [2], 120)]
    source = FakeSource.of(writes, optional_items=("LastEpochBlock", "PendingEpochAt"))
    read = asyncio.run(ChainReader(max_in_flight=4).read_from(source, ScopeConfig(), block=BLOCK, spec_version=SPEC))
    assert read.last_epoch_blocks == {1: 90, 2: 0} and read.pending_epoch_at == {1: 0, 2: 120}
    subnets = {s.netuid: s.next_epoch_block for s in build_snapshot(read, ScopeConfig()).subnets}
    # block 100, tempo 360 (the default): subnet 1 at 90 + 360; subnet 2 triggered at 120
    assert subnets == {1: 450, 2: 120}
