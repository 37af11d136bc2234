"""The engine's two outputs: kernel FIB operations and Adj-RIB-Out changes; and, beside them, the few
session operations it asks of the speaker (`SessionOp`: close a session, keep sessions held down).

Every Adj-RIB-Out change is of one address family (4 or 6): ExaBGP is never handed an IPv4 next hop for
an IPv6 route. `peers` None means every session of that family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bgpd.model import Address, Attributes, Hop, Prefix

Family = Literal[4, 6]

# A route to install with these next hops (sorted; an onlink one through a device, Calico's IP-in-IP, is a
# `Hop`), or to delete (None); bgpd's own protocol only.
KernelOp = tuple[Prefix, tuple[Address | Hop, ...] | None]


@dataclass(frozen=True, slots=True)
class Announce:
    """Advertise `prefixes` (one family, sorted) with `next_hop` and `attrs` to `peers`."""

    family: Family
    prefixes: Sequence[Prefix]
    next_hop: Address
    attrs: Attributes
    peers: tuple[Address, ...] | None = None


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Withdraw `prefixes` (one family, sorted) from `peers`."""

    family: Family
    prefixes: Sequence[Prefix]
    peers: tuple[Address, ...] | None = None


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """Our table of `family` is complete for `peer` (RFC 4724 §2)."""

    peer: Address
    family: Family


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """Ask `peer` to send its table of `family` again (RFC 2918): the import policy changed."""

    peer: Address
    family: Family


OutChange = Announce | Withdraw | EndOfRib | RouteRefresh


@dataclass(frozen=True, slots=True)
class Teardown:
    """Close the session with `peer` by a NOTIFICATION Cease / `subcode` (RFC 4486 §4: 1 Maximum Number of
    Prefixes Reached, 5 Connection Rejected)."""

    peer: Address
    subcode: int


@dataclass(frozen=True, slots=True)
class HoldDown:
    """Run every configured session but `peers` (held down after a maximum-prefixes reset); sent again when
    the speaker may not have applied it yet (it came back while held, or never showed up once released)."""

    peers: frozenset[Address]


SessionOp = Teardown | HoldDown
