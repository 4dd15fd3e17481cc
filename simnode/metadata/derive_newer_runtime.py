#!/usr/bin/env python3
"""Derive a "newer runtime" V15 metadata from the real finney spec-393 V15 metadata.

Usage: python3 derive_newer_runtime.py IN_393_V15.scale OUT.scale
  (in this repository: finney-metadata-v15.scale -> newer-runtime-variant-v15.scale)

Not a real runtime's metadata: spec 393 plus the SubtensorModule items that
later runtimes declare, each with the types the bittensor 11.x SDK's generated
descriptors (``bittensor/_generated/``) and the public chain source
(``opentensor/subtensor``) give them. The simulated node serves it so the
exporter can be tested against runtime drift. README.md beside this file says
what was added, why and from which source. Deterministic (the same input gives
the same bytes); standard library only; the SCALE reader and encoders are those
of ``metadata_v16_to_v15.py``.

Every change is by name and checked: the script refuses an input that already
declares one of the items, or lacks an item it anchors an insertion on.
Before changing anything it parses the whole input and re-encodes it, and
refuses to go on unless that gives the input back byte for byte.
"""
import sys

from metadata_v16_to_v15 import Reader, docs, enc_compact, enc_option, enc_vec

SPEC_VERSION = 1_000_393  # see README.md: far above any finney spec, and ends in the base spec
PALLET = "SubtensorModule"
OPTIONAL, DEFAULT = 0, 1  # StorageEntryModifier
BLAKE2_128_CONCAT, IDENTITY = 2, 6  # StorageHasher


# ---- V15, parsed into plain values and encoded back ------------------------
def enc_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return enc_compact(len(b)) + b


def enc_docs(lines) -> bytes:
    return enc_vec(map(enc_str, lines))


def field(r):
    return {"name": r.option(Reader.string), "ty": r.compact(),
            "type_name": r.option(Reader.string), "docs": docs(r)}


def enc_field(f) -> bytes:
    return (enc_option(None if f["name"] is None else enc_str(f["name"])) + enc_compact(f["ty"])
            + enc_option(None if f["type_name"] is None else enc_str(f["type_name"])) + enc_docs(f["docs"]))


def variant(r):
    return {"name": r.string(), "fields": r.vec(field), "index": r.u8(), "docs": docs(r)}


def enc_variant(v) -> bytes:
    return enc_str(v["name"]) + enc_vec(map(enc_field, v["fields"])) + bytes([v["index"]]) + enc_docs(v["docs"])


def portable_type(r):
    """One registry entry; only Composite and Variant bodies are parsed (the ones edited)."""
    tid, path = r.compact(), r.vec(Reader.string)
    params = r.vec(lambda r: (r.string(), r.option(Reader.compact)))
    start, kind = r.pos, r.u8()
    body = {0: lambda r: r.vec(field), 1: lambda r: r.vec(variant),
            2: Reader.compact, 3: lambda r: (r.take(4), r.compact()), 4: lambda r: r.vec(Reader.compact),
            5: Reader.u8, 6: Reader.compact, 7: lambda r: (r.compact(), r.compact())}[kind](r)
    raw_def = r.data[start:r.pos]
    return {"id": tid, "path": path, "params": params, "kind": kind, "body": body,
            "raw_def": raw_def, "docs": docs(r)}


def enc_type(t) -> bytes:
    if t["raw_def"] is not None:
        definition = t["raw_def"]
    elif t["kind"] == 0:
        definition = b"\x00" + enc_vec(map(enc_field, t["body"]))
    elif t["kind"] == 1:
        definition = b"\x01" + enc_vec(map(enc_variant, t["body"]))
    else:
        raise ValueError(f"cannot encode a changed type of kind {t['kind']}")
    params = enc_vec(enc_str(n) + enc_option(None if ty is None else enc_compact(ty)) for n, ty in t["params"])
    return enc_compact(t["id"]) + enc_vec(map(enc_str, t["path"])) + params + definition + enc_docs(t["docs"])


def storage_entry(r):
    name, modifier = r.string(), r.u8()
    if r.u8() == 0:
        ty = {"plain": r.compact()}
    else:
        ty = {"hashers": r.vec(Reader.u8), "key": r.compact(), "value": r.compact()}
    return {"name": name, "modifier": modifier, "ty": ty, "default": r.bytes_(), "docs": docs(r)}


