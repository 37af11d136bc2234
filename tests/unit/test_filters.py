"""bgpd.policy.filters: Calico's BGPFilter, case by case from Calico's sources, and against a model.

Sources named in the comments (all read at projectcalico/calico 87c15906f20c and projectcalico/bird
1e2ff99db42b, as in the module's docstring):
- [docs]    tigera/docs calico/reference/resources/bgpfilter.mdx: the sample YAML, the field tables;
- [api]     projectcalico/calico api/pkg/apis/projectcalico/v3/bgpfilter.go: field docs and CRD rules;
- [confd]   confd/pkg/resource/template/template_funcs.go (filterMatchCIDR, filterMatchPrefixLength,
            filterMatchSource, filterMatchInterface) and the renderings in template_funcs_test.go;
- [order]   confd/pkg/backends/calico/bgp_processor.go buildImportFilter / buildExportFilter;
- [valid]   libcalico-go/lib/validator/v3/validator.go (bgpFilterInterfaceRegex);
- [bird]    projectcalico/bird filter/filter.c (val_same, val_in_range, SA_IFNAME), filter/config.Y
            (prefix pattern ranges), lib/patmatch.c, lib/ip.h (net_in_net).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any, Literal, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix as prefixes
from bgpd.policy.filters import (
    Action,
    BGPFilter,
    FilterRule,
    MatchOperator,
    RouteFacts,
    RuleSource,
    evaluate,
    validate_rule,
)

Net = IPv4Network | IPv6Network


def rule(
    action: Action = "Reject",
    cidr: str | None = None,
    op: MatchOperator | None = None,
    lo: int | None = None,
    hi: int | None = None,
    source: Literal["RemotePeers"] | None = None,
    iface: str | None = None,
) -> FilterRule:
    return FilterRule(action, None if cidr is None else ip_network(cidr), op, lo, hi, source, iface)


def route(text: str, learned: bool = False, iface: str | None = None, lean: bool = False) -> RouteFacts:
    net: Net = prefixes.parse_any(text) if lean else ip_network(text)
    return RouteFacts(net, learned, iface)


# --- one rule, one condition -----------------------------------------------------------------------------
# (rule, route prefix, learned, interface, does the rule match). Each rule is put alone in the import and
# the export list of the prefix's family: a match answers the rule's action (Reject), none answers None.
CONDITION_CASES: list[Any] = [
    # Equal: BIRD `net = cidr`, address and length both equal [confd operatorLUT; bird val_compare T_PREFIX]
    pytest.param(rule(cidr="10.0.0.0/16", op="Equal"), "10.0.0.0/16", False, None, True, id="v4-equal-same"),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="Equal"), "10.0.1.0/24", False, None, False, id="v4-equal-inside"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="Equal"), "10.0.0.0/15", False, None, False, id="v4-equal-outer"
    ),
    pytest.param(rule(cidr="10.0.0.0/16", op="Equal"), "10.0.0.0/17", False, None, False, id="v4-equal-len"),
    # [docs] importV6: "action: Accept, matchOperator: Equal, cidr: 5000::0/64"
    pytest.param(rule(cidr="5000::/64", op="Equal"), "5000::/64", False, None, True, id="v6-equal-same"),
    pytest.param(rule(cidr="5000::/64", op="Equal"), "5000::/65", False, None, False, id="v6-equal-longer"),
    pytest.param(
        rule(cidr="5000::/64", op="Equal"), "5000:0:0:1::/64", False, None, False, id="v6-equal-other"
    ),
    # NotEqual: `net != cidr` [confd operatorLUT]; [confd test] renders `(net != 8000:1::0/64)`
    pytest.param(rule(cidr="10.0.0.0/16", op="NotEqual"), "10.0.0.0/16", False, None, False, id="v4-ne-same"),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="NotEqual"), "10.0.1.0/24", False, None, True, id="v4-ne-inside"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="NotEqual"), "192.168.0.0/16", False, None, True, id="v4-ne-far"
    ),
    pytest.param(rule(cidr="8000:1::/64", op="NotEqual"), "8000:1::/64", False, None, False, id="v6-ne-same"),
    pytest.param(
        rule(cidr="8000:1::/64", op="NotEqual"), "8000:1::/65", False, None, True, id="v6-ne-longer"
    ),
    # In: `net ~ cidr`, BIRD net_in_net: inside or equal [confd; bird lib/ip.h]; [docs] exportV4 77.0.0.0/16
    pytest.param(rule(cidr="77.0.0.0/16", op="In"), "77.0.0.0/16", False, None, True, id="v4-in-equal"),
    pytest.param(rule(cidr="77.0.0.0/16", op="In"), "77.0.255.0/24", False, None, True, id="v4-in-inside"),
    pytest.param(rule(cidr="77.0.0.0/16", op="In"), "77.0.3.4/32", False, None, True, id="v4-in-host"),
    pytest.param(rule(cidr="77.0.0.0/16", op="In"), "77.0.0.0/15", False, None, False, id="v4-in-outer"),
    pytest.param(rule(cidr="77.0.0.0/16", op="In"), "77.1.0.0/24", False, None, False, id="v4-in-beside"),
    pytest.param(rule(cidr="77.0.0.0/16", op="In"), "0.0.0.0/0", False, None, False, id="v4-in-default"),
    pytest.param(rule(cidr="0.0.0.0/0", op="In"), "203.0.113.0/24", False, None, True, id="v4-in-all"),
    pytest.param(rule(cidr="fd00::/8", op="In"), "fd00:1::/64", False, None, True, id="v6-in-inside"),
    pytest.param(rule(cidr="fd00::/8", op="In"), "fc00::/7", False, None, False, id="v6-in-outer"),
    pytest.param(rule(cidr="fd00::/8", op="In"), "fe00::/16", False, None, False, id="v6-in-beside"),
    # NotIn: `net !~ cidr` [confd]; [docs] importV4 "Reject, matchOperator: NotIn, cidr: 44.0.0.0/16"
    pytest.param(rule(cidr="44.0.0.0/16", op="NotIn"), "44.0.1.0/24", False, None, False, id="v4-notin-in"),
    pytest.param(rule(cidr="44.0.0.0/16", op="NotIn"), "44.0.0.0/16", False, None, False, id="v4-notin-eq"),
    pytest.param(rule(cidr="44.0.0.0/16", op="NotIn"), "44.0.0.0/8", False, None, True, id="v4-notin-outer"),
    pytest.param(rule(cidr="44.0.0.0/16", op="NotIn"), "45.0.0.0/24", False, None, True, id="v4-notin-out"),
    pytest.param(rule(cidr="a000:1::/64", op="NotIn"), "a000:1::/96", False, None, False, id="v6-notin-in"),
    pytest.param(rule(cidr="a000:1::/64", op="NotIn"), "a000:2::/96", False, None, True, id="v6-notin-out"),
    # prefixLength: `net ~ [ cidr{max(len,min),min(32,max)} ]` [confd filterMatchPrefixLength]
    # [docs] importV4 "In 55.0.0.0/16, prefixLength: {min: 30}" -> 55.0.0.0/16{30,32}
    pytest.param(rule(cidr="55.0.0.0/16", op="In", lo=30), "55.0.0.4/30", False, None, True, id="v4-min-30"),
    pytest.param(rule(cidr="55.0.0.0/16", op="In", lo=30), "55.0.0.1/32", False, None, True, id="v4-min-32"),
    pytest.param(rule(cidr="55.0.0.0/16", op="In", lo=30), "55.0.0.0/29", False, None, False, id="v4-min-29"),
    pytest.param(
        rule(cidr="55.0.0.0/16", op="In", lo=30), "56.0.0.0/30", False, None, False, id="v4-min-out"
    ),
    # [api] "CIDR 10.0.0.0/8 with MatchOperator In and PrefixLength {min: 16, max: 24} matches any route
    # within 10.0.0.0/8 whose prefix length is between /16 and /24"
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In", lo=16, hi=24), "10.1.0.0/16", False, None, True, id="api-16"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In", lo=16, hi=24), "10.1.2.0/24", False, None, True, id="api-24"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In", lo=16, hi=24), "10.0.0.0/8", False, None, False, id="api-8"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In", lo=16, hi=24), "10.1.2.0/25", False, None, False, id="api-25"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In", lo=16, hi=24), "11.1.0.0/16", False, None, False, id="api-out"
    ),
    # [api] v6: "CIDR fd00::/8 with MatchOperator In and PrefixLength {min: 48, max: 64}"
    pytest.param(
        rule(cidr="fd00::/8", op="In", lo=48, hi=64), "fd00:1:2::/48", False, None, True, id="api6-48"
    ),
    pytest.param(
        rule(cidr="fd00::/8", op="In", lo=48, hi=64), "fd00:1:2:3::/64", False, None, True, id="api6-64"
    ),
    pytest.param(rule(cidr="fd00::/8", op="In", lo=48, hi=64), "fd00::/47", False, None, False, id="api6-47"),
    pytest.param(
        rule(cidr="fd00::/8", op="In", lo=48, hi=64), "fd00:1:2:3::/65", False, None, False, id="api6-65"
    ),
    pytest.param(
        rule(cidr="fd00::/8", op="In", lo=48, hi=64), "fe00:1:2::/48", False, None, False, id="api6-out"
    ),
    # [confd test] `(net !~ [ 55.4.0.0/16{16,24} ])`: NotIn with a length window is "not (inside and within)"
    pytest.param(
        rule(cidr="55.4.0.0/16", op="NotIn", lo=16, hi=24), "55.4.1.0/24", False, None, False, id="nw-in"
    ),
    pytest.param(
        rule(cidr="55.4.0.0/16", op="NotIn", lo=16, hi=24), "55.4.1.0/25", False, None, True, id="nw-long"
    ),
    pytest.param(
        rule(cidr="55.4.0.0/16", op="NotIn", lo=16, hi=24), "55.5.0.0/24", False, None, True, id="nw-out"
    ),
    # [confd test] `{Max: 24}` on 88.7.0.0/16 renders `[ 88.7.0.0/16{16,24} ]`: an absent min is the cidr's
    pytest.param(
        rule(cidr="88.7.0.0/16", op="NotIn", hi=24), "88.7.0.0/16", False, None, False, id="max-only-16"
    ),
    pytest.param(
        rule(cidr="88.7.0.0/16", op="NotIn", hi=24), "88.7.0.0/26", False, None, True, id="max-only-26"
    ),
    # [confd test] `{Min: 96}` on 6000:1::0/64 renders `{96,128}`: an absent max is the family's
    pytest.param(
        rule(cidr="6000:1::/64", op="NotIn", lo=96), "6000:1::1/128", False, None, False, id="v6-min-128"
    ),
    pytest.param(
        rule(cidr="6000:1::/64", op="NotIn", lo=96), "6000:1::/80", False, None, True, id="v6-min-80"
    ),
    # [confd test] `[ 9000:1::0/64{96,120} ]`
    pytest.param(
        rule(cidr="9000:1::/64", op="In", lo=96, hi=120), "9000:1::/120", False, None, True, id="v6-w-120"
    ),
    pytest.param(
        rule(cidr="9000:1::/64", op="In", lo=96, hi=120), "9000:1::/121", False, None, False, id="v6-w-121"
    ),
    # [confd] minLength = max(mask, min): a min below the cidr's length is the cidr's length
    pytest.param(rule(cidr="10.0.0.0/16", op="In", lo=8), "10.0.0.0/16", False, None, True, id="min-clamped"),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="In", lo=8), "10.0.0.0/8", False, None, False, id="min-clamp-out"
    ),
    # [crd] max 0 is allowed: 0.0.0.0/0{0,0} is the default route only
    pytest.param(rule(cidr="0.0.0.0/0", op="In", hi=0), "0.0.0.0/0", False, None, True, id="v4-max0-default"),
    pytest.param(rule(cidr="0.0.0.0/0", op="In", hi=0), "10.0.0.0/8", False, None, False, id="v4-max0-other"),
    pytest.param(
        rule(cidr="::/0", op="In", lo=128), "2001:db8::1/128", False, None, True, id="v6-hosts-only"
    ),
    # Equal / NotEqual with a prefixLength: confd renders `(net = [ set ])` / `(net != [ set ])` ([confd
    # test] `(net != [ 7000:1::0/64{64,96} ])`), and BIRD's `=` of a prefix and a prefix set is always false
    # [bird val_same: val_compare gives CMP_ERROR for different types, then "types differ" -> 0]
    pytest.param(
        rule(cidr="10.0.0.0/16", op="Equal", lo=16, hi=16), "10.0.0.0/16", False, None, False, id="eq-w"
    ),
    pytest.param(
        rule(cidr="7000:1::/64", op="NotEqual", hi=96), "7000:1::/64", False, None, True, id="ne-w-same"
    ),
    pytest.param(
        rule(cidr="7000:1::/64", op="NotEqual", hi=96), "7000:1::/80", False, None, True, id="ne-w-in"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="NotEqual", lo=20), "10.0.0.0/16", False, None, True, id="ne-w-v4"
    ),
    # source: RemotePeers: `source ~ [ RTS_BGP ]`, learned routes only [confd filterMatchSource; api]
    pytest.param(rule(source="RemotePeers"), "10.0.0.0/26", True, None, True, id="v4-source-learned"),
    pytest.param(rule(source="RemotePeers"), "10.0.0.0/26", False, "cali1", False, id="v4-source-local"),
    pytest.param(rule(source="RemotePeers"), "fd00::/122", True, None, True, id="v6-source-learned"),
    pytest.param(rule(source="RemotePeers"), "fd00::/122", False, None, False, id="v6-source-local"),
    # interface: `ifname ~ "pattern"` [confd filterMatchInterface]; [docs] `interface: '*.calico'`
    pytest.param(rule(iface="*.calico"), "10.0.0.0/32", False, "vxlan.calico", True, id="if-vxlan"),
    pytest.param(rule(iface="*.calico"), "10.0.0.0/32", False, "wireguard.cali", False, id="if-wg-cali"),
    pytest.param(rule(iface="*.calico"), "10.0.0.0/32", False, "eth0", False, id="if-eth0"),
    pytest.param(rule(iface="*.calico"), "10.0.0.0/32", False, None, False, id="if-none"),
    pytest.param(rule(iface="*.calico"), "fd00::/128", False, "vxlan-v6.calico", True, id="if-v6"),
    pytest.param(rule(iface="eth0"), "10.0.0.0/32", False, "eth0", True, id="if-exact"),
    pytest.param(rule(iface="eth0"), "10.0.0.0/32", False, "eth01", False, id="if-exact-longer"),
    pytest.param(rule(iface="cali*"), "10.0.0.0/32", False, "cali12ab34", True, id="if-prefix"),
    pytest.param(rule(iface="cali*"), "10.0.0.0/32", False, "Cali1", False, id="if-case"),
    pytest.param(rule(iface="cali*"), "10.0.0.0/26", False, None, False, id="if-prefix-none"),
    # a route without a device (a blackhole IPAM block) has BIRD ifname "" [bird SA_IFNAME; netlink.c
    # RTN_BLACKHOLE sets no iface], and "" ~ "*" holds [bird lib/patmatch.c: a final '*' matches the rest]
    pytest.param(rule(iface="*"), "10.0.0.0/26", False, None, True, id="if-star-none"),
    # [bird lib/patmatch.c] the character after a '*' is matched literally, a second '*' too: "**" needs a
    # '*' in the name (fnmatch would take it as "*")
    pytest.param(rule(iface="**"), "10.0.0.0/26", False, None, False, id="if-stars-none"),
    pytest.param(rule(iface="**"), "10.0.0.0/32", False, "eth0", False, id="if-stars-eth0"),
    pytest.param(rule(iface="eth**"), "10.0.0.0/32", False, "eth*0", True, id="if-stars-literal"),
    pytest.param(rule(iface="*"), "10.0.0.0/32", False, "eth0", True, id="if-star"),
    # no condition: `accept;` / `reject;` alone [confd filterStatement]; [docs] importV6 "- action: Reject"
    pytest.param(rule(), "10.0.0.0/8", False, None, True, id="v4-empty"),
    pytest.param(rule(), "2001:db8::/32", True, "eth0", True, id="v6-empty"),
    # all conditions must hold (joined with &&) [confd filterStatement]; [docs] exportV4 rule 1
    pytest.param(
        rule(cidr="77.0.0.0/16", op="In", source="RemotePeers"), "77.0.1.0/24", True, None, True, id="a1"
    ),
    pytest.param(
        rule(cidr="77.0.0.0/16", op="In", source="RemotePeers"), "77.0.1.0/24", False, None, False, id="a2"
    ),
    pytest.param(
        rule(cidr="77.0.0.0/16", op="In", source="RemotePeers"), "78.0.1.0/24", True, None, False, id="a3"
    ),
    # [confd test] NotIn 55.4.0.0/16 && RemotePeers && vxlan.calico
    pytest.param(
        rule(cidr="55.4.0.0/16", op="NotIn", source="RemotePeers", iface="vxlan.calico"),
        "10.0.0.0/24",
        True,
        "vxlan.calico",
        True,
        id="all3",
    ),
    pytest.param(
        rule(cidr="55.4.0.0/16", op="NotIn", source="RemotePeers", iface="vxlan.calico"),
        "10.0.0.0/24",
        True,
        "eth0",
        False,
        id="all3-iface",
    ),
    pytest.param(
        rule(cidr="55.4.0.0/16", op="NotIn", source="RemotePeers", iface="vxlan.calico"),
        "55.4.0.0/24",
        True,
        "vxlan.calico",
        False,
        id="all3-cidr",
    ),
]


def alone(one: FilterRule, family: int) -> BGPFilter:
    """A filter with `one` as the only rule of both lists (import and export) of `family`."""
    if family == 4:
        return BGPFilter("f", export_v4=(one,), import_v4=(one,))
    return BGPFilter("f", export_v6=(one,), import_v6=(one,))


@pytest.mark.parametrize("lean", [False, True], ids=["plain", "lean"])
@pytest.mark.parametrize(("one", "text", "learned", "iface", "matches"), CONDITION_CASES)
def test_condition(
    one: FilterRule, text: str, learned: bool, iface: str | None, matches: bool, lean: bool
) -> None:
    facts = route(text, learned, iface, lean)
    for action in ("Reject", "Accept"):
        f = alone(dataclasses.replace(one, action=action), facts.prefix.version)
        assert evaluate([f], "export", facts) == (action if matches else None)
        assert evaluate([f], "import", facts) == (action if matches else None)


# --- lists, filters, order -------------------------------------------------------------------------------

# [docs] the sample BGPFilter "my-filter", rule for rule
MY_FILTER = BGPFilter(
    "my-filter",
    export_v4=(
        rule("Accept", "77.0.0.0/16", "In", source="RemotePeers"),
        rule("Reject", iface="*.calico"),
    ),
    import_v4=(
        rule("Accept", "55.0.0.0/16", "In", lo=30),
        rule("Reject", "44.0.0.0/16", "NotIn"),
    ),
    export_v6=(
        rule("Reject", source="RemotePeers"),
        rule("Reject", iface="*.calico"),
    ),
    import_v6=(
        rule("Accept", "5000::/64", "Equal"),
        rule("Reject"),
    ),
)


@pytest.mark.parametrize(
    ("direction", "facts", "expected"),
    [
        ("export", route("77.0.1.0/24", learned=True), "Accept"),  # rule 1
        ("export", route("77.0.1.0/24", iface="vxlan.calico"), "Reject"),  # local: rule 2
        ("export", route("77.0.1.0/24", iface="eth0"), None),  # local, not *.calico: Calico's default
        ("export", route("10.0.0.0/26"), None),  # a block (no device)
        ("import", route("55.0.7.4/30", learned=True), "Accept"),  # rule 1
        ("import", route("55.0.7.0/24", learned=True), "Reject"),  # too short for rule 1; NotIn 44/16
        ("import", route("44.0.7.0/24", learned=True), None),  # inside 44.0.0.0/16: default accept
        ("export", route("fd00::/122", learned=True), "Reject"),
        ("export", route("fd00::/122", iface="vxlan-v6.calico"), "Reject"),
        ("export", route("fd00::/122", iface="eth0"), None),
        ("import", route("5000::/64", learned=True), "Accept"),
        ("import", route("5000::/96", learned=True), "Reject"),  # the bare `- action: Reject`
        ("import", route("2001:db8::/32", learned=True), "Reject"),
    ],
)
def test_docs_sample(
    direction: Literal["import", "export"], facts: RouteFacts, expected: Action | None
) -> None:
    assert evaluate([MY_FILTER], direction, facts) == expected


def test_first_matching_rule_decides() -> None:
    # [docs] "the action for the first rule that matches is executed immediately"
    f = BGPFilter(
        "f",
        import_v4=(
            rule("Reject", "10.0.0.0/8", "In", lo=25),
            rule("Accept", "10.1.0.0/16", "In"),
            rule("Reject", "10.0.0.0/8", "In"),
            rule("Accept"),
        ),
    )
    assert evaluate([f], "import", route("10.1.2.0/26", True)) == "Reject"
    assert evaluate([f], "import", route("10.1.2.0/24", True)) == "Accept"
    assert evaluate([f], "import", route("10.2.2.0/24", True)) == "Reject"
    assert evaluate([f], "import", route("11.0.0.0/24", True)) == "Accept"


def test_filters_run_in_the_peers_order() -> None:
    # [order] one call per filter of the peer, in its order; BIRD's accept/reject end the whole filter
    a = BGPFilter("a", import_v4=(rule("Accept", "10.0.0.0/8", "In", lo=24),))
    b = BGPFilter("b", import_v4=(rule("Reject", "10.0.0.0/8", "In"),))
    other = BGPFilter("other", export_v4=(rule("Accept"),), import_v6=(rule("Accept"),))
    assert evaluate([a, b], "import", route("10.1.2.0/24", True)) == "Accept"
    assert evaluate([a, b], "import", route("10.1.0.0/16", True)) == "Reject"
    assert evaluate([b, a], "import", route("10.1.2.0/24", True)) == "Reject"
    assert evaluate([other, a, b], "import", route("10.1.2.0/24", True)) == "Accept"  # other: nothing here
    assert evaluate([a, b], "import", route("192.168.0.0/24", True)) is None


def test_defaults_are_none() -> None:
    # no rule matched: the caller applies Calico's default [order: "accept;" on import,
    # calico_export_to_bgp_peers on export]
    facts = route("10.0.0.0/26")
    assert evaluate([], "export", facts) is None
    assert evaluate([BGPFilter("empty")], "import", facts) is None
    only_export = BGPFilter("x", export_v4=(rule("Reject"),))
    assert evaluate([only_export], "import", facts) is None
    assert evaluate([only_export], "export", facts) == "Reject"


@pytest.mark.parametrize("lean", [False, True])
def test_lists_are_per_family(lean: bool) -> None:
    # v4 lists run in bird, v6 lists in bird6: neither sees the other family's prefixes, ::10.0.0.0/104
    # (the same int as 10.0.0.0) and ::ffff:10.0.0.0/104 included
    v4_only = BGPFilter("v4", export_v4=(rule("Reject"),), import_v4=(rule("Reject", "10.0.0.0/8", "In"),))
    v6_only = BGPFilter("v6", export_v6=(rule("Accept"),), import_v6=(rule("Accept", "::/0", "In"),))
    for text in ("::a00:0/104", "::ffff:a00:0/104", "fd00::/8"):
        assert evaluate([v4_only], "export", route(text, lean=lean)) is None
        assert evaluate([v4_only], "import", route(text, True, lean=lean)) is None
        assert evaluate([v4_only, v6_only], "import", route(text, True, lean=lean)) == "Accept"
    assert evaluate([v6_only], "export", route("10.0.0.0/8", lean=lean)) is None
    assert evaluate([v6_only, v4_only], "import", route("10.0.0.0/8", True, lean=lean)) == "Reject"


def test_bad_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        evaluate([MY_FILTER], "both", route("10.0.0.0/8"))  # type: ignore[arg-type]


def test_filter_value_semantics() -> None:
    again = BGPFilter(
        "my-filter", MY_FILTER.export_v4, MY_FILTER.import_v4, MY_FILTER.export_v6, MY_FILTER.import_v6
    )
    assert again == MY_FILTER and hash(again) == hash(MY_FILTER)
    assert "_compiled" not in repr(MY_FILTER)
    changed = dataclasses.replace(MY_FILTER, import_v6=())
    assert evaluate([changed], "import", route("5000::/64", True)) is None


def test_no_ipaddress_object_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # evaluation works on the prefixes' integer keys only
    routes = [
        route(t, learned, i, lean)
        for t in ("77.0.1.0/24", "fd00:1:2::/48")
        for learned in (False, True)
        for i in (None, "vxlan.calico")
        for lean in (False, True)
    ]
    filters = [MY_FILTER, BGPFilter("w", import_v6=(rule("Reject", "fd00::/8", "NotIn", 48, 64),))]
    expected = [evaluate(filters, d, r) for d in ("import", "export") for r in routes]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an ipaddress object was built")

    for cls in (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network):
        monkeypatch.setattr(cls, "__init__", refuse)
    assert [evaluate(filters, d, r) for d in ("import", "export") for r in routes] == expected


# --- validation ------------------------------------------------------------------------------------------

VALID: list[Any] = [
    *((r, 4) for r in MY_FILTER.export_v4 + MY_FILTER.import_v4),  # [docs]
    *((r, 6) for r in MY_FILTER.export_v6 + MY_FILTER.import_v6),  # [docs]
    (rule(cidr="10.0.0.0/16", op="In", lo=8), 4),  # [confd] a min below the cidr's length is clamped
    (rule(cidr="0.0.0.0/0", op="In", lo=0, hi=0), 4),  # [api] Minimum=0 for both
    (rule(cidr="::/0", op="In", lo=128, hi=128), 6),
    (rule(cidr="10.0.0.0/16", op="Equal", lo=20, hi=24), 4),  # valid in Calico (it never matches)
    (rule(iface="*"), 4),  # [valid] s == "*"
    (rule(iface="abcdefghijklmn*"), 6),  # 15 characters
    (rule(iface="vxlan-v6.calico", source="RemotePeers"), 6),
]


@pytest.mark.parametrize(("one", "family"), VALID)
def test_valid(one: FilterRule, family: Literal[4, 6]) -> None:
    assert validate_rule(one, family) is None
    one.check(family)


INVALID: list[Any] = [
    # [api] "cidr and matchOperator must both be set or both be empty"
    pytest.param(rule(cidr="10.0.0.0/8"), 4, "cidr needs a match_operator", id="cidr-alone"),
    pytest.param(rule(op="In"), 4, "match_operator needs a cidr", id="op-alone"),
    # [api] CIDR validate:"omitempty,netv4" / "netv6": the list's family
    pytest.param(
        rule(cidr="fd00::/8", op="In"), 4, "cidr fd00::/8 is IPv6, in an IPv4 rule list", id="v6-in-v4"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In"), 6, "cidr 10.0.0.0/8 is IPv4, in an IPv6 rule list", id="v4-in-v6"
    ),
    # [api] "cidr is required when prefixLength is set"
    pytest.param(rule(lo=16), 4, "prefix_length needs a cidr", id="length-alone"),
    pytest.param(rule(hi=64), 6, "prefix_length needs a cidr", id="length-alone-v6"),
    # [api] Minimum=0, Maximum=32 / 128
    pytest.param(rule(cidr="10.0.0.0/8", op="In", hi=33), 4, "max 33 out of range 0..32", id="max-33"),
    pytest.param(rule(cidr="10.0.0.0/8", op="In", lo=-1), 4, "min -1 out of range 0..32", id="min-neg"),
    pytest.param(rule(cidr="fd00::/8", op="In", lo=129), 6, "min 129 out of range 0..128", id="min-129"),
    pytest.param(rule(cidr="fd00::/8", op="In", lo=True), 6, "min True: an integer", id="min-bool"),
    # [bird config.Y] "Invalid prefix pattern range": lo <= hi, after confd's clamping
    pytest.param(
        rule(cidr="10.0.0.0/8", op="In", lo=24, hi=16), 4, "min 24 is above max 16", id="min-gt-max"
    ),
    pytest.param(
        rule(cidr="10.0.0.0/16", op="In", hi=12),
        4,
        "max 12 is shorter than the cidr 10.0.0.0/16: Calico makes it the pattern 10.0.0.0/16{16,12}",
        id="max-below-cidr",
    ),
    pytest.param(
        rule(cidr="fd00::/48", op="NotIn", lo=8, hi=32),
        6,
        "fd00::/48{48,32}, which BIRD refuses",
        id="v6-max",
    ),
    # [valid] bgpFilterInterfaceRegex ^[a-zA-Z0-9_.*-]{1,15}$
    pytest.param(rule(iface=""), 4, "interface ''", id="iface-empty"),
    pytest.param(rule(iface="eth?"), 4, "interface 'eth?'", id="iface-question"),
    pytest.param(rule(iface="eth[01]"), 4, "interface 'eth[01]'", id="iface-class"),
    pytest.param(rule(iface="abcdefghijklmnop"), 6, "1 to 15 of letters", id="iface-16"),
    # [api] enums
    pytest.param(FilterRule("Drop"), 4, "action 'Drop': Accept or Reject", id="action"),  # type: ignore[arg-type]
    pytest.param(
        FilterRule("Accept", ip_network("10.0.0.0/8"), "Within"),  # type: ignore[arg-type]
        4,
        "match_operator 'Within'",
        id="operator",
    ),
    pytest.param(FilterRule("Accept", source="Local"), 4, "source 'Local': RemotePeers", id="source"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("one", "family", "problem"), INVALID)
def test_invalid(one: FilterRule, family: Literal[4, 6], problem: str) -> None:
    found = validate_rule(one, family)
    assert found is not None and problem in found
    with pytest.raises(ValueError) as excinfo:
        one.check(family)
    assert str(excinfo.value) == found
    lists: dict[str, tuple[FilterRule, ...]] = {f"import_v{family}": (rule(), one)}
    with pytest.raises(ValueError) as excinfo:
        BGPFilter("tor", **lists)
    assert str(excinfo.value) == f"filter 'tor': import_v{family}[1]: {found}"


def test_validate_rule_family() -> None:
    with pytest.raises(ValueError, match="address family"):
        validate_rule(rule(), 5)  # type: ignore[arg-type]


# --- against a model -------------------------------------------------------------------------------------


def bird_patmatch(pattern: str, name: str) -> bool:
    """BIRD's lib/patmatch.c, line for line ('?' one character, '*' any run, '\\' escapes)."""
    p = s = 0
    while p < len(pattern):
        if pattern[p] == "?" and s < len(name):
            p, s = p + 1, s + 1
        elif pattern[p] == "*":
            if p + 1 == len(pattern):
                return True
            z = pattern[p + 2] if pattern[p + 1] == "\\" and p + 2 < len(pattern) else pattern[p + 1]
            while True:
                while s < len(name) and name[s] != z:
                    s += 1
                if s == len(name):
                    return False
                if bird_patmatch(pattern[p + 1 :], name[s:]):
                    return True
                s += 1
        else:
            if pattern[p] == "\\" and p + 1 < len(pattern):
                p += 1
            if s == len(name) or pattern[p] != name[s]:
                return False
            p, s = p + 1, s + 1
    return s == len(name)


