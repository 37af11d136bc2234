"""Calico's BGPFilter (issue 13): the rules, their validation, and their evaluation on one route. Pure logic,
no I/O; the config layer builds the rules (`bgpd.config_policy`), the speaker asks `evaluate` per route and
peer and applies the default itself when no rule matched.

Semantics, each point from Calico's own sources (projectcalico/calico at 87c15906f20c, 2026-08-22; its BIRD,
projectcalico/bird at 1e2ff99db42b, a BIRD 1.6 fork; the docs, tigera/docs
calico/reference/resources/bgpfilter.mdx):

- Order. A peer's filters run in the order the peer lists them (confd `buildImportFilter` /
  `buildExportFilter`, confd/pkg/backends/calico/bgp_processor.go, call one BIRD function per filter in
  that order); each runs its rule list for the direction and the family in order (`BGPFilterBIRDFuncs`,
  confd/pkg/resource/template/template_funcs.go: one `if (...) then { accept; }` per rule), and BIRD's
  `accept` / `reject` end the whole filter, so the first rule whose conditions all hold decides. No rule:
  import accepts (`accept;` after the filters), export goes on to Calico's normal export
  (`calico_export_to_bgp_peers`). v4 lists run in `bird` (IPv4), v6 lists in `bird6`: a list never sees a
  prefix of the other family. A rule with no condition is a bare `accept;` / `reject;`: it matches all.
- `cidr` + `match_operator` (`filterMatchCIDR`): `(net = cidr)`, `(net != cidr)`, `(net ~ cidr)`,
  `(net !~ cidr)`; for two prefixes BIRD's `~` is `net_in_net` (lib/ip.h): inside or equal. The two come
  together (the CRD's rule "cidr and matchOperator must both be set or both be empty",
  api/pkg/apis/projectcalico/v3/bgpfilter.go).
- `prefix_length` (`filterMatchPrefixLength`) turns the cidr operand into the prefix set
  `[ cidr{lo,hi} ]` with lo = max(cidr length, min) and hi = min(32 or 128, max), an absent min or max
  leaving the cidr's length or the family's maximum. The set holds the prefixes inside cidr whose length
  is in [lo, hi] (filter/trie.c; lo is never below the cidr's length), so `In` = inside and within, `NotIn`
  its negation. The operator stays what it was, so `Equal` renders `(net = [ cidr{lo,hi} ])` and
  `NotEqual` `(net != [ ... ])` (template_funcs_test.go renders `(net != [ 7000:1::0/64{64,96} ])`), and
  BIRD's `=` between a prefix and a prefix set is false, whatever the prefix (filter/filter.c: `val_same`
  falls to "types differ: not the same"); so `Equal` with a prefix_length never matches and `NotEqual`
  with one always does. bgpd does the same. A pattern with lo > hi is refused by BIRD's parser
  ("Invalid prefix pattern range", filter/config.Y), so Calico's BIRD would not load it: `validate_rule`
  refuses it (min above max, or max below the cidr's length); a min below the cidr's length is clamped,
  not refused. Without a cidr confd ignores prefixLength, and the CRD refuses it ("cidr is required when
  prefixLength is set"): so does `validate_rule`. Lengths 0..32 / 0..128 (the CRD's bounds).
- `source: RemotePeers` (`filterMatchSource`): `source ~ [ RTS_BGP ]`, a route learned over BGP; a kernel
  route (Felix's, learned by BIRD's kernel protocol) is not. On import every route is learned.
- `interface` (`filterMatchInterface`): `ifname ~ "pattern"`, BIRD's shell pattern (lib/patmatch.c: `*`
  and `?`); Calico's validator allows 1..15 of letters, digits, `_ . -` and `*` (`bgpFilterInterfaceRegex`,
  libcalico-go/lib/validator/v3/validator.go), and so does `validate_rule`. On those patterns BIRD's match
  is fnmatch's but for one quirk that bgpd keeps: BIRD takes the character after a `*` literally, a second
  `*` too, so `**` matches only a name holding a `*` (fnmatch: any name). A route without a device is
  matched as BIRD does it: BIRD's `ifname` of a route without an interface is "" (filter/filter.c
  `SA_IFNAME`; a blackhole IPAM block has none, sysdep/linux/netlink.c), so the pattern `*` matches it and
  no other pattern does. For a learned route BIRD's `ifname` is the device towards its next hop: the
  caller decides what `RouteFacts.interface` holds for those.

Not here: Calico's newer conditions (`peerType`, `communities`, `asPathPrefix`, `priority`) and
`operations`.

Cost: `evaluate` runs per route and peer on 100k-route tables. A `BGPFilter` compiles its rules once, at
construction, to tuples of ints over the family-tagged keys of `bgpd.prefix` (`bits`): a cidr test is the
`covers` test (a mask and a compare) plus a length window, so evaluating builds no `ipaddress` object and
takes plain or lean prefixes alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Literal

from bgpd import prefix as prefixes

Action = Literal["Accept", "Reject"]
MatchOperator = Literal["Equal", "NotEqual", "In", "NotIn"]
RuleSource = Literal["RemotePeers"]

_ACTIONS = ("Accept", "Reject")
_OPERATORS = ("Equal", "NotEqual", "In", "NotIn")
_SOURCES = ("RemotePeers",)
_MAX_LENGTH = {4: 32, 6: 128}
# Calico's validator for BGPFilter interface patterns (libcalico-go/lib/validator/v3/validator.go)
_INTERFACE = re.compile(r"[a-zA-Z0-9_.*-]{1,15}")


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One rule of a BGPFilter list: `action` when every condition given holds (none given: always).
    `cidr` with `match_operator` (both or neither); `prefix_length_min` / `_max` (Calico's prefixLength,
    needs a cidr); `source` "RemotePeers": learned routes only; `interface`: a glob on the route's device.
    Built without checks; `check` / `validate_rule` say whether it is valid in a list of a family."""

    action: Action
    cidr: IPv4Network | IPv6Network | None = None  # with match_operator: both or neither
    match_operator: MatchOperator | None = None
    prefix_length_min: int | None = None  # Calico prefixLength {min, max}
    prefix_length_max: int | None = None
    source: RuleSource | None = None  # only routes learned over BGP
    interface: str | None = None  # glob on the kernel route's device (BIRD's: fnmatch but for "**")

    def check(self, family: Literal[4, 6]) -> None:
        """Raise ValueError with `validate_rule`'s text if the rule is not valid in a list of `family`."""
        problem = validate_rule(self, family)
        if problem is not None:
            raise ValueError(problem)


