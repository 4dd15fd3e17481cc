"""Every private name of the SDK the exporter, the simulated node and the benchmarks use is still there.

The chain is read through the SDK's transport (``bittensor._transport``: the connection, the
runtime codec, storage decoding, its errors) and its Rust core (``bittensor_core``), neither of
them a public API: a release may change them without notice, which is why pyproject.toml pins the
SDK to the releases checked. An upgrade that drops or changes one of these fails here, by name,
before anything else runs into it.

Imports are found in the source (so a new one is checked without being listed here); what is
used on the SDK's objects (methods, attributes of private fields, keyword arguments) is listed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("exporter", "simnode", "bench")
PRIVATE = ("bittensor._", "bittensor_core")


def _private(module: str) -> bool:
    return module.startswith(PRIVATE)


def private_names() -> set[tuple[str, str]]:
    """(module, name) of every import from a private SDK module, and every ``bittensor_core.<name>``;
    name "" for a module imported whole."""
    found: set[tuple[str, str]] = set()
    for package in SOURCES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    if _private(node.module) or node.module == "bittensor":
                        found.update((node.module, alias.name) for alias in node.names
                                     if _private(node.module) or alias.name.startswith("_"))
                elif isinstance(node, ast.Import):
                    found.update((alias.name, "") for alias in node.names if _private(alias.name))
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "bittensor_core":
                    found.add(("bittensor_core", node.attr))
    return found


NAMES = sorted(private_names())


def test_the_source_scan_finds_the_names_it_must():
    """The scan itself works: it finds names known to be used (and so would find a new one)."""
    assert {
        ("bittensor._transport.interface", "SubstrateConnection"),
        ("bittensor._transport.codec", "RuntimeCodec"),
        ("bittensor._transport.storage", "decode_storage_values"),
        ("bittensor._transport.errors", "RpcPolicyRejection"),
        ("bittensor._transport.errors", "StateDiscardedError"),
        ("bittensor_core", "ss58_encode"),
        ("bittensor_core", "Runtime"),
    } <= set(NAMES)


@pytest.mark.parametrize("module, name", NAMES, ids=[f"{m}:{n}" if n else m for m, n in NAMES])
def test_every_private_name_imported_is_still_there(module, name):
    imported = importlib.import_module(module)
    if name:
        assert hasattr(imported, name), f"{module} has no {name}: the SDK changed; see pyproject.toml"


def _parameters(function) -> set[str]:
    return set(inspect.signature(function).parameters)


def test_the_connection_offers_what_the_session_and_the_reader_use():
    from bittensor._transport.interface import SubstrateConnection

    # exporter.chain.session: one endpoint, few retries, the exporter's own websocket dial.
    assert {"fallback_urls", "max_retries", "response_timeout", "connect_factory"} <= _parameters(SubstrateConnection)
    for method in ("initialize", "close", "rpc_request", "get_chain_finalised_head", "get_block_number"):
        assert inspect.iscoroutinefunction(getattr(SubstrateConnection, method)), method

    async def dial(url):  # never called: nothing here connects
        raise AssertionError(url)

    conn = SubstrateConnection("ws://127.0.0.1:9", fallback_urls=[], max_retries=1, response_timeout=1,
                               connect_factory=dial)
    # exporter.chain.reader.codec_at: the codec of a block; closing.close_quietly: the supervisor task.
    assert inspect.iscoroutinefunction(conn._runtimes.codec_at)
    assert hasattr(conn._session, "_supervisor")
    # exporter.chain.wire: the dial the session uses is the one given.
    assert conn._session._connect is dial


def test_the_runtime_codec_offers_what_the_storage_reader_uses():
    from bittensor._transport.codec import RuntimeCodec

    from simnode.state import metadata_blob

    codec = RuntimeCodec(metadata_blob(393), spec_version=393, transaction_version=1)
    for method in ("storage_entry", "storage_key", "storage_key_batch", "encode", "decode", "decode_map_changes",
                   "batch_decode", "registry_types"):
        assert callable(getattr(codec, method)), method
    assert "fixed" in _parameters(codec.decode_map_changes)
    assert codec.spec_version == 393 and "SubnetInfoRuntimeApi" in codec.runtime_api_map


def test_the_core_runtime_offers_what_the_simulated_node_uses():
    from simnode.state import runtime_for

    runtime = runtime_for(393)
    for method in ("storage_entry", "storage_key", "storage_key_batch", "storage_prefix", "decode_storage_key_params",
                   "encode", "decode", "batch_decode", "runtime_api_map", "registry_json"):
        assert callable(getattr(runtime, method)), method


def test_the_transport_json_library_is_where_the_read_benchmark_times_it():
    from bittensor._transport import rpc

    assert callable(rpc.json.loads) and callable(rpc.json.dumps)  # bench.read_floor wraps rpc.json


def test_the_errors_take_what_the_exporter_gives_them():
    from bittensor._transport.errors import RpcPolicyRejection, SubstrateRequestException

    assert {"status_code", "retry_after"} <= _parameters(RpcPolicyRejection)
    assert issubclass(RpcPolicyRejection, SubstrateRequestException)
    assert str(SubstrateRequestException("plain text")) == "plain text"
