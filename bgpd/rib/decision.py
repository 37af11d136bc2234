"""The BGP decision process: which of several paths to one prefix is best, and which are equal-cost.

RFC 4271 §9.1.2.2 breaks ties in a fixed order; RFC 4456 §9 adds ORIGINATOR_ID and CLUSTER_LIST. MED is only
comparable between paths from the same neighboring AS, which makes a plain pairwise comparison depend on the
order paths arrived in. We use "deterministic MED" (as BIRD's `deterministic med` and GoBGP do): paths are
grouped by neighboring AS, each group's best is found with MED, and the group winners are compared without
MED. The result depends only on the set of paths, never on their order.

Both families (issue 11) go through the same steps. Where a step compares addresses (router ids, peer
addresses) it compares their family-tagged keys (`bgpd.prefix.host_key`, as one int): an IPv4 and an IPv6
address never tie (an IPv4 one sorts first), so the order-independence holds when paths of one prefix
come from peers of both families. ECMP next hops are sorted within their family as the kernel lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bgpd.model import Address, Path
from bgpd.prefix import host_key, key6

DEFAULT_LOCAL_PREF = 100  # RFC 4271 §5.1.5: what an iBGP speaker assumes when none is sent
MISSING_MED = 0  # RFC 4271 §9.1.2.2 c: a missing MED is the lowest possible value


def local_pref(path: Path) -> int:
    return DEFAULT_LOCAL_PREF if path.attrs.local_pref is None else path.attrs.local_pref


def neighbor_as(path: Path) -> int:
    """The AS a path was received from: the leftmost AS_PATH entry, or our own AS (0) for iBGP-local."""
    return path.attrs.as_path[0] if path.attrs.as_path else 0


def med(path: Path) -> int:
    return MISSING_MED if path.attrs.med is None else path.attrs.med


def router_id(path: Path) -> Address:
    """RFC 4456 §9: ORIGINATOR_ID stands in for the router id when present."""
    if path.attrs.originator_id is not None:
        return path.attrs.originator_id
    return path.peer.router_id if path.peer.router_id is not None else path.peer.address


_V6_TAG = key6(0, 0)[0]


def _address_key(address: Address) -> int:
    """`bgpd.prefix.host_key(address)` as one int, the tagged network (a host key's length adds nothing):
    ordered as those keys are, IPv4 first. Read from ipaddress's own attributes: it is built for two
    addresses of every path compared, and `host_key` takes three times as long (int() alone is slower)."""
    plain: Any = address
    key: int = plain._ip if plain._version == 4 else plain._ip | _V6_TAG
    return key


def _key_without_med(path: Path) -> tuple[int, int, int, int, int, int, int]:
    """Sort key, smaller is better, for every step except MED."""
    return (
        -local_pref(path),  # 1. RFC 4271 §9.1.1 / §9.1.2.1: highest LOCAL_PREF (degree of preference)
        len(path.attrs.as_path),  # 2. §9.1.2.2 a: shortest AS_PATH
        int(path.attrs.origin),  # 3. §9.1.2.2 b: lowest ORIGIN (IGP < EGP < INCOMPLETE)
        # 4. §9.1.2.2 c: lowest MED among paths from the same neighbor AS - applied in best_path()
        0 if path.peer.ebgp else 1,  # 5. §9.1.2.2 d: eBGP over iBGP
        # 6. §9.1.2.2 e: lowest IGP cost to the next hop - all next hops are on-link here: equal
        _address_key(router_id(path)),  # 7. §9.1.2.2 f + RFC 4456 §9: lowest ORIGINATOR_ID / BGP Identifier
        len(path.attrs.cluster_list),  # 8. RFC 4456 §9: shortest CLUSTER_LIST
        _address_key(path.peer.address),  # 9. §9.1.2.2 g: lowest peer address
    )


_Key = tuple[int, ...]


def _key_with_med(path: Path) -> _Key:
    key = _key_without_med(path)
    return (*key[:3], med(path), *key[3:])


def best_path(paths: Iterable[Path]) -> Path | None:
    """The best of `paths` (RFC 4271 §9.1.2), independent of their order; None for no paths.

    A path's key (with MED) is built at most once, and none at all for a single path (the common case:
    in a full mesh each prefix comes from one peer)."""
    winners: dict[int, Path] = {}
    keys: dict[int, _Key] = {}  # the key of winners[group], once it has been compared
    for path in paths:
        group = neighbor_as(path)
        current = winners.get(group)
        if current is None:
            winners[group] = path
            continue
        held = keys.get(group)
        if held is None:
            held = keys[group] = _key_with_med(current)
        key = _key_with_med(path)
        if key < held:
            winners[group] = path
            keys[group] = key
    if len(winners) == 1:
        for path in winners.values():
            return path
    if not winners:
        return None
    return min(winners.values(), key=_key_without_med)


def _multipath_key(path: Path) -> tuple[int, int, int, int]:
    # Steps 1-3 and 5: paths equal here are equally good to forward over (BIRD's `merge paths`).
    return (-local_pref(path), len(path.attrs.as_path), int(path.attrs.origin), 0 if path.peer.ebgp else 1)


def multipath(paths: Sequence[Path], best: Path) -> tuple[Path, ...]:
    """The paths usable together with `best` for ECMP: equal up to the IGP-cost step, and with the same MED
    when they come from the same neighbor AS. Always contains `best`; ordered by peer address (IPv4 peers
    first)."""
    want = _multipath_key(best)
    chosen = [
        p
        for p in paths
        if _multipath_key(p) == want and (neighbor_as(p) != neighbor_as(best) or med(p) == med(best))
    ]
    if len(chosen) == 1:
        return (chosen[0],)
    return tuple(sorted(chosen, key=lambda p: _address_key(p.peer.address)))


_NEXT_HOP_SETS: dict[tuple[Address, ...], tuple[Address, ...]] = {}
_NEXT_HOP_SETS_MAX = 4096


def next_hops(paths: Iterable[Path]) -> tuple[Address, ...]:
    """Distinct next hops of a multipath set, sorted (the kernel's RTA_MULTIPATH order: by address within a
    family; import policy admits only next hops of the prefix's family, and a set of both, which ipaddress
    cannot order, is sorted by key, IPv4 first). The same set is returned as the same tuple object: a host
    has few distinct next-hop sets and 100k routes using them."""
    distinct = {p.next_hop for p in paths}
    try:
        hops = tuple(sorted(distinct))
    except TypeError:  # IPv4 and IPv6 together
        hops = tuple(sorted(distinct, key=host_key))
    shared = _NEXT_HOP_SETS.get(hops)
    if shared is not None:
        return shared
    if len(_NEXT_HOP_SETS) < _NEXT_HOP_SETS_MAX:
        _NEXT_HOP_SETS[hops] = hops
    return hops