def validate_rule(rule: FilterRule, family: Literal[4, 6]) -> str | None:
    """What is wrong with `rule` in a rule list of `family` (4: export_v4/import_v4, 6: the v6 lists), as
    one sentence naming the config key, or None if it is valid. ValueError if `family` is not 4 or 6.

    Refused, as Calico's API, validator or BIRD refuse it (module docstring): an action other than Accept /
    Reject; an unknown match_operator or source; cidr without match_operator or the reverse; a cidr of the
    other family; prefix_length without cidr; a length outside 0..32 (0..128); min above max; max below
    the cidr's length; an interface pattern other than 1-15 of letters, digits, `_`, `.`, `-`, `*`."""
    if family not in _MAX_LENGTH:
        raise ValueError(f"address family {family!r}: 4 or 6")
    if rule.action not in _ACTIONS:
        return f"action {rule.action!r}: Accept or Reject"
    if rule.match_operator is not None and rule.match_operator not in _OPERATORS:
        return f"match_operator {rule.match_operator!r}: Equal, NotEqual, In or NotIn"
    if rule.source is not None and rule.source not in _SOURCES:
        return f"source {rule.source!r}: RemotePeers"
    cidr = rule.cidr
    if cidr is None and rule.match_operator is not None:
        return "match_operator needs a cidr (Calico: cidr and matchOperator are set together)"
    if cidr is not None and rule.match_operator is None:
        return "cidr needs a match_operator (Equal, NotEqual, In or NotIn; Calico sets them together)"
    if cidr is not None and not isinstance(cidr, IPv4Network | IPv6Network):
        return f"cidr {cidr!r}: not a network"
    if cidr is not None and cidr.version != family:
        return f"cidr {cidr} is IPv{cidr.version}, in an IPv{family} rule list"
    top = _MAX_LENGTH[family]
    low, high = rule.prefix_length_min, rule.prefix_length_max
    for name, length in (("min", low), ("max", high)):
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            return f"prefix_length {name} {length!r}: an integer"
        if length is not None and not 0 <= length <= top:
            return f"prefix_length {name} {length} out of range 0..{top} for IPv{family}"
    if (low is not None or high is not None) and cidr is None:
        return "prefix_length needs a cidr (Calico ignores it without one, and its API refuses that)"
    if low is not None and high is not None and low > high:
        return f"prefix_length min {low} is above max {high}"
    if cidr is not None and high is not None and high < cidr.prefixlen:
        lo = cidr.prefixlen if low is None else max(low, cidr.prefixlen)
        return (
            f"prefix_length max {high} is shorter than the cidr {cidr}: Calico makes it the pattern "
            f"{cidr}{{{lo},{high}}}, which BIRD refuses"
        )
    if rule.interface is not None and (
        not isinstance(rule.interface, str) or not _INTERFACE.fullmatch(rule.interface)
    ):
        return (
            f"interface {rule.interface!r}: 1 to 15 of letters, digits, '_', '.', '-' and the wildcard '*' "
            "(Calico's interface patterns)"
        )
    return None


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What a rule can look at. `prefix`: a plain `ipaddress` network or a lean `bgpd.prefix` one;
    `learned`: True for a route learned over BGP (every imported route, and a re-advertised one on
    export), False for a local kernel route; `interface`: the kernel route's device, None if it has none
    (a blackhole block) or it is unknown, matched as the empty name (BIRD's `ifname` then: only the
    pattern `*` matches it)."""

    prefix: IPv4Network | IPv6Network
    learned: bool  # True: a route learned over BGP (re-advertised); False: a local kernel route
    interface: str | None = None  # the kernel route's device (local routes), None if unknown/none


# A compiled rule: (action, cidr test, network, mask, lo, hi, learned only, interface match). The cidr
# test is one of the kinds below, on the route's key (network, length) from `bgpd.prefix.bits`; lo and hi
# are key lengths (IPv6 ones shifted as `bits` shifts them); mask is the cidr's mask as a key's (the IPv6
# one with the family tag), so `network & mask == cidr network` is `covers`.
_NONE, _EQUAL, _NOT_EQUAL, _IN, _NOT_IN = range(5)
_Match = Callable[[str], object]
_Compiled = tuple[Action, int, int, int, int, int, bool, _Match | None]
_V6_TAG = prefixes.key6(0, 0)[0]
_V6_SHIFT = prefixes.key6(0, 0)[1]  # an IPv6 key's length is the prefix length plus this (-129)


def _glob(pattern: str) -> re.Pattern[str]:
    """BIRD's `patmatch` (lib/patmatch.c) for Calico's patterns (letters, digits, `_ . -` and `*`) as a
    regex: a `*` is any run of characters, as in fnmatch, but BIRD matches the character after a `*`
    literally, another `*` included, so a run of two or more stars needs a literal `*` in the name (where
    fnmatch takes `**` as `*`)."""
    parts = []
    for literal, stars in re.findall(r"([^*]*)(\**)", pattern):
        parts.append(re.escape(literal))
        if len(stars) == 1:
            parts.append(".*")
        elif stars:
            parts.append(r".*(?=\*).*")
    return re.compile("".join(parts), re.DOTALL)


def _compile(rule: FilterRule, family: Literal[4, 6]) -> _Compiled | None:
    """The rule as `evaluate` runs it, or None if it can never match (Equal with a prefix_length)."""
    kind, network, mask, lo, hi = _NONE, 0, 0, 0, 0
    cidr = rule.cidr
    if cidr is not None:
        network, length = prefixes.bits(cidr)
        shift = 0 if family == 4 else _V6_SHIFT
        mask = prefixes.mask(cidr.prefixlen, family) | (0 if family == 4 else _V6_TAG)
        windowed = rule.prefix_length_min is not None or rule.prefix_length_max is not None
        if rule.match_operator in ("In", "NotIn"):
            kind = _IN if rule.match_operator == "In" else _NOT_IN
            low, high = rule.prefix_length_min, rule.prefix_length_max
            lo = length if low is None else max(length, low + shift)
            hi = _MAX_LENGTH[family] + shift if high is None else min(_MAX_LENGTH[family], high) + shift
        elif windowed:
            # BIRD: `net = [ set ]` is false and `net != [ set ]` true, for every net (module docstring)
            if rule.match_operator == "Equal":
                return None
            kind = _NONE
        else:
            kind = _EQUAL if rule.match_operator == "Equal" else _NOT_EQUAL
            lo = hi = length
    match = None if rule.interface is None else _glob(rule.interface).fullmatch
    return rule.action, kind, network, mask, lo, hi, rule.source == "RemotePeers", match


def _compile_list(name: str, rules: Sequence[FilterRule], family: Literal[4, 6]) -> tuple[_Compiled, ...]:
    out = []
    for i, rule in enumerate(rules):
        problem = validate_rule(rule, family)
        if problem is not None:
            raise ValueError(f"{name}[{i}]: {problem}")
        compiled = _compile(rule, family)
        if compiled is not None:
            out.append(compiled)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class BGPFilter:
    """Calico's BGPFilter: four ordered rule lists, by direction and family. Construction checks every rule
    (`validate_rule` with the list's family) and raises ValueError("filter 'name': export_v4[2]: <problem>")
    for the first invalid one, then compiles the lists for `evaluate` (kept in `_compiled`, which takes no
    part in init, repr, equality or hashing)."""

    name: str
    export_v4: tuple[FilterRule, ...] = ()
    import_v4: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()
    # by `evaluate`'s slot: export v4, export v6, import v4, import v6
    _compiled: tuple[tuple[_Compiled, ...], ...] = field(
        init=False, repr=False, compare=False, default=((), (), (), ())
    )

    def __post_init__(self) -> None:
        try:
            compiled = (
                _compile_list("export_v4", self.export_v4, 4),
                _compile_list("export_v6", self.export_v6, 6),
                _compile_list("import_v4", self.import_v4, 4),
                _compile_list("import_v6", self.import_v6, 6),
            )
        except ValueError as exc:
            raise ValueError(f"filter {self.name!r}: {exc}") from None
        object.__setattr__(self, "_compiled", compiled)


def evaluate(
    filters: Sequence[BGPFilter], direction: Literal["import", "export"], route: RouteFacts
) -> Action | None:
    """Run the peer's filters in the order listed; within each, the rule list of the direction and of the
    route's family, in order; the first rule whose conditions ALL hold decides (Accept or Reject).
    None: no rule matched (the caller applies Calico's default: import accept, export = bgpd's normal export).
    ValueError for a direction other than "import" / "export"."""
    network, length = prefixes.bits(route.prefix)
    if direction == "export":
        slot = 1 if length < 0 else 0
    elif direction == "import":
        slot = 3 if length < 0 else 2
    else:
        raise ValueError(f"direction {direction!r}: import or export")
    learned = route.learned
    interface = route.interface
    for bgp_filter in filters:
        for action, kind, cidr, mask, lo, hi, learned_only, match in bgp_filter._compiled[slot]:
            if kind:
                if kind == _IN:
                    if not (lo <= length <= hi and network & mask == cidr):
                        continue
                elif kind == _NOT_IN:
                    if lo <= length <= hi and network & mask == cidr:
                        continue
                elif kind == _EQUAL:
                    if length != lo or network != cidr:
                        continue
                elif length == lo and network == cidr:  # _NOT_EQUAL
                    continue
            if learned_only and not learned:
                continue
            if match is not None and match("" if interface is None else interface) is None:
                continue
            return action
    return None
