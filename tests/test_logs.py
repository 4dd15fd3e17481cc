"""With JSON logging on, every line on stderr is one JSON object, whoever wrote it: the
exporter, stdlib logging (the SDK), warnings, asyncio's reports, a thread that died."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import re
import sys
import threading
import warnings

import pytest
import structlog

from exporter.chain.session import ChainSession
from exporter.chain.wire import RequestCounter
from exporter.config import ChainConfig
from exporter.logs import LogfmtRenderer, configure_logging, logfmt_value


@contextlib.contextmanager
def captured(level: str, fmt: str):
    """configure_logging into a buffer; every process-wide switch it flips is put back after."""
    saved = structlog.get_config()
    hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
    root = logging.getLogger()
    saved_level, exporter_level = root.level, logging.getLogger("exporter").level
    buffer = io.StringIO()
    configure_logging(level, fmt, buffer)
    try:
        yield buffer
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "exporter"]:
            root.removeHandler(handler)
        root.setLevel(saved_level)
        logging.getLogger("exporter").setLevel(exporter_level)
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
        structlog.configure(**saved)


@pytest.fixture
def json_log():
    with captured("info", "json") as buffer:
        def lines() -> list[dict]:
            text = buffer.getvalue()
            assert text.endswith("\n")
            return [json.loads(line) for line in text.splitlines()]  # each line alone is valid JSON

        yield lines


def test_exporter_lines_keep_their_shape(json_log):
    log = structlog.get_logger("exporter.refresh")
    log.info("refresh", block=7)
    log.debug("not at info")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("refresh failed", reason="internal")
    first, second = json_log()
    assert first["event"] == "refresh" and first["block"] == 7 and first["level"] == "info" and first["timestamp"]
    assert second["level"] == "error" and "ValueError: bad" in second["exception"] and "Traceback" in second["exception"]


def test_a_stdlib_warning_is_one_json_line(json_log):
    logging.getLogger("bittensor.transport").warning("Connection to %s lost; reconnecting", "wss://node")
    logging.getLogger("bittensor.transport").info("chatter below warning is dropped")
    warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)
    sdk, warned = json_log()
    assert sdk == {**sdk, "event": "Connection to wss://node lost; reconnecting", "level": "warning", "logger": "bittensor.transport"}
    assert warned["logger"] == "py.warnings" and "something is deprecated" in warned["event"]


def test_an_asyncio_task_exception_never_retrieved_is_one_json_line(json_log):
    async def fails():
        raise RuntimeError("nobody awaited me")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait([loop.create_task(fails())]))
    finally:
        loop.close()
    gc.collect()  # the task is gone: asyncio reports its exception
    (line,) = json_log()
    assert line["logger"] == "asyncio" and line["level"] == "error"
    assert line["event"].startswith("Task exception was never retrieved")
    assert "RuntimeError: nobody awaited me" in line["exception"]


def test_the_chain_loop_reports_an_unretrieved_exception_as_one_json_line(json_log):
    session = ChainSession(ChainConfig(endpoints=("ws://127.0.0.1:9",)), RequestCounter())
    try:
        async def fails():
            raise KeyError("lost")

        def start_and_forget():
            asyncio.ensure_future(fails())

        session.run_on_loop(start_and_forget)
        session.run_on_loop(lambda: None)  # the task ran
        session.run_on_loop(gc.collect)
    finally:
        session.close()
    (line,) = [line for line in json_log() if line["event"].startswith("asyncio")]
    assert line["event"] == "asyncio: Task exception was never retrieved" and line["level"] == "error"
    assert "KeyError: 'lost'" in line["exception"] and "fails" in line["where"]


def test_a_thread_that_dies_is_one_json_line_with_its_traceback(json_log):
    def work():
        raise OSError("disk on fire")

    thread = threading.Thread(target=work, name="worker")
    thread.start()
    thread.join()
    (line,) = json_log()
    assert line["level"] == "critical" and line["thread"] == "worker"
    assert "OSError: disk on fire" in line["exception"] and "in work" in line["exception"]


def test_an_uncaught_exception_and_an_unraisable_one_are_json_lines(json_log):
    try:
        raise LookupError("main thread")
    except LookupError as error:
        sys.excepthook(type(error), error, error.__traceback__)

    class Broken:
        def __del__(self):
            raise ValueError("in __del__")

    Broken()
    gc.collect()
    uncaught, ignored = json_log()
    assert uncaught["event"] == "uncaught exception" and "LookupError: main thread" in uncaught["exception"]
    assert ignored["event"] == "exception ignored" and "ValueError: in __del__" in ignored["exception"]


def test_console_format_is_for_people(json_log):
    buffer = io.StringIO()
    configure_logging("debug", "console", buffer)
    structlog.get_logger("exporter").debug("shown at debug", x=1)
    logging.getLogger("websockets.client").warning("from the library")
    text = buffer.getvalue()
    assert "shown at debug" in text and "x=1" in text and "from the library" in text
    assert not text.lstrip().startswith("{")


# -- logfmt ----------------------------------------------------------------------------------------

# key=value or key="quoted \"value\"", separated by single spaces (go-logfmt's grammar).
_PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)( |$)')


def parse_logfmt(line: str) -> list[tuple[str, str]]:
    """The line's (key, value) pairs in order; quoted values decoded. Fails on anything else."""
    pairs, at = [], 0
    while at < len(line):
        match = _PAIR.match(line, at)
        assert match, f"not logfmt at {at}: {line!r}"
        key, raw = match.group(1), match.group(2)
        pairs.append((key, json.loads(raw) if raw.startswith('"') else raw))
        at = match.end()
    return pairs


