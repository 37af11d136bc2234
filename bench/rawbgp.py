"""A raw BGP-4 speaker (RFC 4271) for the tests and the benchmark: it sends UPDATEs no real implementation
would send. Standard library only, so it runs as a script inside a namespace.

Library: builders for the wire format, all plain `struct` packing, so a caller can hand-build any malformed
message: `message`, `keepalive`, `open_message`, `update`, `attribute` (flags kept as given; Extended Length
when the flags say so, or `extended=True`), the usual attributes (`origin`, `as_path`, `next_hop`, `med`,
`local_pref`, `atomic_aggregate`, `aggregator`, `communities`, `originator_id`, `cluster_list`,
`large_communities`), the multiprotocol ones (`mp_reach`, `mp_unreach`, RFC 4760 §3/§4, IPv4 or IPv6
unicast) and `nlri` (either family, RFC 4271 §4.3 / RFC 4760 §5).

Program: `python rawbgp.py --connect ADDR [--port 179] --asn N --router-id A [--hold 9] [--family 4|6]
[--reconnect]` connects (retrying until the peer listens), sends an OPEN with two capabilities (the
Multiprotocol one for `--family`'s unicast, 4-octet AS; no graceful restart), and keeps the session up: it
answers every KEEPALIVE and sends its own every hold/3 seconds. With `--reconnect` it connects again
whenever the session ends (a NOTIFICATION, a reset), so a fuzz campaign runs many cases in one process;
commands that arrive while the session is not established wait for the next one.
Commands on stdin, one per line:
    send HEX    send an UPDATE whose body (everything after the 19-octet header) is HEX
    raw HEX     send these octets exactly as they are (header included)
    close       close the connection and exit
One line per event on stdout (flushed): `established` (each time a session comes up), `update HEX` (an
UPDATE body received), `notification CODE SUBCODE HEX` (received), `closed WHY` (the session ended; with
`--reconnect` a new one follows). It exits when stdin closes, on `close`, or (without `--reconnect`) when
the session ends.
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
from ipaddress import IPv4Address, ip_address, ip_network

MARKER = b"\xff" * 16
HEADER = 19  # marker, length, type (RFC 4271 §4.1)
MAX_MESSAGE = 4096  # RFC 4271 §4.1 (no Extended Message capability, RFC 8654)
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
AS_TRANS = 23456
AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1

# attribute flags (RFC 4271 §4.3)
OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10
# attribute type codes (RFC 4271 §5, RFC 1997, RFC 4456, RFC 4760, RFC 8092)
ORIGIN_CODE, AS_PATH_CODE, NEXT_HOP_CODE, MED_CODE, LOCAL_PREF_CODE = 1, 2, 3, 4, 5
ATOMIC_AGGREGATE_CODE, AGGREGATOR_CODE, COMMUNITY_CODE = 6, 7, 8
ORIGINATOR_ID_CODE, CLUSTER_LIST_CODE = 9, 10
MP_REACH_CODE, MP_UNREACH_CODE = 14, 15
LARGE_COMMUNITY_CODE = 32
AS_SET, AS_SEQUENCE = 1, 2


def message(kind: int, body: bytes = b"") -> bytes:
    """A whole BGP message: marker, length, type, body."""
    return MARKER + struct.pack("!HB", HEADER + len(body), kind) + body


def keepalive() -> bytes:
    return message(KEEPALIVE)


def open_message(asn: int, router_id: str, hold: int, families: Iterable[int] = (4,)) -> bytes:
    """OPEN with the Multiprotocol capability for each family's unicast (RFC 4760 §8; 4 or 6) and the
    4-octet AS one (RFC 6793)."""
    caps = b"".join(
        struct.pack("!BBHBB", 1, 4, AFI_IPV6 if f == 6 else AFI_IPV4, 0, SAFI_UNICAST) for f in families
    )
    caps += struct.pack("!BBI", 65, 4, asn)
    params = struct.pack("!BB", 2, len(caps)) + caps
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    body = struct.pack("!BHH4sB", 4, my_as, hold, IPv4Address(router_id).packed, len(params)) + params
    return message(OPEN, body)


def attribute(flags: int, code: int, value: bytes, extended: bool = False) -> bytes:
    """One path attribute, exactly as given: the length is the value's, a two-octet one if the flags have
    Extended Length or `extended` (which also sets that flag); flags are not otherwise corrected."""
    if extended:
        flags |= EXTENDED
    if flags & EXTENDED:
        return struct.pack("!BBH", flags, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def origin(value: int = 0) -> bytes:
    return attribute(TRANSITIVE, ORIGIN_CODE, bytes([value]))


def as_path_value(*segments: tuple[int, Iterable[int]]) -> bytes:
    """The AS_PATH value: (segment type, AS numbers) each, 4-octet AS numbers (RFC 6793)."""
    out = b""
    for kind, asns in segments:
        numbers = list(asns)
        out += struct.pack("!BB", kind, len(numbers)) + b"".join(struct.pack("!I", a) for a in numbers)
    return out


def as_path(*asns: int) -> bytes:
    """AS_PATH of one AS_SEQUENCE (4-octet AS numbers); empty for an iBGP-originated route. More than 255
    AS numbers take several segments (RFC 4271 §4.3), and a long value the extended length."""
    chunks = [asns[i : i + 255] for i in range(0, len(asns), 255)]
    value = as_path_value(*((AS_SEQUENCE, c) for c in chunks))
    return attribute(TRANSITIVE, AS_PATH_CODE, value, extended=len(value) > 255)


def next_hop(address: str) -> bytes:
    return attribute(TRANSITIVE, NEXT_HOP_CODE, IPv4Address(address).packed)


def med(value: int) -> bytes:
    return attribute(OPTIONAL, MED_CODE, struct.pack("!I", value))


def local_pref(value: int = 100) -> bytes:
    return attribute(TRANSITIVE, LOCAL_PREF_CODE, struct.pack("!I", value))


def atomic_aggregate() -> bytes:
    return attribute(TRANSITIVE, ATOMIC_AGGREGATE_CODE, b"")


def aggregator(asn: int, address: str) -> bytes:
    """AGGREGATOR with a 4-octet AS number (RFC 6793 §3)."""
    return attribute(
        OPTIONAL | TRANSITIVE, AGGREGATOR_CODE, struct.pack("!I", asn) + IPv4Address(address).packed
    )


def communities(*values: tuple[int, int]) -> bytes:
    """COMMUNITIES (RFC 1997), (AS, value) each."""
    return attribute(
        OPTIONAL | TRANSITIVE, COMMUNITY_CODE, b"".join(struct.pack("!HH", a, v) for a, v in values)
    )


def large_communities(*values: tuple[int, int, int]) -> bytes:
    """LARGE_COMMUNITY (RFC 8092), (global, local 1, local 2) each."""
    value = b"".join(struct.pack("!III", *v) for v in values)
    return attribute(OPTIONAL | TRANSITIVE, LARGE_COMMUNITY_CODE, value)


def originator_id(address: str) -> bytes:
    return attribute(OPTIONAL, ORIGINATOR_ID_CODE, IPv4Address(address).packed)


def cluster_list(*ids: str) -> bytes:
    return attribute(OPTIONAL, CLUSTER_LIST_CODE, b"".join(IPv4Address(i).packed for i in ids))


def nlri(prefixes: Iterable[str]) -> bytes:
    """Prefixes in the NLRI encoding (either family): length in bits, then only the octets it needs."""
    out = b""
    for text in prefixes:
        net = ip_network(text)
        out += bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]
    return out


def _afi(family: int) -> int:
    return AFI_IPV6 if family == 6 else AFI_IPV4


def mp_reach(family: int, next_hops: Iterable[str], prefixes: Iterable[str], extended: bool = False) -> bytes:
    """MP_REACH_NLRI (RFC 4760 §3) for `family` unicast: the next hop field is the addresses given, packed
    one after the other (one IPv6 global address, or global + link-local, RFC 2545 §3)."""
    hop = b"".join(ip_address(a).packed for a in next_hops)
    value = struct.pack("!HBB", _afi(family), SAFI_UNICAST, len(hop)) + hop + b"\0" + nlri(prefixes)
    return attribute(OPTIONAL, MP_REACH_CODE, value, extended=extended or len(value) > 255)


def mp_unreach(family: int, prefixes: Iterable[str], extended: bool = False) -> bytes:
    """MP_UNREACH_NLRI (RFC 4760 §4) for `family` unicast."""
    value = struct.pack("!HB", _afi(family), SAFI_UNICAST) + nlri(prefixes)
    return attribute(OPTIONAL, MP_UNREACH_CODE, value, extended=extended or len(value) > 255)


def update(withdrawn: Iterable[str] = (), attributes: bytes = b"", announced: Iterable[str] = ()) -> bytes:
    """An UPDATE body (RFC 4271 §4.3) from already packed attributes."""
    return update_body(nlri(withdrawn), attributes, nlri(announced))


def update_body(withdrawn: bytes, attributes: bytes, announced: bytes) -> bytes:
    """An UPDATE body from its three packed fields; the two length fields are the fields' own lengths."""
    return (
        struct.pack("!H", len(withdrawn))
        + withdrawn
        + struct.pack("!H", len(attributes))
        + attributes
        + announced
    )


