"""The real exporter process against the simulated node, driven through a script of chain changes.

``python -m exporter`` (its refresh and HTTP threads, its history file) runs
against a ``SimNode`` while the test changes the chain one block at a time,
stops the exporter with SIGTERM and SIGKILL, wipes its history with
``python -m exporter history reset --yes`` while it runs, and moves validators
across the export scope (below ``scope.min_stake_weight`` with a permit kept,
permits gained and lost, changes on a subnet the ``scope.netuids`` filter
leaves out). Every event the history file holds is then compared with
``tests/event_model.py``, which derives the expected events from the chain
states alone (not from the exporter's change detector): kind, hotkey, netuid,
parent, child, old and new value, block and time; no event missing, none extra.

Determinism: each step changes the chain and commits exactly one block N, then
waits until the exporter serves ``bittensor_chain_block N`` (it refreshes every
second and records history before it publishes), so every change of the step
must be recorded at N. A step taken while the exporter is stopped commits N
before it starts again: its first refresh reads N. A step that SIGKILLs the
exporter once it recorded N starts it again on the same block N: nothing may be
recorded twice. (Kills in the middle of a commit are test_crash_exporter's.) The reset
step holds the exporter's refreshes (the node refuses them) while it changes
the chain and runs the reset, so the first refresh after the reset reads the
changed block: a baseline, no events for it, whatever the exporter remembers.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simnode import SIMNODE_GENESIS_HASH, ChainState, SimNode
from simnode.state import BLOCK_TIME_MS, GENESIS_TIME_MS
from tests.event_model import Event, EventModel, compare, tracked_pairs
from tests.oracle import expected as oracle
from tests.scenario_chain import HALF, MAX, QUARTER, RAO, ChainWriter, World, hotkey
from tests.test_new_user import free_port

REPO = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 20.0  # for one refresh (each takes well under a second here) or one start
MIN_STAKE_WEIGHT = 1000  # alpha: VO crosses it
NETUIDS = (1, 2)  # subnet 3 is left out of /metrics; its changes are still history

# Subnet 1: PA gives VO half and C1 a quarter; PB gives C2 a quarter; G holds no permit
# at first; L loses its permit; D drifts.
PA, PB, VO, C1, C2, G, L, D = (hotkey(i) for i in range(41, 49))
# Subnet 2: PQ gives Q half; W is watched and holds no permit at first.
Q, W, PQ = (hotkey(i) for i in range(51, 54))
# Subnet 3 (outside the netuid filter): PS gives S a quarter.
S3, S3B, PS = (hotkey(i) for i in range(61, 64))
WATCHED = (W,)
NAMES = {h: n for n, h in dict(PA=PA, PB=PB, VO=VO, C1=C1, C2=C2, G=G, L=L, D=D, Q=Q, W=W, PQ=PQ,
                                S=S3, S2=S3B, PS=PS).items()}


def initial_world() -> World:
    world = World(
        tao_weight=int(0.18 * MAX),
        subnets={0: [PA, PB], 1: [PA, PB, VO, C1, C2, G, L, D], 2: [Q, W, PQ], 3: [S3, S3B, PS]},
        permits={0: [True, True], 1: [True, True, True, True, True, False, True, True], 2: [True, False, True],
                 3: [True, True, True]},
    )
    world.stake = {(h, 1): a * RAO for h, a in ((PA, 2000), (PB, 800), (VO, 100), (C1, 50), (C2, 50), (G, 300),
                                                  (L, 200), (D, 1000))}
    world.stake.update({(PA, 0): 500 * RAO, (PB, 0): 300 * RAO})
    world.stake.update({(h, 2): a * RAO for h, a in ((Q, 300), (W, 20), (PQ, 1000))})
    world.stake.update({(h, 3): a * RAO for h, a in ((S3, 400), (S3B, 100), (PS, 2000))})
    world.takes = {(VO, 1): 1000, (Q, 2): 2000, (S3, 3): 500}
    world.child_keys = {(PA, 1): [(HALF, VO), (QUARTER, C1)], (PB, 1): [(QUARTER, C2)], (PQ, 2): [(HALF, Q)],
                        (PS, 3): [(QUARTER, S3)]}
    world.owners = {h: hotkey(i + 100) for i, h in enumerate(sorted({h for hs in world.subnets.values() for h in hs}))}
    return world


# -- the script ----------------------------------------------------------------------


def schedule(w: World) -> None:
    w.pending[(1, PA)] = ([], 8000)  # PA schedules a revocation of both its children...
    w.pending[(1, PB)] = ([(HALF, C2)], 8000)  # ...PB a bigger share for C2
    w.pending[(3, PS)] = ([(QUARTER, S3), (QUARTER, S3B)], 8000)  # and PS adds S2 on the filtered-out subnet
    w.stake[(D, 1)] = 1030 * RAO  # +3 %: no event yet
    w.takes[(C1, 1)] = 3000


def apply_and_drop(w: World) -> None:
    w.apply_pending(PB, 1)  # C2: 1/4 -> 1/2
    del w.pending[(1, PA)]  # dropped: PA keeps its children
    w.apply_pending(PS, 3)  # S2 becomes PS's child on subnet 3


def while_stopped(w: World) -> None:
    w.stake[(D, 1)] = 1070 * RAO  # +7 % from the reference (1000), set before the restart
    w.takes[(W, 2)] = 4000  # watched, no permit: tracked all the same
    w.set_permit(L, 1, False)  # leaves the tracked population


def below_min_stake_weight(w: World) -> None:
    # VO's share of PA halves: its stake weight falls from ~1145 to ~622 alpha, below
    # min_stake_weight, and it keeps its permit.
    w.set_children(PA, 1, [(QUARTER, VO), (QUARTER, C1)])


def out_of_scope_take_and_permits(w: World) -> None:
    w.takes[(VO, 1)] = 5000  # out of the export scope, still tracked
    w.set_permit(G, 1, True)  # was not tracked at all
    w.set_permit(W, 2, True)  # was tracked (watched) without a permit


def filtered_subnet(w: World) -> None:
    w.takes[(S3, 3)] = 800
    w.set_permit(S3B, 3, False)


def while_killed(w: World) -> None:
    w.takes[(VO, 1)] = 6000
    w.pending[(2, PQ)] = ([(HALF, Q), (QUARTER, W)], 8100)


def at_reset(w: World) -> None:
    # first read by the refresh after the reset: in its baseline, not events
    w.takes[(Q, 2)] = 2500
    w.stake[(G, 1)] = 360 * RAO
    w.stake[(D, 1)] = 1300 * RAO  # D is in the export scope too
    w.takes[(D, 1)] = 1500


def after_reset(w: World) -> None:
    w.pending[(2, PQ)] = ([(HALF, Q), (QUARTER, W)], 8200)  # rescheduled: old is the baseline's value
    w.set_children(PA, 1, [(HALF, VO), (QUARTER, C1)])  # VO back above min_stake_weight
    w.set_permit(G, 1, False)


def stopped_after_reset(w: World) -> None:
    w.apply_pending(PQ, 2)  # W becomes PQ's child
    w.takes[(Q, 2)] = 3000


def nothing(w: World) -> None:
    pass


@dataclass(frozen=True)
class Step:
    name: str
    how: str  # live | stopped (SIGTERM, change, start) | kill_recorded (change, recorded, SIGKILL, start)
    #           | killed (SIGKILL, change, start) | reset (refreshes held, change, reset while running, release)
    change: Callable[[World], None]


SCRIPT = (
    Step("child sets scheduled, a take, a drift of +3 %", "live", schedule),
    Step("one set applied, one dropped, one applied on subnet 3", "live", apply_and_drop),
    Step("SIGTERM; drift reaches +7 %, watched take, a permit lost; start", "stopped", while_stopped),
    Step("VO falls below min_stake_weight, keeps its permit", "live", below_min_stake_weight),
    Step("VO's take changes out of scope; G and W gain permits", "live", out_of_scope_take_and_permits),
    Step("subnet 3 (filtered out) changes; SIGKILL once recorded; start on that block", "kill_recorded",
         filtered_subnet),
    Step("SIGKILL; VO's take, a set scheduled; start", "killed", while_killed),
    Step("changes, then history reset while running", "reset", at_reset),
    Step("after the reset: rescheduled, VO back in scope, G loses its permit", "live", after_reset),
    Step("SIGTERM; a set applied, a take; start", "stopped", stopped_after_reset),
    Step("a block without changes", "live", nothing),
)


# -- the exporter process --------------------------------------------------------------


class ExporterProcess:
    """``python -m exporter`` with a config file, started and stopped by PID."""

    def __init__(self, config: Path, logs: Path):
        self.config, self.logs = config, logs
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.runs = 0

    def start(self) -> None:
        assert self.proc is None
        self.runs += 1
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.logs / f"exporter-{self.runs}.log", "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config.file", str(self.config),
                 "--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log,
            )

    def stop(self) -> None:
        """SIGTERM; a clean stop exits 0."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.proc = None
        assert code == 0, f"SIGTERM: exit {code}\n{self.log_tail()}"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=15) == -signal.SIGKILL
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 15) -> str:
        path = self.logs / f"exporter-{self.runs}.log"
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""

    def metrics(self) -> Optional[str]:
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return None

    def wait_until(self, done: Callable[[str], bool], what: str) -> str:
        """Poll /metrics (every 50 ms, with a deadline) until ``done(exposition)``; the exposition."""
        deadline = time.monotonic() + WAIT_SECONDS
        text = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"the exporter exited\n{self.log_tail()}"
            text = self.metrics()
            if text is not None and done(text):
                return text
            time.sleep(0.05)
        served = gauge(text, "bittensor_chain_block") if text else None
        raise AssertionError(f"no {what} within {WAIT_SECONDS:.0f} s (serving block {served})\n{self.log_tail()}")

    def wait_for_block(self, block: int) -> str:
        """Until the exporter serves ``block`` (it records history before it publishes)."""
        def served(text: str) -> bool:
            number = gauge(text, "bittensor_chain_block")
            assert number is None or number <= block, f"served block {number}, past {block}"
            return number == block

        return self.wait_until(served, f"block {block}")


