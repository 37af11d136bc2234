"""Export policy: which kernel routes are this host's workload routes, and which prefixes to announce.

Selection (what Felix programs, see BIRD's `learn` of alien routes in Calico):
- a unicast route whose protocol is one of `export.protocols` or whose device matches `export.interfaces`;
- a blackhole/unreachable/prohibit route (an IPAM block) whose protocol is one of `export.protocols`;
- inside an IP pool that allows export; never a route of bgpd's own protocol (those were learned);
- never a route through the IP-in-IP tunnel device (`tunl0`, of any protocol: Calico's BIRD rejects them on
  export): it is this host's way to another node's workloads, not a workload of this host.

Aggregation (as Calico's BIRD filter): a local block announces itself and hides every selected route inside
it; a selected route outside every local block (a borrowed address) is announced as is.

Both families (issue 11), in one table, under the same rules (Calico's BIRD configuration filters IPv6 as
it does IPv4): an IPv6 block (a /122 in Calico) hides the IPv6 /128 workloads inside it exactly as an IPv4
/26 hides its /32s, and a block never hides a prefix of the other family. Pools of both families are
given together; a prefix is only inside a pool of its own family. The family never needs a test:
prefixes are compared through the family-tagged keys of `bgpd.prefix` (`bits`), which never match,
cover or interleave across families.

`ExportTable` keeps this incrementally: each kernel change returns the announce/withdraw delta, and a full
resync (`replace_all`) returns the delta against the previous state, so a dump after ENOBUFS costs no
flapping.

Cost of one change (issue 10): with `blockSize: 32` every workload address is a block, so a host holds one
block per workload and a bulk change adds tens of thousands of them at once. A change therefore never
scans the table: the prefixes inside a block come from a sorted index of the selected prefixes, ordered by
key (network address, then length; IPv4 before IPv6), where they form one contiguous range; adding or
removing a block costs a logarithmic search plus the prefixes actually inside it (none for a /32 or a
/128). Whether a prefix is inside a block (`_covered`) is one set lookup per distinct block length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

from sortedcontainers import SortedKeyList  # type: ignore[import-untyped]

from bgpd import prefix as prefixes
from bgpd.model import Hop, KernelRoute, Prefix

BLOCK_KINDS = frozenset({"blackhole", "unreachable", "prohibit"})
# By key length (`bgpd.prefix.bits`: IPv4 0..32, IPv6 -129..-1, so a negative index reaches the IPv6 part)
# the network mask and the host bits of a key's network. The IPv6 masks keep the family tag: an IPv4 key's
# network masked with one never equals an IPv6 key's network.
_V6_TAG = prefixes.key6(0, 0)[0]
_KEY_MASKS = [prefixes.mask(n) for n in range(33)] + [prefixes.mask(n, 6) | _V6_TAG for n in range(129)]
_KEY_HOSTS = [prefixes.mask(n) ^ 0xFFFFFFFF for n in range(33)] + [
    prefixes.mask(n, 6) ^ (_V6_TAG - 1) for n in range(129)
]


def _sort_key(prefix: Prefix) -> int:
    """The prefix's key `(network, length)` as one int, `network << 8 | (length + 129)` (the key length
    + 129 is 0..161): ordered as the keys are, so the prefixes inside a block are one contiguous range."""
    network, length = prefixes.bits(prefix)
    return (network << 8) | (length + 129)


class _SortedPrefixes(Protocol):
    """The part of sortedcontainers.SortedKeyList that the index uses (the package has no type hints)."""

    def add(self, value: Prefix) -> None: ...

    def remove(self, value: Prefix) -> None: ...

    def irange_key(self, min_key: int, max_key: int) -> Iterator[Prefix]: ...

    def __iter__(self) -> Iterator[Prefix]: ...


@dataclass(frozen=True, slots=True)
class ExportRules:
    protocols: frozenset[int]
    interfaces: tuple[str, ...]
    pools: tuple[Prefix, ...]  # pools whose prefixes may be announced (either family)
    own_protocol: int
    tunnel_device: str = "tunl0"
    _pool_bits: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pool_bits", tuple(prefixes.bits(p) for p in self.pools))

    def selects(self, route: KernelRoute) -> bool:
        if route.protocol == self.own_protocol:
            return False
        net = prefixes.bits(route.prefix)
        if not any(prefixes.covers(pool, net) for pool in self._pool_bits):
            return False
        if route.kind in BLOCK_KINDS:
            return route.protocol in self.protocols
        if route.kind != "unicast":
            return False
        if route.ifname == self.tunnel_device or (route.gateways and self._via_tunnel(route)):
            return False
        if route.protocol in self.protocols:
            return True
        return route.ifname is not None and any(fnmatchcase(route.ifname, g) for g in self.interfaces)

    def _via_tunnel(self, route: KernelRoute) -> bool:
        """Does a next hop of a (multipath) route go through the tunnel device?"""
        device = self.tunnel_device
        return any(isinstance(h, Hop) and h.device == device for h in route.gateways)


@dataclass(slots=True)
class Delta:
    announce: set[Prefix] = field(default_factory=set)
    withdraw: set[Prefix] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.announce or self.withdraw)


class ExportTable:
    """Selected kernel routes and the aggregated set of prefixes to announce."""

    def __init__(self, rules: ExportRules) -> None:
        self.rules = rules
        self._routes: dict[tuple[Prefix, int, int], KernelRoute] = {}  # selected, by kernel key
        # the (table, metric) pairs the selected routes sit at, with their counts: a handful, so the routes
        # at one prefix are found by trying each (`device`) without an index per prefix
        self._slots: Counter[tuple[int, int]] = Counter()
        self.selected_by_family: Counter[int] = Counter()  # len(_routes) per family (4, 6)
        self._count: dict[Prefix, int] = {}  # selected routes per prefix
        # the keys of _count, sorted by key (`_sort_key`): finds the prefixes inside a block by range
        # (sortedcontainers: a list of short lists; about 35 bytes per selected prefix)
        self._sorted: _SortedPrefixes = SortedKeyList(key=_sort_key)
        self._blocks: dict[Prefix, int] = {}  # selected block routes per prefix
        self._block_index: dict[int, set[int]] = {}  # block key length -> key networks
        self._announced: set[Prefix] = set()
        self.announced_by_family: Counter[int] = Counter()  # len(_announced) per family (4, 6)

    @property
    def announced(self) -> frozenset[Prefix]:
        return frozenset(self._announced)

    @property
    def announced_count(self) -> int:
        """len(announced), without copying the set (read per peer on every scrape)."""
        return len(self._announced)

    def is_announced(self, prefix: Prefix) -> bool:
        return prefix in self._announced

    def __len__(self) -> int:
        """Number of selected kernel routes (what the kernel shows us for export)."""
        return len(self._routes)

    @property
    def blocks(self) -> frozenset[Prefix]:
        return frozenset(self._blocks)

    def selected(self) -> Iterable[KernelRoute]:
        return self._routes.values()

    def _covered(self, prefix: Prefix) -> bool:
        """Is `prefix` strictly inside a local block of its family? (One set lookup per distinct block
        length; a block length of the other family never matches, see `_KEY_MASKS`.)"""
        network, length = prefixes.bits(prefix)
        for block_length, networks in self._block_index.items():
            if block_length < length and (network & _KEY_MASKS[block_length]) in networks:
                return True
        return False

    def _index_block(self, key: tuple[int, int], present: bool) -> list[Prefix]:
        """Add a block (by its key) to the block index or take it out; returns the selected prefixes
        strictly inside it, whose announcement this may change."""
        network, length = key
        networks = self._block_index.setdefault(length, set())
        if present:
            networks.add(network)
        else:
            networks.discard(network)
            if not networks:
                del self._block_index[length]
        return self._inside_key(key)

    def _wanted(self, prefix: Prefix) -> bool:
        return prefix in self._count and not self._covered(prefix)

    def _refresh(self, prefixes: Iterable[Prefix], delta: Delta) -> None:
        # The delta accumulates from one consistent state, so an announce and a withdraw of the same
        # prefix within it cancel out instead of both being sent.
        for prefix in prefixes:
            want = self._wanted(prefix)
            if want and prefix not in self._announced:
                self._announced.add(prefix)
                self.announced_by_family[prefix.version] += 1
                if prefix in delta.withdraw:
                    delta.withdraw.discard(prefix)
                else:
                    delta.announce.add(prefix)
            elif not want and prefix in self._announced:
                self._announced.discard(prefix)
                self.announced_by_family[prefix.version] -= 1
                if prefix in delta.announce:
                    delta.announce.discard(prefix)
                else:
                    delta.withdraw.add(prefix)

    def _inside(self, block: Prefix) -> list[Prefix]:
        """The selected prefixes strictly inside `block` (`_inside_key`)."""
        return self._inside_key(prefixes.bits(block))

    def _inside_key(self, key: tuple[int, int]) -> list[Prefix]:
        """The selected prefixes strictly inside the block with key `key`: those of its family whose
        network address lies in the block and that are longer. In key order they are one range: from
        (block network, length + 1) (the block itself and shorter prefixes at its address sort before) to
        (last address, any length); a prefix at any other address of the block is necessarily longer than
        the block, and no prefix of the other family sorts in between. O(log n + found)."""
        network, length = key
        host = _KEY_HOSTS[length]
        if not host:  # a /32 or a /128
            return []
        first = (network << 8) | (length + 130)
        return list(self._sorted.irange_key(first, ((network | host) << 8) | 255))

    def _count_add(self, prefix: Prefix) -> None:
        count = self._count.get(prefix, 0)
        self._count[prefix] = count + 1
        if not count:
            self._sorted.add(prefix)

    def _count_remove(self, prefix: Prefix) -> None:
        count = self._count[prefix] - 1
        if count:
            self._count[prefix] = count
        else:
            del self._count[prefix]
            self._sorted.remove(prefix)

    def add(self, route: KernelRoute, delta: Delta | None = None) -> Delta:
        """A kernel route appeared or was replaced (same kernel key)."""
        delta = Delta() if delta is None else delta
        key = route.key
        old = self._routes.get(key)
        if old is not None:
            self.remove(old, delta)
        if not self.rules.selects(route):
            return delta
        self._routes[key] = route
        self._slots[key[1:]] += 1
        prefix = route.prefix
        self.selected_by_family[prefix.version] += 1
        self._count_add(prefix)
        affected = [prefix]
        if route.kind in BLOCK_KINDS:
            blocks = self._blocks.get(prefix, 0) + 1
            self._blocks[prefix] = blocks
            if blocks == 1:
                affected += self._index_block(prefixes.bits(prefix), True)
        self._refresh(affected, delta)
        return delta

    def remove(self, route: KernelRoute, delta: Delta | None = None) -> Delta:
        """A kernel route disappeared (matched by its kernel key)."""
        delta = Delta() if delta is None else delta
        old = self._routes.pop(route.key, None)
        if old is None:
            return delta
        slot = route.key[1:]
        self._slots[slot] -= 1
        if not self._slots[slot]:
            del self._slots[slot]
        prefix = old.prefix
        self.selected_by_family[prefix.version] -= 1
        self._count_remove(prefix)
        affected = [prefix]
        if old.kind in BLOCK_KINDS:
            blocks = self._blocks[prefix] - 1
            if blocks:
                self._blocks[prefix] = blocks
            else:
                del self._blocks[prefix]
                affected += self._index_block(prefixes.bits(prefix), False)
        self._refresh(affected, delta)
        return delta

    def device(self, prefix: Prefix) -> str | None:
        """The device of a selected route at `prefix` (a workload's veth), None if there is none or it
        has none (an IPAM block's blackhole). For export filters' `interface` condition."""
        routes = self._routes
        for table, metric in sorted(self._slots, key=lambda slot: slot[1]):  # the kernel's own choice first
            route = routes.get((prefix, table, metric))
            if route is not None and route.ifname is not None:
                return route.ifname
        return None

    def replace_all(self, routes: Iterable[KernelRoute], delta: Delta | None = None) -> Delta:
        """Make the table equal to a fresh dump; returns (or adds to `delta`) only the real differences."""
        delta = Delta() if delta is None else delta
        by_key = {r.key: r for r in routes}  # the last route at a key wins, as when fed one by one
        fresh = {k: r for k, r in by_key.items() if self.rules.selects(r)}
        for key in [k for k in self._routes if k not in fresh]:
            self.remove(self._routes[key], delta)
        for key, route in fresh.items():
            if self._routes.get(key) != route:
                self.add(route, delta)
        return delta

    def set_rules(self, rules: ExportRules, all_routes: Iterable[KernelRoute]) -> Delta:
        """Re-evaluate every kernel route under new rules (config reload)."""
        self.rules = rules
        return self.replace_all(all_routes)
