"""The node's JSON-RPC methods: pure functions from (ChainState, params) to results.

No websocket or asyncio here (see ``server.py``); error codes and messages
mimic a Substrate node where the SDK might look at them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from itertools import repeat
from typing import Any, Callable, Optional

from simnode.epoch import selective_metagraph
from simnode.state import Block, ChainState, metadata_blob, runtime_for

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
# Substrate's state-RPC error codes (sc-rpc-api): 4002 = invalid count,
# 4003 = client error (unknown block, runtime call failure, ...).
INVALID_COUNT = 4002
CLIENT_ERROR = 4003
INVALID_BLOCK_RANGE = 4001
# jsonrpsee's answer to a response over the node's --rpc-max-response-size (15 MiB by default).
OVERSIZED_RESPONSE = -32008
MAX_RESPONSE_BYTES = 15 * 1024 * 1024
# --rpc-methods safe (public endpoints) refuses the unsafe methods with this.
UNSAFE_RPC = (-32601, "RPC call is unsafe to be called externally")
MAX_KEYS_PAGED = 1000
# Root of an empty trie (blake2-256): a block with no extrinsics has this root.
EMPTY_TRIE_ROOT = "0x03170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314"
SYSTEM_PROPERTIES = {"ss58Format": 42, "tokenDecimals": 9, "tokenSymbol": "TAO"}


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def compact(n: int) -> bytes:
    """SCALE compact encoding of a non-negative int."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return struct.pack("<H", (n << 2) | 1)
    if n < 1 << 30:
        return struct.pack("<I", (n << 2) | 2)
    body = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(body) - 4) << 2) | 3]) + body


# -- parameter helpers ---------------------------------------------------------


