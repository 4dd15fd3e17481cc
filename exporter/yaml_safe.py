"""Read a config file and parse its YAML, bounded against a wrong or hostile file.

A size cap, UTF-8 only, and libyaml's event stream checked before anything is
built (no aliases, bounded depth and value count); duplicate keys are refused
instead of the second silently winning. Every problem is a ``ConfigError``.
Used for the exporter's config file and (the shape check) the web config file.
"""

from __future__ import annotations

import codecs
from typing import Any, Optional

import yaml

from exporter.config_error import ConfigError, clip, short

# A config file is a few kB; these bound what a wrong or hostile file can cost.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 20_000  # scalars, lists and mappings: ~2,800 watched hotkeys
MAX_YAML_DEPTH = 32

_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),  # before UTF-16: they share a prefix
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


def read_config_text(path: str) -> str:
    """The file's text: at most MAX_CONFIG_BYTES, UTF-8 (a UTF-8 byte order mark is allowed)."""
    def problem(message: str) -> ConfigError:
        return ConfigError([f"config.file: {message}"])

    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise problem(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise problem(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not an exporter config file")
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            raise problem(f"{path} is {encoding} text; save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise problem(f"{path} is not UTF-8 text (byte 0x{data[error.start]:02x} at line {line}); save it as UTF-8") from None
    if "\x00" in text:
        raise problem(f"{path} contains NUL characters: not a text file (UTF-16 without a byte order mark?)")
    return text


# libyaml when PyYAML has it: a bounded file then parses in milliseconds, not seconds.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NODE_STARTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
_COLLECTION_STARTS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_COLLECTION_ENDS = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
_ANCHORS_REFUSED = "YAML anchors and aliases (&name, *name) are not supported in the config file"


def check_shape(text: str, *, max_depth: int = MAX_YAML_DEPTH, max_nodes: Optional[int] = MAX_YAML_NODES,
                anchors_allowed: bool = False, alias_problem: str = _ANCHORS_REFUSED) -> None:
    """Refuse, from the event stream and before anything is built: aliases (an alias "bomb"
    expands a few lines into billions of values) and, unless ``anchors_allowed``, anchors;
    more than ``max_nodes`` values (None: no limit); nesting deeper than ``max_depth`` (the
    composer recurses). The defaults are the exporter config file's."""
    nodes = depth = 0
    for event in yaml.parse(text, Loader=SAFE_LOADER):
        problem = None
        if isinstance(event, yaml.AliasEvent) or (not anchors_allowed and getattr(event, "anchor", None) is not None):
            problem = alias_problem
        elif isinstance(event, _NODE_STARTS):
            nodes += 1
            if max_nodes is not None and nodes > max_nodes:
                problem = f"more than {max_nodes:,} values: not an exporter config file"
            elif isinstance(event, _COLLECTION_STARTS):
                depth += 1
                if depth > max_depth:
                    problem = f"nested more than {max_depth} levels deep"
        elif isinstance(event, _COLLECTION_ENDS):
            depth -= 1
        if problem:
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)


class _ConfigLoader(SAFE_LOADER):  # type: ignore[misc, valid-type]
    """YAML's safe subset, refusing duplicate keys (otherwise the second silently wins)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: the base class says so
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {short(key)} (first at line {first + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, path: str = "config") -> Any:
    """One YAML document, bounded (see ``check_shape``); ConfigError for anything else."""
    loader = None
    try:
        check_shape(text)
        loader = _ConfigLoader(text)
        return loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        detail = f": {clip(str(problem), 160)}" if problem else ""
        raise ConfigError([f"config.file: {path} is not valid YAML{where}{detail}"]) from None
    except RecursionError:
        raise ConfigError([f"config.file: {path} is nested too deeply"]) from None
    except Exception as error:  # noqa: BLE001 - e.g. an integer of 5,000 digits, a date that does not exist
        raise ConfigError([f"config.file: {path} has a value YAML cannot convert ({type(error).__name__}: "
                           f"{clip(str(error), 160)})"]) from None
    finally:
        if loader is not None:
            loader.dispose()
