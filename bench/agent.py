"""In-namespace helper of the benchmark: a netlink route listener and a single-route injector.

Run inside a host's network namespace (``ip netns exec NS python bench/agent.py ...``); standard library
only, so it starts fast and does not depend on bgpd's code. It talks to the harness with lines:

    -> ready COUNT                      once subscribed and the initial dump is done
    <- add PREFIX | del PREFIX          inject/remove ``PREFIX dev DEV scope link proto boot`` (as Felix;
                                        an IPv6 PREFIX has no scope, as Felix's ``ip -6 route``)
    -> done add PREFIX T ERRNO          T = CLOCK_MONOTONIC right before the netlink request was sent
    <- wait add PREFIX | wait del PREFIX | wait count N
    -> seen add PREFIX T | seen del PREFIX T | seen count N T
                                        T = when the route (of the watched protocol, inside the pool)
                                        appeared/disappeared, or when the number of such routes became N
    <- count                            -> count N RESYNCS
    <- quit

Timestamps are ``time.monotonic()`` (CLOCK_MONOTONIC), one clock for every namespace of the machine, so
the harness compares an injection time taken in host A with a reception time taken in host B. The listener
watches one address family, that of ``--pool``: it subscribes to RTNLGRP_IPV4_ROUTE
or RTNLGRP_IPV6_ROUTE with a 64 MiB receive buffer; if the kernel still drops notifications (ENOBUFS) it
re-dumps that family's table and counts a resync.
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import socket
import struct
import sys
import time

NETLINK_ROUTE = 0
SO_RCVBUFFORCE = 33
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

NLMSGHDR = struct.Struct("=IHHII")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")
BE32 = struct.Struct("!I")


V6 = 1 << 136  # set in the key of an IPv6 prefix


def parse_prefix(text: str) -> int:
    """'10.1.2.3/32' or 'fd00::1/128' -> key (address << 8 | length, plus V6 for IPv6), the form the
    listener indexes routes by."""
    addr, _, length = text.partition("/")
    if ":" in addr:
        plen = int(length) if length else 128
        return V6 | int.from_bytes(socket.inet_pton(socket.AF_INET6, addr), "big") << 8 | plen
    plen = int(length) if length else 32
    value: int = BE32.unpack(socket.inet_aton(addr))[0]
    return (value << 8) | plen


def format_key(key: int) -> str:
    if key & V6:
        raw = ((key & (V6 - 1)) >> 8).to_bytes(16, "big")
        return f"{socket.inet_ntop(socket.AF_INET6, raw)}/{key & 255}"
    return f"{socket.inet_ntoa(BE32.pack(key >> 8))}/{key & 255}"


def attr(type_: int, payload: bytes) -> bytes:
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, type_) + payload + b"\0" * ((4 - length % 4) % 4)


class Agent:
    def __init__(self, protocol: int, pool: str, dev: str) -> None:
        self.protocol = protocol
        net, _, plen = pool.partition("/")
        self.v6 = ":" in net  # the family watched and injected: the pool's
        self.family = socket.AF_INET6 if self.v6 else socket.AF_INET
        self.bits = 128 if self.v6 else 32
        self.pool_len = int(plen)
        full = (1 << self.bits) - 1
        self.pool_mask = (full << (self.bits - self.pool_len)) & full if self.pool_len else 0
        self.pool_net = int.from_bytes(socket.inet_pton(self.family, net), "big") & self.pool_mask
        self.key_flag = V6 if self.v6 else 0
        self.dev = dev
        self.present: set[int] = set()
        self.waits: list[tuple[str, int]] = []
        self.resyncs = 0
        self.seq = 1
        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
        try:
            self.events.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        except OSError:
            self.events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self.events.bind((0, RTMGRP_IPV6_ROUTE if self.v6 else RTMGRP_IPV4_ROUTE))
        self.req = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.req.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.req.bind((0, 0))

    # --- listening ---------------------------------------------------------------------------------------
    def _route_key(self, msg: bytes, off: int, end: int) -> int | None:
        """Key of a route of the watched family and protocol, main table, inside the pool; else None."""
        family, dst_len, _, _, table, proto, _, _, _ = RTMSG.unpack_from(msg, off)
        if family != self.family or proto != self.protocol:
            return None
        dst = 0
        pos = off + RTMSG.size
        while pos + 4 <= end:
            alen, atype = RTATTR.unpack_from(msg, pos)
            if alen < 4:
                break
            if atype == RTA_DST:
                if self.v6:
                    dst = int.from_bytes(msg[pos + 4 : pos + 20], "big")
                else:
                    dst = BE32.unpack_from(msg, pos + 4)[0]
            elif atype == RTA_TABLE:
                table = U32.unpack_from(msg, pos + 4)[0]
            pos += (alen + 3) & ~3
        if table != RT_TABLE_MAIN or dst_len < self.pool_len or (dst & self.pool_mask) != self.pool_net:
            return None
        key: int = self.key_flag | (dst << 8) | dst_len
        return key

    def _handle(self, data: bytes) -> None:
        off = 0
        n = len(data)
        present = self.present
        while off + 16 <= n:
            length, mtype, _, _, _ = NLMSGHDR.unpack_from(data, off)
            if length < 16:
                break
            if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
                key = self._route_key(data, off + 16, off + length)
                if key is not None:
                    if mtype == RTM_NEWROUTE:
                        present.add(key)
                    else:
                        present.discard(key)
            off += (length + 3) & ~3

    def dump(self) -> None:
        """Rebuild `present` from a fresh dump (start, and after the kernel dropped notifications)."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.bind((0, 0))
            body = RTMSG.pack(self.family, 0, 0, 0, 0, 0, 0, 0, 0)
            hdr = NLMSGHDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            sock.send(hdr + body)
            self.present = set()
            done = False
            while not done:
                data = sock.recv(1 << 20)
                off = 0
                while off + 16 <= len(data):
                    length, mtype, _, _, _ = NLMSGHDR.unpack_from(data, off)
                    if mtype in (NLMSG_DONE, NLMSG_ERROR) or length < 16:
                        done = True
                        break
                    if mtype == RTM_NEWROUTE:
                        key = self._route_key(data, off + 16, off + length)
                        if key is not None:
                            self.present.add(key)
                    off += (length + 3) & ~3
        finally:
            sock.close()

    def drain_events(self) -> None:
        while True:
            try:
                data = self.events.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.resyncs += 1
                # drain what is queued, then take a fresh picture
                while True:
                    try:
                        self.events.recv(1 << 16)
                    except (BlockingIOError, OSError):
                        break
                self.dump()
                continue
            self._handle(data)

    def check_waits(self, now: float, out: list[str]) -> None:
        if not self.waits:
            return
        keep = []
        for kind, value in self.waits:
            if kind == "add" and value in self.present:
                out.append(f"seen add {format_key(value)} {now:.6f}")
            elif kind == "del" and value not in self.present:
                out.append(f"seen del {format_key(value)} {now:.6f}")
            elif kind == "count" and len(self.present) == value:
                out.append(f"seen count {value} {now:.6f}")
            else:
                keep.append((kind, value))
        self.waits = keep

    # --- injecting ---------------------------------------------------------------------------------------
    def change(self, op: str, prefix: str) -> str:
        addr, _, plen = prefix.partition("/")
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        length = int(plen) if plen else (128 if family == socket.AF_INET6 else 32)
        scope = RT_SCOPE_UNIVERSE if family == socket.AF_INET6 else RT_SCOPE_LINK  # IPv6 has no link scope
        body = RTMSG.pack(family, length, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
        body += attr(RTA_DST, socket.inet_pton(family, addr))
        if op == "add":
            body += attr(RTA_OIF, U32.pack(socket.if_nametoindex(self.dev)))
            mtype, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        else:
            mtype, flags = RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
        self.seq += 1
        msg = NLMSGHDR.pack(16 + len(body), mtype, flags, self.seq, 0) + body
        t = time.monotonic()
        self.req.send(msg)
        code = 0
        while True:
            data = self.req.recv(65536)
            length, rtype, _, seq, _ = NLMSGHDR.unpack_from(data, 0)
            if rtype == NLMSG_ERROR and seq == self.seq:
                code = -struct.unpack_from("=i", data, 16)[0]
                break
        return f"done {op} {prefix} {t:.6f} {code}"

    # --- main loop ---------------------------------------------------------------------------------------
    def command(self, line: str, out: list[str]) -> bool:
        words = line.split()
        if not words:
            return True
        if words[0] == "quit":
            return False
        if words[0] in ("add", "del"):
            out.append(self.change(words[0], words[1]))
        elif words[0] == "wait":
            value = int(words[2]) if words[1] == "count" else parse_prefix(words[2])
            self.waits.append((words[1], value))
        elif words[0] == "count":
            out.append(f"count {len(self.present)} {self.resyncs}")
        else:
            out.append(f"error unknown command {line!r}")
        return True

    def run(self) -> None:
        self.dump()
        self.drain_events()
        write = sys.stdout.write
        write(f"ready {len(self.present)}\n")
        sys.stdout.flush()
        stdin = sys.stdin.fileno()
        pending = b""
        ev = self.events.fileno()
        running = True
        while running:
            readable, _, _ = select.select([ev, stdin], [], [])
            out: list[str] = []
            if ev in readable:
                self.drain_events()
            if stdin in readable:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    break
                pending += chunk
                while b"\n" in pending:
                    line, _, pending = pending.partition(b"\n")
                    if not self.command(line.decode(), out):
                        running = False
                        break
                self.drain_events()
            self.check_waits(time.monotonic(), out)
            if out:
                write("\n".join(out) + "\n")
                sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", type=int, default=12, help="route protocol to watch (12 = bird)")
    p.add_argument(
        "--pool",
        default="10.0.0.0/8",
        help="count only routes inside this prefix; its family (IPv4 or IPv6) is the family watched",
    )
    p.add_argument("--dev", default="cali0", help="device of injected routes")
    args = p.parse_args()
    Agent(args.protocol, args.pool, args.dev).run()


if __name__ == "__main__":
    main()