def _arg(params: list, index: int) -> Any:
    return params[index] if index < len(params) else None


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(INVALID_PARAMS, f"Invalid params: {what} must be 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"Invalid params: {what} is not valid hex") from None


def _block_or_none(state: ChainState, value: Any) -> Optional[Block]:
    """The block a hash param names (None = head); None for an unknown hash."""
    if value is None:
        return state.head
    if len(_hex(value, "block hash")) != 32:
        raise RpcError(INVALID_PARAMS, "Invalid params: block hash must be 32 bytes")
    return state.block_by_hash(value)


def _block(state: ChainState, value: Any) -> Block:
    block = _block_or_none(state, value)
    if block is None:
        raise RpcError(
            CLIENT_ERROR,
            "Client error: UnknownBlock: Header was not found in the local DB: "
            f"Header for id: Hash({value}) not found",
        )
    return block


def _state_block(state: ChainState, value: Any) -> Block:
    """``_block`` for a read of the block's state, which a pruning node may have discarded."""
    block = _block(state, value)
    if state.state_discarded(block):
        # sc-client-db: sp_blockchain::Error::UnknownBlock("State already discarded for {hash:?}"),
        # wrapped by sc-rpc's client error (4003).
        raise RpcError(CLIENT_ERROR, f"Client error: UnknownBlock: State already discarded for {block.hash}")
    return block


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RpcError(INVALID_PARAMS, "Invalid params: block number must be a number or hex")
    try:
        number = int(value, 16) if isinstance(value, str) else value
    except ValueError:
        raise RpcError(INVALID_PARAMS, "Invalid params: block number is not hex") from None
    if number < 0:
        raise RpcError(INVALID_PARAMS, "Invalid params: block number must not be negative")
    return number


# -- result shapes -------------------------------------------------------------


def header(block: Block) -> dict:
    state_root = hashlib.blake2b(b"state-root" + block.hash.encode(), digest_size=32)
    return {
        "parentHash": block.parent_hash,
        "number": hex(block.number),
        "stateRoot": "0x" + state_root.hexdigest(),
        "extrinsicsRoot": EMPTY_TRIE_ROOT,
        "digest": {"logs": []},
    }


def runtime_version(block: Block) -> dict:
    return {
        "specName": "node-subtensor",
        "implName": "node-subtensor",
        "authoringVersion": 1,
        "specVersion": block.spec_version,
        "implVersion": 1,
        "apis": [],
        "transactionVersion": 1,
        "stateVersion": 1,
    }


def _runtime_call(block: Block, method: Any, data: bytes) -> bytes:
    """The SCALE result of a runtime API call; only the metadata API exists."""
    if method == "Metadata_metadata_at_version":
        if len(data) != 4:
            raise RpcError(CLIENT_ERROR, "Client error: Execution failed: Codec error")
        blob = metadata_blob(block.spec_version)
        # Option<OpaqueMetadata>: only V15 bytes exist here, so V14 is None.
        if struct.unpack("<I", data)[0] != 15:
            return b"\x00"
        return b"\x01" + compact(len(blob)) + blob
    if method == "Metadata_metadata_versions":
        return compact(2) + struct.pack("<II", 14, 15)
    if method == "Metadata_metadata":
        blob = metadata_blob(block.spec_version)
        return compact(len(blob)) + blob
    if method == "SubnetInfoRuntimeApi_get_selective_metagraph":
        return _selective_metagraph(block, data)
    if method == "SubnetInfoRuntimeApi_get_next_epoch_start_block" and _declares(
        block, "SubnetInfoRuntimeApi", "get_next_epoch_start_block"
    ):
        return _next_epoch_start_block(block, data)
    raise RpcError(
        CLIENT_ERROR, f"Client error: Execution failed: Other: Exported method {method} is not found"
    )


def _declares(block: Block, api: str, method: str) -> bool:
    return method in runtime_for(block.spec_version).runtime_api_map().get(api, {})


def _next_epoch_start_block(block: Block, data: bytes) -> bytes:
    """``Option<u64>``, as ``coinbase/run_coinbase.rs`` ``get_next_epoch_start_block`` computes it
    from the block's storage: None for tempo 0, else ``LastEpochBlock + tempo``, or
    ``PendingEpochAt`` when set (non-zero) and earlier. Absent keys read as the items' defaults."""
    runtime = runtime_for(block.spec_version)
    api = runtime.runtime_api_map()["SubnetInfoRuntimeApi"]["get_next_epoch_start_block"]
    ((_, netuid_type),) = api["inputs"]
    try:
        netuid = int(runtime.decode(netuid_type, data))
    except Exception as error:  # noqa: BLE001 - the node answers a codec error
        raise RpcError(CLIENT_ERROR, f"Client error: Execution failed: Codec error: {error}") from error
    tempo = _stored(runtime, block, "Tempo", netuid)
    if tempo == 0:
        return bytes(runtime.encode(api["output"], None))
    due = _stored(runtime, block, "LastEpochBlock", netuid) + tempo
    pending = _stored(runtime, block, "PendingEpochAt", netuid)
    return bytes(runtime.encode(api["output"], min(due, pending) if pending > 0 else due))


def _stored(runtime, block: Block, item: str, netuid: int) -> int:
    """A ValueQuery map's value at ``netuid`` in the block: the stored one, else the item's default."""
    entry = runtime.storage_entry("SubtensorModule", item)
    raw = block.storage.get(bytes(runtime.storage_key("SubtensorModule", item, [netuid])))
    return int(runtime.decode(entry.value_type, bytes(entry.default_bytes if raw is None else raw)))


def _selective_metagraph(block: Block, data: bytes) -> bytes:
    """``Option<SelectiveMetagraph>`` of the block's storage, computed by the chain's stake rule."""
    runtime = runtime_for(block.spec_version)
    api = runtime.runtime_api_map()["SubnetInfoRuntimeApi"]["get_selective_metagraph"]
    (_, netuid_type), (_, indexes_type) = api["inputs"]
    try:
        netuid = runtime.decode(netuid_type, data[:2])
        indexes = runtime.decode(indexes_type, data[2:])
    except Exception as error:  # noqa: BLE001 - the node answers a codec error
        raise RpcError(CLIENT_ERROR, f"Client error: Execution failed: Codec error: {error}") from error
    found = selective_metagraph(runtime, block.storage, int(netuid), [int(i) for i in indexes])
    if found is None:
        return b"\x00"
    fields = _metagraph_fields(runtime, api["output"])
    value = {name: None for name in fields}
    value.update(found)
    return bytes(runtime.encode(api["output"], value))


def _metagraph_fields(runtime, output_type: str) -> list[str]:
    """Field names of the SelectiveMetagraph struct inside the API's ``Option``."""
    registry = runtime.registry_json()
    types = {t["id"]: t["type"] for t in (json.loads(registry) if isinstance(registry, str) else registry)["types"]}
    option = types[int(output_type.split("::")[1])]
    inner = option["def"]["variant"]["variants"][1]["fields"][0]["type"]
    return [f["name"] for f in types[inner]["def"]["composite"]["fields"]]


# -- methods -------------------------------------------------------------------


def _get_block_hash(state: ChainState, params: list) -> Any:
    arg = _arg(params, 0)
    if arg is None:
        return state.head.hash
    if isinstance(arg, list):
        return [_get_block_hash(state, [item]) for item in arg]
    block = state.block(_number(arg))
    return block.hash if block else None


def _get_header(state: ChainState, params: list) -> Any:
    block = _block_or_none(state, _arg(params, 0))
    return header(block) if block else None


def _get_block(state: ChainState, params: list) -> Any:
    block = _block_or_none(state, _arg(params, 0))
    if block is None:
        return None
    return {"block": {"header": header(block), "extrinsics": []}, "justifications": None}


def _state_call(state: ChainState, params: list) -> str:
    block = _state_block(state, _arg(params, 2))
    data = _hex(_arg(params, 1) or "0x", "call data")
    return "0x" + _runtime_call(block, _arg(params, 0), data).hex()


def _get_storage(state: ChainState, params: list) -> Optional[str]:
    key = _hex(_arg(params, 0), "storage key")
    value = _state_block(state, _arg(params, 1)).storage.get(key)
    return None if value is None else "0x" + value.hex()


def _get_keys_paged(state: ChainState, params: list) -> list[str]:
    prefix = _hex(_arg(params, 0) or "0x", "prefix")
    count = _arg(params, 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise RpcError(INVALID_PARAMS, "Invalid params: count must be a non-negative integer")
    if count > MAX_KEYS_PAGED:
        raise RpcError(
            INVALID_COUNT, f"count exceeds maximum value. value: {count}, max: {MAX_KEYS_PAGED}"
        )
    start = _arg(params, 2)
    start_key = None if start is None else _hex(start, "start key")
    block = _state_block(state, _arg(params, 3))
    return ["0x" + key.hex() for key in block.keys_after(prefix, start_key, count)]


def _query_storage_at(state: ChainState, params: list) -> list[dict]:
    keys = _arg(params, 0)
    if not isinstance(keys, list):
        raise RpcError(INVALID_PARAMS, "Invalid params: keys must be a list")
    block = _state_block(state, _arg(params, 1))
    raw = _hex_keys(keys)
    values = block.storage.get_many(raw)
    # Echo keys normalised (lowercase) as a real node re-serialises them.
    echoed = ["0x" + key for key in map(bytes.hex, raw)]
    return [{"block": block.hash, "changes": [
        [key, None if value is None else "0x" + value.hex()] for key, value in zip(echoed, values)]}]


def _hex_keys(keys: list) -> list[bytes]:
    """``_hex`` of every key: in bulk for the usual list of 0x-prefixed strings, one by one
    (to name the bad one) otherwise."""
    if set(map(type, keys)) <= {str} and all(map(str.startswith, keys, repeat("0x"))):
        try:
            return [bytes.fromhex(key[2:]) for key in keys]
        except ValueError:
            pass
    return [_hex(key, "storage key") for key in keys]


def _block_range_error(first: Any, last: Any, details: str) -> RpcError:
    return RpcError(INVALID_BLOCK_RANGE, f"Cannot resolve a block range ['{first}' ... '{last}']. {details}")


def _query_storage(state: ChainState, params: list) -> list[dict]:
    """``state_queryStorage [keys, from, to?]`` as sc-rpc's ``query_storage`` answers it: one
    change set per block of from..to (to: the head when null) in which some key changed, the
    first block listing every key (null when absent). An unsafe method: refused under
    ``deny_unsafe_rpc``. Nodes put no cap on the range; the response size is capped."""
    if state.deny_unsafe_rpc:
        raise RpcError(*UNSAFE_RPC)
    keys = _arg(params, 0)
    if not isinstance(keys, list):
        raise RpcError(INVALID_PARAMS, "Invalid params: keys must be a list")
    keys = [_hex(key, "storage key") for key in keys]
    first_hash, last_hash = _arg(params, 1), _arg(params, 2)
    first = _block_or_none(state, first_hash) if first_hash is not None else None
    last = _block_or_none(state, last_hash)
    if first is None or last is None:
        raise _block_range_error(first_hash, last_hash, "UnknownBlock: Header was not found in the local DB")
    if first.number > last.number:
        raise _block_range_error(f"{first.number} ({first.hash})", f"{last.number} ({last.hash})", "from number > to number")
    if keys:  # reads from the first block on: its state must still be there
        _state_block(state, first.hash)
    result, size = [], 0
    for number, changes in state.storage_changes(keys, first.number, last.number):
        pairs = [["0x" + key.hex(), None if value is None else "0x" + value.hex()] for key, value in changes]
        size += 90 + sum(len(k) + (len(v) if v else 4) + 6 for k, v in pairs)
        if size > MAX_RESPONSE_BYTES:
            raise RpcError(OVERSIZED_RESPONSE, "Response is too big", f"Exceeded max limit of {MAX_RESPONSE_BYTES}")
        result.append({"block": state.block(number).hash, "changes": pairs})
    return result


Handler = Callable[[ChainState, list], Any]

METHODS: dict[str, Handler] = {
    "chain_getHead": lambda s, p: s.head.hash,
    "chain_getBlockHash": _get_block_hash,
    "chain_getFinalizedHead": lambda s, p: s.finalized.hash,
    "chain_getFinalisedHead": lambda s, p: s.finalized.hash,
    "chain_getHeader": _get_header,
    "chain_getBlock": _get_block,
    "state_getRuntimeVersion": lambda s, p: runtime_version(_state_block(s, _arg(p, 0))),
    "chain_getRuntimeVersion": lambda s, p: runtime_version(_state_block(s, _arg(p, 0))),
    "state_call": _state_call,
    "state_callAt": _state_call,
    "state_getMetadata": lambda s, p: "0x" + metadata_blob(_state_block(s, _arg(p, 0)).spec_version).hex(),
    "state_getStorage": _get_storage,
    "state_getStorageAt": _get_storage,
    "state_getKeysPaged": _get_keys_paged,
    "state_getKeysPagedAt": _get_keys_paged,
    "state_queryStorageAt": _query_storage_at,
    "state_queryStorage": _query_storage,
    "system_chain": lambda s, p: "Bittensor",
    "system_name": lambda s, p: "Subtensor Node",
    "system_version": lambda s, p: "simnode-1.0.0",
    "system_chainType": lambda s, p: "Live",
    "system_properties": lambda s, p: dict(SYSTEM_PROPERTIES),
    "system_health": lambda s, p: {"peers": 8, "isSyncing": False, "shouldHavePeers": True},
    "rpc_methods": lambda s, p: {"methods": sorted(METHODS)},
}


def dispatch(state: ChainState, method: Any, params: Any) -> Any:
    """The result of one request, or raises ``RpcError``."""
    handler = METHODS.get(method) if isinstance(method, str) else None
    if handler is None:
        raise RpcError(METHOD_NOT_FOUND, "Method not found")
    if params is None:
        params = []
    if not isinstance(params, list):
        # Substrate also takes named params; the SDK never sends them.
        raise RpcError(INVALID_PARAMS, "Invalid params: expected a positional (array) params")
    return handler(state, params)
