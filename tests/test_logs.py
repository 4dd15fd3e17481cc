"""With JSON logging on, every line on stderr is one JSON object, whoever wrote it: the
exporter, stdlib logging (the SDK), warnings, asyncio's reports, a thread that died."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import sys
import threading
import warnings

import pytest
import structlog

from exporter.chain.session import ChainSession
from exporter.chain.wire import RequestCounter
from exporter.config import ChainConfig
from exporter.logs import configure_logging


@pytest.fixture
def json_log():
    """configure_logging into a buffer; every process-wide switch it flips is put back after."""
    saved = structlog.get_config()
    hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
    root = logging.getLogger()
    level, exporter_level = root.level, logging.getLogger("exporter").level
    buffer = io.StringIO()
    configure_logging("info", "json", buffer)

    def lines() -> list[dict]:
        text = buffer.getvalue()
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]  # each line alone is valid JSON

    try:
        yield lines
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "exporter"]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger("exporter").setLevel(exporter_level)
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
        structlog.configure(**saved)


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
