"""The status record: folded from refresh outcomes (pure) and rendered against a golden file."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.serving.status import (
    BuildInfo, EndpointAttempt, Histogram, HistoryResult, RefreshOutcome, Status, advance, build_info,
    render_status, revision,
)

GOLDEN = Path(__file__).parent / "golden" / "status.prom"
A, B = "wss://a.example:443", "ws://127.0.0.1:9944"
# The golden file must not depend on the machine: a fixed build, not this process's.
BUILD = BuildInfo(version="0.1.0", revision="0123456789abcdef0123456789abcdef01234567", python_version="3.11.7")


def outcomes() -> list[RefreshOutcome]:
    """A good refresh after failing over from A to B, then a refresh that failed on both."""
    good = RefreshOutcome(
        finished_at=1_767_225_660.0, seconds=0.8,
        stages=(("read", 0.7), ("snapshot", 0.04), ("changes", 0.003), ("history", 0.02), ("render", 0.03)),
        attempts=(EndpointAttempt(A, "timeout", 0.5), EndpointAttempt(B, None, 0.2)),
        history=HistoryResult(ok=True, events=3, database_bytes=40960, at=1_767_225_660.5),
        requests=56, request_totals={"state_queryStorageAt": 20, "chain_getHeader": 2},
        validators=9, edges=8, plain_bytes=39112, gzip_bytes=7000,
    )
    bad = RefreshOutcome(
        finished_at=1_767_225_720.0, seconds=30.0, error="connection", stages=(("read", 30.0),),
        attempts=(EndpointAttempt(A, "connection", 10.0), EndpointAttempt(B, "connection", 20.0)),
        requests=3, request_totals={"state_queryStorageAt": 21, "chain_getHeader": 4},
    )
    return [good, bad]


def folded() -> Status:
    status = Status.initial((A, B), build=BUILD)
    for outcome in outcomes():
        status = advance(status, outcome)
    return status


def samples(text: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_histogram_buckets_are_cumulative_with_inf_last():
    h = Histogram((0.1, 1.0)).observe(0.05).observe(0.5).observe(7)
    assert h.buckets() == [("0.1", 1), ("1.0", 2), ("+Inf", 3)] and h.total == 7.55


def test_a_failed_refresh_keeps_the_last_success_and_counts_its_reason():
    s = folded()
    assert not s.up and s.last_success == 1_767_225_660.0
    assert s.errors["connection"] == 1 and sum(s.errors.values()) == 1
    assert (s.validators, s.edges, s.refresh_requests) == (9, 8, 56), "counts describe the served snapshot"
    assert s.endpoint_errors[(A, "timeout")] == 1 and s.endpoint_errors[(A, "connection")] == 1
    assert s.endpoint_errors[(B, "connection")] == 1 and not s.endpoint_up[B]
    assert s.history_writes == {"ok": 1, "error": 0} and s.history_last_success == 1_767_225_660.5
    assert s.request_totals == {"state_queryStorageAt": 21, "chain_getHeader": 4}


def test_before_any_refresh_every_series_an_alert_needs_exists():
    got = samples(render_status(Status.initial((A,))))
    assert got[("bittensor_exporter_up", ())] == 0
    assert got[("bittensor_exporter_refresh_errors_total", (("reason", "timeout"),))] == 0
    assert got[("bittensor_exporter_endpoint_up", (("endpoint", A),))] == 0
    build = build_info()
    assert build.version == __version__ and build.python_version == platform.python_version()
    assert got[("bittensor_exporter_build_info", (("python_version", build.python_version),
                                                  ("revision", build.revision), ("version", __version__)))] == 1
    assert not any(name.startswith("bittensor_exporter_snapshot_bytes") for name, _ in got)


def test_withdrawn_status_serves_no_validator_or_edge_counts():
    shown, withdrawn = samples(render_status(folded())), samples(render_status(folded(), withdrawn=True))
    assert shown[("bittensor_exporter_validators", ())] == 9 and withdrawn[("bittensor_exporter_validators", ())] == 0
    assert shown[("bittensor_exporter_child_edges", ())] == 8 and withdrawn[("bittensor_exporter_child_edges", ())] == 0
    assert {k: v for k, v in shown.items() if "validators" not in k[0] and "child_edges" not in k[0]} == \
        {k: v for k, v in withdrawn.items() if "validators" not in k[0] and "child_edges" not in k[0]}


def test_stage_timings_are_a_histogram_by_stage():
    got = samples(render_status(folded()))
    assert got[("bittensor_exporter_refresh_stage_duration_seconds_count", (("stage", "read"),))] == 2
    assert got[("bittensor_exporter_refresh_stage_duration_seconds_count", (("stage", "render"),))] == 1
    assert got[("bittensor_exporter_refresh_stage_duration_seconds_sum", (("stage", "read"),))] == 30.7


def test_build_info_labels():
    got = samples(render_status(folded()))
    assert got[("bittensor_exporter_build_info", (("python_version", "3.11.7"),
                                                  ("revision", BUILD.revision), ("version", "0.1.0")))] == 1
    assert sum(1 for name, _ in got if name == "bittensor_exporter_build_info") == 1


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_revision_from_the_environment_wins():
    assert revision({"BITTENSOR_EXPORTER_REVISION": " abc123 "}, Path("/nonexistent")) == "abc123"
    assert revision({"BITTENSOR_EXPORTER_REVISION": "a\nb"}, Path("/nonexistent")) == "unknown"
    assert revision({}, Path("/nonexistent")) == "unknown", "no checkout: unknown"


@pytest.mark.parametrize("layout", ["branch", "packed", "detached", "worktree"])
def test_revision_from_a_checkout_is_its_head_read_without_git(tmp_path, layout):
    try:
        git(tmp_path, "init", "-q", "-b", "main")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not installed")
    (tmp_path / "f").write_text("x")
    git(tmp_path, "add", "f")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    checkout = tmp_path
    if layout == "packed":
        git(tmp_path, "pack-refs", "--all")
        assert not (tmp_path / ".git" / "refs" / "heads" / "main").exists()
    elif layout == "detached":
        git(tmp_path, "checkout", "-q", "--detach")
    elif layout == "worktree":
        checkout = tmp_path / "other"
        git(tmp_path, "worktree", "add", "-q", "-b", "side", str(checkout))
        assert (checkout / ".git").is_file()
    assert revision({}, checkout) == head


def test_status_matches_the_golden_file_byte_for_byte():
    assert render_status(folded()) == GOLDEN.read_bytes(), "rerun `python -m tests.test_status` only if the change is intended"


if __name__ == "__main__":
    GOLDEN.write_bytes(render_status(folded()))
    sys.stdout.write(f"wrote {GOLDEN}\n")