def gauge(text: str, name: str, labels: str = "") -> Optional[float]:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def refresh_errors(text: str) -> float:
    return sum(float(v) for v in re.findall(r"^bittensor_exporter_refresh_errors_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


def refuse_finalized_head(method: str, params) -> Optional[tuple]:
    """A SimNode fault: every refresh fails at its first request while this is set."""
    return ("error", -32000, "held by the test") if method == "chain_getFinalizedHead" else None


def recorded_events(db: Path) -> list[tuple[Event, float]]:
    """Every event in the history file, oldest first, with its time; read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT block, time, kind, hotkey, netuid, parent, child, old_value, new_value FROM events ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [
        (Event(block, kind, hotkey_, netuid, parent, child,
               None if old is None else json.loads(old), None if new is None else json.loads(new)), when)
        for block, when, kind, hotkey_, netuid, parent, child, old, new in rows
    ]


def reset_history(config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "exporter", "history", "reset", "--yes", "--config.file", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"history reset: exit {done.returncode}\n{done.stdout}{done.stderr}"


def last_change_blocks(text: str) -> dict[tuple[str, int, str], int]:
    """``bittensor_validator_last_change_block`` as served: (hotkey, netuid, kind) -> block."""
    return {
        (s.labels["hotkey"], int(s.labels["netuid"]), s.labels["kind"]): int(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "bittensor_validator_last_change_block"
    }


def last_expected(events: list[Event], watched: tuple[str, ...]) -> dict[tuple[str, int, str], int]:
    """Block of the last event of each kind, stake moves included, about a watched hotkey (its event
    hotkey: the child of an edge)."""
    last: dict[tuple[str, int, str], int] = {}
    for e in events:
        if e.hotkey in watched:
            last[(e.hotkey, e.netuid, e.kind)] = max(e.block, last.get((e.hotkey, e.netuid, e.kind), 0))
    return last


def exported(text: str) -> set[tuple[str, int]]:
    """The (hotkey, netuid) pairs /metrics serves validator series for."""
    return {
        (s.labels["hotkey"], int(s.labels["netuid"]))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "bittensor_validator_stake_weight_alpha"
    }


def export_scope(world: World) -> set[tuple[str, int]]:
    """What the script means to export (so that its scope crossings are real): tracked pairs on
    the filtered subnets, watched or with a stake weight of at least min_stake_weight."""
    return {
        (h, n) for h, n in tracked_pairs(world, WATCHED)
        if n in NETUIDS and (h in WATCHED or oracle(world, h, n, world.tao_weight)["stake_weight"] >= MIN_STAKE_WEIGHT * RAO)
    }


def readable(text: str) -> str:
    """Hotkeys (whole, or the 8-character prefixes events print) by their names in this script."""
    for h, name in NAMES.items():
        text = text.replace(h, name).replace(h[:8], name)
    return text


# -- the test ---------------------------------------------------------------------------


@pytest.fixture
def exporter_process(tmp_path):
    made = []

    def make(config: Path) -> ExporterProcess:
        process = ExporterProcess(config, tmp_path)
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()


def test_every_change_recorded_once_across_restarts_kills_resets_and_scope(tmp_path, exporter_process):
    started = time.monotonic()
    state = ChainState()
    chain = ChainWriter(state)
    world = initial_world()
    model = EventModel(watched=WATCHED)
    db = tmp_path / "history.db"
    config = tmp_path / "config.yaml"
    expected: list[Event] = []
    before_reset: list[tuple[Event, float]] = []
    last_before_reset: dict = {}
    expected_last_before_reset: dict = {}
    after_reset_from = 0
    scope_problems: list[str] = []
    table: list[tuple[str, str, int, float]] = []  # (step, how, block, seconds)

    with SimNode(state) as node:
        config.write_text(
            f"chain:\n  endpoints: [{node.url}]\n  genesis_hash: '{SIMNODE_GENESIS_HASH}'\n"
            "refresh:\n  interval_seconds: 1\n"
            f"scope:\n  min_stake_weight: {MIN_STAKE_WEIGHT}\n  netuids: [{', '.join(map(str, NETUIDS))}]\n"
            f"  watch:\n    - hotkey: {W}\n      alias: watched\n"
            f"history:\n  path: {db}\n"
        )
        exporter = exporter_process(config)

        block = chain.commit(world)
        exporter.start()
        text = exporter.wait_for_block(block)
        assert model.observe(world, block) == [], "a new history file starts with a baseline"
        assert exported(text) == export_scope(world), readable(f"exported {exported(text)}")
        table.append(("fresh start: baseline", "start", block, time.monotonic() - started))

        for step in SCRIPT:
            step_started = time.monotonic()
            if step.how == "stopped":
                exporter.stop()
            elif step.how == "killed":
                exporter.kill()
            elif step.how == "reset":
                # Hold the refreshes (the node refuses chain_getFinalizedHead) until the reset is
                # done, so that the first good refresh after it is the one that reads this step's
                # block; a refused refresh shows that none from before is still running.
                errors = refresh_errors(exporter.metrics() or "")
                node.fault = refuse_finalized_head
                text = exporter.wait_until(lambda t: refresh_errors(t) > errors, "refused refresh")
                before_reset = recorded_events(db)
                last_before_reset = last_change_blocks(text)
                expected_last_before_reset = last_expected(expected, WATCHED)
            step.change(world)
            block = chain.commit(world)
            if step.how == "reset":
                reset_history(config)  # the exporter runs, its memory holds the state before this block
                model.reset()
                after_reset_from = len(expected)
                node.fault = None
            step_expected = model.observe(world, block)
            if step.how == "kill_recorded":
                exporter.wait_for_block(block)
                exporter.kill()  # the restarted exporter reads the same block first: nothing new in it
            if step.how in ("stopped", "killed", "kill_recorded"):
                exporter.start()
            text = exporter.wait_for_block(block)
            if exported(text) != export_scope(world):
                scope_problems.append(f"block {block}: exported {sorted(exported(text))}, meant {sorted(export_scope(world))}")
            expected += step_expected
            table.append((step.name, step.how, block, time.monotonic() - step_started))

        metrics = exporter.wait_for_block(block)
        after_reset = recorded_events(db)
        with urllib.request.urlopen(exporter.url + "/api/v1/events?limit=1000", timeout=5) as response:
            api = json.loads(response.read())
        exporter.stop()

    recorded = [e for e, _ in before_reset + after_reset]
    by_block, wanted = Counter(e.block for e in recorded), Counter(e.block for e in expected)
    print(f"\n{'block':>5} {'how':<13} {'expected':>8} {'recorded':>8} {'seconds':>7}  step")
    for name, how, b, seconds in table:
        print(f"{b:>5} {how:<13} {wanted[b]:>8} {by_block[b]:>8} {seconds:>7.1f}  {name}")
    print(f"total: expected {len(expected)}, recorded {len(recorded)} "
          f"({len(before_reset)} before the reset, {len(after_reset)} after); "
          f"exporter runs {exporter.runs}; {time.monotonic() - started:.1f} s")

    problems = scope_problems[:]
    diff = compare(expected, recorded)
    if not diff.ok:
        problems.append(f"expected {len(expected)} events, recorded {len(recorded)}: {diff}")
    wrong_time = [(e, t) for e, t in before_reset + after_reset if t != (GENESIS_TIME_MS + e.block * BLOCK_TIME_MS) / 1000]
    if wrong_time:
        problems.append("time is not the block's timestamp: " + "; ".join(f"{e} at {t}" for e, t in wrong_time))
    api_keys = sorted((e["block"], e["kind"], e["hotkey"], e["netuid"], e["parent"], e["child"]) for e in api["events"])
    if api_keys != sorted(e.key for e, _ in after_reset) or api["next_cursor"] is not None:
        problems.append(f"/api/v1/events lists {len(api_keys)} events, the file holds {len(after_reset)}")
    if gauge(metrics, "bittensor_exporter_history_writes_total", '{result="error"}') != 0:
        problems.append("history writes failed")
    # The watched hotkey's last change per kind survives restarts and kills (read back from
    # the file at start); a reset wipes it with the events.
    for when, served, wanted_last in (
        ("before the reset", last_before_reset, expected_last_before_reset),
        ("at the end", last_change_blocks(metrics), last_expected(expected[after_reset_from:], WATCHED)),
    ):
        if served != wanted_last:
            problems.append(f"bittensor_validator_last_change_block {when}: served {sorted(served.items())}, "
                            f"expected {sorted(wanted_last.items())}")
    assert not problems, readable("\n".join(problems))
    print("expected events:\n" + readable("\n".join(f"  {e}" for e in expected)))


def test_the_script_crosses_the_scope_where_it_says():
    """The scenario's premises, from the chain states alone: VO leaves the export scope with its
    permit and returns, G and L cross the tracked population, subnet 3 is never exported."""
    world = initial_world()
    scopes, tracked = [export_scope(world)], [tracked_pairs(world, WATCHED)]
    for step in SCRIPT:
        step.change(world)
        scopes.append(export_scope(world))
        tracked.append(tracked_pairs(world, WATCHED))

    def after(change) -> int:  # index in scopes/tracked of the state after that change
        return 1 + [s.change for s in SCRIPT].index(change)

    def between(first: int, end: int) -> list[bool]:
        return [first <= i < end for i in range(len(scopes))]

    out, back = after(below_min_stake_weight), after(after_reset)
    assert [(VO, 1) in scope for scope in scopes] == [not b for b in between(out, back)]
    assert all(t[(VO, 1)] for t in tracked), "VO keeps its permit throughout"
    assert [(G, 1) in t for t in tracked] == between(after(out_of_scope_take_and_permits), after(after_reset))
    assert [(L, 1) in t for t in tracked] == between(0, after(while_stopped))
    assert [(W, 2) in t for t in tracked] == between(0, len(tracked)), "watched: tracked with or without a permit"
    assert not any(n == 3 for scope in scopes for _, n in scope)
    assert all(any(n == 3 for _, n in t) for t in tracked), "subnet 3 is tracked"
