"""``bench.history_events --quick`` runs end to end in seconds, so the issue-14 cost benchmark cannot rot;
its numbers keep the shape BENCHMARKS.md quotes."""

from __future__ import annotations

from bench.history_events import main, month_table, refresh_table, run


def test_the_quick_run_measures_events_per_refresh_and_a_short_backfill():
    result = run(sizes=(5, 64), repeats=1, days=0.2, requests_per_second=1000)
    refresh, month = result["refresh"], result["month"]
    # Busy blocks: 40 extrinsics of four to five events each, as the metadata lays them out.
    assert refresh["events_bytes_per_block"] > 4_000
    five, wide = refresh["range"]["5"], refresh["range"]["64"]
    # The range call: one chain_getBlockHash with the list of numbers, one state_queryStorage.
    assert five["requests"] == wide["requests"] == 2
    assert five["by_method"] == {"chain_getBlockHash": 1, "state_queryStorage": 1}
    # Refused range: one state_queryStorageAt a block.
    assert refresh["per_block"]["5"]["requests"] == 1 + 5 and refresh["per_block"]["64"]["requests"] == 1 + 64
    assert 0 < five["bytes_out"] < wide["bytes_out"] and five["cpu"] > 0 and wide["kept"] > five["kept"] > 0
    attribution = refresh["attribution"]["5"]
    assert attribution["changes"] > 0 and attribution["caused"] > 0
    assert attribution["read_requests_with_events"] == attribution["read_requests"] + 2
    # The backfill: 0.2 days of blocks, every scripted change recorded, within its budget.
    assert month["blocks"] == 1_440 and month["events"] >= month["scripted_changes"]
    assert "ChildKeyTakeSet" in month["causes"] and "HotkeySwapped" in month["causes"]
    assert 0 < month["requests"] and month["rate"] <= month["budget"] and month["rss_mb"] > 0
    assert "requests per simulated day" in month_table(month)
    assert "| 5 | state_queryStorage | 2 |" in refresh_table(refresh)


def test_the_command_line_takes_its_options():
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
