"""Adj-RIB-Out: what bgpd has announced to each peer, and the batched commands that change it.

`set(prefix, wanted)` records what each peer should now have for a prefix (peer -> advert); the
difference with what was last flushed becomes pending work. `flush()` groups the pending work so ExaBGP
gets few commands: one batch per (advertisement, set of peers) for announcements, one per set of peers
for withdrawals - a reflector fanning 200 routes of one client out to 49 others sends one batch, not
9,800 route-peer lines.

Both families (issue 11) in one table: prefixes, peers and next hops of either family are dict keys side
by side (an IPv4 and an IPv6 one never compare equal). The reflected next hop is passed through unchanged,
as for IPv4: an IPv6 route keeps its IPv6 next hop. Batches list peers and prefixes sorted by their
family-tagged keys (`bgpd.prefix.host_key`, `bits`): IPv4 first, then IPv6, each in address order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from bgpd.model import Address, Attributes, Prefix
from bgpd.prefix import bits, host_key


@dataclass(frozen=True, slots=True)
class Advert:
    """What one peer is sent for a prefix. Hashed once: it is a dict key once per route per peer."""

    next_hop: Address
    attrs: Attributes
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.next_hop, self.attrs)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class Batch:
    """One command's worth of work: announce `advert` (or withdraw, when None) for `prefixes` to `peers`."""

    advert: Advert | None
    peers: tuple[Address, ...]
    prefixes: tuple[Prefix, ...]


class AdjRibOut:
    """Flushed state is kept by prefix (`set` compares one prefix's receivers at a time, which a reflector
    does once per route: a per-peer layout made that a scan of every peer); per-peer views are derived."""

    def __init__(self) -> None:
        self._sent: dict[Prefix, dict[Address, Advert]] = {}
        self._counts: Counter[Address] = Counter()
        self._pending: dict[Prefix, dict[Address, Advert | None]] = {}

    def sent(self, peer: Address) -> Mapping[Prefix, Advert]:
        """What `peer` was sent, by prefix (built on demand: for views and tests)."""
        return {prefix: table[peer] for prefix, table in self._sent.items() if peer in table}

    def count(self, peer: Address) -> int:
        return self._counts.get(peer, 0)

    def prefixes(self) -> set[Prefix]:
        """Every prefix some peer was sent or is about to be sent."""
        return set(self._sent) | set(self._pending)

    def set(self, prefix: Prefix, wanted: Mapping[Address, Advert]) -> None:
        """Record what every peer should now have for `prefix` (a peer absent from `wanted`: nothing).

        Pending work is kept relative to what was last flushed, so setting a prefix several times before a
        flush never loses an announcement: only the difference between the flushed and the final state is
        sent."""
        current = self._sent.get(prefix)
        if not current:
            changes: dict[Address, Advert | None] = dict(wanted)
        else:
            changes = {peer: advert for peer, advert in wanted.items() if current.get(peer) != advert}
            for peer in current:
                if peer not in wanted:
                    changes[peer] = None
        if changes:
            self._pending[prefix] = changes
        else:
            self._pending.pop(prefix, None)

    def forget_peer(self, peer: Address) -> None:
        """A peer removed from the configuration: nothing more is sent to it."""
        self._counts.pop(peer, None)
        for table in (self._sent, self._pending):
            for prefix in [p for p, peers in table.items() if peer in peers]:
                del table[prefix][peer]
                if not table[prefix]:
                    del table[prefix]

    def flush(self) -> list[Batch]:
        """The pending changes as batches (withdrawals first); they count as sent from now on."""
        by_change: dict[tuple[Advert | None, frozenset[Address]], list[Prefix]] = defaultdict(list)
        counts = self._counts
        for prefix, changes in self._pending.items():
            current = self._sent.get(prefix)
            if current is None:
                current = self._sent[prefix] = {}
            per_advert: dict[Advert | None, list[Address]] = {}
            for peer, advert in changes.items():
                per_advert.setdefault(advert, []).append(peer)
                if advert is None:
                    if current.pop(peer, None) is not None:
                        counts[peer] -= 1
                else:
                    if peer not in current:
                        counts[peer] += 1
                    current[peer] = advert
            if not current:
                del self._sent[prefix]
            for advert, peers in per_advert.items():
                by_change[(advert, frozenset(peers))].append(prefix)
        self._pending.clear()
        batches = [
            Batch(advert, _sorted_peers(peers), _sorted_prefixes(prefixes))
            for (advert, peers), prefixes in by_change.items()
        ]
        batches.sort(key=lambda b: b.advert is not None)
        return batches

    def replay(self, only: Address | None = None) -> list[Batch]:
        """Everything flushed so far (to every peer, or `only` to one), as batches: for a new ExaBGP that
        starts empty, or a peer added by a reload. Pending changes follow with the next flush."""
        by_change: dict[tuple[Advert, Address], list[Prefix]] = defaultdict(list)
        for prefix, table in self._sent.items():
            for peer, advert in table.items():
                if only is None or peer == only:
                    by_change[(advert, peer)].append(prefix)
        return [Batch(a, (p,), _sorted_prefixes(ps)) for (a, p), ps in by_change.items()]


def _sorted_peers(peers: Collection[Address]) -> tuple[Address, ...]:
    try:
        return tuple(sorted(peers))
    except TypeError:  # both families: ipaddress orders only within one
        return tuple(sorted(peers, key=host_key))


def _sorted_prefixes(prefixes: Collection[Prefix]) -> tuple[Prefix, ...]:
    try:
        return tuple(sorted(prefixes))
    except TypeError:  # both families
        return tuple(sorted(prefixes, key=bits))
