"""Tests for bgpd.rib.table.Rib: Adj-RIB-In bookkeeping, implicit withdraw, peer drop, suppress, selection;
IPv4 and IPv6 prefixes and peers in one table (issue 11)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Network, IPv6Network, ip_address

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bgpd.model import Address, Attributes, Path, Peer, Prefix
from bgpd.rib.decision import best_path, multipath
from bgpd.rib.table import Rib, Selection

P1: Prefix = IPv4Network("10.20.1.0/26")
P2: Prefix = IPv4Network("10.20.1.64/26")
P3: Prefix = IPv4Network("10.20.2.0/26")
# IPv6 (issue 11): a /122 block, a /128, and a prefix with the integers of P1 (::10.20.1.0/122)
Q1: Prefix = IPv6Network("fd00:10:20::40/122")
Q2: Prefix = IPv6Network("fd00:10:20::7/128")
Q3: Prefix = IPv6Network("::a14:100/122")


def A(text: str) -> Address:
    return ip_address(text)


def mk(
    prefix: Prefix,
    peer: str,
    *,
    lp: int | None = None,
    as_path: tuple[int, ...] = (),
    next_hop: str | None = None,
) -> Path:
    return Path(
        prefix=prefix,
        next_hop=A(next_hop or peer),
        peer=Peer(address=A(peer), asn=64512),
        attrs=Attributes(as_path=as_path, local_pref=lp),
    )


def test_empty_rib() -> None:
    rib = Rib()
    assert len(rib) == 0
    assert list(rib.prefixes()) == []
    assert rib.paths(P1) == ()
    assert rib.selection(P1) is None
    assert rib.peer_prefixes(A("192.168.1.1")) == frozenset()
    assert rib.remove(A("192.168.1.1"), P1) is False
    assert rib.drop_peer(A("192.168.1.1")) == set()


def test_add_then_selection() -> None:
    rib = Rib()
    p = mk(P1, "192.168.1.1")
    assert rib.add(p) is True
    assert len(rib) == 1
    assert rib.paths(P1) == (p,)
    assert set(rib.prefixes()) == {P1}
    assert rib.peer_prefixes(A("192.168.1.1")) == frozenset({P1})
    sel = rib.selection(P1)
    assert sel == Selection(p, (p,))
    assert sel.next_hops == (A("192.168.1.1"),)


def test_add_same_path_again_is_no_change() -> None:
    rib = Rib()
    assert rib.add(mk(P1, "192.168.1.1", lp=200)) is True
    assert rib.add(mk(P1, "192.168.1.1", lp=200)) is False  # equal value, not identity
    assert len(rib) == 1


def test_add_replaces_path_of_same_peer_implicit_withdraw() -> None:
    rib = Rib()
    old = mk(P1, "192.168.1.1", lp=200)
    other = mk(P1, "192.168.1.2", lp=150)
    rib.add(old)
    rib.add(other)
    assert rib.selection(P1) is not None and rib.selection(P1).best == old  # type: ignore[union-attr]
    new = mk(P1, "192.168.1.1", lp=100, next_hop="192.168.1.77")
    assert rib.add(new) is True
    assert len(rib) == 2
    assert set(rib.paths(P1)) == {new, other}
    assert old not in rib.paths(P1)
    sel = rib.selection(P1)
    assert sel is not None and sel.best == other and sel.paths == (other,)


def test_remove() -> None:
    rib = Rib()
    a, b = mk(P1, "192.168.1.1"), mk(P1, "192.168.1.2")
    rib.add(a)
    rib.add(b)
    rib.add(mk(P2, "192.168.1.1"))
    assert rib.remove(A("192.168.1.1"), P1) is True
    assert rib.paths(P1) == (b,)
    assert rib.remove(A("192.168.1.1"), P1) is False  # already gone
    assert rib.remove(A("192.168.1.3"), P1) is False  # never there
    assert rib.peer_prefixes(A("192.168.1.1")) == frozenset({P2})
    assert rib.remove(A("192.168.1.2"), P1) is True
    assert P1 not in set(rib.prefixes())
    assert rib.selection(P1) is None
    assert len(rib) == 1


def test_drop_peer_returns_affected_prefixes() -> None:
    rib = Rib()
    gone = A("192.168.1.1")
    rib.add(mk(P1, "192.168.1.1"))
    rib.add(mk(P2, "192.168.1.1"))
    rib.add(mk(P2, "192.168.1.2"))
    rib.add(mk(P3, "192.168.1.2"))
    assert rib.drop_peer(gone) == {P1, P2}
    assert rib.peer_prefixes(gone) == frozenset()
    assert set(rib.prefixes()) == {P2, P3}
    assert rib.paths(P2) == (mk(P2, "192.168.1.2"),)
    assert rib.selection(P1) is None
    assert len(rib) == 2
    assert rib.drop_peer(gone) == set()  # second time: nothing


def test_suppress_hides_selection_but_keeps_paths() -> None:
    rib = Rib()
    p = mk(P1, "192.168.1.1")
    rib.add(p)
    rib.suppress(P1, True)
    assert rib.is_suppressed(P1)
    assert rib.selection(P1) is None
    assert rib.paths(P1) == (p,)
    assert len(rib) == 1
    rib.suppress(P1, False)
    assert not rib.is_suppressed(P1)
    assert rib.selection(P1) == Selection(p, (p,))
    rib.suppress(P2, False)  # releasing what was never suppressed is harmless
    assert not rib.is_suppressed(P2)


def test_suppress_before_any_path() -> None:
    rib = Rib()
    rib.suppress(P1, True)
    rib.add(mk(P1, "192.168.1.1"))
    assert rib.selection(P1) is None


def test_selection_ecmp() -> None:
    rib = Rib()
    a = mk(P1, "192.168.1.2", as_path=(65001,))
    b = mk(P1, "192.168.1.1", as_path=(65002,))
    worse = mk(P1, "192.168.1.3", lp=50, as_path=(65003,))
    for p in (a, worse, b):
        rib.add(p)
    sel = rib.selection(P1)
    assert sel is not None
    assert sel.best == b
    assert sel.paths == (b, a)
    assert sel.next_hops == (A("192.168.1.1"), A("192.168.1.2"))


def test_selection_next_hops_dedup() -> None:
    rib = Rib()
    rib.add(mk(P1, "192.168.1.1", next_hop="192.168.1.9"))
    rib.add(mk(P1, "192.168.1.2", next_hop="192.168.1.9"))
    sel = rib.selection(P1)
    assert sel is not None and len(sel.paths) == 2
    assert sel.next_hops == (A("192.168.1.9"),)


# ------------------------------------------------------------------ model-based state machine

# both families in one RIB; ::192.168.1.1 has the integer of 192.168.1.1
PEER_ADDRS = [A(f"192.168.1.{i}") for i in (1, 2, 3)] + [A("fd00::1"), A("fd00::2"), A("::c0a8:101")]
PREFIXES = [P1, P2, P3, Q1, Q2, Q3]
paths_st = st.builds(
    lambda prefix, peer, lp, nh: mk(prefix, str(peer), lp=lp, next_hop=nh),
    st.sampled_from(PREFIXES),
    st.sampled_from(PEER_ADDRS),
    st.sampled_from([None, 100, 200]),
    st.sampled_from([None, "192.168.1.50", "fd00::50"]),
)


class RibMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rib = Rib()
        self.model: dict[tuple[Prefix, Address], Path] = {}
        self.suppressed: set[Prefix] = set()

    @rule(path=paths_st)
    def add(self, path: Path) -> None:
        key = (path.prefix, path.peer.address)
        changed = self.model.get(key) != path
        self.model[key] = path
        assert self.rib.add(path) is changed

    @rule(prefix=st.sampled_from(PREFIXES), peer=st.sampled_from(PEER_ADDRS))
    def remove(self, prefix: Prefix, peer: Address) -> None:
        existed = self.model.pop((prefix, peer), None) is not None
        assert self.rib.remove(peer, prefix) is existed

    @rule(peer=st.sampled_from(PEER_ADDRS))
    def drop_peer(self, peer: Address) -> None:
        affected = {prefix for (prefix, p) in self.model if p == peer}
        for prefix in affected:
            del self.model[(prefix, peer)]
        assert self.rib.drop_peer(peer) == affected

    @rule(prefix=st.sampled_from(PREFIXES), on=st.booleans())
    def suppress(self, prefix: Prefix, on: bool) -> None:
        (self.suppressed.add if on else self.suppressed.discard)(prefix)
        self.rib.suppress(prefix, on)

    @invariant()
    def matches_model(self) -> None:
        assert len(self.rib) == len(self.model)
        assert set(self.rib.prefixes()) == {prefix for prefix, _ in self.model}
        for prefix in PREFIXES:
            expected = [p for (pfx, _), p in self.model.items() if pfx == prefix]
            assert sorted(self.rib.paths(prefix), key=repr) == sorted(expected, key=repr)
            assert self.rib.is_suppressed(prefix) == (prefix in self.suppressed)
            sel = self.rib.selection(prefix)
            best = best_path(expected)
            if prefix in self.suppressed or best is None:
                assert sel is None
            else:
                assert sel == Selection(best, multipath(expected, best))
        for peer in PEER_ADDRS:
            assert self.rib.peer_prefixes(peer) == frozenset(pfx for (pfx, p) in self.model if p == peer)


TestRibStateMachine = RibMachine.TestCase
TestRibStateMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# ------------------------------------------------------------------ cost of a change (issue 10)


def _calls(fn: Callable[[], object]) -> int:
    """Python and C function calls made by fn() (sys.setprofile): the work, whatever the machine."""
    count = 0

    def profile(_frame: object, event: str, _arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def test_a_change_costs_the_same_beside_a_large_table() -> None:
    """Add, replace, select, withdraw and len() for 100 prefixes: as many calls beside 20,000 paths of
    two other peers as in an empty RIB (no per-change work proportional to the table)."""
    base = int(A("10.80.0.0"))
    mine = [IPv4Network((base + i, 32)) for i in range(100)]

    def changes(rib: Rib) -> None:
        for prefix in mine:
            rib.add(mk(prefix, "192.168.1.1"))
            rib.add(mk(prefix, "192.168.1.1", lp=200))  # implicit withdraw of the first
            rib.add(mk(prefix, "192.168.1.2"))
            rib.selection(prefix)
            assert len(rib) >= 1
            rib.remove(A("192.168.1.1"), prefix)
            rib.remove(A("192.168.1.2"), prefix)

    costs = []
    for others in (0, 20_000):
        rib = Rib()
        for i in range(others):
            rib.add(mk(IPv4Network((base + 1000 + i, 32)), f"192.168.1.{3 + i % 2}"))
        costs.append(_calls(partial(changes, rib)))
        assert len(rib) == others
    assert costs[1] <= 1.05 * costs[0], costs
