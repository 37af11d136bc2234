"""Adj-RIB-In per peer and the Loc-RIB: which paths exist for each prefix and which one(s) win.

`Rib` stores accepted paths by (prefix, peer). Every mutation returns the prefixes whose selection may have
changed; `selection(prefix)` then gives the best path and its ECMP companions (RFC 4271 §9.1.2, §9.1.4).
Prefixes can be held back from selection (`suppress`), which is how a host ignores learned copies of a
prefix it announces itself while still remembering them for when it stops announcing.

One table holds both families (issue 11): prefixes of either family are keys of the same dicts (an IPv4
and an IPv6 prefix never compare equal), and peers of either family index their paths alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.model import Address, Path, Prefix
from bgpd.rib.decision import best_path, multipath, next_hops


@dataclass(frozen=True, slots=True)
class Selection:
    """The Loc-RIB entry of one prefix."""

    best: Path
    paths: tuple[Path, ...]  # ECMP set, includes best

    @property
    def next_hops(self) -> tuple[Address, ...]:
        return next_hops(self.paths)


class Rib:
    """Adj-RIBs-In of all peers, indexed by prefix, with on-demand selection.

    Memory is what limits a host with 100k learned routes, so a prefix with one path (the common case)
    stores that Path itself, and several paths a tuple. The per-peer index (a set of prefixes per peer)
    costs about 40 bytes a path and keeps a session going down from scanning the whole table."""

    def __init__(self) -> None:
        self._by_prefix: dict[Prefix, Path | tuple[Path, ...]] = {}
        self._by_peer: dict[Address, set[Prefix]] = {}
        self._suppressed: set[Prefix] = set()
        self._count = [0, 0, 0, 0, 0, 0, 0]  # paths per family, indexed by 4 and 6

    def __len__(self) -> int:
        return sum(len(prefixes) for prefixes in self._by_peer.values())

    def path_count(self, family: int) -> int:
        """Paths of `family` (4 or 6), counted as they come and go."""
        return self._count[family]

    def prefixes(self) -> Iterable[Prefix]:
        return self._by_prefix.keys()

    def peer_prefixes(self, peer: Address) -> frozenset[Prefix]:
        return frozenset(self._by_peer.get(peer, ()))

    def peer_count(self, peer: Address) -> int:
        """How many paths `peer` has (no copy)."""
        return len(self._by_peer.get(peer, ()))

    def paths(self, prefix: Prefix) -> tuple[Path, ...]:
        entry = self._by_prefix.get(prefix)
        return () if entry is None else _paths(entry)

    def add(self, path: Path) -> bool:
        """Insert or replace the path of `path.peer` for `path.prefix` (implicit withdraw, RFC 4271 §3.1).
        Returns whether anything changed."""
        peer = path.peer.address
        entry = self._by_prefix.get(path.prefix)
        if entry is None:
            self._by_prefix[path.prefix] = path
        else:
            current = _paths(entry)
            for i, old in enumerate(current):
                if old.peer.address == peer:
                    if old == path:
                        return False
                    self._store(path.prefix, (*current[:i], path, *current[i + 1 :]))
                    return True
            self._store(path.prefix, (*current, path))
        self._by_peer.setdefault(peer, set()).add(path.prefix)
        self._count[path.prefix.version] += 1
        return True

    def remove(self, peer: Address, prefix: Prefix) -> bool:
        """Withdraw one path. Returns whether it existed."""
        entry = self._by_prefix.get(prefix)
        if entry is None:
            return False
        current = _paths(entry)
        left = tuple(p for p in current if p.peer.address != peer)
        if len(left) == len(current):
            return False
        self._store(prefix, left)
        self._count[prefix.version] -= 1
        owned = self._by_peer.get(peer)
        if owned is not None:
            owned.discard(prefix)
            if not owned:
                del self._by_peer[peer]
        return True

    def drop_peer(self, peer: Address) -> set[Prefix]:
        """Remove every path of a peer whose session went down; returns the affected prefixes."""
        affected = self._by_peer.pop(peer, set())
        count = self._count
        for prefix in affected:
            entry = self._by_prefix.get(prefix)
            if entry is not None:
                self._store(prefix, tuple(p for p in _paths(entry) if p.peer.address != peer))
                count[prefix.version] -= 1
        return affected

    def _store(self, prefix: Prefix, paths: tuple[Path, ...]) -> None:
        if not paths:
            self._by_prefix.pop(prefix, None)
        else:
            self._by_prefix[prefix] = paths[0] if len(paths) == 1 else paths

    def suppress(self, prefix: Prefix, on: bool) -> None:
        """Hold a prefix back from selection (on=True) or release it."""
        if on:
            self._suppressed.add(prefix)
        else:
            self._suppressed.discard(prefix)

    def is_suppressed(self, prefix: Prefix) -> bool:
        return prefix in self._suppressed

    def selection(self, prefix: Prefix) -> Selection | None:
        """Best path and ECMP set for a prefix, or None when no usable path exists."""
        if prefix in self._suppressed:
            return None
        candidates = self.paths(prefix)
        best = best_path(candidates)
        if best is None:
            return None
        return Selection(best, multipath(candidates, best))


def _paths(entry: Path | tuple[Path, ...]) -> tuple[Path, ...]:
    return (entry,) if isinstance(entry, Path) else entry
