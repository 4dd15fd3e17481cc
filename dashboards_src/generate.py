"""Every dashboard's file name and JSON, written to or compared with dashboards/."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from dashboards_src import exporter_health, my_validators, network_overview, validator_detail
from dashboards_src.board import Board, to_json

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"
DASHBOARDS: dict[str, Callable[[], Board]] = {
    "exporter-health.json": exporter_health.build,
    "my-validators.json": my_validators.build,
    "network-overview.json": network_overview.build,
    "validator-detail.json": validator_detail.build,
}


def render() -> dict[str, str]:
    """{file name: JSON text} of every dashboard, as the code builds them."""
    return {name: to_json(build().build()) for name, build in DASHBOARDS.items()}


def write(directory: Path = DASHBOARD_DIR) -> list[Path]:
    """Write every dashboard's JSON; the paths written."""
    paths = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def differences(directory: Path = DASHBOARD_DIR) -> list[str]:
    """File names whose committed text differs from what the code builds (missing ones included),
    and JSON files in the directory that no module builds."""
    built = render()
    stale = [name for name, text in built.items()
             if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text]
    return stale + sorted(p.name for p in directory.glob("*.json") if p.name not in built)
