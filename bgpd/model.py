"""The project's own small immutable types, shared by every layer.

Nothing here does I/O or knows ExaBGP or netlink: the ExaBGP adapter (`bgpd.exabgp`) and the kernel
side (`bgpd.kernel`) translate their wire formats into these types, and the pure layers (`bgpd.rib`,
`bgpd.policy`) compute with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

Prefix = IPv4Network
Address = IPv4Address

# Why bgpd rewrote a route of its own protocol (bgpd_kernel_repairs_total{cause}, bgpctl show kernel):
REPAIR_CAUSES = (
    "deleted",  # the kernel notified that somebody deleted a route bgpd wants
    "changed",  # somebody replaced one of bgpd's routes with other next hops
    "unwanted",  # a route of bgpd's protocol that bgpd does not want (added by somebody, or left over)
    "link",  # missing after a device went down or lost an address (flushed without notification)
    "overflow",  # found different by the full re-read after lost notifications
    "audit",  # found different by the periodic safety re-read
)


class Origin(int, Enum):
    """ORIGIN path attribute (RFC 4271 §4.3 / §5.1.1); lower is preferred (§9.1.2.2 c)."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


@dataclass(frozen=True, slots=True)
class Attributes:
    """The path attributes bgpd reads and writes (RFC 4271 §5, RFC 4456 §8)."""

    origin: Origin = Origin.IGP
    as_path: tuple[int, ...] = ()
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    originator_id: Address | None = None
    cluster_list: tuple[Address, ...] = ()


DEFAULT_ATTRIBUTES = Attributes()


@dataclass(frozen=True, slots=True)
class Peer:
    """Who a path came from: enough to run the decision process (RFC 4271 §9.1.2.2)."""

    address: Address
    asn: int
    router_id: Address | None = None
    ebgp: bool = False


@dataclass(frozen=True, slots=True)
class Path:
    """One path to a prefix as received from one peer (one entry of that peer's Adj-RIB-In)."""

    prefix: Prefix
    next_hop: Address
    peer: Peer
    attrs: Attributes = field(default=DEFAULT_ATTRIBUTES)


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One IPv4 route as the kernel reports it (one RTM_NEWROUTE of a dump or of the event stream)."""

    prefix: Prefix
    kind: str  # rtm_type name: "unicast", "blackhole", "unreachable", "prohibit", "local", ...
    protocol: int  # rtm_protocol
    table: int
    ifname: str | None = None  # output device of a single-path route
    gateways: tuple[Address, ...] = ()  # sorted; several for a multipath route
    priority: int = 0  # RTA_PRIORITY (the metric)

    @property
    def key(self) -> tuple[Prefix, int, int]:
        """The kernel's identity of an IPv4 route: (dst, table, metric) (TOS is always 0 here)."""
        return (self.prefix, self.table, self.priority)
