"""A history writer that never stops on its own: the crash-safety test kills it with SIGKILL.

After each committed refresh it prints the total number of events committed
so far, so the parent knows what must survive. ``main`` takes the argument
list, so the test can run it forked from ``tests/fork_server.py`` as well as
``python -m tests.history_crash_child PATH``.
"""

from __future__ import annotations

import sys

from exporter.snapshot.changes import state_of
from exporter.config import ScopeConfig
from exporter.history.store import HistoryStore, Retention
from exporter.snapshot.builder import build_snapshot
from tests import tricky_chain as t
from tests.test_snapshot import chain_read


def main(argv: list[str]) -> None:
    (path,) = argv
    store = HistoryStore.open(path)
    state = store.load_state()
    committed = sum(1 for _ in store._conn.execute("SELECT id FROM events"))  # noqa: SLF001
    scope = ScopeConfig(min_stake_weight=100)
    block = 1000 + committed
    while True:
        block += 1
        # every refresh flips takes and stakes, so each commit carries events and samples
        takes = {(h, 1): (block * 7 + i) % 11796 for i, h in enumerate(t.UIDS_1)}
        stake = dict(chain_read().stake)
        stake[(t.M, 1)] = (50 + block % 40) * t.RAO
        snapshot = build_snapshot(chain_read(block=block, timestamp_ms=block * 12_000, takes=takes, stake=stake), scope)
        new_state, events = state_of(snapshot, state, 0.05)
        store.commit_refresh(snapshot, state, new_state, events, Retention(sample_all=True), frozenset())
        state = new_state
        committed += len(events)
        print(committed, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
