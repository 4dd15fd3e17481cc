"""TLS and basic auth from a Prometheus exporter-toolkit web configuration file.

The same file format as node_exporter's ``--web.config.file``, so operators
reuse what they know:

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: ca.crt
      min_version: TLS12                # TLS10, TLS11, TLS12 (the default) or TLS13
      max_version: TLS13                # default: the newest the TLS library has
      cipher_suites:                    # TLS 1.0-1.2 only, Go's names; default: OpenSSL's
        - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
      prefer_server_cipher_suites: true # the default: the order above wins over the client's
      curve_preferences: [CurveP384]    # one of CurveP256, CurveP384, CurveP521, X25519
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, e.g. `htpasswd -nBC 10 "" | tr -d ':\\n'`
    http_server_config:
      headers:
        X-Frame-Options: deny

Every option is either applied or refused with a message; none is accepted
and ignored, and an unknown key at any level is refused; what Python's ``ssl``
cannot do as exporter-toolkit does is refused too (``tls_config``). At each
request, ``basic_auth`` checks credentials against the users' hashes.

A file that cannot be used, whatever is wrong with it (not UTF-8, too big,
YAML aliases, wrong types, a malformed hash), is one ``ConfigError`` with
short messages: never a traceback, never an unbounded read or message.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from exporter.config_error import ConfigError
from exporter.serving.bounded_text import bounded_repr, bounded_text
from exporter.serving.tls_config import TLS_KEYS, tls_context
from exporter.yaml_safe import SAFE_LOADER, check_shape

TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
SERVER_KEYS = ("headers", "http2")  # http2 is accepted for compatibility; the exporter serves HTTP/1.1
MAX_FILE_BYTES = 1 << 20  # a web config is a few hundred bytes; /dev/zero must not be read forever
# $2a$/$2b$/$2y$, a cost of 04-31, 22 salt and 31 hash characters of bcrypt's base64 alphabet
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Set by the server itself: configuring them would break the framing, encoding or auth of responses.
RESERVED_HEADERS = frozenset({"connection", "content-encoding", "content-length", "content-type", "date",
                              "keep-alive", "server", "transfer-encoding", "vary", "www-authenticate"})


@dataclass(frozen=True)
class WebConfig:
    tls: Optional[ssl.SSLContext] = None
    users: dict = field(default_factory=dict)  # user -> bcrypt hash (bytes)
    headers: dict = field(default_factory=dict)


MAX_YAML_DEPTH = 32  # a web config nests three levels deep


def _read_document(path: str) -> Any:
    where = f"web.config.file: {path}"
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise ConfigError([f"web.config.file: cannot read {path}: {error.strerror or error}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError([f"{where} is larger than {MAX_FILE_BYTES // 1024} KiB: not a web config"])
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([f"{where} is UTF-16 text: save it as UTF-8"])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError([f"{where} is not UTF-8 text (byte {error.start})"]) from None
    try:
        # Anchors alone are harmless; aliases are what expand exponentially in whatever walks the result.
        check_shape(text, max_depth=MAX_YAML_DEPTH, max_nodes=None, anchors_allowed=True,
                    alias_problem="YAML aliases (*name) are not allowed here")
        return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "syntax error"
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError([f"{where} is not valid YAML: {bounded_text(str(problem), 120)}{at}"]) from None
    except RecursionError:
        raise ConfigError([f"{where} is nested too deeply"]) from None


def _mapping(value: Any, where: str, problems: list[str], keys: Optional[tuple[str, ...]] = None) -> dict:
    """``value`` as a mapping of string keys (empty when it is not one: the problem is listed)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping, got {bounded_repr(value)}")
        return {}
    result = {}
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(f"{where or 'web.config.file'}: keys must be strings, got {bounded_repr(key)}")
        elif keys is not None and key not in keys:
            problems.append(f"{where + '.' if where else 'web.config.file: '}{bounded_text(key)}: unknown key "
                            f"(allowed: {', '.join(keys)})")
        else:
            result[key] = item
    return result


def _users(raw: dict, problems: list[str]) -> dict[str, bytes]:
    users = {}
    for user, hashed in raw.items():
        where = f"basic_auth_users.{bounded_text(user)}"
        if ":" in user:
            problems.append(f"{where}: a user name cannot contain ':'")
        elif not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(f"{where}: must be a bcrypt hash ($2y$...), not a password")
        elif not _BCRYPT_HASH.fullmatch(hashed):
            problems.append(f"{where}: not a valid bcrypt hash (expected $2y$<cost 04-31>$ and 53 characters)")
        else:
            users[user] = hashed.replace("$2y$", "$2b$", 1).encode()
    return users


def _headers(raw: dict, problems: list[str]) -> dict[str, str]:
    headers = {}
    for name, value in raw.items():
        where = f"http_server_config.headers.{bounded_text(name)}"
        if not _HEADER_NAME.fullmatch(name):
            problems.append(f"{where}: not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            problems.append(f"{where}: set by the exporter itself, cannot be configured")
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problems.append(f"{where}: must be a string, got {bounded_repr(value)}")
        elif not _HEADER_VALUE.fullmatch(str(value)) or len(str(value)) > 4096:
            problems.append(f"{where}: the value must be one line of printable text")
        else:
            headers[name] = str(value)
    return headers


def load_web_config(path: Optional[str]) -> WebConfig:
    """Parse the web config file (None: plain HTTP, no auth); ConfigError lists every problem."""
    if path is None:
        return WebConfig()
    document = _read_document(path)
    problems: list[str] = []
    if document is not None and not isinstance(document, dict):
        raise ConfigError([f"web.config.file: {path} must be a mapping, got {bounded_repr(document)}"])
    try:
        top = _mapping(document, "", problems, TOP_KEYS)
        base = Path(path).parent  # relative file names are relative to the config file, as in exporter-toolkit
        tls = None
        if top.get("tls_server_config") is not None:
            raw = _mapping(top["tls_server_config"], "tls_server_config", problems, TLS_KEYS)
            if isinstance(top["tls_server_config"], dict):
                tls = tls_context(raw, base, problems)
        users = _users(_mapping(top.get("basic_auth_users"), "basic_auth_users", problems), problems)
        server = _mapping(top.get("http_server_config"), "http_server_config", problems, SERVER_KEYS)
        if not isinstance(server.get("http2", True), bool):
            problems.append(f"http_server_config.http2: must be true or false, got {bounded_repr(server['http2'])}")
        headers = _headers(_mapping(server.get("headers"), "http_server_config.headers", problems), problems)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a shape nobody foresaw is still one message, not a traceback
        raise ConfigError([f"web.config.file: {path} cannot be used ({type(error).__name__})"]) from None
    if problems:
        raise ConfigError(problems)
    return WebConfig(tls=tls, users=users, headers=headers)
