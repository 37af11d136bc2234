"""The configuration's session-protection keys (issue 14), parsed for `bgpd.config`: TCP-MD5 passwords
(RFC 2385), TTL security (GTSM, RFC 5082) and the per-peer maximum number of prefixes (RFC 4486), with
Calico's and BIRD's meanings.

```yaml
bgp:
  mesh: {enabled: true, nodes: [...], password: "mesh-secret"}  # Calico's nodeMeshPassword
  peers:
    - address: 192.168.1.1
      asn: 65001
      password: "tor-secret"        # Calico's BGPPeer password; BIRD's `password`
      ttl_security: 1               # Calico's ttlSecurity: the peer is at most 1 hop away
      max_prefixes: 1000            # BIRD's `receive limit`, GoBGP's max-prefixes, FRR's maximum-prefix
      max_prefixes_action: restart  # warn | restart (default)
      restart_after: 60             # seconds the session stays down after a restart (default 60)
reflector: {cluster_id: 1.1.1.1, clients: [...], password: "rr-secret"}  # default: bgp.mesh.password
```

``ttl_security: N`` (1..255): packets are sent with TTL (hop limit) 255 and accepted only with TTL >= 256 - N,
on the connecting and on the listening side (Calico renders it as BIRD's ``ttl security on; multihop N``).

Errors are `ConfigError`s naming file, line and key, like the rest of the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from bgpd.config import _V, _Walker

TCP_MD5_MAX_KEY = 80  # TCP_MD5SIG_MAXKEYLEN (linux/tcp.h)
UNQUOTABLE = frozenset("\"'\\\n\r")  # cannot be written into ExaBGP's quoted md5-password
TTL_SECURITY_MAX = 255  # hops: the peer may be up to 255 hops away (minimum TTL 1)
MAX_PREFIXES_MAX = 2**32 - 1
RESTART_AFTER_DEFAULT = 60  # seconds
RESTART_AFTER_MAX = 65535

MaxPrefixesAction = Literal["warn", "restart"]
MAX_PREFIXES_ACTIONS: tuple[MaxPrefixesAction, ...] = get_args(MaxPrefixesAction)


@dataclass(frozen=True, slots=True)
class PrefixLimit:
    """At most ``maximum`` prefixes announced by one peer, counted before import policy as BIRD's ``receive
    limit`` counts them (RFC 4486 Cease subcode 1, Maximum Number of Prefixes Reached).

    Over the limit, ``warn`` logs and counts once per crossing and keeps the session; ``restart`` sends a
    NOTIFICATION Cease / Maximum Number of Prefixes Reached and keeps the session down for ``restart_after``
    seconds."""

    maximum: int
    action: MaxPrefixesAction = "restart"
    restart_after: int = RESTART_AFTER_DEFAULT


def parse_password(w: _Walker, v: _V) -> str | None:
    """A TCP-MD5 key (RFC 2385): a string of at most 80 bytes that ExaBGP can quote; None for null."""
    if w.is_null(v):
        return None
    password = w.string(v, "password")
    if len(password.encode()) > TCP_MD5_MAX_KEY:
        raise w.error(v, f"TCP MD5 password longer than {TCP_MD5_MAX_KEY} bytes")
    if any(c in password for c in UNQUOTABLE):
        raise w.error(v, "password must not contain quotes, backslashes or newlines")
    return password


def parse_ttl_security(w: _Walker, m: dict[str, _V]) -> int | None:
    """``ttl_security`` in hops (1..255), None when absent or null (RFC 5082 off)."""
    if "ttl_security" not in m or w.is_null(m["ttl_security"]):
        return None
    return w.integer(m["ttl_security"], 1, TTL_SECURITY_MAX, "hop count")


def parse_prefix_limit(w: _Walker, m: dict[str, _V]) -> PrefixLimit | None:
    """``max_prefixes``, ``max_prefixes_action`` and ``restart_after`` of one peer; None without a limit.

    The action and the restart time mean nothing without a limit, and a restart time nothing with ``warn``:
    both are errors rather than silently ignored."""
    has_limit = "max_prefixes" in m and not w.is_null(m["max_prefixes"])
    if not has_limit:
        for key in ("max_prefixes_action", "restart_after"):
            if key in m and not w.is_null(m[key]):
                raise w.error(m[key], f"{key} without max_prefixes")
        return None
    maximum = w.integer(m["max_prefixes"], 1, MAX_PREFIXES_MAX, "prefix count")
    action: MaxPrefixesAction = "restart"
    if "max_prefixes_action" in m and not w.is_null(m["max_prefixes_action"]):
        action = w.choice(m["max_prefixes_action"], MAX_PREFIXES_ACTIONS, "action")  # type: ignore[assignment]
    restart_after = RESTART_AFTER_DEFAULT
    if "restart_after" in m and not w.is_null(m["restart_after"]):
        if action != "restart":
            raise w.error(m["restart_after"], "restart_after needs max_prefixes_action: restart")
        restart_after = w.integer(m["restart_after"], 1, RESTART_AFTER_MAX, "seconds")
    return PrefixLimit(maximum=maximum, action=action, restart_after=restart_after)
