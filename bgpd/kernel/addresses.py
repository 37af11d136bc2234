"""The IPv4 addresses configured on this host's interfaces (one RTM_GETADDR dump).

bgpd uses them to recognise its own addresses, e.g. a next hop or a peer that is this host.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

from bgpd.kernel import _netlink as nl


def local_addresses(netns: str | None = None) -> frozenset[IPv4Address]:
    """All IPv4 addresses (IFA_LOCAL) on all interfaces; `netns` is for tests only."""
    addresses: set[IPv4Address] = set()
    with nl.open_socket(netns) as sock:
        for mtype, data, off, end, _flags in nl.dump(sock, nl.RTM_GETADDR, nl.ADDR_DUMP_REQUEST, 1):
            if mtype != nl.RTM_NEWADDR:
                continue
            family, _index, address, _plen = nl.parse_addr(data, off, end)
            if family == socket.AF_INET and address is not None:
                addresses.add(address)
    return frozenset(addresses)
