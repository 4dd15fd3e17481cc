"""dashboards/*.json are what dashboards_src builds: an edit to the JSON alone, or to the code
without `make dashboards`, fails here."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk needs Python 3.11+")

from dashboards_src.__main__ import main  # noqa: E402
from dashboards_src.board import Board  # noqa: E402
from dashboards_src.generate import DASHBOARD_DIR, DASHBOARDS, differences, render  # noqa: E402
from dashboards_src.panels import stat_panel  # noqa: E402


def test_the_committed_dashboards_are_what_the_code_builds():
    assert differences() == [], "dashboards/ differs from dashboards_src: run `make dashboards` and commit the JSON"
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(DASHBOARDS)


def test_check_reports_an_edited_a_missing_and_an_unknown_file(tmp_path, capsys):
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    edited = tmp_path / "my-validators.json"
    document = json.loads(edited.read_text())
    document["panels"][1]["title"] = "edited in the UI"
    edited.write_text(json.dumps(document, indent=2) + "\n")
    (tmp_path / "network-overview.json").unlink()
    (tmp_path / "old.json").write_text("{}")
    assert main(["--check", str(tmp_path)]) == 1
    assert differences(tmp_path) == ["my-validators.json", "network-overview.json", "old.json"]
    assert "make dashboards" in capsys.readouterr().err


def test_building_twice_gives_the_same_bytes():
    assert render() == render()


def _stat(title: str, width: int, height: int = 4):
    return stat_panel(title, "d", "vector(1)", width=width, height=height)


def test_panels_flow_in_rows_and_wrap_at_24_columns():
    board = Board("u", "Bittensor / T", "d")
    board.row("first", _stat("a", 10), _stat("b", 6, 7), _stat("c", 10))
    board.row("second", _stat("d", 24, 2))
    placed = [(p.title, p.grid_pos.x, p.grid_pos.y, p.grid_pos.w, p.grid_pos.h, p.id_val) for p in board.build().panels]
    assert placed == [
        ("first", 0, 0, 24, 1, 1),
        ("a", 0, 1, 10, 4, 2),
        ("b", 10, 1, 6, 7, 3),
        ("c", 0, 8, 10, 4, 4),  # 16 + 10 > 24: the next line, below the tallest (7)
        ("second", 0, 12, 24, 1, 5),
        ("d", 0, 13, 24, 2, 6),
    ]
