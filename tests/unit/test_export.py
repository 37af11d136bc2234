"""Tests for bgpd.policy.export: route selection rules and the incremental, aggregating ExportTable.

The aggregation examples run in both families (issue 11, `family` fixture): in IPv6 every address and
prefix is its twin in fd00::/96 (10.20.1.0/26 -> fd00::a14:100/122, a /32 -> a /128), so the same
nesting holds. Mixed-family tables and their properties are in test_export_dual.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.model import KernelRoute, Prefix
from bgpd.policy.export import BLOCK_KINDS, Delta, ExportRules, ExportTable

FELIX = 80  # protocol of the routes Felix programs
BOOT = 3
STATIC = 4
OWN = 12  # bgpd's own protocol: learned routes
MAIN = 254
POOL = IPv4Network("10.20.0.0/16")
POOL_NO_EXPORT = IPv4Network("10.30.0.0/16")  # exists, but export disabled: not passed in `pools`


def twin(text: str) -> str:
    """The IPv6 twin of an IPv4 address or prefix text: the address in fd00::/96, the length + 96."""
    address, _, length = text.partition("/")
    six = IPv6Address((0xFD00 << 112) | int(IPv4Address(address)))
    return f"{six}/{int(length) + 96}" if length else str(six)


POOL6 = ip_network(twin("10.20.0.0/16"))
POOL_NO_EXPORT6 = ip_network(twin("10.30.0.0/16"))

# pools of both families, as a dual-stack host has them
RULES = ExportRules(
    protocols=frozenset({FELIX}), interfaces=("cali*", "tap?"), pools=(POOL, POOL6), own_protocol=OWN
)

_FAMILY = [4]  # the family the examples build their routes in; set by the `family` fixture


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def family(request: pytest.FixtureRequest) -> Iterator[int]:
    _FAMILY[0] = request.param
    yield request.param
    _FAMILY[0] = 4


both = pytest.mark.usefixtures("family")


def T(text: str) -> str:
    """`text` in the family of the running example."""
    return twin(text) if _FAMILY[0] == 6 else text


def N(text: str) -> Prefix:
    return ip_network(T(text))


def route(
    prefix: str,
    kind: str = "unicast",
    protocol: int = FELIX,
    ifname: str | None = None,
    priority: int = 0,
    table: int = MAIN,
    gateways: tuple[str, ...] = (),
) -> KernelRoute:
    return KernelRoute(
        prefix=N(prefix),
        kind=kind,
        protocol=protocol,
        table=table,
        ifname=ifname,
        gateways=tuple(ip_address(T(g)) for g in gateways),
        priority=priority,
    )


def blackhole(prefix: str, protocol: int = FELIX, priority: int = 0) -> KernelRoute:
    return route(prefix, kind="blackhole", protocol=protocol, priority=priority)


def wep(prefix: str, ifname: str = "cali12345", protocol: int = BOOT, priority: int = 0) -> KernelRoute:
    """A workload endpoint route: a /32 on a cali* interface."""
    return route(prefix, protocol=protocol, ifname=ifname, priority=priority)


def strictly_inside(inner: Prefix, outer: Prefix) -> bool:
    """ipaddress's own answer (subnet_of, which takes only one family), independent of the table's keys."""
    return inner.version == outer.version and inner != outer and inner.subnet_of(outer)  # type: ignore[arg-type]


def D(announce: set[str] | None = None, withdraw: set[str] | None = None) -> Delta:
    return Delta({N(p) for p in announce or ()}, {N(p) for p in withdraw or ()})


# ------------------------------------------------------------------ selection


SELECTS = [
    ("unicast_by_protocol", route("10.20.1.0/26", protocol=FELIX), True),
    ("unicast_by_protocol_no_device", route("10.20.1.7/32", protocol=FELIX, gateways=("192.168.1.1",)), True),
    ("unicast_by_interface_glob", wep("10.20.1.3/32", ifname="cali0ab12"), True),
    ("unicast_by_second_glob", wep("10.20.1.3/32", ifname="tap1"), True),
    ("glob_is_whole_name", wep("10.20.1.3/32", ifname="xcali1"), False),
    ("glob_is_case_sensitive", wep("10.20.1.3/32", ifname="CALI1"), False),
    ("glob_single_char", wep("10.20.1.3/32", ifname="tap12"), False),
    ("unicast_other_protocol_other_device", wep("10.20.1.3/32", ifname="eth0"), False),
    ("unicast_other_protocol_no_device", route("10.20.1.3/32", protocol=BOOT), False),
    ("blackhole_by_protocol", blackhole("10.20.1.0/26"), True),
    ("unreachable_by_protocol", route("10.20.1.0/26", kind="unreachable"), True),
    ("prohibit_by_protocol", route("10.20.1.0/26", kind="prohibit"), True),
    ("blackhole_other_protocol", blackhole("10.20.1.0/26", protocol=STATIC), False),
    (
        "blackhole_not_matched_by_device",
        route("10.20.1.0/26", kind="blackhole", protocol=BOOT, ifname="cali1"),
        False,
    ),
    ("local_kind_never", route("10.20.1.1/32", kind="local", protocol=FELIX, ifname="cali1"), False),
    ("broadcast_kind_never", route("10.20.1.255/32", kind="broadcast", protocol=FELIX), False),
    ("own_protocol_never", route("10.20.1.0/26", protocol=OWN, ifname="cali1"), False),
    ("own_protocol_blackhole_never", blackhole("10.20.1.0/26", protocol=OWN), False),
    ("outside_pool_never", route("10.21.1.0/26", protocol=FELIX, ifname="cali1"), False),
    ("larger_than_pool_never", blackhole("10.20.0.0/15"), False),
    ("whole_pool_selected", blackhole("10.20.0.0/16"), True),
    ("pool_without_export_excluded", wep("10.30.1.3/32"), False),
    ("pool_without_export_block_excluded", blackhole("10.30.1.0/26"), False),
]


@pytest.mark.parametrize(("r", "expected"), [(r, e) for _, r, e in SELECTS], ids=[n for n, _, _ in SELECTS])
def test_selects(r: KernelRoute, expected: bool) -> None:
    assert RULES.selects(r) is expected


def test_selects_with_several_pools_and_no_interfaces() -> None:
    rules = ExportRules(
        protocols=frozenset({FELIX, STATIC}), interfaces=(), pools=(POOL, POOL_NO_EXPORT), own_protocol=OWN
    )
    assert rules.selects(blackhole("10.30.1.0/26", protocol=STATIC))
    assert not rules.selects(wep("10.30.1.3/32"))
    assert not rules.selects(route("10.20.1.0/26", protocol=OWN))


def test_no_pools_selects_nothing() -> None:
    rules = ExportRules(frozenset({FELIX}), ("cali*",), (), OWN)
    assert not rules.selects(blackhole("10.20.1.0/26"))
    assert not rules.selects(wep("10.20.1.3/32"))


def test_block_kinds() -> None:
    assert frozenset({"blackhole", "unreachable", "prohibit"}) == BLOCK_KINDS


# ------------------------------------------------------------------ aggregation


@both
def test_block_hides_workload_routes_inside() -> None:
    t = ExportTable(RULES)
    assert t.add(blackhole("10.20.1.0/26")) == D({"10.20.1.0/26"})
    assert t.add(wep("10.20.1.3/32")) == D()
    assert t.add(wep("10.20.1.4/32", ifname="cali2")) == D()
    assert t.announced == {N("10.20.1.0/26")}
    assert t.blocks == {N("10.20.1.0/26")}
    assert len(list(t.selected())) == 3


@both
def test_workloads_first_then_block_withdraws_them() -> None:
    t = ExportTable(RULES)
    t.add(wep("10.20.1.3/32"))
    t.add(wep("10.20.1.4/32"))
    assert t.announced == {N("10.20.1.3/32"), N("10.20.1.4/32")}
    assert t.add(blackhole("10.20.1.0/26")) == D({"10.20.1.0/26"}, {"10.20.1.3/32", "10.20.1.4/32"})
    assert t.announced == {N("10.20.1.0/26")}


@both
def test_borrowed_address_outside_block_announced() -> None:
    t = ExportTable(RULES)
    t.add(blackhole("10.20.1.0/26"))
    assert t.add(wep("10.20.1.64/32")) == D({"10.20.1.64/32"})  # first address after the block
    assert t.add(wep("10.20.0.255/32")) == D({"10.20.0.255/32"})  # last address before it
    assert t.announced == {N("10.20.1.0/26"), N("10.20.1.64/32"), N("10.20.0.255/32")}


@both
def test_removing_block_reannounces_routes_inside() -> None:
    t = ExportTable(RULES)
    block = blackhole("10.20.1.0/26")
    t.add(block)
    t.add(wep("10.20.1.3/32"))
    t.add(wep("10.20.1.63/32"))
    t.add(wep("10.20.2.1/32"))
    assert t.remove(block) == D({"10.20.1.3/32", "10.20.1.63/32"}, {"10.20.1.0/26"})
    assert t.announced == {N("10.20.1.3/32"), N("10.20.1.63/32"), N("10.20.2.1/32")}
    assert t.blocks == frozenset()


@both
def test_nested_blocks() -> None:
    t = ExportTable(RULES)
    t.add(blackhole("10.20.1.0/26"))
    t.add(wep("10.20.1.3/32"))
    assert t.add(blackhole("10.20.0.0/22")) == D({"10.20.0.0/22"}, {"10.20.1.0/26"})
    assert t.remove(blackhole("10.20.0.0/22")) == D({"10.20.1.0/26"}, {"10.20.0.0/22"})
    assert t.announced == {N("10.20.1.0/26")}


@both
def test_route_with_same_prefix_as_block_is_not_inside_it() -> None:
    t = ExportTable(RULES)
    t.add(blackhole("10.20.1.0/26"))
    assert t.add(route("10.20.1.0/26", protocol=FELIX, priority=5)) == D()
    assert t.remove(blackhole("10.20.1.0/26")) == D()  # still announced thanks to the unicast route
    assert t.announced == {N("10.20.1.0/26")}
    assert t.blocks == frozenset()


@both
def test_two_routes_same_prefix_counted() -> None:
    t = ExportTable(RULES)
    a = wep("10.20.1.3/32", priority=0)
    b = wep("10.20.1.3/32", priority=1024)
    assert t.add(a) == D({"10.20.1.3/32"})
    assert t.add(b) == D()
    assert t.remove(a) == D()
    assert t.announced == {N("10.20.1.3/32")}
    assert t.remove(b) == D(withdraw={"10.20.1.3/32"})
    assert t.announced == frozenset()


@both
def test_two_blocks_same_prefix_counted() -> None:
    t = ExportTable(RULES)
    t.add(blackhole("10.20.1.0/26", priority=0))
    t.add(blackhole("10.20.1.0/26", priority=1))
    t.add(wep("10.20.1.3/32"))
    assert t.remove(blackhole("10.20.1.0/26", priority=0)) == D()
    assert t.announced == {N("10.20.1.0/26")}
    assert t.remove(blackhole("10.20.1.0/26", priority=1)) == D({"10.20.1.3/32"}, {"10.20.1.0/26"})


@both
def test_same_prefix_in_other_table_is_another_route() -> None:
    t = ExportTable(RULES)
    t.add(wep("10.20.1.3/32"))
    t.add(route("10.20.1.3/32", protocol=FELIX, table=100))
    assert t.remove(wep("10.20.1.3/32")) == D()
    assert t.announced == {N("10.20.1.3/32")}


@both
def test_route_replaced_by_non_selected_one_is_withdrawn() -> None:
    t = ExportTable(RULES)
    t.add(wep("10.20.1.3/32", ifname="cali1"))
    # same kernel key (prefix, table, metric): the kernel replaced the route, now via eth0
    assert t.add(wep("10.20.1.3/32", ifname="eth0")) == D(withdraw={"10.20.1.3/32"})
    assert t.announced == frozenset()
    assert list(t.selected()) == []


@both
def test_route_replaced_by_selected_one_is_no_change() -> None:
    t = ExportTable(RULES)
    t.add(wep("10.20.1.3/32", ifname="cali1"))
    new = wep("10.20.1.3/32", ifname="cali2")
    assert t.add(new) == D()
    assert list(t.selected()) == [new]


@both
def test_block_replaced_by_unicast_at_same_key() -> None:
    t = ExportTable(RULES)
    t.add(blackhole("10.20.1.0/26"))
    t.add(wep("10.20.1.3/32"))
    assert t.add(route("10.20.1.0/26", protocol=FELIX)) == D({"10.20.1.3/32"})
    assert t.blocks == frozenset()
    assert t.announced == {N("10.20.1.0/26"), N("10.20.1.3/32")}


@both
def test_remove_matches_by_key_only() -> None:
    t = ExportTable(RULES)
    t.add(wep("10.20.1.3/32", ifname="cali1"))
    assert t.remove(wep("10.20.1.3/32", ifname="cali2")) == D(withdraw={"10.20.1.3/32"})


@both
def test_remove_unknown_and_unselected_are_no_ops() -> None:
    t = ExportTable(RULES)
    assert t.remove(wep("10.20.1.3/32")) == D()
    assert t.add(wep("10.21.1.3/32")) == D()
    assert t.remove(wep("10.21.1.3/32")) == D()
    assert not t.add(route("10.20.1.3/32", protocol=OWN))


@both
def test_delta_shared_between_calls_cancels_announce_and_withdraw() -> None:
    t = ExportTable(RULES)
    delta = Delta()
    t.add(wep("10.20.1.3/32"), delta)
    t.remove(wep("10.20.1.3/32"), delta)
    assert delta == D()
    assert not delta
    t.add(wep("10.20.1.4/32"))
    t.remove(wep("10.20.1.4/32"), delta)
    t.add(wep("10.20.1.4/32"), delta)
    assert delta == D()
    assert t.announced == {N("10.20.1.4/32")}


@both
def test_delta_truthiness() -> None:
    assert not Delta()
    assert D({"10.20.1.0/26"})
    assert D(withdraw={"10.20.1.0/26"})


@both
def test_replace_all_returns_only_real_difference() -> None:
    t = ExportTable(RULES)
    t.add(blackhole("10.20.1.0/26"))
    t.add(wep("10.20.1.3/32"))
    t.add(wep("10.20.2.3/32"))
    dump = [blackhole("10.20.1.0/26"), wep("10.20.1.3/32"), wep("10.20.2.3/32"), wep("10.21.0.1/32")]
    assert t.replace_all(dump) == D()
    # the block vanished and a new borrowed address appeared while events were lost
    dump = [wep("10.20.1.3/32"), wep("10.20.2.3/32"), wep("10.20.3.3/32")]
    assert t.replace_all(dump) == D({"10.20.1.3/32", "10.20.3.3/32"}, {"10.20.1.0/26"})
    assert t.announced == {N("10.20.1.3/32"), N("10.20.2.3/32"), N("10.20.3.3/32")}


@both
def test_set_rules_reevaluates() -> None:
    t = ExportTable(RULES)
    routes = [wep("10.20.1.3/32"), wep("10.30.1.3/32")]
    for r in routes:
        t.add(r)
    assert t.announced == {N("10.20.1.3/32")}
    pools = ExportRules(
        RULES.protocols, RULES.interfaces, (*RULES.pools, POOL_NO_EXPORT, POOL_NO_EXPORT6), OWN
    )
    assert t.set_rules(pools, routes) == D({"10.30.1.3/32"})
    assert t.set_rules(RULES, routes) == D(withdraw={"10.30.1.3/32"})
    assert t.rules is RULES


# ------------------------------------------------------------------ properties

# A small universe with nesting: /24 and /26 blocks, /32s inside and outside them, and routes that are not
# selected (other device, own protocol, outside the pool) so that replacements by unselected routes happen.
_PREFIXES = [
    "10.20.0.0/22",
    "10.20.1.0/24",
    "10.20.1.0/26",
    "10.20.1.64/26",
    "10.20.1.3/32",
    "10.20.1.64/32",
    "10.20.1.200/32",
    "10.20.2.1/32",
    "10.20.9.9/32",
    "10.21.0.0/26",
    "10.21.0.1/32",
]
routes_st = st.builds(
    route,
    prefix=st.sampled_from(_PREFIXES),
    kind=st.sampled_from(["unicast", "unicast", "blackhole", "unreachable", "local"]),
    protocol=st.sampled_from([FELIX, BOOT, OWN]),
    ifname=st.sampled_from([None, "cali1", "eth0"]),
    priority=st.sampled_from([0, 1024]),
)
events_st = st.lists(st.tuples(st.booleans(), routes_st), max_size=40)


def _reference(routes: dict[tuple[Prefix, int, int], KernelRoute]) -> set[Prefix]:
    """From scratch: selected prefixes minus those strictly inside a selected block prefix."""
    selected = [r for r in routes.values() if RULES.selects(r)]
    blocks = {r.prefix for r in selected if r.kind in BLOCK_KINDS}
    return {r.prefix for r in selected if not any(strictly_inside(r.prefix, b) for b in blocks)}


def _apply(
    table: ExportTable,
    events: list[tuple[bool, KernelRoute]],
    kernel: dict[tuple[Prefix, int, int], KernelRoute],
    state: set[Prefix],
) -> None:
    """Feed events to the table, mirroring the kernel in `kernel` and the announcements in `state`."""
    for is_add, r in events:
        before = table.announced
        if is_add:
            kernel[r.key] = r
            delta = table.add(r)
        else:
            kernel.pop(r.key, None)
            delta = table.remove(r)
        # a real delta: nothing both ways, only new announcements, only withdrawals of announced prefixes
        assert not (delta.announce & delta.withdraw)
        assert not (delta.announce & before)
        assert delta.withdraw <= before
        state -= delta.withdraw
        state |= delta.announce
        assert state == table.announced
        assert table.announced == _reference(kernel)


@settings(max_examples=200, deadline=None)
@given(events=events_st)
def test_announced_matches_reference_and_deltas(events: list[tuple[bool, KernelRoute]]) -> None:
    t = ExportTable(RULES)
    kernel: dict[tuple[Prefix, int, int], KernelRoute] = {}
    state: set[Prefix] = set()
    _apply(t, events, kernel, state)
    assert set(t.selected()) == {r for r in kernel.values() if RULES.selects(r)}
    assert t.blocks == {r.prefix for r in kernel.values() if RULES.selects(r) and r.kind in BLOCK_KINDS}


@settings(max_examples=150, deadline=None)
@given(events=events_st)
def test_replace_all_with_current_routes_is_empty(events: list[tuple[bool, KernelRoute]]) -> None:
    t = ExportTable(RULES)
    kernel: dict[tuple[Prefix, int, int], KernelRoute] = {}
    _apply(t, events, kernel, set())
    before = t.announced
    assert t.replace_all(list(kernel.values())) == Delta()
    assert t.announced == before


@settings(max_examples=150, deadline=None)
@given(events=events_st, dump=st.lists(routes_st, max_size=20, unique_by=lambda r: r.key))
def test_replace_all_equals_fresh_table(
    events: list[tuple[bool, KernelRoute]], dump: list[KernelRoute]
) -> None:
    # A dump holds each kernel key once (KernelRoute.key is the kernel's identity of a route).
    t = ExportTable(RULES)
    _apply(t, events, {}, set())
    before = t.announced
    delta = t.replace_all(dump)
    fresh = ExportTable(RULES)
    for r in dump:
        fresh.add(r)
    assert t.announced == fresh.announced
    assert t.blocks == fresh.blocks
    assert set(t.selected()) == set(fresh.selected())
    assert not (delta.announce & delta.withdraw)
    assert (set(before) - delta.withdraw) | delta.announce == set(t.announced)
    assert delta.announce.isdisjoint(before)
    assert delta.withdraw <= before


# ------------------------------------------------------------------ random sequences against a model
# Issue 10: prefixes anywhere in 10.20.0.0/22 at lengths from /22 to /32, so blocks nest (a /24 holding
# /26s, /26s holding /32 blocks), /32 blocks sit next to workload /32s, and a workload /32 outside every
# block (a borrowed address) appears; a few routes outside the pool or of other kinds are never selected.
_BASE = int(IPv4Address("10.20.0.0"))
_LENGTHS = [22, 23, 24, 26, 28, 30, 31, 32, 32, 32]


@st.composite
def _prefixes(draw: st.DrawFn) -> str:
    length = draw(st.sampled_from(_LENGTHS))
    offset = draw(st.integers(0, 1023)) & ~((1 << (32 - length)) - 1)
    base = _BASE if draw(st.integers(0, 9)) else int(IPv4Address("10.21.0.0"))  # 10.21/16: outside the pool
    return f"{IPv4Address(base + offset)}/{length}"


@st.composite
def _routes(draw: st.DrawFn) -> KernelRoute:
    prefix = draw(_prefixes())
    shape = draw(st.sampled_from(["block", "block", "workload", "workload", "felix", "other"]))
    priority = draw(st.sampled_from([0, 0, 0, 1024]))
    if shape == "block":
        return blackhole(prefix, priority=priority)
    if shape == "workload":
        return wep(prefix, priority=priority)
    if shape == "felix":
        return route(prefix, kind=draw(st.sampled_from(["unicast", "unreachable"])), priority=priority)
    return route(prefix, protocol=draw(st.sampled_from([BOOT, OWN])), ifname="eth0", priority=priority)


_ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _routes()),
        st.tuples(st.just("add"), _routes()),
        st.tuples(st.just("remove"), _routes()),
        st.tuples(st.just("replace_all"), st.lists(_routes(), max_size=30)),
    ),
    max_size=60,
)


def _model(kernel: dict[tuple[Prefix, int, int], KernelRoute]) -> set[Prefix]:
    """The announced set recomputed from scratch: every selected prefix not strictly inside a selected
    block (compared with ipaddress's own subnet_of, independent of the table's index)."""
    selected = [r for r in kernel.values() if RULES.selects(r)]
    blocks = {IPv4Network(str(r.prefix)) for r in selected if r.kind in BLOCK_KINDS}
    announced = set()
    for r in selected:
        p = IPv4Network(str(r.prefix))
        if not any(strictly_inside(p, b) for b in blocks):
            announced.add(r.prefix)
    return announced


@settings(max_examples=300, deadline=None)
@given(ops=_ops_st)
def test_random_sequences_match_a_model_recomputed_from_scratch(ops: list[tuple[str, object]]) -> None:
    t = ExportTable(RULES)
    kernel: dict[tuple[Prefix, int, int], KernelRoute] = {}
    for op, arg in ops:
        before = t.announced
        if op == "add":
            assert isinstance(arg, KernelRoute)
            kernel[arg.key] = arg
            delta = t.add(arg)
        elif op == "remove":
            assert isinstance(arg, KernelRoute)
            kernel.pop(arg.key, None)
            delta = t.remove(arg)
        else:
            assert isinstance(arg, list)
            kernel = {r.key: r for r in arg}
            delta = t.replace_all(arg)
        want = _model(kernel)
        assert t.announced == want
        assert t.announced_count == len(want)
        assert all(t.is_announced(p) for p in want)
        # the delta is exactly the difference between the states before and after
        assert delta.announce == want - before
        assert delta.withdraw == before - want
        selected = {r for r in kernel.values() if RULES.selects(r)}
        assert set(t.selected()) == selected
        assert len(t) == len(selected)
        assert t.blocks == {r.prefix for r in selected if r.kind in BLOCK_KINDS}
        # the index finds exactly the prefixes strictly inside each block
        prefixes = {r.prefix for r in selected}
        for block in t.blocks:
            inside = {p for p in prefixes if strictly_inside(p, block)}
            assert sorted(t._inside(block)) == sorted(inside)


# ------------------------------------------------------------------ cost of a change (issue 10)
# The work is counted as the Python and C function calls a change makes (sys.setprofile): independent of
# the machine's speed, and proportional to the steps of any loop over the table.


class _Calls:
    """Counts function calls while active; `limit` makes a runaway (quadratic) run stop early."""

    def __init__(self) -> None:
        self.count = 0

    def _profile(self, _frame: object, event: str, _arg: object) -> None:
        if event in ("call", "c_call"):
            self.count += 1

    def __enter__(self) -> _Calls:
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


def _block32s(n: int, start: str = "10.20.0.0") -> list[KernelRoute]:
    base = int(IPv4Address(start))
    return [blackhole(f"{IPv4Address(base + i)}/32") for i in range(n)]


PER_CHANGE_BUDGET = 200  # function calls per block added or removed (about 60 today)


def _feed(t: ExportTable, changes: list[tuple[bool, KernelRoute]], budget: int) -> int:
    """Apply the changes while counting calls; fail as soon as the average exceeds `budget` per change
    (the table scan of issue 10 would otherwise take minutes here). Returns the calls made."""
    with _Calls() as calls:
        for i, (is_add, r) in enumerate(changes, 1):
            if is_add:
                t.add(r)
            else:
                t.remove(r)
            assert calls.count <= budget * i, f"{calls.count / i:.0f} calls per change after {i} changes"
    return calls.count


def test_adding_and_removing_block_32s_is_linear_in_their_number() -> None:
    """4,000 /32 blocks one by one, then removed: the calls grow with N, not N² (issue 10's scan)."""
    per_route: dict[int, float] = {}
    for n in (500, 4000):
        t = ExportTable(RULES)
        blocks = _block32s(n)
        changes = [(True, r) for r in blocks] + [(False, r) for r in blocks]
        calls = _feed(t, changes, PER_CHANGE_BUDGET)
        assert t.announced == frozenset() and len(t) == 0
        per_route[n] = calls / len(changes)
    assert per_route[4000] <= 1.25 * per_route[500], per_route


def test_a_change_costs_the_same_in_a_large_table() -> None:
    """Adding and removing 162 blocks costs the same beside 20,000 other prefixes as in an empty table."""
    costs = []
    for others in (0, 20_000):
        t = ExportTable(RULES)
        for r in _block32s(others // 2, "10.20.64.0"):
            t.add(r)
        for i in range(others // 2):
            t.add(wep(f"{IPv4Address(int(IPv4Address('10.20.192.0')) + i)}/32"))
        blocks = [*_block32s(100, "10.20.1.0"), blackhole("10.20.2.0/26"), blackhole("10.20.3.0/24")]
        blocks += [blackhole(f"10.20.4.{i * 4}/30") for i in range(60)]
        changes = [(True, r) for r in blocks] + [(False, r) for r in blocks]
        calls = _feed(t, changes, PER_CHANGE_BUDGET)
        assert len(t) == others
        costs.append(calls)
    assert costs[1] <= 1.1 * costs[0], costs


def test_block_work_is_bounded_by_the_prefixes_inside_it() -> None:
    """A /24 block over 64 workload /32s, beside 20,000 workload /32s elsewhere: the prefixes the index
    hands back are those 64, and the cost of the add and the remove follows them, not the table."""
    t = ExportTable(RULES)
    for i in range(20_000):
        t.add(wep(f"{IPv4Address(int(IPv4Address('10.20.64.0')) + i)}/32"))
    workloads = [wep(f"10.20.5.{i}/32") for i in range(64)]
    for r in workloads:
        t.add(r)
    block = blackhole("10.20.5.0/24")
    assert sorted(t._inside(block.prefix)) == sorted(r.prefix for r in workloads)
    with _Calls() as calls:
        delta = t.add(block)
        assert delta == Delta({block.prefix}, {r.prefix for r in workloads})
        assert t.remove(block) == Delta({r.prefix for r in workloads}, {block.prefix})
    assert calls.count <= PER_CHANGE_BUDGET + 40 * 2 * len(workloads), calls.count
    assert t._inside(N("10.20.6.0/24")) == [] and t._inside(N("10.20.64.0/32")) == []
    assert len(t._inside(N("10.20.64.0/18"))) == 16_384
