"""RFC 4456 reflection rules: which peers receive a reflected route, and with which attributes.

The same for both families (issue 11): peers may have IPv4 or IPv6 addresses, and the next hop of a
reflected route is never changed (an IPv6 route keeps its IPv6 next hop). Router and cluster ids are BGP
identifiers (four octets, written as IPv4 addresses) whatever the family of the routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bgpd.model import Address, Attributes


def targets(source: Address, source_is_client: bool, peers: Mapping[Address, bool]) -> frozenset[Address]:
    """Peers that get a route learned from `source`; `peers` maps every iBGP peer to "is a client".

    RFC 4456 §6: a route from a non-client peer is reflected to all clients; a route from a client is
    reflected to all non-client peers and to all clients except the originating one. Never back to the
    peer it came from (that holds for both cases).
    """
    return frozenset(
        peer for peer, is_client in peers.items() if peer != source and (source_is_client or is_client)
    )


def reflected_attributes(attrs: Attributes, source_router_id: Address, cluster_id: Address) -> Attributes:
    """RFC 4456 §8: ORIGINATOR_ID is set to the originator's router id when absent; the cluster id is
    prepended to CLUSTER_LIST. Next hop, LOCAL_PREF, MED, AS_PATH and communities are kept unchanged."""
    originator = attrs.originator_id if attrs.originator_id is not None else source_router_id
    return replace(attrs, originator_id=originator, cluster_list=(cluster_id, *attrs.cluster_list))


def is_loop(attrs: Attributes, router_id: Address, cluster_id: Address) -> bool:
    """RFC 4456 §8: a route carrying our router id as ORIGINATOR_ID, or our cluster id in CLUSTER_LIST, has
    looped back and must be ignored."""
    return attrs.originator_id == router_id or cluster_id in attrs.cluster_list
