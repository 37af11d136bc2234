"""The configuration's BGP policy keys (issue 13), parsed for `bgpd.config`: Calico's BGPConfiguration
communities and prefix advertisements, BGPFilter, and the per-peer eBGP fields of BGPPeer, in this config's
snake_case with Calico's meanings.

```yaml
bgp:
  communities: [{name: rack-a, value: "64512:100"}, {name: big, value: "64512:1:2"}]
  prefix_advertisements: [{cidr: 10.20.0.0/16, communities: [rack-a, "64512:300"]}]
  peers:
    - {address: 192.168.100.1, asn: 65001, local_asn: 64512, next_hop_mode: auto, allow_local_as: 0,
       keepalive_time: 30, filters: [tor-in-out]}
filters:
  - name: tor-in-out
    export_v4: [{action: Accept, match_operator: In, cidr: 10.20.0.0/16, prefix_length: {max: 26}}]
    import_v4: [{action: Reject, match_operator: NotIn, cidr: 10.0.0.0/8}]
```

Community values are standard (`a:b`, RFC 1997, each 0..65535) or large (`a:b:c`, RFC 8092, each
0..4294967295), as Calico writes them; a prefix advertisement names communities from `bgp.communities` or
writes the value itself. Names resolve at parse time: the result holds values only. Enumerations accept
Calico's spellings (`Accept`, `NotIn`, `RemotePeers`, `Auto`) case-insensitively and normalize to them.

Errors are `ConfigError`s naming file, line and key, like the rest of the configuration; a filter rule is
checked by `bgpd.policy.filters.validate_rule`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Literal, get_args

from bgpd.policy.filters import Action, BGPFilter, FilterRule, MatchOperator, RuleSource, validate_rule
from bgpd.spelling import did_you_mean

if TYPE_CHECKING:
    from bgpd.config import _V, _Walker

NextHopMode = Literal["auto", "self", "keep"]
NEXT_HOP_MODES: tuple[NextHopMode, ...] = get_args(NextHopMode)
ALLOW_LOCAL_AS_MAX = 255  # BIRD's `allow local as N`; Calico's numAllowedLocalASNumbers
KEEPALIVE_MAX = 21845  # 65535 / 3: a keepalive time below any hold time it can go with

_COMMUNITY_KEYS = ("name", "value")
_ADVERTISEMENT_KEYS = ("cidr", "communities")
_FILTER_KEYS = ("name", "export_v4", "import_v4", "export_v6", "import_v6")
_RULE_KEYS = ("action", "match_operator", "cidr", "prefix_length", "source", "interface")
_LENGTH_KEYS = ("min", "max")
_STANDARD = re.compile(r"^(\d+):(\d+)$")
_LARGE = re.compile(r"^(\d+):(\d+):(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True, slots=True)
class PrefixAdvertisement:
    """Every exported route inside (subnet-or-equal) ``cidr`` carries ``communities`` (values, standard
    ``a:b`` and large ``a:b:c``, in the order written)."""

    cidr: IPv4Network | IPv6Network
    communities: tuple[str, ...]


def community_value(text: str) -> str | None:
    """``text`` as a normalized community value (``64512:100``, ``64512:1:2``), None if it is not one."""
    text = text.strip()
    standard = _STANDARD.match(text)
    if standard:
        a, b = (int(x) for x in standard.groups())
        return f"{a}:{b}" if a <= 0xFFFF and b <= 0xFFFF else None
    large = _LARGE.match(text)
    if large:
        parts = [int(x) for x in large.groups()]
        return ":".join(map(str, parts)) if all(p <= 0xFFFFFFFF for p in parts) else None
    return None


def is_large(value: str) -> bool:
    """Is a normalized community value a large one (RFC 8092, three parts)?"""
    return value.count(":") == 2


def parse_communities(w: _Walker, v: _V) -> dict[str, str]:
    """``bgp.communities``: name -> value."""
    named: dict[str, str] = {}
    for item in w.sequence(v):
        m = w.mapping(item, _COMMUNITY_KEYS, required=_COMMUNITY_KEYS, null_ok=False)
        name = w.string(m["name"], "community name").strip()
        if not _NAME.match(name):
            raise w.error(
                m["name"], f"community name {name!r}: letters, digits, '.', '_' and '-', at most 63"
            )
        if community_value(name) is not None:
            raise w.error(m["name"], f"community name {name!r} reads as a value; give it a name")
        if name in named:
            raise w.error(m["name"], f"duplicate community name {name!r}")
        named[name] = _value(w, m["value"])
    return named


def _value(w: _Walker, v: _V) -> str:
    text = w.address_text(v, "community value")  # unquoted 64512:100 is a YAML 1.1 sexagesimal number
    value = community_value(text)
    if value is None:
        raise w.error(
            v,
            f"invalid community {text.strip()!r}: a:b (standard, each 0..65535) or a:b:c (large, each "
            "0..4294967295)",
        )
    return value


def parse_prefix_advertisements(w: _Walker, v: _V, named: dict[str, str]) -> tuple[PrefixAdvertisement, ...]:
    """``bgp.prefix_advertisements``, community names resolved through ``named``."""
    out: list[PrefixAdvertisement] = []
    for item in w.sequence(v):
        m = w.mapping(item, _ADVERTISEMENT_KEYS, required=_ADVERTISEMENT_KEYS, null_ok=False)
        cidr = w.cidr(m["cidr"])
        values: list[str] = []
        for entry in w.sequence(m["communities"]):
            text = w.address_text(entry, "community")
            value = community_value(text)
            if value is None:
                name = text.strip()
                if name not in named:
                    hint = did_you_mean(name, named)
                    raise w.error(
                        entry,
                        f"unknown community {name!r}: a name from bgp.communities or a value a:b / a:b:c"
                        + hint,
                    )
                value = named[name]
            if value not in values:
                values.append(value)
        if not values:
            raise w.error(m["communities"], "at least one community")
        out.append(PrefixAdvertisement(cidr, tuple(values)))
    return tuple(out)


def parse_filters(w: _Walker, v: _V) -> tuple[BGPFilter, ...]:
    """The top-level ``filters`` (Calico's BGPFilter resources)."""
    out: list[BGPFilter] = []
    for item in w.sequence(v):
        m = w.mapping(item, _FILTER_KEYS, required=("name",), null_ok=False)
        name = w.string(m["name"], "filter name").strip()
        if not _NAME.match(name):
            raise w.error(m["name"], f"filter name {name!r}: letters, digits, '.', '_' and '-', at most 63")
        if any(f.name == name for f in out):
            raise w.error(m["name"], f"duplicate filter {name!r}")
        lists: dict[str, tuple[FilterRule, ...]] = {}
        for key in _FILTER_KEYS[1:]:
            family: Literal[4, 6] = 4 if key.endswith("v4") else 6
            lists[key] = tuple(_rule(w, r, family) for r in w.sequence(m[key])) if key in m else ()
        out.append(
            BGPFilter(name, lists["export_v4"], lists["import_v4"], lists["export_v6"], lists["import_v6"])
        )
    return tuple(out)


def _rule(w: _Walker, v: _V, family: Literal[4, 6]) -> FilterRule:
    m = w.mapping(v, _RULE_KEYS, required=("action",), null_ok=False)
    action: Action = w.choice(m["action"], get_args(Action), "action")  # type: ignore[assignment]
    operator: MatchOperator | None = None
    if "match_operator" in m:
        operator = w.choice(m["match_operator"], get_args(MatchOperator), "match_operator")  # type: ignore[assignment]
    cidr = w.cidr(m["cidr"]) if "cidr" in m else None
    low = high = None
    if "prefix_length" in m:
        lm = w.mapping(m["prefix_length"], _LENGTH_KEYS, null_ok=False)
        top = 32 if family == 4 else 128
        low = w.get(lm, "min", lambda x: w.integer(x, 0, top, "prefix length"), None)
        high = w.get(lm, "max", lambda x: w.integer(x, 0, top, "prefix length"), None)
    source: RuleSource | None = None
    if "source" in m:
        source = w.choice(m["source"], get_args(RuleSource), "source")  # type: ignore[assignment]
    interface = w.string(m["interface"], "interface pattern").strip() if "interface" in m else None
    rule = FilterRule(action, cidr, operator, low, high, source, interface)
    problem = validate_rule(rule, family)
    if problem is not None:
        key = problem.split(" ", 1)[0]  # the problem names the key it is about first
        if key == "cidr" and "is IPv" in problem:
            other = "v6" if family == 4 else "v4"
            problem += f" (an IPv{10 - family} cidr goes in the {other} list of the same direction)"
        raise w.error(m.get(key, v), problem)
    return rule


def parse_peer_policy(
    w: _Walker, m: dict[str, _V], hold_time: int | None, filters: dict[str, BGPFilter]
) -> tuple[int | None, NextHopMode, int, int | None, tuple[str, ...]]:
    """A peer's ``local_asn``, ``next_hop_mode``, ``allow_local_as``, ``keepalive_time`` and ``filters``
    (names checked against the top-level ``filters``). ``hold_time``: the peer's effective hold time, which
    a keepalive time must stay below (RFC 4271 §4.4; 0 = no keepalives)."""
    from bgpd.config import ASN_MAX

    local_asn = None
    if "local_asn" in m and not w.is_null(m["local_asn"]):
        local_asn = w.integer(m["local_asn"], 1, ASN_MAX, "ASN")
    mode: NextHopMode = "auto"
    if "next_hop_mode" in m:
        mode = w.choice(m["next_hop_mode"], NEXT_HOP_MODES, "next hop mode")  # type: ignore[assignment]
    allow = w.get(m, "allow_local_as", lambda x: w.integer(x, 0, ALLOW_LOCAL_AS_MAX, "count"), 0)
    keepalive = None
    if "keepalive_time" in m and not w.is_null(m["keepalive_time"]):
        keepalive = w.integer(m["keepalive_time"], 1, KEEPALIVE_MAX, "keepalive time")
        if hold_time == 0:
            raise w.error(m["keepalive_time"], "keepalive time with hold time 0 (no keepalives are sent)")
        if hold_time is not None and keepalive >= hold_time:
            raise w.error(
                m["keepalive_time"], f"keepalive time {keepalive} must be below the hold time {hold_time}"
            )
        # ExaBGP has no keepalive setting: bgpd.exabgp.launch (change 10) sets it, scaled as BIRD does
    names: list[str] = []
    for item in w.sequence(m["filters"]) if "filters" in m else []:
        name = w.string(item, "filter name").strip()
        if name not in filters:
            raise w.error(item, f"unknown filter {name!r} (top-level filters){did_you_mean(name, filters)}")
        if name in names:
            raise w.error(item, f"filter {name!r} listed twice")
        names.append(name)
    return local_asn, mode, allow, keepalive, tuple(names)