def enc_storage_entry(e) -> bytes:
    ty = e["ty"]
    if "plain" in ty:
        kind = b"\x00" + enc_compact(ty["plain"])
    else:
        kind = b"\x01" + enc_vec(bytes([h]) for h in ty["hashers"]) + enc_compact(ty["key"]) + enc_compact(ty["value"])
    return (enc_str(e["name"]) + bytes([e["modifier"]]) + kind + enc_compact(len(e["default"])) + e["default"]
            + enc_docs(e["docs"]))


def pallet(r):
    name = r.string()
    storage = r.option(lambda r: {"prefix": r.string(), "entries": r.vec(storage_entry)})
    calls, event = r.option(Reader.compact), r.option(Reader.compact)
    constants = r.vec(lambda r: {"name": r.string(), "ty": r.compact(), "value": r.bytes_(), "docs": docs(r)})
    return {"name": name, "storage": storage, "calls": calls, "event": event, "constants": constants,
            "error": r.option(Reader.compact), "index": r.u8(), "docs": docs(r)}


def enc_pallet(p) -> bytes:
    def opt_ty(ty):
        return enc_option(None if ty is None else enc_compact(ty))

    storage = p["storage"]
    storage = None if storage is None else enc_str(storage["prefix"]) + enc_vec(map(enc_storage_entry, storage["entries"]))
    constants = enc_vec(enc_str(c["name"]) + enc_compact(c["ty"]) + enc_compact(len(c["value"])) + c["value"]
                        + enc_docs(c["docs"]) for c in p["constants"])
    return (enc_str(p["name"]) + enc_option(storage) + opt_ty(p["calls"]) + opt_ty(p["event"]) + constants
            + opt_ty(p["error"]) + bytes([p["index"]]) + enc_docs(p["docs"]))


def api_method(r):
    return {"name": r.string(), "inputs": r.vec(lambda r: (r.string(), r.compact())),
            "output": r.compact(), "docs": docs(r)}


def enc_api_method(m) -> bytes:
    inputs = enc_vec(enc_str(n) + enc_compact(ty) for n, ty in m["inputs"])
    return enc_str(m["name"]) + inputs + enc_compact(m["output"]) + enc_docs(m["docs"])


def parse(blob: bytes) -> dict:
    if blob[:5] != b"meta\x0f":
        raise ValueError("input is not b'meta' + metadata V15")
    r = Reader(blob, 5)
    meta = {"types": r.vec(portable_type), "pallets": r.vec(pallet)}
    meta["extrinsic"] = r.raw(lambda r: (r.u8(), r.compact(), r.compact(), r.compact(), r.compact(),
                                         r.vec(lambda r: (r.string(), r.compact(), r.compact()))))
    meta["runtime_ty"] = r.compact()
    meta["apis"] = r.vec(lambda r: {"name": r.string(), "methods": r.vec(api_method), "docs": docs(r)})
    meta["tail"] = r.take(len(blob) - r.pos)  # outer enums and custom metadata, unchanged
    if any(t["id"] != i for i, t in enumerate(meta["types"])):
        raise ValueError("registry type ids are not 0..n-1")
    return meta


def encode(meta: dict) -> bytes:
    apis = enc_vec(enc_str(a["name"]) + enc_vec(map(enc_api_method, a["methods"])) + enc_docs(a["docs"])
                   for a in meta["apis"])
    return b"".join([b"meta\x0f", enc_vec(map(enc_type, meta["types"])), enc_vec(map(enc_pallet, meta["pallets"])),
                     meta["extrinsic"], enc_compact(meta["runtime_ty"]), apis, meta["tail"]])


# ---- looking things up ----------------------------------------------------------
def one(items, what, pred):
    found = [x for x in items if pred(x)]
    if len(found) != 1:
        raise ValueError(f"expected exactly one {what}, found {len(found)}")
    return found[0]


def type_id(meta, what, pred) -> int:
    """The lowest id of a registry type matching ``pred`` (the registry may hold duplicates)."""
    ids = [t["id"] for t in meta["types"] if pred(t)]
    if not ids:
        raise ValueError(f"no {what} type in the registry")
    return min(ids)


def primitive(meta, name: str) -> int:  # TypeDefPrimitive: 0 bool, 1 char, 2 str, 3 u8, 4 u16, 5 u32, 6 u64
    code = {"u16": 4, "u32": 5, "u64": 6}[name]
    return type_id(meta, name, lambda t: t["kind"] == 5 and t["body"] == code and not t["path"])


