"""bgpd.policy.export with IPv4 and IPv6 kernel routes in one table (issue 11): selection per family, an
IPv6 block (Calico's /122) hiding the /128 workloads inside it, never a block of one family hiding a
prefix of the other (even with the same integers), and random event sequences of both families, in any
order, against a model recomputed from scratch with ipaddress alone."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix as lean
from bgpd.model import KernelRoute, Prefix
from bgpd.policy.export import BLOCK_KINDS, Delta, ExportRules, ExportTable
from tests.unit.test_export import SELECTS, _Calls, twin

FELIX, BOOT, OWN, MAIN = 80, 3, 12, 254
POOLS = ["10.20.0.0/16", "fd00:10:20::/48", twin("10.20.0.0/16"), "::a14:0/112"]
RULES = ExportRules(frozenset({FELIX}), ("cali*", "tap?"), tuple(ip_network(p) for p in POOLS), OWN)


def route(
    prefix: str, kind: str = "unicast", protocol: int = FELIX, ifname: str | None = None, priority: int = 0
) -> KernelRoute:
    return KernelRoute(lean.parse_any(prefix), kind, protocol, MAIN, ifname, (), priority)


def block(prefix: str, priority: int = 0) -> KernelRoute:
    return route(prefix, kind="blackhole", priority=priority)


def wep(prefix: str, priority: int = 0) -> KernelRoute:
    return route(prefix, protocol=BOOT, ifname="cali1", priority=priority)


def P(*texts: str) -> set[Prefix]:
    return {ip_network(t) for t in texts}


def strictly_inside(inner: Prefix, outer: Prefix) -> bool:
    return inner.version == outer.version and inner != outer and inner.subnet_of(outer)  # type: ignore[arg-type]


# ------------------------------------------------------------------ selection


def to6(r: KernelRoute) -> KernelRoute:
    """The IPv6 twin of a route of test_export's SELECTS (prefix and gateways in fd00::/96)."""
    return KernelRoute(
        ip_network(twin(str(r.prefix))),
        r.kind,
        r.protocol,
        r.table,
        r.ifname,
        tuple(ip_address(twin(str(g))) for g in r.gateways),
        r.priority,
    )


@pytest.mark.parametrize(("r", "expected"), [(r, e) for _, r, e in SELECTS], ids=[n for n, _, _ in SELECTS])
def test_ipv6_twin_selected_as_the_ipv4_route(r: KernelRoute, expected: bool) -> None:
    assert RULES.selects(to6(r)) is expected
    assert RULES.selects(r) is expected
    # with the pools of one family only, a route of the other family is never selected
    v4_pools = ExportRules(
        RULES.protocols, RULES.interfaces, tuple(p for p in RULES.pools if p.version == 4), OWN
    )
    v6_pools = ExportRules(
        RULES.protocols, RULES.interfaces, tuple(p for p in RULES.pools if p.version == 6), OWN
    )
    assert not v4_pools.selects(to6(r)) and not v6_pools.selects(r)


@pytest.mark.parametrize(
    "prefix",
    ["fd00:10:21::/122", "fd00:10::/32", "fd00:10:20::/47", "::/0", "::ffff:10.20.1.3/128", "::a15:103/128"],
)
def test_ipv6_outside_every_pool_not_selected(prefix: str) -> None:
    assert not RULES.selects(wep(prefix)) and not RULES.selects(block(prefix))


# ------------------------------------------------------------------ aggregation


def test_calico_ipv6_block_hides_its_128s_and_not_a_borrowed_one() -> None:
    t = ExportTable(RULES)
    assert t.add(wep("fd00:10:20:0:1:2:3:41/128")) == Delta(P("fd00:10:20:0:1:2:3:41/128"))
    delta = t.add(block("fd00:10:20:0:1:2:3:40/122"))
    assert delta == Delta(P("fd00:10:20:0:1:2:3:40/122"), P("fd00:10:20:0:1:2:3:41/128"))
    assert t.add(wep("fd00:10:20:0:1:2:3:7f/128")) == Delta()  # last address of the block
    assert t.add(wep("fd00:10:20:0:1:2:3:80/128")) == Delta(P("fd00:10:20:0:1:2:3:80/128"))  # borrowed
    assert t.announced == P("fd00:10:20:0:1:2:3:40/122", "fd00:10:20:0:1:2:3:80/128")
    inside = P("fd00:10:20:0:1:2:3:41/128", "fd00:10:20:0:1:2:3:7f/128")
    assert t.remove(block("fd00:10:20:0:1:2:3:40/122")) == Delta(inside, P("fd00:10:20:0:1:2:3:40/122"))


