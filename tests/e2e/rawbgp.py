"""A tiny BGP-4 speaker (RFC 4271) for tests that need to send UPDATEs no real implementation would send.

Library: builders for the wire format (`open_message`, `keepalive`, `update`, `attribute` and the usual
attributes, `nlri`), all plain `struct` packing, so a test can hand-build any malformed UPDATE.

Program: `python rawbgp.py --connect ADDR [--port 179] --asn N --router-id A [--hold 9]` connects (retrying
until the peer listens), sends an OPEN with two capabilities (IPv4 unicast, 4-octet AS; no graceful
restart), and keeps the session up: it answers every KEEPALIVE and sends its own every hold/3 seconds.
Commands on stdin, one per line:
    send HEX    send an UPDATE whose body (everything after the 19-octet header) is HEX
    raw HEX     send these octets exactly as they are (header included)
    close       close the connection and exit
One line per event on stdout (flushed): `established`, `update HEX` (an UPDATE body received),
`notification CODE SUBCODE HEX` (received), `closed WHY`. It exits when the session ends or stdin closes.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import struct
import sys
import time
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
AS_TRANS = 23456

# attribute flags (RFC 4271 §4.3)
OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10
# attribute type codes
ORIGIN_CODE, AS_PATH_CODE, NEXT_HOP_CODE, MED_CODE, LOCAL_PREF_CODE = 1, 2, 3, 4, 5
AS_SEQUENCE = 2


def message(kind: int, body: bytes = b"") -> bytes:
    """A whole BGP message: marker, length, type, body."""
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def keepalive() -> bytes:
    return message(KEEPALIVE)


def open_message(asn: int, router_id: str, hold: int) -> bytes:
    """OPEN with the Multiprotocol (IPv4 unicast, RFC 4760) and 4-octet AS (RFC 6793) capabilities."""
    caps = struct.pack("!BBHBB", 1, 4, 1, 0, 1) + struct.pack("!BBI", 65, 4, asn)
    params = struct.pack("!BB", 2, len(caps)) + caps
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    body = struct.pack("!BHH4sB", 4, my_as, hold, IPv4Address(router_id).packed, len(params)) + params
    return message(OPEN, body)


def attribute(flags: int, code: int, value: bytes) -> bytes:
    """One path attribute, exactly as given (the length is the value's; flags are not corrected)."""
    if flags & EXTENDED:
        return struct.pack("!BBH", flags, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def origin(value: int = 0) -> bytes:
    return attribute(TRANSITIVE, ORIGIN_CODE, bytes([value]))


def as_path(*asns: int) -> bytes:
    """AS_PATH with 4-octet AS numbers (the session negotiates them); empty for iBGP-originated."""
    value = struct.pack("!BB", AS_SEQUENCE, len(asns)) + b"".join(struct.pack("!I", a) for a in asns)
    return attribute(TRANSITIVE, AS_PATH_CODE, value if asns else b"")


def next_hop(address: str) -> bytes:
    return attribute(TRANSITIVE, NEXT_HOP_CODE, IPv4Address(address).packed)


def local_pref(value: int = 100) -> bytes:
    return attribute(TRANSITIVE, LOCAL_PREF_CODE, struct.pack("!I", value))


def nlri(prefixes: Iterable[str]) -> bytes:
    """Prefixes in the NLRI encoding: length in bits, then only the octets that length needs."""
    out = b""
    for text in prefixes:
        net = IPv4Network(text)
        out += bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]
    return out


def update(withdrawn: Iterable[str] = (), attributes: bytes = b"", announced: Iterable[str] = ()) -> bytes:
    """An UPDATE body (RFC 4271 §4.3) from already packed attributes."""
    gone = nlri(withdrawn)
    return (
        struct.pack("!H", len(gone))
        + gone
        + struct.pack("!H", len(attributes))
        + attributes
        + nlri(announced)
    )


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((address, port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _messages(buffer: bytearray) -> Iterable[tuple[int, bytes]]:
    """Pops every complete message off `buffer` as (type, body)."""
    while len(buffer) >= 19:
        length, kind = struct.unpack("!HB", buffer[16:19])
        if len(buffer) < length:
            return
        body = bytes(buffer[19:length])
        del buffer[:length]
        yield kind, body


def run(address: str, port: int, asn: int, router_id: str, hold: int, connect_timeout: float) -> str:
    """The session; returns why it ended."""
    sock = _connect(address, port, connect_timeout)
    sock.sendall(open_message(asn, router_id, hold))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "peer")
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
    received, commands = bytearray(), b""
    interval, next_keepalive, established = max(hold / 3, 1.0), 0.0, False
    while True:
        now = time.monotonic()
        if established and now >= next_keepalive:
            sock.sendall(keepalive())
            next_keepalive = now + interval
        for key, _ in sel.select(timeout=0.5):
            if key.data == "stdin":
                chunk = os.read(sys.stdin.fileno(), 65536)
                if not chunk:
                    return "stdin closed"
                commands += chunk
                while b"\n" in commands:
                    line, commands = commands.split(b"\n", 1)
                    verb, _, arg = line.decode().strip().partition(" ")
                    if verb == "send":
                        sock.sendall(message(UPDATE, bytes.fromhex(arg)))
                    elif verb == "raw":
                        sock.sendall(bytes.fromhex(arg))
                    elif verb == "close":
                        return "asked to close"
                continue
            chunk = sock.recv(65536)  # readable: does not block
            if not chunk:
                return "connection closed by peer"
            received += chunk
            for kind, body in _messages(received):
                if kind == OPEN:
                    sock.sendall(keepalive())  # RFC 4271 §8.2.2: OPEN accepted
                elif kind == KEEPALIVE:
                    if not established:
                        established = True
                        next_keepalive = time.monotonic() + interval
                        _emit("established")
                    sock.sendall(keepalive())
                elif kind == UPDATE:
                    _emit(f"update {body.hex()}")
                elif kind == NOTIFICATION:
                    _emit(f"notification {body[0]} {body[1]} {body[2:].hex()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", required=True, help="the peer's address")
    parser.add_argument("--port", type=int, default=179)
    parser.add_argument("--asn", type=int, required=True)
    parser.add_argument("--router-id", required=True)
    parser.add_argument("--hold", type=int, default=9)
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        why = run(args.connect, args.port, args.asn, args.router_id, args.hold, args.connect_timeout)
    except OSError as exc:
        why = f"error {exc}"
    _emit(f"closed {why}")


if __name__ == "__main__":
    main()
