"""The addresses configured on this host's interfaces (one RTM_GETADDR dump per address family).

bgpd uses them to recognise its own addresses, e.g. a next hop or a peer that is this host, and
`address_network` finds the subnet of the node's address when the config gives it without its length.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any, overload

from bgpd.kernel import _netlink as nl

_DUMP_REQUESTS: dict[int, bytes] = {
    socket.AF_INET: nl.ADDR_DUMP_REQUEST,
    socket.AF_INET6: nl.ADDR6_DUMP_REQUEST,
}


@overload
def local_addresses(netns: str | None = None) -> frozenset[IPv4Address]: ...
@overload
def local_addresses(
    netns: str | None = None, *, families: Collection[int]
) -> frozenset[IPv4Address | IPv6Address]: ...
def local_addresses(netns: str | None = None, *, families: Collection[int] = (socket.AF_INET,)) -> Any:
    """All addresses (IFA_LOCAL) on all interfaces, of the address `families` (AF_INET, AF_INET6; IPv4
    only by default). IPv6 addresses come without scope, link-local and tentative ones included.
    `netns` is for tests only. ValueError for another family."""
    requests = [_request(family) for family in families]
    with nl.open_socket(netns) as sock:
        return frozenset(
            address
            for seq, (family, body) in enumerate(requests, 1)
            for _index, address, _plen in _addresses(sock, family, body, seq)
        )


def address_network(address: IPv4Address, netns: str | None = None) -> tuple[str, IPv4Network] | None:
    """(interface name, network) of the interface address equal to `address` (`eth0`,
    `192.168.100.0/24`), None if no interface holds it. `netns` is for tests only."""
    with nl.open_socket(netns) as sock:
        for index, found, plen in _addresses(sock, socket.AF_INET, nl.ADDR_DUMP_REQUEST, 1):
            if found == address:
                try:
                    name = socket.if_indextoname(index)
                except OSError:
                    name = str(index)
                return name, IPv4Network(f"{address}/{plen}", strict=False)
    return None


def _addresses(
    sock: socket.socket, family: int, request: bytes, seq: int
) -> Iterator[tuple[int, IPv4Address | IPv6Address, int]]:
    """(ifindex, address, prefix length) of every interface address of `family`, from one dump."""
    for mtype, data, off, end, _flags in nl.dump(sock, nl.RTM_GETADDR, request, seq):
        if mtype == nl.RTM_NEWADDR:
            got, index, address, plen = nl.parse_addr(data, off, end)
            if got == family and address is not None:
                yield index, address, plen


def _request(family: int) -> tuple[int, bytes]:
    body = _DUMP_REQUESTS.get(family)
    if body is None:
        raise ValueError(f"address family {family} is neither AF_INET nor AF_INET6")
    return family, body
