"""Import policy: which routes learned from peers a host may accept (and so install in its kernel).

A route that fails a check is rejected and counted by reason, never stored or installed. The static checks
live here; the dynamic one (a prefix this host announces itself, `OWN_PREFIX`) is applied by the speaker
because it changes as local workloads come and go.

Both families (issue 11) pass the same checks, counted with the same reasons:

- `DEFAULT_ROUTE`: 0.0.0.0/0 or ::/0;
- `NOT_IN_POOL`: outside every pool of the prefix's own family (pools of both families are given
  together; an IPv6 prefix is never inside an IPv4 pool, nor the reverse);
- `CONTAINS_OWN_ADDRESS`: the prefix contains one of this node's addresses (`node.address`,
  `node.address6`);
- `INVALID_NEXT_HOP` (first check on the next hop): its family is not the prefix's, e.g. an IPv4 next hop
  for an IPv6 prefix (the kernel cannot use it, and ExaBGP must never be handed one); no reason of its own;
- `OWN_NEXT_HOP`: the next hop is one of this node's or of its local addresses;
- `INVALID_NEXT_HOP`: IPv4 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 (multicast), 240.0.0.0/4 (with the
  broadcast address); IPv6 :: (unspecified), ::1 (loopback), ::ffff:0:0/96 (IPv4-mapped: an IPv4 next hop
  in IPv6 form), fe80::/10 (link-local: the ExaBGP boundary drops RFC 2545's second, link-local next hop,
  so a route left with a link-local one has no global next hop), ff00::/8 (multicast).

The checks run once per received route, on integers: the prefix as its family-tagged key (`bgpd.prefix.
bits`, whose family is the sign of the key length: no type test), which never covers nor is covered by a
key of the other family; the next hop as an int, compared with the prefix's family once.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from bgpd import prefix
from bgpd.model import Address, Attributes, Prefix

# IPv6 next hops that are never a usable gateway: ranges as (prefix >> shift == value), whole 128-bit ints
_LINK_LOCAL6 = (118, 0xFE80 >> 6)  # fe80::/10
_MULTICAST6 = (120, 0xFF)  # ff00::/8
_MAPPED6 = (32, 0xFFFF)  # ::ffff:0:0/96: an IPv4 next hop in IPv6 form
_UNSPECIFIED6 = 0
_LOOPBACK6 = 1


class Reject(StrEnum):
    """Why a received route was not accepted; the values are metric label values."""

    MALFORMED = "malformed"
    NOT_IN_POOL = "not_in_pool"
    DEFAULT_ROUTE = "default_route"
    CONTAINS_OWN_ADDRESS = "contains_own_address"
    OWN_PREFIX = "own_prefix"
    OWN_NEXT_HOP = "own_next_hop"
    INVALID_NEXT_HOP = "invalid_next_hop"  # also a next hop of the other family than the prefix's
    OWN_ORIGINATOR = "own_originator"  # RFC 4456 §8: ORIGINATOR_ID is our router id
    CLUSTER_LOOP = "cluster_loop"  # RFC 4456 §8: CLUSTER_LIST holds our cluster id
    AS_LOOP = "as_loop"  # RFC 4271 §9.1.2: AS_PATH holds our AS (more often than allow_local_as)
    FILTER = "filter"  # a peer's import filter (Calico BGPFilter) rejected it


def _invalid_next_hop4(hop: int) -> bool:
    """0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 and 240.0.0.0/4 (which holds 255.255.255.255)."""
    top = hop >> 24
    return top == 0 or top == 127 or top >= 224


def _invalid_next_hop6(hop: int) -> bool:
    """::, ::1, ::ffff:0:0/96, fe80::/10 and ff00::/8."""
    return (
        hop <= _LOOPBACK6
        or hop >> _LINK_LOCAL6[0] == _LINK_LOCAL6[1]
        or hop >> _MULTICAST6[0] == _MULTICAST6[1]
        or hop >> _MAPPED6[0] == _MAPPED6[1]
    )


class ImportPolicy:
    """The static import checks of a host speaker, for both families.

    `node_addresses`: this node's own addresses (`node.address` and, dual stack, `node.address6`): a prefix
    containing one is rejected, and so is a next hop equal to one. `local_addresses`: the host's other
    local addresses (a next hop equal to one is rejected). Either may hold addresses of both families."""

    def __init__(
        self,
        pools: Iterable[Prefix],
        node_addresses: Iterable[Address],
        local_addresses: Iterable[Address],
        router_id: Address,
        cluster_id: Address | None = None,
    ) -> None:
        self.pools = tuple(pools)
        self.node_addresses = frozenset(node_addresses)
        self.own_addresses = frozenset(local_addresses) | self.node_addresses
        self.router_id = router_id
        self.cluster_id = cluster_id
        # the same facts as integers, by family (indexed by "is IPv6", the sign of a key's length): this
        # check runs once per received route
        self._pool_bits = tuple(prefix.bits(p) for p in self.pools)
        node_keys = [prefix.host_key(a) for a in self.node_addresses]
        self._node_keys = (
            tuple(k for k in node_keys if k[1] >= 0),
            tuple(k for k in node_keys if k[1] < 0),
        )
        self._own = (
            frozenset(int(a) for a in self.own_addresses if a.version == 4),
            frozenset(int(a) for a in self.own_addresses if a.version == 6),
        )

    def check(self, route: Prefix, next_hop: Address, attrs: Attributes) -> Reject | None:
        """None if the route may be accepted, else the first reason it may not."""
        net = prefix.bits(route)
        length = net[1]
        if length == 0 or length == -129:  # 0.0.0.0/0, ::/0 (an IPv6 key's length is the length - 129)
            return Reject.DEFAULT_ROUTE
        if not any(prefix.covers(pool, net) for pool in self._pool_bits):
            return Reject.NOT_IN_POOL
        v6 = length < 0
        for own in self._node_keys[v6]:
            if prefix.covers(net, own):
                return Reject.CONTAINS_OWN_ADDRESS
        if next_hop.version != (6 if v6 else 4):
            return Reject.INVALID_NEXT_HOP
        hop = int(next_hop)
        if hop in self._own[v6]:
            return Reject.OWN_NEXT_HOP
        if _invalid_next_hop6(hop) if v6 else _invalid_next_hop4(hop):
            return Reject.INVALID_NEXT_HOP
        if attrs.originator_id is not None and attrs.originator_id == self.router_id:
            return Reject.OWN_ORIGINATOR
        if self.cluster_id is not None and self.cluster_id in attrs.cluster_list:
            return Reject.CLUSTER_LOOP
        return None