def model_rule(r: FilterRule, net: Net, learned: bool, iface: str | None) -> bool:
    """The semantics as Calico renders them into BIRD, with ipaddress (module docstring, tests above)."""
    if r.cidr is not None:
        inside = net.version == r.cidr.version and net.subnet_of(r.cidr)  # type: ignore[arg-type]
        if r.prefix_length_min is None and r.prefix_length_max is None:
            ok = {"Equal": net == r.cidr, "NotEqual": net != r.cidr, "In": inside, "NotIn": not inside}
        else:
            top = net.max_prefixlen
            lo = (
                r.cidr.prefixlen
                if r.prefix_length_min is None
                else max(r.cidr.prefixlen, r.prefix_length_min)
            )
            hi = top if r.prefix_length_max is None else min(top, r.prefix_length_max)
            in_set = inside and lo <= net.prefixlen <= hi
            ok = {"Equal": False, "NotEqual": True, "In": in_set, "NotIn": not in_set}
        if not ok[str(r.match_operator)]:
            return False
    if r.source == "RemotePeers" and not learned:
        return False
    return r.interface is None or bird_patmatch(r.interface, iface or "")


def model_evaluate(filters: list[BGPFilter], direction: str, facts: RouteFacts) -> str | None:
    net = ip_network(str(facts.prefix))
    for f in filters:
        for r in getattr(f, f"{direction}_v{net.version}"):
            if model_rule(r, net, facts.learned, facts.interface):
                return str(r.action)
    return None