def messages(buffer: bytearray) -> Iterable[tuple[int, bytes]]:
    """Pops every complete message off `buffer` as (type, body)."""
    while len(buffer) >= HEADER:
        length, kind = struct.unpack("!HB", buffer[16:HEADER])
        if len(buffer) < length:
            return
        body = bytes(buffer[HEADER:length])
        del buffer[: max(length, HEADER)]
        yield kind, body


# --------------------------------------------------------------------------------------------- the program
def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((address, port), timeout=5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Speaker:
    """One process's sessions: the socket of the current one, the commands waiting for it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        self.commands = b""
        self.pending: list[bytes] = []  # messages waiting for an established session
        self.interval = max(args.hold / 3, 1.0)

    def session(self) -> str | None:
        """One session, from connect to its end: why it ended, or None if asked to stop."""
        a = self.args
        sock = _connect(a.connect, a.port, a.connect_timeout)
        self.sel.register(sock, selectors.EVENT_READ, "peer")
        try:
            return self._serve(sock)
        finally:
            self.sel.unregister(sock)
            sock.close()

    def _serve(self, sock: socket.socket) -> str | None:
        a = self.args
        sock.sendall(open_message(a.asn, a.router_id, a.hold, (a.family,)))
        received = bytearray()
        next_keepalive, established = 0.0, False
        while True:
            now = time.monotonic()
            if established and now >= next_keepalive:
                sock.sendall(keepalive())
                next_keepalive = now + self.interval
            for key, _ in self.sel.select(timeout=0.5):
                if key.data == "stdin":
                    chunk = os.read(sys.stdin.fileno(), 1 << 20)
                    if not chunk:
                        return None
                    if not self._commands(chunk):
                        return None
                    if established:
                        self._flush(sock)
                    continue
                chunk = sock.recv(1 << 16)  # readable: does not block
                if not chunk:
                    return "connection closed by peer"
                received += chunk
                for kind, body in messages(received):
                    if kind == OPEN:
                        sock.sendall(keepalive())  # RFC 4271 §8.2.2: OPEN accepted
                    elif kind == KEEPALIVE:
                        if not established:
                            established = True
                            next_keepalive = time.monotonic() + self.interval
                            _emit("established")
                            self._flush(sock)
                    elif kind == UPDATE:
                        _emit(f"update {body.hex()}")
                    elif kind == NOTIFICATION:
                        _emit(f"notification {body[0]} {body[1]} {body[2:].hex()}")

    def _commands(self, chunk: bytes) -> bool:
        """Queue the commands in `chunk`; False on `close`."""
        self.commands += chunk
        while b"\n" in self.commands:
            line, self.commands = self.commands.split(b"\n", 1)
            verb, _, arg = line.decode().strip().partition(" ")
            if verb == "send":
                self.pending.append(message(UPDATE, bytes.fromhex(arg)))
            elif verb == "raw":
                self.pending.append(bytes.fromhex(arg))
            elif verb == "close":
                return False
        return True

    def _flush(self, sock: socket.socket) -> None:
        data, self.pending = b"".join(self.pending), []
        if data:
            sock.sendall(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connect", required=True, help="the peer's address")
    parser.add_argument("--port", type=int, default=179)
    parser.add_argument("--asn", type=int, required=True)
    parser.add_argument("--router-id", required=True)
    parser.add_argument("--hold", type=int, default=9)
    parser.add_argument(
        "--family", type=int, choices=(4, 6), default=4, help="the unicast family to negotiate"
    )
    parser.add_argument("--reconnect", action="store_true", help="connect again whenever a session ends")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args()
    speaker = Speaker(args)
    while True:
        try:
            why = speaker.session()
        except OSError as exc:
            why = f"error {exc}"
        if why is None:
            _emit("closed asked to close")
            return
        _emit(f"closed {why}")
        if not args.reconnect:
            return


if __name__ == "__main__":
    main()
