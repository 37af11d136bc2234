"""The project's own small immutable types, shared by every layer.

Nothing here does I/O or knows ExaBGP or netlink: the ExaBGP adapter (`bgpd.exabgp`) and the kernel
side (`bgpd.kernel`) translate their wire formats into these types, and the pure layers (`bgpd.rib`,
`bgpd.policy`) compute with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

# One prefix and one address type for both families (dual stack): every layer takes either; where the
# families differ (next hops, kernel metrics, ExaBGP's text) the boundary modules say so.
Prefix = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

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
    # the members of AS_SET / AS_CONFED_SET segments other than the first, which `as_path` carries alone (an
    # AS_SET counts as one AS for the path length, RFC 4271 §9.1.2.2 a), so loop detection sees every AS
    as_set: frozenset[int] = frozenset()


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
class Hop:
    """One next hop with its device: `Hop(G)` is `via G` (the kernel picks the device), and
    `Hop(G, "tunl0", onlink=True)` is `via G dev tunl0 onlink` (Calico's IP-in-IP: the gateway, the peer's
    underlay address, is taken as directly reachable on the tunnel device, RTNH_F_ONLINK). Decided by
    `bgpd.engine.tunnel`, written and read back by `bgpd.kernel.RouteInstaller` (IPv4 only)."""

    gateway: Address
    device: str | None = None
    onlink: bool = False

    def __str__(self) -> str:
        """As `ip route` writes it: `192.168.200.10 dev tunl0 onlink`."""
        text = str(self.gateway)
        if self.device:
            text += f" dev {self.device}"
        return text + " onlink" if self.onlink else text


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One route (IPv4 or IPv6) as the kernel reports it (one RTM_NEWROUTE of a dump or of the events)."""

    prefix: Prefix
    kind: str  # rtm_type name: "unicast", "blackhole", "unreachable", "prohibit", "local", ...
    protocol: int  # rtm_protocol
    table: int
    ifname: str | None = None  # output device of a single-path route
    # sorted by address; several for a multipath route. An IPv4 next hop the kernel flags onlink (Calico's
    # IP-in-IP: `via G dev tunl0 onlink`) is a `Hop(G, device, onlink=True)`, the others their address.
    gateways: tuple[Address | Hop, ...] = ()
    priority: int = 0  # RTA_PRIORITY (the metric)

    @property
    def key(self) -> tuple[Prefix, int, int]:
        """The kernel's identity of a route: (dst, table, metric) (TOS is always 0 here)."""
        return (self.prefix, self.table, self.priority)


@dataclass(frozen=True, slots=True)
class OpResult:
    """Outcome of one change passed to `RouteInstaller.apply`."""

    prefix: Prefix
    ok: bool
    collision: bool = False  # a route of another protocol sits at our key; it was left alone
    error: str | None = None
    # the device the route's onlink next hops name (`tunl0`) is missing or down: the change waits for it to
    # come up (a link event), it is not retried before
    device: str | None = None
    # the kernel refused the route for its next hops (ENETUNREACH, EINVAL: a gateway not directly reachable)
    refused: bool = False


# What the kernel watcher reports (bgpd.kernel.RouteWatcher), in order


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every route of the table: replaces the consumer's whole view. reason: "start" | "overflow"."""

    routes: tuple[KernelRoute, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RouteAdded:
    """A route was added or changed (it replaces whatever the consumer had at `route.key`)."""

    route: KernelRoute


@dataclass(frozen=True, slots=True)
class RouteRemoved:
    """The route at `route.key` is gone."""

    route: KernelRoute


@dataclass(frozen=True, slots=True)
class LinkLost:
    """Device `index` (`name`) went down, lost carrier, was deleted or renamed, or lost an address.

    `flushed`: the kernel removed, without any notification, every IPv4 route through it (the device went
    down or was deleted, or lost its last IPv4 address). `networks`: its networks before the loss (a next
    hop inside one of them was reached through it): IPv4 ones, then IPv6 ones (link-local fe80::/64
    included) if the watcher watches IPv6. `routes`: the routes it carried, as last reported (not the
    watcher's `own_protocol`); their removals and current state precede this event."""

    index: int
    name: str | None
    routes: tuple[KernelRoute, ...]
    networks: tuple[Prefix, ...] = ()
    flushed: bool = False


@dataclass(frozen=True, slots=True)
class LinkUp:
    """Device `index` came up (or got carrier) or gained an address (of a watched family): next hops
    through it may be reachable again (a route change that failed for lack of one is worth retrying now)."""

    index: int
    name: str | None


RouteEvent = Snapshot | RouteAdded | RouteRemoved | LinkLost | LinkUp