# addresses near a few bases, so that rules and routes overlap often
BASES = {
    4: [0x0A000000, 0x0A010200, 0x4D000000, 0xC0A80000],
    6: [0xFD00 << 112, 0xFD00_0001 << 96, 0x2001_0DB8 << 96],
}
BITS = {4: 32, 6: 128}


def networks(family: Literal[4, 6]) -> st.SearchStrategy[Net]:
    width = BITS[family]
    noise = st.one_of(
        st.just(0),
        st.integers(0, 255).map(lambda b: b << (width // 2)),
        st.integers(0, 255).map(lambda b: b << (width - 16)),
        st.integers(0, 2**width - 1),
    )

    def build(base: int, bits: int, length: int) -> Net:
        address = (base ^ bits) & prefixes.mask(length, family)
        return IPv4Network((address, length)) if family == 4 else IPv6Network((address, length))

    lengths = st.one_of(
        st.integers(0, width), st.sampled_from([8, 16, 24, 26, 32] if family == 4 else [48, 64, 122, 128])
    )
    return st.builds(build, st.sampled_from(BASES[family]), noise, lengths)


PATTERNS = ["*", "**", "eth0", "eth*", "*.calico", "cali*", "c*i*1", "*0", "vxlan.calico", "tunl0"]
DEVICES = [
    None,
    "eth0",
    "eth01",
    "cali1",
    "cali12ab",
    "vxlan.calico",
    "vxlan-v6.calico",
    "wireguard.cali",
    "tunl0",
]


@st.composite
def rules(draw: st.DrawFn, family: Literal[4, 6]) -> FilterRule:
    cidr: Net | None = None
    op: MatchOperator | None = None
    lo = hi = None
    if draw(st.booleans()):
        cidr = draw(networks(family))
        op = draw(st.sampled_from(get_args(MatchOperator)))
        if draw(st.booleans()):
            lo = draw(st.none() | st.integers(0, BITS[family]))
            hi = draw(st.none() | st.integers(max(cidr.prefixlen, lo or 0), BITS[family]))
    action: Action = draw(st.sampled_from(get_args(Action)))
    source: RuleSource | None = draw(st.sampled_from([None, "RemotePeers"]))
    return FilterRule(action, cidr, op, lo, hi, source, draw(st.none() | st.sampled_from(PATTERNS)))


def rule_lists(family: Literal[4, 6]) -> st.SearchStrategy[tuple[FilterRule, ...]]:
    return st.lists(rules(family), max_size=3).map(tuple)


bgp_filters = st.builds(BGPFilter, st.just("f"), rule_lists(4), rule_lists(4), rule_lists(6), rule_lists(6))


@st.composite
def routes(draw: st.DrawFn) -> RouteFacts:
    net = draw(networks(draw(st.sampled_from([4, 6]))))
    if draw(st.booleans()):
        net = prefixes.parse_any(str(net))  # the lean types
    return RouteFacts(net, draw(st.booleans()), draw(st.sampled_from(DEVICES)))


def near(filters: list[BGPFilter]) -> list[Net]:
    """Prefixes at the edges of the filters' rules: for each cidr, the prefixes with its network address
    (masked when shorter) whose lengths are around the cidr's, the shortest that keeps the address, and the
    borders of the rule's length window."""
    out: list[Net] = []
    for f in filters:
        for r in f.export_v4 + f.import_v4 + f.export_v6 + f.import_v6:
            if r.cidr is None:
                continue
            address, top = int(r.cidr.network_address), r.cidr.max_prefixlen
            shortest = top - (address & -address).bit_length() + 1 if address else 0
            lengths = {
                shortest,
                r.cidr.prefixlen - 1,
                r.cidr.prefixlen,
                r.cidr.prefixlen + 1,
                r.cidr.prefixlen + 8,
            }
            for bound in (r.prefix_length_min, r.prefix_length_max):
                if bound is not None:
                    lengths |= {bound - 1, bound, bound + 1}
            for n in sorted(x for x in lengths if 0 <= x <= top):
                out.append(ip_network((address & prefixes.mask(n, r.cidr.version), n)))
    return out


# each edge prefix as a local route without a device (a block), a learned one, and a workload's route
EDGE_FACTS = [(False, None), (True, None), (False, "cali1")]


@settings(max_examples=150, deadline=None)
@given(st.lists(bgp_filters, max_size=3), st.lists(routes(), min_size=1, max_size=8))
def test_against_model(filters: list[BGPFilter], drawn: list[RouteFacts]) -> None:
    facts = drawn + [RouteFacts(n, learned, i) for n in near(filters) for learned, i in EDGE_FACTS]
    for direction in ("import", "export"):
        for one in facts:
            expected = model_evaluate(filters, direction, one)
            assert evaluate(filters, direction, one) == expected, (direction, one)


@settings(max_examples=500, deadline=None)
@given(
    st.text("abc0.-_*", min_size=1, max_size=6) | st.sampled_from(PATTERNS),
    st.text("abc0.-_*", max_size=8) | st.sampled_from(DEVICES[1:]),
)
def test_interface_glob_is_birds(pattern: str, device: str) -> None:
    # bgpd's interface match is BIRD's patmatch on every pattern Calico allows; fnmatch's where no "**"
    f = BGPFilter("f", export_v4=(rule(iface=pattern),))
    matched = evaluate([f], "export", route("10.0.0.0/32", iface=device)) is not None
    assert matched == bird_patmatch(pattern, device)
    if "**" not in pattern:
        assert matched == fnmatch.fnmatchcase(device, pattern)
