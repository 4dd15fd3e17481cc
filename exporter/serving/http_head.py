"""Read one HTTP/1.x request head from a connection, within fixed bounds.

A request line or header line over 64 KiB answers 414 or 431, more than 100
headers or 64 KiB of them 431, so a hostile client costs at most a line limit
plus one receive of memory. Bodies are never read here (see ``Request.has_body``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # only an annotation: channels imports ClientGone from here
    from exporter.serving.channels import PlainChannel

MAX_LINE_BYTES = 65536  # request line (414) or one header line (431), as http.server
MAX_HEADERS = 100  # header lines (431), as http.server
MAX_HEADER_BYTES = 65536  # all header lines together (431)

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(Exception):
    """The request head cannot be served: answer ``status`` and close."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ClientGone(Exception):
    """The client closed its side before a complete request head."""


class Request:
    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: tuple[int, int], headers: dict[str, str]):
        self.method, self.target, self.version, self.headers = method, target, version, headers

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    @property
    def has_body(self) -> bool:
        length = self.headers.get("content-length", "0").strip()
        return "transfer-encoding" in self.headers or length not in ("", "0")


def _parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    method, target, version = parts
    if not version.startswith("HTTP/"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad request line")
    major, dot, minor = version[5:].partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and len(major) <= 3 and len(minor) <= 3):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "bad HTTP version")
    if int(major) != 1:
        raise BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.x only")
    return method, target, (int(major), int(minor))


async def read_head(channel: PlainChannel, buffer: bytearray) -> Request:
    """One request head from ``buffer`` (what the connection received beyond the last request) and the channel.

    Bounded: the buffer never holds more than a line limit plus one receive
    beyond what the limits allow; the bytes after the head stay in ``buffer``.
    """
    position = scanned = 0  # the next line starts at ``position``; no newline in buffer[position:scanned]
    request_line: Optional[tuple[str, str, tuple[int, int]]] = None
    headers: dict[str, str] = {}
    count = total = 0
    skipped_blank = False
    while True:
        newline = buffer.find(b"\n", max(position, scanned))
        if newline < 0:
            scanned = len(buffer)  # a line trickled a byte at a time is scanned once, not once per byte
            pending = len(buffer) - position
            if request_line is None and pending > MAX_LINE_BYTES:
                raise BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            if request_line is not None and (pending > MAX_LINE_BYTES or total + pending > MAX_HEADER_BYTES):
                raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line or headers too large")
            data = await channel.recv()
            if not data:
                raise ClientGone("closed before a complete request head" if buffer else "closed")
            buffer += data
            continue
        line = bytes(buffer[position:newline + 1])
        position = newline + 1
        if request_line is None:
            if len(line) > MAX_LINE_BYTES + 2:
                raise BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            if line in (b"\r\n", b"\n") and not skipped_blank:  # one empty line before a request (RFC 9112 2.2)
                skipped_blank = True
                continue
            request_line = _parse_request_line(line)
            continue
        if line in (b"\r\n", b"\n"):
            del buffer[:position]
            return Request(*request_line, headers)
        count += 1
        total += len(line)
        if count > MAX_HEADERS or total > MAX_HEADER_BYTES or len(line) > MAX_LINE_BYTES + 2:
            raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many or too large headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or not _TOKEN_CHARS.issuperset(name):  # also refuses obsolete line folding
            raise BadRequest(HTTPStatus.BAD_REQUEST, "bad header line")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value

