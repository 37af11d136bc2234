"""What the engine knows about one configured session (shown by bgpctl and the metrics)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from bgpd.model import Address, Peer
from bgpd.prefix import family as family_of


@dataclass(slots=True)
class PeerStatus:
    """One session: its state, counters and what its last OPEN said."""

    address: Address
    asn: int
    rr_client: bool = False
    router_id: IPv4Address | None = None
    state: str = "idle"
    since: float = field(default_factory=time.time)
    eor: bool = False
    updates_in: int = 0
    received: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    flaps: int = 0
    # RFC 4724, from the peer's last OPEN: its restart time for the session's family (None: no graceful
    # restart) and whether it kept its forwarding state; and whether the current session ends on purpose
    # (a NOTIFICATION received, or bgpd resetting it on reload): then it is no graceful restart
    restart_time: int | None = None
    forwarding_kept: bool = False
    ungraceful: bool = False
    # who its paths come from, one object shared by all of them (rebuilt when the OPEN or config changes it)
    source: Peer | None = field(default=None, repr=False, compare=False)

    @property
    def family(self) -> Literal[4, 6]:
        """The family the session carries: that of its address (Calico: IPv6 routes over IPv6 sessions)."""
        return family_of(self.address)
