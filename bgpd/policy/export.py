"""Export policy: which kernel routes are this host's workload routes, and which prefixes to announce.

Selection (what Felix programs, see BIRD's `learn` of alien routes in Calico):
- a unicast route whose protocol is one of `export.protocols` or whose device matches `export.interfaces`;
- a blackhole/unreachable/prohibit route (an IPAM block) whose protocol is one of `export.protocols`;
- inside an IP pool that allows export; never a route of bgpd's own protocol (those were learned).

Aggregation (as Calico's BIRD filter): a local block announces itself and hides every selected route inside
it; a selected route outside every local block (a borrowed address) is announced as is.

`ExportTable` keeps this incrementally: each kernel change returns the announce/withdraw delta, and a full
resync (`replace_all`) returns the delta against the previous state, so a dump after ENOBUFS costs no
flapping.

Cost of one change (issue 10): with `blockSize: 32` every workload address is a block, so a host holds one
block per workload and a bulk change adds tens of thousands of them at once. A change therefore never
scans the table: the prefixes inside a block come from a sorted index of the selected prefixes, ordered by
(network address, length), where they form one contiguous range; adding or removing a block costs a
logarithmic search plus the prefixes actually inside it (none for a /32). Whether a prefix is inside a
block (`_covered`) is one set lookup per distinct block length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from ipaddress import IPv4Network
from typing import Protocol

from sortedcontainers import SortedKeyList  # type: ignore[import-untyped]

from bgpd import prefix as prefixes
from bgpd.model import KernelRoute

BLOCK_KINDS = frozenset({"blackhole", "unreachable", "prohibit"})
_MASKS = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]


def _sort_key(prefix: IPv4Network) -> int:
    """(network address, length) as one int: the prefixes inside a block are one contiguous range of it."""
    return (prefixes.network_int(prefix) << 6) | prefix.prefixlen


class _SortedPrefixes(Protocol):
    """The part of sortedcontainers.SortedKeyList that the index uses (the package has no type hints)."""

    def add(self, value: IPv4Network) -> None: ...

    def remove(self, value: IPv4Network) -> None: ...

    def irange_key(self, min_key: int, max_key: int) -> Iterator[IPv4Network]: ...


@dataclass(frozen=True, slots=True)
class ExportRules:
    protocols: frozenset[int]
    interfaces: tuple[str, ...]
    pools: tuple[IPv4Network, ...]  # pools whose prefixes may be announced
    own_protocol: int
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
        if route.protocol in self.protocols:
            return True
        return route.ifname is not None and any(fnmatchcase(route.ifname, g) for g in self.interfaces)


@dataclass(slots=True)
class Delta:
    announce: set[IPv4Network] = field(default_factory=set)
    withdraw: set[IPv4Network] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.announce or self.withdraw)


class ExportTable:
    """Selected kernel routes and the aggregated set of prefixes to announce."""

    def __init__(self, rules: ExportRules) -> None:
        self.rules = rules
        self._routes: dict[tuple[IPv4Network, int, int], KernelRoute] = {}  # selected, by kernel key
        self._count: dict[IPv4Network, int] = {}  # selected routes per prefix
        # the keys of _count, sorted by (network, length): finds the prefixes inside a block by range
        # (sortedcontainers: a list of short lists; about 35 bytes per selected prefix)
        self._sorted: _SortedPrefixes = SortedKeyList(key=_sort_key)
        self._blocks: dict[IPv4Network, int] = {}  # selected block routes per prefix
        self._block_index: dict[int, set[int]] = {}  # block prefix length -> network addresses
        self._announced: set[IPv4Network] = set()

    @property
    def announced(self) -> frozenset[IPv4Network]:
        return frozenset(self._announced)

    @property
    def announced_count(self) -> int:
        """len(announced), without copying the set (read per peer on every scrape)."""
        return len(self._announced)

    def is_announced(self, prefix: IPv4Network) -> bool:
        return prefix in self._announced

    def __len__(self) -> int:
        """Number of selected kernel routes (what the kernel shows us for export)."""
        return len(self._routes)

    @property
    def blocks(self) -> frozenset[IPv4Network]:
        return frozenset(self._blocks)

    def selected(self) -> Iterable[KernelRoute]:
        return self._routes.values()

    def _covered(self, prefix: IPv4Network) -> bool:
        """Is `prefix` strictly inside a local block? (One set lookup per distinct block length.)"""
        address = prefixes.network_int(prefix)
        for length, networks in self._block_index.items():
            if length < prefix.prefixlen and (address & _MASKS[length]) in networks:
                return True
        return False

    def _index_block(self, block: IPv4Network, present: bool) -> None:
        networks = self._block_index.setdefault(block.prefixlen, set())
        if present:
            networks.add(prefixes.network_int(block))
        else:
            networks.discard(prefixes.network_int(block))
            if not networks:
                del self._block_index[block.prefixlen]

    def _wanted(self, prefix: IPv4Network) -> bool:
        return prefix in self._count and not self._covered(prefix)

    def _refresh(self, prefixes: Iterable[IPv4Network], delta: Delta) -> None:
        # The delta accumulates from one consistent state, so an announce and a withdraw of the same
        # prefix within it cancel out instead of both being sent.
        for prefix in prefixes:
            want = self._wanted(prefix)
            if want and prefix not in self._announced:
                self._announced.add(prefix)
                if prefix in delta.withdraw:
                    delta.withdraw.discard(prefix)
                else:
                    delta.announce.add(prefix)
            elif not want and prefix in self._announced:
                self._announced.discard(prefix)
                if prefix in delta.announce:
                    delta.announce.discard(prefix)
                else:
                    delta.withdraw.add(prefix)

    def _inside(self, block: IPv4Network) -> list[IPv4Network]:
        """The selected prefixes strictly inside `block`: those whose network address lies in the block and
        that are longer. In (network, length) order they are one range: from (block network, length + 1)
        (the block itself and shorter prefixes at its address sort before) to (last address, 32); a
        prefix at any other address of the block is necessarily longer than the block. O(log n + found)."""
        length = block.prefixlen
        if length == 32:
            return []
        network = prefixes.network_int(block)
        last = network | (~_MASKS[length] & 0xFFFFFFFF)
        return list(self._sorted.irange_key((network << 6) | (length + 1), (last << 6) | 32))

    def _count_add(self, prefix: IPv4Network) -> None:
        count = self._count.get(prefix, 0)
        self._count[prefix] = count + 1
        if not count:
            self._sorted.add(prefix)

    def _count_remove(self, prefix: IPv4Network) -> None:
        count = self._count[prefix] - 1
        if count:
            self._count[prefix] = count
        else:
            del self._count[prefix]
            self._sorted.remove(prefix)

    def add(self, route: KernelRoute, delta: Delta | None = None) -> Delta:
        """A kernel route appeared or was replaced (same kernel key)."""
        delta = Delta() if delta is None else delta
        if route.key in self._routes:
            self.remove(self._routes[route.key], delta)
        if not self.rules.selects(route):
            return delta
        self._routes[route.key] = route
        self._count_add(route.prefix)
        affected = [route.prefix]
        if route.kind in BLOCK_KINDS:
            self._blocks[route.prefix] = self._blocks.get(route.prefix, 0) + 1
            if self._blocks[route.prefix] == 1:
                self._index_block(route.prefix, True)
                affected += self._inside(route.prefix)
        self._refresh(affected, delta)
        return delta

    def remove(self, route: KernelRoute, delta: Delta | None = None) -> Delta:
        """A kernel route disappeared (matched by its kernel key)."""
        delta = Delta() if delta is None else delta
        old = self._routes.pop(route.key, None)
        if old is None:
            return delta
        self._count_remove(old.prefix)
        affected = [old.prefix]
        if old.kind in BLOCK_KINDS:
            self._blocks[old.prefix] -= 1
            if not self._blocks[old.prefix]:
                del self._blocks[old.prefix]
                self._index_block(old.prefix, False)
                affected += self._inside(old.prefix)
        self._refresh(affected, delta)
        return delta

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
