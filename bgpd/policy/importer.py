"""Import policy: which routes learned from peers a host may accept (and so install in its kernel).

A route that fails a check is rejected and counted by reason, never stored or installed. The static checks
live here; the dynamic one (a prefix this host announces itself, `OWN_PREFIX`) is applied by the speaker
because it changes as local workloads come and go.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network

from bgpd import prefix
from bgpd.model import Attributes

_INVALID_NEXT_HOPS = tuple(
    prefix.bits(IPv4Network(n)) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")
)


class Reject(StrEnum):
    """Why a received route was not accepted; the values are metric label values."""

    MALFORMED = "malformed"
    NOT_IN_POOL = "not_in_pool"
    DEFAULT_ROUTE = "default_route"
    CONTAINS_OWN_ADDRESS = "contains_own_address"
    OWN_PREFIX = "own_prefix"
    OWN_NEXT_HOP = "own_next_hop"
    INVALID_NEXT_HOP = "invalid_next_hop"
    OWN_ORIGINATOR = "own_originator"  # RFC 4456 §8: ORIGINATOR_ID is our router id
    CLUSTER_LOOP = "cluster_loop"  # RFC 4456 §8: CLUSTER_LIST holds our cluster id


class ImportPolicy:
    """The static import checks of a host speaker."""

    def __init__(
        self,
        pools: Iterable[IPv4Network],
        underlay: IPv4Address,
        own_addresses: Iterable[IPv4Address],
        router_id: IPv4Address,
        cluster_id: IPv4Address | None = None,
    ) -> None:
        self.pools = tuple(pools)
        self.underlay = underlay
        self.own_addresses = frozenset(own_addresses) | {underlay}
        self.router_id = router_id
        self.cluster_id = cluster_id
        # the same facts as integers: this check runs once per received route
        self._pool_bits = tuple(prefix.bits(p) for p in self.pools)
        self._underlay = int(underlay)
        self._own = frozenset(int(a) for a in self.own_addresses)

    def check(self, route: IPv4Network, next_hop: IPv4Address, attrs: Attributes) -> Reject | None:
        """None if the route may be accepted, else the first reason it may not."""
        net = prefix.bits(route)
        if net[1] == 0:
            return Reject.DEFAULT_ROUTE
        if not any(prefix.covers(pool, net) for pool in self._pool_bits):
            return Reject.NOT_IN_POOL
        if prefix.covers(net, (self._underlay, 32)):
            return Reject.CONTAINS_OWN_ADDRESS
        hop = int(next_hop)
        if hop in self._own:
            return Reject.OWN_NEXT_HOP
        if any(prefix.covers(bad, (hop, 32)) for bad in _INVALID_NEXT_HOPS) or hop == 0xFFFFFFFF:
            return Reject.INVALID_NEXT_HOP
        if attrs.originator_id is not None and attrs.originator_id == self.router_id:
            return Reject.OWN_ORIGINATOR
        if self.cluster_id is not None and self.cluster_id in attrs.cluster_list:
            return Reject.CLUSTER_LOOP
        return None
