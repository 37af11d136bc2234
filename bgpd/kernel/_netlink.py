"""Raw rtnetlink (NETLINK_ROUTE) plumbing shared by the kernel side of bgpd.

This module owns the wire format: the constants of <linux/netlink.h> and <linux/rtnetlink.h> that bgpd
uses, opening a NETLINK_ROUTE socket (optionally inside a named network namespace, for tests), walking the
netlink messages of a receive buffer, dumping a table (either family), parsing IPv4 RTM_NEWROUTE/DELROUTE,
RTM_NEWLINK and RTM_NEWADDR (both families) bodies with `struct`, and packing IPv4 route requests. The
IPv6 route bodies are `_inet6`'s, built on this module. Hand-written because pyroute2 parses every
attribute of every message into Python objects, which is one to two orders of magnitude slower than
reading the handful of fields bgpd needs; pyroute2 is used only to enter a network namespace.

Nothing here keeps state; `watcher`, `installer` and `addresses` build on it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from bgpd.model import Hop, KernelRoute
from bgpd.prefix import from_int as prefix_from_int
from bgpd.prefix import network_int

# --- <linux/netlink.h> ---------------------------------------------------------------------------------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; not exported by the socket module

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request was not echoed (NETLINK_CAP_ACK)
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended-ACK attributes follow
NLMSGERR_ATTR_MSG = 1

NLA_TYPE_MASK = 0x3FFF

# --- <linux/rtnetlink.h> -------------------------------------------------------------------------------
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18

RTM_F_CLONED = 0x200
RTNH_F_ONLINK = 0x4  # rtm_flags of a single-path route, rtnh_flags of a next hop: gateway on the device
RT_TABLE_UNSPEC = 0
RT_TABLE_COMPAT = 252
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_NOWHERE = 255

RTN_UNSPEC = 0
RTN_UNICAST = 1

RTN_NAMES: dict[int, str] = {
    0: "unspec",
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
    11: "xresolve",
}

IFLA_IFNAME = 3
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

IFA_ADDRESS = 1
IFA_LOCAL = 2

# --- struct layouts (native byte order, as the kernel writes them) -------------------------------------
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type / flags
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTATTR = struct.Struct("=HH")  # len, type
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
U16 = struct.Struct("=H")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
BE32 = struct.Struct("!I")

NLMSGHDR_LEN = NLMSGHDR.size
RTMSG_LEN = RTMSG.size

RECV_BUFSIZE = 1 << 20  # larger than any netlink skb (dump skbs are <= 64 KiB)


def align4(n: int) -> int:
    return (n + 3) & ~3


def strerror(code: int) -> str:
    """`ENETUNREACH (Network is unreachable)` for an errno value."""
    return f"{errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


# --- sockets -------------------------------------------------------------------------------------------
def enter_netns(netns: str) -> None:
    """Move the *calling thread* into the named network namespace (/run/netns/NAME); never creates one.

    Linux keeps the network namespace per thread, so only the calling thread moves; sockets created
    afterwards by that thread belong to the namespace for their whole life, whichever thread uses them.
    """
    from pyroute2 import netns as _pyroute2_netns  # pyroute2 is only needed for the test-only namespaces

    _pyroute2_netns.setns(netns, flags=0)


def _open(rcvbuf: int | None) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        if rcvbuf is not None:
            set_rcvbuf(sock, rcvbuf)
        sock.bind((0, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def open_socket(netns: str | None = None, rcvbuf: int | None = None) -> socket.socket:
    """A bound NETLINK_ROUTE socket in this thread's namespace, or in `netns` (tests only).

    With `netns`, the socket is created by a short-lived helper thread that entered the namespace, so the
    caller's own thread never changes namespace and the socket behaves exactly as in production.
    """
    if netns is None:
        return _open(rcvbuf)
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def helper() -> None:
        try:
            enter_netns(netns)
            result.append(_open(rcvbuf))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=helper, name=f"netns-socket-{netns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Receive buffer of `size` bytes: SO_RCVBUFFORCE (needs CAP_NET_ADMIN) else SO_RCVBUF."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


# Classic BPF (<linux/filter.h>): instruction classes used by drop_protocol_filter
SO_ATTACH_FILTER = 26
_BPF_LDH_ABS = 0x28  # BPF_LD | BPF_H | BPF_ABS (16 bits, read in network byte order)
_BPF_LDB_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS
_BPF_LDW_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS (32 bits, read in network byte order)
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_RTM_PROTOCOL_OFFSET = 16 + 5  # nlmsghdr, then rtmsg: family, dst_len, src_len, tos, table, protocol
_NLMSG_PID_OFFSET = 12  # nlmsghdr: len, type, flags, seq, pid


def drop_protocol_filter(sock: socket.socket, protocol: int) -> None:
    """Make the kernel drop RTM_NEWROUTE/RTM_DELROUTE notifications of routes of `protocol` before they
    are queued on `sock` (SO_ATTACH_FILTER); every other message passes. For a subscription socket only:
    the filter sees the first message of each datagram, which for notifications is the only one."""
    program = [
        (_BPF_LDH_ABS, 0, 0, 4),  # A = nlmsg_type
        (_BPF_JEQ_K, 1, 0, _host_u16_as_loaded(RTM_NEWROUTE)),  # -> 3
        (_BPF_JEQ_K, 0, 3, _host_u16_as_loaded(RTM_DELROUTE)),  # -> 3, else accept
        (_BPF_LDB_ABS, 0, 0, _RTM_PROTOCOL_OFFSET),  # A = rtm_protocol
        (_BPF_JEQ_K, 0, 1, protocol),  # ours -> drop, else accept
        (_BPF_RET_K, 0, 0, 0),  # drop
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # accept the whole datagram
    ]
    _attach(sock, program)


def drop_sender_filter(sock: socket.socket, portid: int) -> None:
    """Make the kernel drop RTM_NEWROUTE/RTM_DELROUTE notifications caused by the netlink socket whose
    port id is `portid` (bgpd's own route writer) before they are queued on `sock`; every other message
    passes, so a change made by anybody else, to any route, still arrives.

    rtnetlink stamps a notification with the port id of the request that caused it (nlmsg_pid; 0 for the
    kernel's own changes), so this tells bgpd's writes from an operator's `ip route del` of the same route.
    For a subscription socket only: the filter sees the first message of each datagram."""
    program = [
        (_BPF_LDH_ABS, 0, 0, 4),  # A = nlmsg_type
        (_BPF_JEQ_K, 1, 0, _host_u16_as_loaded(RTM_NEWROUTE)),  # -> 3
        (_BPF_JEQ_K, 0, 3, _host_u16_as_loaded(RTM_DELROUTE)),  # -> 3, else accept
        (_BPF_LDW_ABS, 0, 0, _NLMSG_PID_OFFSET),  # A = nlmsg_pid
        (_BPF_JEQ_K, 0, 1, _host_u32_as_loaded(portid)),  # our writer -> drop, else accept
        (_BPF_RET_K, 0, 0, 0),  # drop
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # accept the whole datagram
    ]
    _attach(sock, program)


def _host_u16_as_loaded(value: int) -> int:
    """BPF loads a 16-bit field big-endian; the kernel wrote this host-order value there."""
    return int(struct.unpack(">H", struct.pack("=H", value))[0])


def _host_u32_as_loaded(value: int) -> int:
    return int(struct.unpack(">I", struct.pack("=I", value))[0])


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    import ctypes

    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies the program


def portid(sock: socket.socket) -> int:
    """The port id the kernel gave a bound netlink socket (what it stamps on notifications it causes)."""
    return int(sock.getsockname()[0])


def set_opt(sock: socket.socket, option: int, value: int = 1) -> bool:
    """Set a SOL_NETLINK option; False if the running kernel does not know it."""
    try:
        sock.setsockopt(SOL_NETLINK, option, value)
    except OSError:
        return False
    return True


# --- messages ------------------------------------------------------------------------------------------
class NetlinkError(Exception):
    """A NLMSG_ERROR answer to a request, or a failed dump."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.code = code  # positive errno
        self.message = message  # extended ACK text, if the kernel sent one
        super().__init__(code, message)

    def __str__(self) -> str:
        text = strerror(self.code)
        return f"{text}: {self.message}" if self.message else text


def iter_messages(
    buf: bytes | bytearray | memoryview, length: int
) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(type, flags, seq, sender port id, body_offset, end) for each netlink message in buf[:length]."""
    off = 0
    unpack = NLMSGHDR.unpack_from
    while off + NLMSGHDR_LEN <= length:
        mlen, mtype, mflags, seq, pid = unpack(buf, off)
        if mlen < NLMSGHDR_LEN or off + mlen > length:
            return
        yield mtype, mflags, seq, pid, off + NLMSGHDR_LEN, off + mlen
        off += align4(mlen)


def parse_error(
    buf: bytes | bytearray | memoryview, off: int, end: int, flags: int
) -> tuple[int, str | None]:
    """(errno >= 0, extended-ACK message) of a NLMSG_ERROR body; errno 0 is a plain ACK."""
    (code,) = I32.unpack_from(buf, off)
    message: str | None = None
    if flags & NLM_F_ACK_TLVS:
        if flags & NLM_F_CAPPED:
            pos = off + 4 + NLMSGHDR_LEN
        else:
            (orig_len,) = U32.unpack_from(buf, off + 4)
            pos = off + 4 + align4(orig_len)
        while pos + 4 <= end:
            alen, atype = RTATTR.unpack_from(buf, pos)
            if alen < 4:
                break
            if atype & NLA_TYPE_MASK == NLMSGERR_ATTR_MSG:
                message = bytes(buf[pos + 4 : pos + alen]).rstrip(b"\0").decode(errors="replace")
            pos += align4(alen)
    return -code, message


def dump(
    sock: socket.socket, msg_type: int, body: bytes, seq: int
) -> Iterator[tuple[int, bytes, int, int, int]]:
    """Send a NLM_F_DUMP request and yield (type, buffer, body_offset, end, flags) per answer message.

    Raises NetlinkError if the kernel refuses the dump. A dump flagged NLM_F_DUMP_INTR (the table changed
    while it was walked) is still complete enough for bgpd's use: the notifications of those concurrent
    changes are queued on the subscribed socket and are applied after it.
    """
    header = NLMSGHDR.pack(NLMSGHDR_LEN + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    sock.sendall(header + body)
    while True:
        data = sock.recv(RECV_BUFSIZE)
        for mtype, mflags, mseq, _pid, off, end in iter_messages(data, len(data)):
            if mseq != seq:
                continue  # a late answer to an earlier request: not ours
            if mtype == NLMSG_DONE:
                return
            if mtype == NLMSG_ERROR:
                code, message = parse_error(data, off, end, mflags)
                raise NetlinkError(code or errno.EIO, message)
            yield mtype, data, off, end, mflags


def route_dump_request(table: int, protocol: int = 0, oif: int = 0, family: int = socket.AF_INET) -> bytes:
    """Body of an RTM_GETROUTE dump of `family` (AF_INET or AF_INET6; NETLINK_GET_STRICT_CHK: the kernel
    filters by table, protocol if not 0, and output device `oif` if not 0: routes with a next hop
    through it)."""
    body = RTMSG.pack(family, 0, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, protocol, 0, 0, 0)
    body += RTATTR.pack(8, RTA_TABLE) + U32.pack(table)
    if oif:
        body += RTATTR.pack(8, RTA_OIF) + U32.pack(oif)
    return body


def dump_routes(
    sock: socket.socket, table: int, protocol: int, seq: int, oif: int = 0, family: int = socket.AF_INET
) -> Iterator[tuple[int, bytes, int, int, int]]:
    """`dump` of the routes of `family` (IPv4 unless AF_INET6) of one table (and protocol, and output
    device, if not 0); a table that does not exist yet (ENOENT) or a device that is gone (ENODEV) has no
    routes."""
    try:
        yield from dump(sock, RTM_GETROUTE, route_dump_request(table, protocol, oif, family), seq)
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ENODEV):
            raise


LINK_DUMP_REQUEST = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
ADDR_DUMP_REQUEST = IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
ADDR6_DUMP_REQUEST = IFADDRMSG.pack(socket.AF_INET6, 0, 0, 0, 0)


def request(sock: socket.socket, msg_type: int, body: bytes, seq: int) -> tuple[int, bytes, int, int]:
    """Send one request (not a dump) and return its answer as (type, buffer, body_offset, end).

    Answers to other sequence numbers (late answers to earlier requests) are skipped. Raises NetlinkError
    if the kernel answers with an error, OSError (TimeoutError) if the socket does."""
    sock.sendall(NLMSGHDR.pack(NLMSGHDR_LEN + len(body), msg_type, NLM_F_REQUEST, seq, 0) + body)
    while True:
        data = sock.recv(RECV_BUFSIZE)
        for mtype, mflags, mseq, _pid, off, end in iter_messages(data, len(data)):
            if mseq != seq:
                continue
            if mtype == NLMSG_ERROR:
                code, message = parse_error(data, off, end, mflags)
                if code:
                    raise NetlinkError(code, message)
            return mtype, data, off, end


def link_index(sock: socket.socket, name: str, seq: int) -> int | None:
    """The ifindex of device `name` in the socket's namespace (one RTM_GETLINK), None if there is none."""
    raw = name.encode() + b"\0"
    attr = RTATTR.pack(4 + len(raw), IFLA_IFNAME) + raw + b"\0" * (align4(len(raw)) - len(raw))
    try:
        mtype, data, off, end = request(sock, RTM_GETLINK, LINK_DUMP_REQUEST + attr, seq)
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.EINVAL):  # EINVAL: not a valid device name
            return None
        raise
    return parse_link(data, off, end)[0] if mtype == RTM_NEWLINK else None


def link_names(sock: socket.socket, seq: int) -> dict[int, str]:
    """ifindex -> name of every device in the socket's namespace (one RTM_GETLINK dump)."""
    names: dict[int, str] = {}
    for mtype, data, off, end, _flags in dump(sock, RTM_GETLINK, LINK_DUMP_REQUEST, seq):
        if mtype == RTM_NEWLINK:
            index, _flags, name = parse_link(data, off, end)
            if name is not None:
                names[index] = name
    return names


# --- parsing -------------------------------------------------------------------------------------------
def parse_route(
    buf: bytes | bytearray | memoryview,
    off: int,
    end: int,
    table: int,
    ifname_of: Callable[[int], str | None],
    skip_protocol: int = -1,
) -> tuple[KernelRoute, tuple[int, ...]] | None:
    """KernelRoute and its output ifindexes from an RTM_NEWROUTE/DELROUTE body, or None if not wanted.

    Not wanted: non-IPv4 (`_inet6.parse_route` reads IPv6 ones), RTM_F_CLONED cache entries, routes of
    `skip_protocol`, or another table than `table`.
    """
    family, dst_len, _src_len, _tos, rtm_table, protocol, _scope, rtype, rtm_flags = RTMSG.unpack_from(
        buf, off
    )
    if family != socket.AF_INET or rtm_flags & RTM_F_CLONED or protocol == skip_protocol:
        return None
    dst = 0
    oif = 0
    gateway = 0
    priority = 0
    multipath: list[tuple[int, int, int]] | None = None
    route_table = rtm_table
    pos = off + RTMSG_LEN
    unpack_attr = RTATTR.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4:
            break
        atype &= NLA_TYPE_MASK
        if atype == RTA_DST:
            (dst,) = BE32.unpack_from(buf, pos + 4)
        elif atype == RTA_OIF:
            (oif,) = U32.unpack_from(buf, pos + 4)
        elif atype == RTA_GATEWAY:
            (gateway,) = BE32.unpack_from(buf, pos + 4)
        elif atype == RTA_PRIORITY:
            (priority,) = U32.unpack_from(buf, pos + 4)
        elif atype == RTA_TABLE:
            (route_table,) = U32.unpack_from(buf, pos + 4)
        elif atype == RTA_MULTIPATH:
            multipath = _parse_multipath(buf, pos + 4, pos + alen)
        pos += align4(alen)
    if route_table != table:
        return None
    oifs: tuple[int, ...]
    gateways: tuple[IPv4Address | Hop, ...]
    if multipath is not None:
        if any(f & RTNH_F_ONLINK for _, _, f in multipath):
            gateways = _onlink(multipath, ifname_of)
        else:
            gateways = tuple(IPv4Address(g) for g in sorted({g for _, g, _ in multipath if g}))
        oifs = tuple(sorted({i for i, _, _ in multipath if i}))
    else:
        if rtm_flags & RTNH_F_ONLINK and gateway:
            gateways = _onlink([(oif, gateway, RTNH_F_ONLINK)], ifname_of)
        else:
            gateways = (IPv4Address(gateway),) if gateway else ()
        oifs = (oif,) if oif else ()
    ifname = ifname_of(oifs[0]) if len(oifs) == 1 else None
    route = KernelRoute(
        prefix=prefix_from_int(dst, dst_len),
        kind=RTN_NAMES.get(rtype, str(rtype)),
        protocol=protocol,
        table=route_table,
        ifname=ifname,
        gateways=gateways,
        priority=priority,
    )
    return route, oifs


def _onlink(
    hops: list[tuple[int, int, int]], ifname_of: Callable[[int], str | None]
) -> tuple[IPv4Address | Hop, ...]:
    """The next hops of a route with an RTNH_F_ONLINK one (Calico's IP-in-IP, `via G dev tunl0 onlink`):
    those as `Hop(G, device name, onlink=True)` (the ifindex as text if the name is unknown), the others as
    their address; sorted by (address, device), as the installer writes them."""
    out: set[IPv4Address | Hop] = set()
    for index, gateway, flags in hops:
        if not gateway:
            continue
        if flags & RTNH_F_ONLINK:
            out.add(Hop(IPv4Address(gateway), ifname_of(index) or str(index), True))
        else:
            out.add(IPv4Address(gateway))
    return tuple(sorted(out, key=hop_order))


def hop_order(hop: IPv4Address | IPv6Address | Hop) -> tuple[int, str]:
    """The order of a route's next hops, as the installer writes them and the watcher reports them: by
    address, then device."""
    return (int(hop.gateway), hop.device or "") if isinstance(hop, Hop) else (int(hop), "")


def _parse_multipath(buf: bytes | bytearray | memoryview, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(ifindex, gateway, rtnh_flags) per struct rtnexthop of an RTA_MULTIPATH attribute (gateway 0 if
    none)."""
    hops: list[tuple[int, int, int]] = []
    while pos + RTNEXTHOP.size <= end:
        nh_len, nh_flags, _hops, ifindex = RTNEXTHOP.unpack_from(buf, pos)
        if nh_len < RTNEXTHOP.size:
            break
        gateway = 0
        apos = pos + RTNEXTHOP.size
        nh_end = min(pos + nh_len, end)
        while apos + 4 <= nh_end:
            alen, atype = RTATTR.unpack_from(buf, apos)
            if alen < 4:
                break
            if atype & NLA_TYPE_MASK == RTA_GATEWAY and alen >= 8:
                (gateway,) = BE32.unpack_from(buf, apos + 4)
            apos += align4(alen)
        hops.append((ifindex, gateway, nh_flags))
        pos += align4(nh_len)
    return hops


def parse_hops(buf: bytes | bytearray | memoryview, off: int, end: int) -> tuple[tuple[int, int, int], ...]:
    """(gateway, output ifindex, RTNH_F_* flags) per next hop of an IPv4 RTM_NEWROUTE body (gateway 0 if
    none; nothing for a route without next hop). A second, narrower walk than `parse_route`'s, for the
    few callers that need the device and flags of each next hop (the installer's RTNH_F_ONLINK hops)."""
    rtm_flags = RTMSG.unpack_from(buf, off)[8]
    gateway = oif = 0
    pos = off + RTMSG_LEN
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        atype &= NLA_TYPE_MASK
        if atype == RTA_GATEWAY and alen >= 8:
            (gateway,) = BE32.unpack_from(buf, pos + 4)
        elif atype == RTA_OIF and alen >= 8:
            (oif,) = U32.unpack_from(buf, pos + 4)
        elif atype == RTA_MULTIPATH:
            return tuple((g, i, f) for i, g, f in _parse_multipath(buf, pos + 4, pos + alen))
        pos += align4(alen)
    return ((gateway, oif, rtm_flags & 0xFF),) if gateway or oif else ()


def parse_link(buf: bytes | bytearray | memoryview, off: int, end: int) -> tuple[int, int, str | None]:
    """(ifindex, flags, name) of an RTM_NEWLINK/DELLINK body."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(buf, off)
    name: str | None = None
    pos = off + IFINFOMSG.size
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        if atype & NLA_TYPE_MASK == IFLA_IFNAME:
            name = bytes(buf[pos + 4 : pos + alen]).split(b"\0", 1)[0].decode(errors="replace")
            break
        pos += align4(alen)
    return index, flags, name


def parse_addr(
    buf: bytes | bytearray | memoryview, off: int, end: int
) -> tuple[int, int, IPv4Address | IPv6Address | None, int]:
    """(family, ifindex, local address, prefix length) of an RTM_NEWADDR/DELADDR body.

    The address is an IPv4Address for AF_INET, an IPv6Address (without scope, link-local ones included)
    for AF_INET6, None for another family or a message without one. The local address is IFA_LOCAL if
    present (the other end of a point-to-point link is in IFA_ADDRESS then), else IFA_ADDRESS."""
    family, plen, _flags, _scope, index = IFADDRMSG.unpack_from(buf, off)
    size = 4 if family == socket.AF_INET else 16 if family == socket.AF_INET6 else 0
    local: bytes | None = None
    address: bytes | None = None
    pos = off + IFADDRMSG.size
    while pos + 4 <= end:
        alen, atype = RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        atype &= NLA_TYPE_MASK
        if size and alen >= 4 + size:
            if atype == IFA_LOCAL:
                local = bytes(buf[pos + 4 : pos + 4 + size])
            elif atype == IFA_ADDRESS:
                address = bytes(buf[pos + 4 : pos + 4 + size])
        pos += align4(alen)
    value = local if local is not None else address
    if value is None:
        return family, index, None, plen
    return family, index, IPv4Address(value) if size == 4 else IPv6Address(value), plen


# --- packing -------------------------------------------------------------------------------------------
def pack_route(
    msg_type: int,
    flags: int,
    seq: int,
    *,
    prefix: IPv4Network,
    table: int,
    protocol: int,
    metric: int,
    gateways: tuple[IPv4Address, ...] = (),
    oifs: tuple[int, ...] = (),
    nh_flags: tuple[int, ...] = (),
    rtype: int = RTN_UNICAST,
    scope: int = RT_SCOPE_UNIVERSE,
) -> bytes:
    """One complete RTM_NEWROUTE/RTM_DELROUTE message (header included) for an IPv4 route.

    `oifs` and `nh_flags`, if given, are aligned with `gateways`: the output ifindex (0: the kernel
    chooses) and the RTNH_F_* flags (RTNH_F_ONLINK) of each next hop; RTA_OIF and rtm_flags for a plain
    next hop, rtnh_ifindex and rtnh_flags in an ECMP route."""
    parts = [
        RTMSG.pack(
            socket.AF_INET,
            prefix.prefixlen,
            0,
            0,
            table if table < 256 else RT_TABLE_UNSPEC,
            protocol,
            scope,
            rtype,
            nh_flags[0] if len(gateways) == 1 and nh_flags else 0,
        ),
        RTATTR.pack(8, RTA_TABLE),
        U32.pack(table),
        RTATTR.pack(8, RTA_PRIORITY),
        U32.pack(metric),
    ]
    if prefix.prefixlen:
        parts += (RTATTR.pack(8, RTA_DST), network_int(prefix).to_bytes(4, "big"))
    if len(gateways) == 1:
        parts += (RTATTR.pack(8, RTA_GATEWAY), gateways[0].packed)
        if oifs and oifs[0]:
            parts += (RTATTR.pack(8, RTA_OIF), U32.pack(oifs[0]))
    elif gateways:
        nh_len = RTNEXTHOP.size + 8
        parts.append(RTATTR.pack(4 + nh_len * len(gateways), RTA_MULTIPATH))
        for i, gateway in enumerate(gateways):
            oif = oifs[i] if oifs else 0
            nh_flag = nh_flags[i] if nh_flags else 0
            parts += (RTNEXTHOP.pack(nh_len, nh_flag, 0, oif), RTATTR.pack(8, RTA_GATEWAY), gateway.packed)
    body = b"".join(parts)
    return NLMSGHDR.pack(NLMSGHDR_LEN + len(body), msg_type, flags, seq, 0) + body