@pytest.fixture
def logfmt_log():
    with captured("info", "logfmt") as buffer:
        def lines() -> list[list[tuple[str, str]]]:
            text = buffer.getvalue()
            assert text.endswith("\n")
            return [parse_logfmt(line) for line in text.split("\n")[:-1]]

        yield lines


def test_logfmt_lines_begin_with_ts_level_msg_like_go_kit(logfmt_log):
    log = structlog.get_logger("exporter.refresh")
    log.info("refresh", block=7, endpoint="wss://a.example:443", ok=True, missing=None)
    log.warning("refresh failed", reason="timeout", error="no answer in 30 s")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("refresh failed", reason="internal")
    logging.getLogger("bittensor.transport").warning("Connection to %s lost", "wss://node")
    info, warning, error, stdlib = logfmt_log()
    assert [key for key, _ in info] == ["ts", "level", "msg", "block", "endpoint", "ok", "missing"]
    assert dict(info) == {**dict(info), "level": "info", "msg": "refresh", "block": "7", "endpoint": "wss://a.example:443",
                          "ok": "true", "missing": "null"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", dict(info)["ts"])
    assert dict(warning)["level"] == "warn", "go-kit's spelling"
    assert dict(warning)["error"] == "no answer in 30 s"
    error = dict(error)
    assert error["level"] == "error" and error["reason"] == "internal"
    assert error["exception"].startswith("Traceback") and "ValueError: bad\nvalue" in error["exception"]
    assert [key for key, _ in stdlib][:3] == ["ts", "level", "msg"]
    assert dict(stdlib)["logger"] == "bittensor.transport" and dict(stdlib)["msg"] == "Connection to wss://node lost"


@pytest.mark.parametrize("value, written", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ("a=b", '"a=b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("", '""'),
    ("null", '"null"'),
    ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
    ("back\\slash", "back\\slash"),
    ("caf\u00e9", "caf\u00e9"),
    ("sep\u2028arator\x85", '"sep\\u2028arator\\u0085"'),
    ("astral\U000e0001", '"astral\\udb40\\udc01"'),
    (None, "null"),
    (True, "true"),
    (3, "3"),
    (0.25, "0.25"),
    (OSError("disk full"), '"disk full"'),
])
def test_logfmt_values_are_quoted_only_when_needed_and_read_back(value, written):
    assert logfmt_value(value) == written
    line = LogfmtRenderer()(None, "info", {"event": "x", "field": value})
    (_, msg), (_, got) = parse_logfmt(line)
    assert msg == "x" and "\n" not in line
    assert got == (written if value is None or isinstance(value, (bool, int, float)) else str(value))


def test_logfmt_keys_stay_valid_and_unique():
    line = LogfmtRenderer()(None, "info", {"timestamp": "t", "level": "info", "event": "e", "msg": "m",
                                          "ts": "x", "a b": 1, "": 2, 'q"=': 3})
    assert [key for key, _ in parse_logfmt(line)] == ["ts", "level", "msg", "_msg", "_ts", "a_b", "_", "q__"]


def test_warn_is_an_alias_of_warning():
    with captured("warn", "logfmt") as buffer:
        structlog.get_logger("exporter").info("hidden")
        structlog.get_logger("exporter").warning("shown")
    assert [dict(parse_logfmt(line))["msg"] for line in buffer.getvalue().splitlines()] == ["shown"]
    with captured("warning", "json") as buffer:
        structlog.get_logger("exporter").info("hidden")
        structlog.get_logger("exporter").warning("shown")
    assert [json.loads(line)["level"] for line in buffer.getvalue().splitlines()] == ["warning"]
