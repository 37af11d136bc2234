"""Adj-RIB-Out: what bgpd has announced to each peer, and the batched commands that change it.

`set(prefix, wanted)` records what each peer should now have for a prefix (peer -> advert); the
difference with what was last flushed becomes pending work. `flush()` groups the pending work so ExaBGP
gets few commands: one batch per (advertisement, set of peers) for announcements, one per set of peers
for withdrawals - a reflector fanning 200 routes of one client out to 49 others sends one batch, not
9,800 route-peer lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from bgpd.model import Attributes


@dataclass(frozen=True, slots=True)
class Advert:
    next_hop: IPv4Address
    attrs: Attributes


@dataclass(frozen=True, slots=True)
class Batch:
    """One command's worth of work: announce `advert` (or withdraw, when None) for `prefixes` to `peers`."""

    advert: Advert | None
    peers: tuple[IPv4Address, ...]
    prefixes: tuple[IPv4Network, ...]


class AdjRibOut:
    def __init__(self) -> None:
        self._sent: dict[IPv4Address, dict[IPv4Network, Advert]] = defaultdict(dict)
        self._pending: dict[IPv4Network, dict[IPv4Address, Advert | None]] = defaultdict(dict)

    def sent(self, peer: IPv4Address) -> Mapping[IPv4Network, Advert]:
        return self._sent.get(peer, {})

    def count(self, peer: IPv4Address) -> int:
        return len(self._sent.get(peer, {}))

    def set(self, prefix: IPv4Network, wanted: Mapping[IPv4Address, Advert]) -> None:
        """Record what every peer should now have for `prefix` (a peer absent from `wanted`: nothing).

        Pending work is kept relative to what was last flushed, so setting a prefix several times before a
        flush never loses an announcement: only the difference between the flushed and the final state is
        sent."""
        pending = self._pending.get(prefix, {})
        holders = {peer for peer, table in self._sent.items() if prefix in table}
        changes: dict[IPv4Address, Advert | None] = {}
        for peer in holders | set(wanted) | set(pending):
            want = wanted.get(peer)
            if want != self._sent.get(peer, {}).get(prefix):
                changes[peer] = want
        if changes:
            self._pending[prefix] = changes
        else:
            self._pending.pop(prefix, None)

    def forget_peer(self, peer: IPv4Address) -> None:
        """A peer removed from the configuration: nothing more is sent to it."""
        self._sent.pop(peer, None)
        for prefix in list(self._pending):
            self._pending[prefix].pop(peer, None)
            if not self._pending[prefix]:
                del self._pending[prefix]

    def flush(self) -> list[Batch]:
        """The pending changes as batches (withdrawals first); they count as sent from now on."""
        by_change: dict[tuple[Advert | None, frozenset[IPv4Address]], list[IPv4Network]] = defaultdict(list)
        for prefix, changes in self._pending.items():
            per_advert: dict[Advert | None, set[IPv4Address]] = defaultdict(set)
            for peer, advert in changes.items():
                per_advert[advert].add(peer)
                if advert is None:
                    self._sent[peer].pop(prefix, None)
                else:
                    self._sent[peer][prefix] = advert
            for advert, peers in per_advert.items():
                by_change[(advert, frozenset(peers))].append(prefix)
        self._pending.clear()
        batches = [
            Batch(advert, tuple(sorted(peers)), tuple(sorted(prefixes)))
            for (advert, peers), prefixes in by_change.items()
        ]
        batches.sort(key=lambda b: b.advert is not None)
        return batches

    def replay(self, only: IPv4Address | None = None) -> list[Batch]:
        """Everything flushed so far (to every peer, or `only` to one), as batches: for a new ExaBGP that
        starts empty, or a peer added by a reload. Pending changes follow with the next flush."""
        by_change: dict[tuple[Advert, IPv4Address], list[IPv4Network]] = defaultdict(list)
        for peer, table in self._sent.items():
            if only is not None and peer != only:
                continue
            for prefix, advert in table.items():
                by_change[(advert, peer)].append(prefix)
        return [Batch(a, (p,), tuple(sorted(ps))) for (a, p), ps in by_change.items()]