def test_blocks_never_hide_the_other_family_even_with_the_same_integers() -> None:
    # 10.20.1.0/26 and ::10.20.1.0/122 (::a14:100/122) share their integers, as do their /32 and /128s
    t = ExportTable(RULES)
    t.add(wep("10.20.1.3/32"))
    t.add(wep("::a14:103/128"))
    assert t.add(block("10.20.1.0/26")) == Delta(P("10.20.1.0/26"), P("10.20.1.3/32"))
    assert t.add(block("::a14:100/122")) == Delta(P("::a14:100/122"), P("::a14:103/128"))
    assert t.remove(block("10.20.1.0/26")) == Delta(P("10.20.1.3/32"), P("10.20.1.0/26"))
    assert t.announced == P("10.20.1.3/32", "::a14:100/122")
    t.add(wep("10.20.1.4/32"))
    assert t.is_announced(ip_network("10.20.1.4/32"))  # the IPv6 block hides nothing of IPv4
    assert t._inside(ip_network("::a14:100/122")) == [ip_network("::a14:103/128")]
    assert sorted(t._inside(ip_network("10.20.0.0/16"))) == sorted(P("10.20.1.3/32", "10.20.1.4/32"))
    assert t.blocks == P("::a14:100/122")


def test_ipv4_sorts_before_ipv6_in_the_index() -> None:
    t = ExportTable(RULES)
    for r in (wep("fd00:10:20::1/128"), wep("10.20.255.255/32"), wep("::a14:1/128"), wep("10.20.0.1/32")):
        t.add(r)
    assert list(t._sorted) == [ip_network(p) for p in ("10.20.0.1/32", "10.20.255.255/32", "::a14:1/128")] + [
        ip_network("fd00:10:20::1/128")
    ]


# ------------------------------------------------------------------ random sequences against a model
# IPv4 prefixes in 10.20.0.0/22 from /22 to /32 and their IPv6 counterparts of the same shape (lengths +96)
# in two places: fd00:10:20::/118 (Calico's pool) and ::10.20.0.0/118 (the same integers as the IPv4 ones);
# a few routes outside the pools or of other kinds, never selected.
_LENGTHS = [22, 23, 24, 26, 28, 30, 31, 32, 32, 32]
_BASES = {
    4: [int(IPv4Address("10.20.0.0"))] * 9 + [int(IPv4Address("10.21.0.0"))],
    6: [int(IPv6Address("fd00:10:20::")), int(IPv6Address("::a14:0"))] * 4
    + [int(IPv6Address("fd00:10:21::"))],
}


@st.composite
def _prefixes(draw: st.DrawFn) -> str:
    version = draw(st.sampled_from([4, 6]))
    length = draw(st.sampled_from(_LENGTHS))
    offset = draw(st.integers(0, 1023)) & ~((1 << (32 - length)) - 1)
    base = draw(st.sampled_from(_BASES[version]))
    if version == 4:
        return f"{IPv4Address(base + offset)}/{length}"
    return f"{IPv6Address(base + offset)}/{length + 96}"


@st.composite
def _routes(draw: st.DrawFn) -> KernelRoute:
    prefix = draw(_prefixes())
    shape = draw(st.sampled_from(["block", "block", "workload", "workload", "felix", "other"]))
    priority = draw(st.sampled_from([0, 0, 0, 1024]))
    if shape == "block":
        return block(prefix, priority)
    if shape == "workload":
        return wep(prefix, priority)
    if shape == "felix":
        return route(prefix, kind=draw(st.sampled_from(["unicast", "unreachable"])), priority=priority)
    return route(prefix, protocol=draw(st.sampled_from([BOOT, OWN])), ifname="eth0", priority=priority)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _routes().map(lambda r: [r])),
        st.tuples(st.just("add"), _routes().map(lambda r: [r])),
        st.tuples(st.just("remove"), _routes().map(lambda r: [r])),
        st.tuples(st.just("replace_all"), st.lists(_routes(), max_size=30)),
    ),
    max_size=60,
)


