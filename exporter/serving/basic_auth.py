"""Check ``Authorization: Basic`` headers against the web config's bcrypt hashes.

Passwords are only ever compared against bcrypt hashes; a password that
matched once is remembered by its SHA-256 digest so a scrape does not pay
bcrypt's deliberate cost every time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from typing import Optional

import bcrypt

BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores the rest: a longer password must never match


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
