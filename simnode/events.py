"""System.Events of a simulated block: event records laid out by the runtime's own metadata.

An event's fields come from the metadata of the runtime that emits it, so one
call serves runtimes whose variants differ (``ChildKeyTakeSet(hotkey, take)`` in
spec 393, with a netuid field in later runtimes). Fields are given either in the
metadata's order (a list) or by name (a dict): a key is a field's name when the
metadata names it (``HotkeySwapped { coldkey, old_hotkey, new_hotkey }``), else
its type name (``"T::AccountId"``, ``"NetUid"``, ``"u16"``) when that type name is
unique within the variant. Keys the runtime's variant has no field for are
ignored, which is what lets ``{"T::AccountId": hk, "NetUid": n, "u16": take}``
encode on a runtime with and one without the netuid field.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Mapping, Optional, Sequence, Union

__all__ = [
    "EventField",
    "encode_events",
    "event_fields",
    "event_record",
    "events_key",
    "extrinsic_success",
]

# A Phase: {"ApplyExtrinsic": i}, "Initialization" (on_initialize: the block step,
# where subtensor applies pending child sets) or "Finalization".
Phase = Union[str, Mapping[str, int]]
EventField = tuple[Optional[str], Optional[str]]  # (name, typeName) as the metadata has them

_lock = threading.Lock()
_variants: dict[int, dict[tuple[str, str], list[EventField]]] = {}


def _variant_table(runtime: Any) -> dict[tuple[str, str], list[EventField]]:
    """(pallet, variant) -> fields, for every event of the runtime (parsed once per spec)."""
    spec = runtime.spec_version
    with _lock:
        found = _variants.get(spec)
    if found is not None:
        return found
    registry = runtime.registry_json()
    registry = json.loads(registry) if isinstance(registry, str) else registry
    types = {t["id"]: t["type"] for t in registry["types"]}
    sequence = types[int(runtime.storage_entry("System", "Events").value_type.split("::")[1])]
    record = types[sequence["def"]["sequence"]["type"]]
    outer = next(f["type"] for f in record["def"]["composite"]["fields"] if f.get("name") == "event")
    table = {}
    for pallet in types[outer]["def"]["variant"]["variants"]:
        inner = types[pallet["fields"][0]["type"]]
        for variant in inner["def"].get("variant", {}).get("variants", []):
            table[(pallet["name"], variant["name"])] = [
                (f.get("name"), f.get("typeName")) for f in variant.get("fields", [])
            ]
    with _lock:
        _variants[spec] = table
    return table


def event_fields(runtime: Any, pallet: str, variant: str) -> list[EventField]:
    """The (name, typeName) of each field of ``pallet.variant`` in ``runtime``; KeyError if absent."""
    try:
        return _variant_table(runtime)[(pallet, variant)]
    except KeyError:
        raise KeyError(f"runtime {runtime.spec_version} has no event {pallet}.{variant}") from None


def _values(runtime: Any, pallet: str, variant: str, fields: Any) -> Any:
    """The event's value as the codec takes it: a dict for named fields, a list otherwise."""
    layout = event_fields(runtime, pallet, variant)
    named = bool(layout) and all(name for name, _ in layout)
    if isinstance(fields, Mapping):
        type_names = [type_name for _, type_name in layout]
        values = []
        for name, type_name in layout:
            if name is not None and name in fields:
                values.append(fields[name])
            elif type_name in fields and type_names.count(type_name) == 1:
                values.append(fields[type_name])
            else:
                raise ValueError(
                    f"{pallet}.{variant} (spec {runtime.spec_version}) needs field "
                    f"{name or type_name!r}; fields are {layout}"
                )
    else:
        values = list(fields)
        if len(values) != len(layout):
            raise ValueError(
                f"{pallet}.{variant} (spec {runtime.spec_version}) has {len(layout)} fields "
                f"{layout}, got {len(values)}"
            )
    if named:
        return {name: value for (name, _), value in zip(layout, values)}
    if len(values) == 1:  # a one-field tuple variant takes its value bare
        return values[0]
    return values


def event_record(runtime: Any, phase: Phase, pallet: str, variant: str, fields: Any) -> dict:
    """One ``EventRecord`` as the codec takes it (no topics: subtensor deposits none)."""
    return {"phase": phase, "event": {pallet: {variant: _values(runtime, pallet, variant, fields)}}, "topics": []}


def extrinsic_success(runtime: Any, index: int, *, mandatory: bool = False) -> dict:
    """``System.ExtrinsicSuccess`` closing extrinsic ``index`` (the chain deposits one per extrinsic)."""
    info = {
        "weight": {"ref_time": 1_000_000 if mandatory else 50_000_000, "proof_size": 1_500 if mandatory else 6_000},
        "class": "Mandatory" if mandatory else "Normal",
        "pays_fee": "Yes",
    }
    return event_record(runtime, {"ApplyExtrinsic": index}, "System", "ExtrinsicSuccess", {"dispatch_info": info})


def encode_events(runtime: Any, records: Sequence[dict]) -> bytes:
    """SCALE ``Vec<EventRecord>``: the value of ``System.Events``."""
    return bytes(runtime.encode(runtime.storage_entry("System", "Events").value_type, list(records)))


def events_key(runtime: Any) -> bytes:
    return bytes(runtime.storage_key("System", "Events", []))