def _model(kernel: dict[tuple[Prefix, int, int], KernelRoute]) -> set[Prefix]:
    """The announced set from scratch: the prefixes of the routes the rules select, minus those strictly
    inside a selected block of the same family (ipaddress's subnet_of, not the table's keys)."""
    selected = [r for r in kernel.values() if RULES.selects(r)]
    blocks = [r.prefix for r in selected if r.kind in BLOCK_KINDS]
    return {r.prefix for r in selected if not any(strictly_inside(r.prefix, b) for b in blocks)}


@settings(max_examples=400, deadline=None)
@given(ops=_ops)
def test_random_sequences_of_both_families_match_a_model(ops: list[tuple[str, list[KernelRoute]]]) -> None:
    t = ExportTable(RULES)
    kernel: dict[tuple[Prefix, int, int], KernelRoute] = {}
    for op, routes in ops:
        before = t.announced
        if op == "add":
            kernel[routes[0].key] = routes[0]
            delta = t.add(routes[0])
        elif op == "remove":
            kernel.pop(routes[0].key, None)
            delta = t.remove(routes[0])
        else:
            kernel = {r.key: r for r in routes}
            delta = t.replace_all(routes)
        want = _model(kernel)
        assert t.announced == want
        assert t.announced_count == len(want)
        assert delta.announce == want - before
        assert delta.withdraw == before - want
        selected = {r for r in kernel.values() if RULES.selects(r)}
        assert set(t.selected()) == selected
        assert t.blocks == {r.prefix for r in selected if r.kind in BLOCK_KINDS}
        prefixes = {r.prefix for r in selected}
        for b in t.blocks:
            assert set(t._inside(b)) == {p for p in prefixes if strictly_inside(p, b)}


@settings(max_examples=200, deadline=None)
@given(
    routes=st.lists(_routes(), max_size=40, unique_by=lambda r: r.key),
    seed=st.randoms(use_true_random=False),
)
def test_the_same_routes_in_any_order_give_the_same_table(
    routes: list[KernelRoute], seed: random.Random
) -> None:
    forward = ExportTable(RULES)
    for r in routes:
        forward.add(r)
    order = list(routes)
    seed.shuffle(order)
    shuffled = ExportTable(RULES)
    announced: set[Prefix] = set()
    for r in order:
        delta = shuffled.add(r)
        announced = (announced - delta.withdraw) | delta.announce
    assert forward.announced == shuffled.announced == announced == _model({r.key: r for r in routes})
    assert forward.blocks == shuffled.blocks
    assert list(forward._sorted) == list(shuffled._sorted)
    # and removing them in yet another order empties it, with deltas adding up to nothing announced
    seed.shuffle(order)
    for r in order:
        delta = shuffled.remove(r)
        announced = (announced - delta.withdraw) | delta.announce
    assert announced == set() and shuffled.announced == frozenset() and len(shuffled) == 0
    assert list(shuffled._sorted) == [] and shuffled._block_index == {}


# ------------------------------------------------------------------ cost of a change


def test_ipv6_128_blocks_cost_as_ipv4_32_blocks_beside_a_table_of_the_other_family() -> None:
    """Adding and removing 2,000 /128 blocks next to 10,000 IPv4 /32s costs no more calls per change than
    2,000 /32 blocks next to 10,000 IPv6 /128s (and neither scans the table)."""
    v4 = [block(f"{IPv4Address(int(IPv4Address('10.20.0.0')) + i)}/32") for i in range(12_000)]
    v6 = [block(f"{IPv6Address(int(IPv6Address('fd00:10:20::')) + i)}/128") for i in range(12_000)]
    costs = {}
    for name, background, changes in (("ipv6", v4[2000:], v6[:2000]), ("ipv4", v6[2000:], v4[:2000])):
        t = ExportTable(RULES)
        for r in background:
            t.add(r)
        with _Calls() as calls:
            for r in changes:
                t.add(r)
            for r in changes:
                t.remove(r)
        assert len(t) == 10_000
        costs[name] = calls.count / (2 * len(changes))
    assert costs["ipv6"] <= 1.1 * costs["ipv4"] and costs["ipv4"] <= 200, costs
