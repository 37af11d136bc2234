"""What the engine knows about one configured session (shown by bgpctl and the metrics)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from bgpd.config_session import PrefixLimit
from bgpd.model import Address, Peer, Prefix
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
    # maximum prefixes (RFC 4486, `bgpd.engine.limits`): the limit; the prefixes it announced that import
    # rejected and that it has not withdrawn (counted with its paths in the RIB); whether the count is above
    # the limit now; how often it went above; until when (epoch) the session is held down after a reset
    prefix_limit: PrefixLimit | None = None
    rejected_held: set[Prefix] = field(default_factory=set, repr=False, compare=False)
    over_limit: bool = False
    limit_hits: int = 0
    held_until: float | None = None
    # why the session is not Established (`bgpd.engine.establish`; None: it is, or not for long), and the
    # last NOTIFICATION or failed connection it had (kept after it is Established again, as BIRD's
    # "Last error")
    reason: str | None = None
    last_error: str | None = None

    @property
    def family(self) -> Literal[4, 6]:
        """The family the session carries: that of its address (Calico: IPv6 routes over IPv6 sessions)."""
        return family_of(self.address)
