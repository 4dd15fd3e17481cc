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
and ignored, and an unknown key at any level is refused. Where Python's ``ssl``
cannot do what exporter-toolkit (Go's crypto/tls) does, the file is refused:

- ``cipher_suites`` take Go's names (``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``)
  and are mapped to OpenSSL's; a name that is not Go's, or a suite this
  Python's OpenSSL does not have, is refused. As in Go they govern TLS 1.0-1.2
  only: TLS 1.3 suites cannot be configured, so naming one, or listing suites
  with ``min_version: TLS13`` (where they would be ignored), is refused;
- ``curve_preferences``: Python's ``ssl`` restricts key exchange to one curve
  (``SSLContext.set_ecdh_curve``), not to an ordered list, so exactly one is
  accepted; the handshake then uses only that curve, TLS 1.3 included.

Passwords are only ever compared against bcrypt hashes; a password that
matched once is remembered by its SHA-256 digest so a scrape does not pay
bcrypt's deliberate cost every time.

A file that cannot be used, whatever is wrong with it (not UTF-8, too big,
YAML aliases, wrong types, a malformed hash), is one ``ConfigError`` with
short messages: never a traceback, never an unbounded read or message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import stat
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import bcrypt
import yaml

from exporter.config import ConfigError
from exporter.yaml_safe import SAFE_LOADER, check_shape

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
TOP_KEYS = ("tls_server_config", "basic_auth_users", "http_server_config")
SERVER_KEYS = ("headers", "http2")  # http2 is accepted for compatibility; the exporter serves HTTP/1.1
# Go's crypto/tls names of the TLS 1.0-1.2 suites (tls.CipherSuites() and tls.InsecureCipherSuites()),
# which exporter-toolkit accepts, and OpenSSL's names of the same suites.
CIPHER_SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# Fixed in Go and not configurable through Python's ssl either.
TLS13_CIPHER_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# Go's tls.CurveID names -> OpenSSL's.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

MAX_FILE_BYTES = 1 << 20  # a web config is a few hundred bytes; /dev/zero must not be read forever
MAX_CERT_BYTES = 1 << 20
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores the rest: a longer password must never match
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


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes, thread-safely.

    ``check`` answers without bcrypt when it can (auth disabled, a malformed
    header, a password bcrypt cannot verify, a password verified before);
    ``allows`` always answers, paying bcrypt's cost when needed, so a server
    runs it off its event loop.

    Every check bcrypt decides costs the same, whoever it names and whatever the
    password, so the time of an answer tells no user names apart: one bcrypt run
    at each cost the users' hashes have, against the user's own hash at its cost
    and a dummy hash (well formed, matching nothing) at every other, all of them
    for an unknown user. With one cost (the usual file) that is one run, as
    before; users hashed at 10 and 12 cost a 10 and a 12 each, unknown or not,
    where an unknown user used to take 238 ms and a wrong password 74 ms.
    """

    def __init__(self, users: dict):
        self._users = users
        self._verified: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()
        costs = sorted({_cost(h) for h in users.values()})
        self._dummies = {cost: bcrypt.gensalt(rounds=cost) + b"." * 31 for cost in costs}

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    @staticmethod
    def _credentials(header: Optional[str]) -> Optional[tuple[str, bytes]]:
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":  # the scheme is case-insensitive (RFC 9110 11.1)
            return None
        try:
            user, colon, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not colon or len(password.encode()) > BCRYPT_MAX_PASSWORD_BYTES:
            return None
        return user, password.encode()

    def check(self, header: Optional[str]) -> Optional[bool]:
        """True or False when known without bcrypt; None when ``allows`` must decide."""
        if not self._users:
            return True
        credentials = self._credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        if hashed is not None:
            with self._lock:
                if (user, _digest(hashed, password)) in self._verified:
                    return True
        return None

    def allows(self, header: Optional[str]) -> bool:
        known = self.check(header)
        if known is not None:
            return known
        user, password = self._credentials(header)  # type: ignore[misc] - check() returned None: well-formed
        hashed = self._users.get(user)
        mine = _cost(hashed) if hashed is not None else None
        matched = False
        for cost, dummy in self._dummies.items():  # every cost once, whatever the user and the password
            if cost == mine:
                matched = _checkpw(password, hashed)
            else:
                _checkpw(password, dummy)
        if matched:
            with self._lock:
                self._verified.add((user, _digest(hashed, password)))
        return matched


def _cost(hashed: bytes) -> int:
    """The cost of a hash ``load_web_config`` admitted ($2y$<cost>$...)."""
    return int(hashed.split(b"$")[2])


def _digest(hashed: bytes, password: bytes) -> bytes:
    return hashlib.sha256(hashed + b"\0" + password).digest()


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # a hash bcrypt refuses after all: it matches nothing
        return False


def _short(value: Any, limit: int = 60) -> str:
    """A bounded rendering of a value from the file, for error messages."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."
    return f"a {type(value).__name__}"


def _text(value: str, limit: int = 60) -> str:
    """A bounded, unquoted rendering of a string (a key, an error message) for error messages."""
    text = value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        raise ConfigError([f"{where} is not valid YAML: {_text(str(problem), 120)}{at}"]) from None
    except RecursionError:
        raise ConfigError([f"{where} is nested too deeply"]) from None


def _mapping(value: Any, where: str, problems: list[str], keys: Optional[tuple[str, ...]] = None) -> dict:
    """``value`` as a mapping of string keys (empty when it is not one: the problem is listed)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping, got {_short(value)}")
        return {}
    result = {}
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(f"{where or 'web.config.file'}: keys must be strings, got {_short(key)}")
        elif keys is not None and key not in keys:
            problems.append(f"{where + '.' if where else 'web.config.file: '}{_text(key)}: unknown key "
                            f"(allowed: {', '.join(keys)})")
        else:
            result[key] = item
    return result


def _string(raw: dict, key: str, where: str, problems: list[str]) -> Optional[str]:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}.{key}: must be a non-empty string, got {_short(value)}")
        return None
    return value


def _regular_file(path: Path, where: str, problems: list[str]) -> bool:
    """Certificates and keys are small regular files (a FIFO or /dev/zero would hang the load)."""
    try:
        info = path.stat()
    except OSError as error:
        problems.append(f"{where}: cannot load {_short(str(path))}: {error.strerror or error}")
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CERT_BYTES:
        problems.append(f"{where}: {_short(str(path))} is not a certificate or key file")
        return False
    return True


def _tls_context(raw: dict, base: Path, problems: list[str]) -> Optional[ssl.SSLContext]:
    where = "tls_server_config"
    cert, key = _string(raw, "cert_file", where, problems), _string(raw, "key_file", where, problems)
    auth = raw.get("client_auth_type", "NoClientCert")
    versions = {name: raw[name] for name in ("min_version", "max_version") if name in raw}
    ca = _string(raw, "client_ca_file", where, problems)
    count = len(problems)
    if not cert or not key:
        problems.append(f"{where}: cert_file and key_file are both required")
    if not isinstance(auth, str) or auth not in CLIENT_AUTH:
        problems.append(f"{where}.client_auth_type: must be one of {', '.join(CLIENT_AUTH)}, got {_short(auth)}")
    elif auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not ca:
        problems.append(f"{where}.client_ca_file: required with client_auth_type {auth}")
    for name, value in versions.items():
        if not isinstance(value, str) or value not in TLS_VERSIONS:
            problems.append(f"{where}.{name}: must be one of {', '.join(TLS_VERSIONS)}, got {_short(value)}")
    low, high = (_version(versions.get(name)) for name in ("min_version", "max_version"))
    if low is not None and high is not None and low > high:
        problems.append(f"{where}: min_version {versions['min_version']} is newer than max_version {versions['max_version']}")
    elif low is None and "min_version" not in versions and high is not None and high < ssl.TLSVersion.TLSv1_2:
        problems.append(f"{where}.max_version: {versions['max_version']} is older than the default min_version "
                        f"TLS12: set min_version too")
    ciphers = _cipher_suites(raw, versions.get("min_version"), problems)
    curve = _curve(raw, versions.get("max_version"), problems)
    prefer = raw.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        problems.append(f"{where}.prefer_server_cipher_suites: must be true or false, got {_short(prefer)}")
    if len(problems) > count or cert is None or key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLS10/TLS11 are deprecated in Python; the operator asked for them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        for name, attribute in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
            if name in versions:
                setattr(context, attribute, TLS_VERSIONS[versions[name]])
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if ciphers and not _apply_cipher_suites(context, ciphers, problems):
        return None
    if curve is not None:
        try:
            context.set_ecdh_curve(CURVES[curve])
        except (ValueError, ssl.SSLError) as error:
            problems.append(f"{where}.curve_preferences: {curve} is not available in this Python's "
                            f"{ssl.OPENSSL_VERSION} ({_text(str(error), 100)})")
            return None
    if not (_regular_file(base / cert, f"{where}.cert_file", problems) and _regular_file(base / key, f"{where}.key_file", problems)):
        return None
    try:
        # An encrypted key fails here instead of prompting for a pass phrase on the terminal.
        context.load_cert_chain(base / cert, base / key, password=lambda: b"")
    except (OSError, ssl.SSLError, ValueError) as error:
        problems.append(f"{where}: cannot load cert_file/key_file: {_text(str(error), 200)}")
        return None
    # What OpenSSL would refuse at every handshake (TLS 1.0 at its security level, suites that do
    # not fit the key) is refused now, not accepted and left to fail each scrape.
    for version in dict.fromkeys((context.minimum_version, _newest(context.maximum_version))):
        reason = _handshake_problem(context, version)
        if reason is not None:
            label = next(name for name, v in TLS_VERSIONS.items() if v == version)
            hint = (" (OpenSSL's security level forbids TLS 1.0 and 1.1 unless lowered to 0: use TLS12 or newer)"
                    if version < ssl.TLSVersion.TLSv1_2 else "")
            problems.append(f"{where}: no {label} handshake is possible with these settings in this Python's "
                            f"{ssl.OPENSSL_VERSION}: {_text(reason, 100)}{hint}")
            return None
    context.verify_mode = CLIENT_AUTH[auth]
    if ca and auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        if not _regular_file(base / ca, f"{where}.client_ca_file", problems):
            return None
        try:
            context.load_verify_locations(base / ca)
        except (OSError, ssl.SSLError, ValueError) as error:
            problems.append(f"{where}.client_ca_file: cannot load: {_text(str(error), 200)}")
            return None
    return context


def _newest(version: ssl.TLSVersion) -> ssl.TLSVersion:
    return ssl.TLSVersion.TLSv1_3 if version == ssl.TLSVersion.MAXIMUM_SUPPORTED else version


def _handshake_problem(server: ssl.SSLContext, version: ssl.TLSVersion) -> Optional[str]:
    """Why a client speaking only ``version`` (and any cipher suite or curve) cannot complete a
    handshake with ``server``, or None: a handshake in memory, no socket."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = client.maximum_version = version
    client.set_ciphers("ALL:@SECLEVEL=0")
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    sides = [client.wrap_bio(client_in, client_out), server.wrap_bio(server_in, server_out, server_side=True)]
    done = [False, False]
    for _ in range(8):
        for i, side in enumerate(sides):
            if done[i]:
                continue
            try:
                side.do_handshake()
                done[i] = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except ssl.SSLError as error:
                return str(error.reason or error).lower().replace("_", " ")
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done):
            return None
    return "the handshake does not finish"


