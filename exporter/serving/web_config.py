"""TLS and basic auth from a Prometheus exporter-toolkit web configuration file.

The same file format as node_exporter's ``--web.config.file``, so operators
reuse what they know:

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, e.g. `htpasswd -nBC 10 "" | tr -d ':\\n'`
    http_server_config:
      headers:
        X-Frame-Options: deny

Passwords are only ever compared against bcrypt hashes; a password that
matched once is remembered by its SHA-256 digest so a scrape does not pay
bcrypt's deliberate cost every time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import bcrypt
import yaml

from exporter.config import ConfigError

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version",
            "cipher_suites", "curve_preferences", "prefer_server_cipher_suites")


@dataclass(frozen=True)
class WebConfig:
    tls: Optional[ssl.SSLContext] = None
    users: dict = field(default_factory=dict)  # user -> bcrypt hash (bytes)
    headers: dict = field(default_factory=dict)


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, thread-safely."""

    def __init__(self, users: dict):
        self._users = users
        self._verified: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def allows(self, header: Optional[str]) -> bool:
        if not self._users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            # Spend the same time as for a real user, so timing does not reveal user names.
            bcrypt.checkpw(password.encode(), _DUMMY_HASH)
            return False
        digest = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        with self._lock:
            if (user, digest) in self._verified:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add((user, digest))
        return True


_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=10))


def _tls_context(raw: dict, base: Path, problems: list[str]) -> Optional[ssl.SSLContext]:
    for key in sorted(set(raw) - set(TLS_KEYS)):
        problems.append(f"tls_server_config.{key}: unknown key")
    cert, key = raw.get("cert_file"), raw.get("key_file")
    if not cert or not key:
        problems.append("tls_server_config: cert_file and key_file are both required")
        return None
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        problems.append(f"tls_server_config.client_auth_type: must be one of {', '.join(CLIENT_AUTH)}, got {auth!r}")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, attribute in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if name in raw:
            if raw[name] not in TLS_VERSIONS:
                problems.append(f"tls_server_config.{name}: must be one of {', '.join(TLS_VERSIONS)}, got {raw[name]!r}")
                return None
            setattr(context, attribute, TLS_VERSIONS[raw[name]])
    try:
        context.load_cert_chain(base / cert, base / key)
    except (OSError, ssl.SSLError) as error:
        problems.append(f"tls_server_config: cannot load cert_file/key_file: {error}")
        return None
    context.verify_mode = CLIENT_AUTH[auth]
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        ca = raw.get("client_ca_file")
        if not ca:
            problems.append(f"tls_server_config.client_ca_file: required with client_auth_type {auth}")
            return None
        try:
            context.load_verify_locations(base / ca)
        except (OSError, ssl.SSLError) as error:
            problems.append(f"tls_server_config.client_ca_file: cannot load: {error}")
            return None
    return context


def load_web_config(path: Optional[str]) -> WebConfig:
    """Parse the web config file (None: plain HTTP, no auth); ConfigError lists every problem."""
    if path is None:
        return WebConfig()
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError([f"web.config.file: cannot read {path}: {error.strerror or error}"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"web.config.file: {path} is not valid YAML"]) from None
    if not isinstance(document, dict):
        raise ConfigError([f"web.config.file: {path} must be a mapping"])
    problems: list[str] = []
    for key in sorted(set(document) - {"tls_server_config", "basic_auth_users", "http_server_config"}):
        problems.append(f"web.config.file: {key}: unknown key")
    base = Path(path).parent  # relative file names are relative to the config file, as in exporter-toolkit
    tls = None
    if document.get("tls_server_config") is not None:
        if isinstance(document["tls_server_config"], dict):
            tls = _tls_context(document["tls_server_config"], base, problems)
        else:
            problems.append("tls_server_config: must be a mapping")
    users = {}
    for user, hashed in (document.get("basic_auth_users") or {}).items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(f"basic_auth_users.{user}: must be a bcrypt hash ($2y$...), not a password")
            continue
        users[str(user)] = hashed.replace("$2y$", "$2b$", 1).encode()
    server = document.get("http_server_config") or {}
    headers = server.get("headers") or {} if isinstance(server, dict) else {}
    if problems:
        raise ConfigError(problems)
    return WebConfig(tls=tls, users=users, headers={str(k): str(v) for k, v in headers.items()})

