"""The ``ssl.SSLContext`` a web config's ``tls_server_config`` asks for, or the problems why not.

Where Python's ``ssl`` cannot do what exporter-toolkit (Go's crypto/tls) does,
the file is refused:

- ``cipher_suites`` take Go's names (``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``)
  and are mapped to OpenSSL's; a name that is not Go's, or a suite this
  Python's OpenSSL does not have, is refused. As in Go they govern TLS 1.0-1.2
  only: TLS 1.3 suites cannot be configured, so naming one, or listing suites
  with ``min_version: TLS13`` (where they would be ignored), is refused;
- ``curve_preferences``: Python's ``ssl`` restricts key exchange to one curve
  (``SSLContext.set_ecdh_curve``), not to an ordered list, so exactly one is
  accepted; the handshake then uses only that curve, TLS 1.3 included.
"""

from __future__ import annotations

import ssl
import stat
import warnings
from pathlib import Path
from typing import Any, Optional

from exporter.serving.bounded_text import bounded_repr, bounded_text

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

MAX_CERT_BYTES = 1 << 20


def _string(raw: dict, key: str, where: str, problems: list[str]) -> Optional[str]:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"{where}.{key}: must be a non-empty string, got {bounded_repr(value)}")
        return None
    return value


def _regular_file(path: Path, where: str, problems: list[str]) -> bool:
    """Certificates and keys are small regular files (a FIFO or /dev/zero would hang the load)."""
    try:
        info = path.stat()
    except OSError as error:
        problems.append(f"{where}: cannot load {bounded_repr(str(path))}: {error.strerror or error}")
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CERT_BYTES:
        problems.append(f"{where}: {bounded_repr(str(path))} is not a certificate or key file")
        return False
    return True


def tls_context(raw: dict, base: Path, problems: list[str]) -> Optional[ssl.SSLContext]:
    where = "tls_server_config"
    cert, key = _string(raw, "cert_file", where, problems), _string(raw, "key_file", where, problems)
    auth = raw.get("client_auth_type", "NoClientCert")
    versions = {name: raw[name] for name in ("min_version", "max_version") if name in raw}
    ca = _string(raw, "client_ca_file", where, problems)
    count = len(problems)
    if not cert or not key:
        problems.append(f"{where}: cert_file and key_file are both required")
    if not isinstance(auth, str) or auth not in CLIENT_AUTH:
        problems.append(f"{where}.client_auth_type: must be one of {', '.join(CLIENT_AUTH)}, got {bounded_repr(auth)}")
    elif auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not ca:
        problems.append(f"{where}.client_ca_file: required with client_auth_type {auth}")
    for name, value in versions.items():
        if not isinstance(value, str) or value not in TLS_VERSIONS:
            problems.append(f"{where}.{name}: must be one of {', '.join(TLS_VERSIONS)}, got {bounded_repr(value)}")
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
        problems.append(f"{where}.prefer_server_cipher_suites: must be true or false, got {bounded_repr(prefer)}")
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
                            f"{ssl.OPENSSL_VERSION} ({bounded_text(str(error), 100)})")
            return None
    if not (_regular_file(base / cert, f"{where}.cert_file", problems) and _regular_file(base / key, f"{where}.key_file", problems)):
        return None
    try:
        # An encrypted key fails here instead of prompting for a pass phrase on the terminal.
        context.load_cert_chain(base / cert, base / key, password=lambda: b"")
    except (OSError, ssl.SSLError, ValueError) as error:
        problems.append(f"{where}: cannot load cert_file/key_file: {bounded_text(str(error), 200)}")
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
                            f"{ssl.OPENSSL_VERSION}: {bounded_text(reason, 100)}{hint}")
            return None
    context.verify_mode = CLIENT_AUTH[auth]
    if ca and auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        if not _regular_file(base / ca, f"{where}.client_ca_file", problems):
            return None
        try:
            context.load_verify_locations(base / ca)
        except (OSError, ssl.SSLError, ValueError) as error:
            problems.append(f"{where}.client_ca_file: cannot load: {bounded_text(str(error), 200)}")
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
        problems.append(f"tls_server_config.{key}: must be a list of names, got {bounded_repr(value)}")
        return []
    return list(dict.fromkeys(value))  # in order, each once


def _cipher_suites(raw: dict, min_version: Any, problems: list[str]) -> list[str]:
    """The Go names listed under cipher_suites, each known and configurable, or [] (problems listed)."""
    where = "tls_server_config.cipher_suites"
    names = _string_list(raw, "cipher_suites", problems)
    count = len(problems)
    for name in names:
        if name in TLS13_CIPHER_SUITES:
            problems.append(f"{where}: {bounded_text(name)} is a TLS 1.3 suite; TLS 1.3 suites cannot be configured "
                            f"(not in Go, not in Python's ssl): list TLS 1.0-1.2 suites only")
        elif name not in CIPHER_SUITES:
            problems.append(f"{where}: unknown cipher suite {bounded_repr(name)} (use Go's names, "
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
        problems.append(f"{where}: unknown curve {bounded_repr(unknown[0])} (one of {', '.join(CURVES)})")
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