def _version(name: Any) -> Optional[ssl.TLSVersion]:
    return TLS_VERSIONS.get(name) if isinstance(name, str) else None


def _string_list(raw: dict, key: str, problems: list[str]) -> list[str]:
    """``raw[key]`` as a list of strings (empty when absent or unusable: the problem is listed)."""
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(f"tls_server_config.{key}: must be a list of names, got {_short(value)}")
        return []
    return list(dict.fromkeys(value))  # in order, each once


def _cipher_suites(raw: dict, min_version: Any, problems: list[str]) -> list[str]:
    """The Go names listed under cipher_suites, each known and configurable, or [] (problems listed)."""
    where = "tls_server_config.cipher_suites"
    names = _string_list(raw, "cipher_suites", problems)
    count = len(problems)
    for name in names:
        if name in TLS13_CIPHER_SUITES:
            problems.append(f"{where}: {_text(name)} is a TLS 1.3 suite; TLS 1.3 suites cannot be configured "
                            f"(not in Go, not in Python's ssl): list TLS 1.0-1.2 suites only")
        elif name not in CIPHER_SUITES:
            problems.append(f"{where}: unknown cipher suite {_short(name)} (use Go's names, "
                            f"e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    if names and min_version == "TLS13":
        problems.append(f"{where}: apply to TLS 1.0-1.2 only, and min_version TLS13 allows only TLS 1.3, whose "
                        f"suites Python's ssl cannot configure: remove cipher_suites or lower min_version")
    return names if len(problems) == count else []


def _apply_cipher_suites(context: ssl.SSLContext, names: list[str], problems: list[str]) -> bool:
    where = "tls_server_config.cipher_suites"
    try:
        context.set_ciphers(":".join(CIPHER_SUITES[name] for name in names))
    except ssl.SSLError:
        problems.append(f"{where}: none of them is available in this Python's {ssl.OPENSSL_VERSION}")
        return False
    enabled = {cipher["name"] for cipher in context.get_ciphers()}
    missing = [name for name in names if CIPHER_SUITES[name] not in enabled]
    if missing:
        problems.append(f"{where}: not available in this Python's {ssl.OPENSSL_VERSION}: {', '.join(missing)}")
        return False
    return True


def _curve(raw: dict, max_version: Any, problems: list[str]) -> Optional[str]:
    """The one curve listed under curve_preferences, or None (none listed, or problems listed)."""
    where = "tls_server_config.curve_preferences"
    names = _string_list(raw, "curve_preferences", problems)
    unknown = [name for name in names if name not in CURVES]
    if unknown:
        problems.append(f"{where}: unknown curve {_short(unknown[0])} (one of {', '.join(CURVES)})")
        return None
    if len(names) > 1:
        problems.append(f"{where}: Python's ssl can restrict key exchange to one curve only, not an ordered "
                        f"list (got {', '.join(names)}): list exactly one of {', '.join(CURVES)}")
        return None
    if names and ssl.OPENSSL_VERSION_INFO[0] < 3 and max_version != "TLS12" and max_version not in ("TLS10", "TLS11"):
        # Before OpenSSL 3, set_ecdh_curve leaves TLS 1.3's key exchange groups as they are.
        problems.append(f"{where}: with this Python's {ssl.OPENSSL_VERSION} the curve applies to TLS 1.2 "
                        f"and below only: set max_version: TLS12 as well")
        return None
    return names[0] if names else None


def _users(raw: dict, problems: list[str]) -> dict[str, bytes]:
    users = {}
    for user, hashed in raw.items():
        where = f"basic_auth_users.{_text(user)}"
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
        where = f"http_server_config.headers.{_text(name)}"
        if not _HEADER_NAME.fullmatch(name):
            problems.append(f"{where}: not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            problems.append(f"{where}: set by the exporter itself, cannot be configured")
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problems.append(f"{where}: must be a string, got {_short(value)}")
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
        raise ConfigError([f"web.config.file: {path} must be a mapping, got {_short(document)}"])
    try:
        top = _mapping(document, "", problems, TOP_KEYS)
        base = Path(path).parent  # relative file names are relative to the config file, as in exporter-toolkit
        tls = None
        if top.get("tls_server_config") is not None:
            raw = _mapping(top["tls_server_config"], "tls_server_config", problems, TLS_KEYS)
            if isinstance(top["tls_server_config"], dict):
                tls = _tls_context(raw, base, problems)
        users = _users(_mapping(top.get("basic_auth_users"), "basic_auth_users", problems), problems)
        server = _mapping(top.get("http_server_config"), "http_server_config", problems, SERVER_KEYS)
        if not isinstance(server.get("http2", True), bool):
            problems.append(f"http_server_config.http2: must be true or false, got {_short(server['http2'])}")
        headers = _headers(_mapping(server.get("headers"), "http_server_config.headers", problems), problems)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - a shape nobody foresaw is still one message, not a traceback
        raise ConfigError([f"web.config.file: {path} cannot be used ({type(error).__name__})"]) from None
    if problems:
        raise ConfigError(problems)
    return WebConfig(tls=tls, users=users, headers=headers)