def append_type(meta, path, kind, body) -> int:
    tid = len(meta["types"])
    meta["types"].append({"id": tid, "path": path, "params": [], "kind": kind, "body": body,
                          "raw_def": None, "docs": []})
    return tid


def insert_after(entries, anchor: str, new: list) -> None:
    names = [e["name"] for e in entries]
    for e in new:
        if e["name"] in names:
            raise ValueError(f"the input already declares {e['name']}: is it already a newer runtime?")
    at = names.index(anchor) + 1  # ValueError when the anchor is missing
    entries[at:at] = new


def entry(name, modifier, hasher, key, value, default, lines):
    return {"name": name, "modifier": modifier, "ty": {"hashers": [hasher], "key": key, "value": value},
            "default": default, "docs": lines}


def fld(name, ty, type_name):
    return {"name": name, "ty": ty, "type_name": type_name, "docs": []}


# ---- the derivation -------------------------------------------------------------
def derive(blob: bytes):
    """Return (derived_blob, list of changes made) for the spec-393 V15 blob."""
    meta = parse(blob)
    if encode(meta) != blob:
        raise ValueError("parsing and re-encoding the input does not give it back: refusing to edit it")
    changes = []
    u16, u32, u64 = primitive(meta, "u16"), primitive(meta, "u32"), primitive(meta, "u64")
    account = type_id(meta, "AccountId32", lambda t: t["path"] == ["sp_core", "crypto", "AccountId32"])
    unit = type_id(meta, "()", lambda t: t["kind"] == 4 and t["body"] == [])
    option_u64 = type_id(meta, "Option<u64>", lambda t: t["path"] == ["Option"] and t["params"] == [("T", u64)])
    subtensor = one(meta["pallets"], PALLET, lambda p: p["name"] == PALLET)
    tempo = one(subtensor["storage"]["entries"], "Tempo", lambda e: e["name"] == "Tempo")
    netuid = tempo["ty"]["key"]  # NetUid, as this runtime encodes it (u16)
    netuids = type_id(meta, "Vec<NetUid>", lambda t: t["kind"] == 2 and t["body"] == netuid)

    # The SDK's descriptors type the per-subnet minimum take `PerU16`
    # (sp_arithmetic's `struct PerU16(u16)`); spec 393 has no such type.
    per_u16 = append_type(meta, ["sp_arithmetic", "per_things", "PerU16"], 0, [fld(None, u16, "u16")])
    changes.append(f"type {per_u16}: sp_arithmetic::per_things::PerU16 (composite of one u16)")

    zero_u16, zero_u64, none = b"\x00\x00", b"\x00" * 8, b"\x00"
    storage = subtensor["storage"]["entries"]
    additions = [
        ("MinChildkeyTake", [entry(
            "MinChildkeyTakePerSubnet", DEFAULT, IDENTITY, netuid, per_u16, zero_u16,
            [" MAP ( netuid ) --> take | Returns the subnet-specific minimum childkey take."])]),
        ("ChildkeyTake", [entry(
            "ChildkeyThresholdChecks", OPTIONAL, BLAKE2_128_CONCAT, account, unit, none,
            [" MAP ( parent ) --> () | Parents with live child relations whose stake just changed."]),
         entry(
            "ChildkeyThresholdSuspended", OPTIONAL, BLAKE2_128_CONCAT, account, unit, none,
            [" MAP ( parent ) --> () | Parents whose total stake is below `StakeThreshold`. Their child",
             " relations stay stored but are inert (hidden from `get_children` / `get_parents`)",
             " except on subnets they own, until they qualify again."])]),
        ("Tempo", [entry(
            "LastEpochBlock", DEFAULT, IDENTITY, netuid, u64, zero_u64,
            [" --- MAP ( netuid ) --> last epoch attempt block (consumed slot)."]),
         entry(
            "PendingEpochAt", DEFAULT, IDENTITY, netuid, u64, zero_u64,
            [" --- MAP ( netuid ) --> block at which a manually triggered epoch should fire.",
             " `0` means no trigger pending. Cleared after the triggered epoch runs."]),
         entry(
            "SubnetEpochIndex", DEFAULT, IDENTITY, netuid, u64, zero_u64,
            [" --- MAP ( netuid ) --> monotonic epoch counter."])]),
        ("NetworksAdded", [{
            "name": "DissolveCleanupQueue", "modifier": DEFAULT, "ty": {"plain": netuids}, "default": b"\x00",
            "docs": [" --- ITEM ( dissolve_cleanup_queue ) Networks dissolved but some storage not removed yet"]}]),
        ("ActivityCutoff", [entry(
            "ActivityCutoffFactorMilli", DEFAULT, IDENTITY, netuid, u32, (13_889).to_bytes(4, "little"),
            [" --- MAP ( netuid ) --> activity-cutoff factor in per-mille epochs (1/1000 granularity).",
             " Effective cutoff in blocks = `(factor x tempo) / 1000`, clamped to >= 1."])]),
    ]
    for anchor, new in additions:
        insert_after(storage, anchor, new)
        changes += [f"storage {PALLET}.{e['name']} (after {anchor})" for e in new]

    # Events: ChildKeyTakeSet gains its netuid in the middle; new variants take the
    # next free indexes (decoding goes by the metadata, never by a fixed index).
    event = meta["types"][subtensor["event"]]
    if event["kind"] != 1:
        raise ValueError(f"{PALLET}'s event type is not an enum")
    variants = event["body"]
    take_set = one(variants, "ChildKeyTakeSet", lambda v: v["name"] == "ChildKeyTakeSet")
    if [f["ty"] for f in take_set["fields"]] != [account, u16]:
        raise ValueError("ChildKeyTakeSet is not (AccountId, u16): is it already a newer runtime?")
    take_set["fields"] = [fld(None, account, "T::AccountId"), fld(None, netuid, "NetUid"), fld(None, u16, "u16")]
    take_set["docs"] = ["childkey take set for a specific (hotkey, netuid) pair"]
    changes.append(f"event {PALLET}.ChildKeyTakeSet (index {take_set['index']}): (AccountId, NetUid, u16)")
    new_variants = [
        ("MinChildKeyTakePerSubnetSet", [fld(None, netuid, "NetUid"), fld(None, u16, "u16")],
         "subnet-specific minimum childkey take set"),
        ("EpochTriggered", [fld("netuid", netuid, "NetUid"), fld("by", account, "T::AccountId"),
                            fld("fires_at", u64, "u64")], "Owner manually triggered an epoch for their subnet."),
        ("EpochDeferred", [fld("netuid", netuid, "NetUid"), fld("from_block", u64, "u64"),
                           fld("to_block", u64, "u64")],
         "An epoch slot was deferred to the next block due to the per-block epoch cap."),
        ("EpochSkipped", [fld("netuid", netuid, "NetUid"), fld("block", u64, "u64")],
         "Epoch execution skipped by `is_epoch_input_state_consistent` returned false or other errors."),
    ]
    for name, fields, line in new_variants:
        if any(v["name"] == name for v in variants):
            raise ValueError(f"the input already declares event {name}")
        index = max(v["index"] for v in variants) + 1
        variants.append({"name": name, "fields": fields, "index": index, "docs": [line]})
        changes.append(f"event {PALLET}.{name} (index {index})")
    event["raw_def"] = None  # re-encode the edited enum

    # Runtime API: SubnetInfoRuntimeApi.get_next_epoch_start_block(netuid: NetUid) -> Option<u64>.
    api = one(meta["apis"], "SubnetInfoRuntimeApi", lambda a: a["name"] == "SubnetInfoRuntimeApi")
    if any(m["name"] == "get_next_epoch_start_block" for m in api["methods"]):
        raise ValueError("the input already declares get_next_epoch_start_block")
    api["methods"].append({"name": "get_next_epoch_start_block", "inputs": [("netuid", netuid)],
                           "output": option_u64, "docs": []})
    changes.append("runtime API SubnetInfoRuntimeApi.get_next_epoch_start_block(netuid) -> Option<u64>")

    # System.Version's spec_version, so the constant agrees with what the node reports.
    system = one(meta["pallets"], "System", lambda p: p["name"] == "System")
    version = one(system["constants"], "System.Version", lambda c: c["name"] == "Version")
    r = Reader(version["value"])
    r.string(); r.string(); r.take(4)  # spec_name, impl_name, authoring_version
    old = int.from_bytes(version["value"][r.pos:r.pos + 4], "little")
    version["value"] = version["value"][:r.pos] + SPEC_VERSION.to_bytes(4, "little") + version["value"][r.pos + 4:]
    changes.append(f"constant System.Version spec_version {old} -> {SPEC_VERSION}")
    return encode(meta), changes


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1], "rb") as f:
        out, changes = derive(f.read())
    with open(argv[2], "wb") as f:
        f.write(out)
    for line in changes:
        print(line, file=sys.stderr)
    print(f"wrote {len(out)} bytes (metadata V15) to {argv[2]}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
