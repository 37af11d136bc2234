"""bgpd.rib.table.Rib with IPv4 and IPv6 routes together (issue 11): the same bookkeeping and selection per
family, nothing shared across families (not even between prefixes or peers with the same integers), and
a Loc-RIB that depends only on the paths held, never on the order they came in."""

from __future__ import annotations

import random
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix as lean
from bgpd.model import Address, Attributes, Path, Peer, Prefix
from bgpd.rib.decision import best_path, multipath
from bgpd.rib.table import Rib, Selection

# Per family: three prefixes (a block, a neighbour block, a host route) and a peer-address maker
FAMILIES: dict[str, tuple[list[str], str]] = {
    "ipv4": (["10.20.1.0/26", "10.20.1.64/26", "10.20.2.7/32"], "192.168.1.{}"),
    "ipv6": (["fd00:10:20::40/122", "fd00:10:20::80/122", "fd00:10:20::2:7/128"], "fd00:100::{}"),
    # IPv6 prefixes and peers with the integers of IPv4 ones: 10.20.1.0/26 -> ::10.20.1.0/122 ...
    "ipv6-twins": (["::a14:100/122", "::a14:140/122", "::a14:207/128"], "::c0a8:1{:02x}"),
}


def mk(prefix: Prefix, peer: Address, *, lp: int | None = None, as_path: tuple[int, ...] = ()) -> Path:
    return Path(prefix, peer, Peer(peer, 64512), Attributes(as_path=as_path, local_pref=lp))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("lean_types", [False, True], ids=["plain", "lean"])
def test_the_same_flow_in_each_family_beside_the_ipv4_one(family: str, lean_types: bool) -> None:
    """One scenario (add, implicit withdraw, ECMP, suppress, remove, peer drop) run in `family` while the
    same scenario's IPv4 routes sit in the same RIB: each family's answers are those of a RIB alone."""
    parse = lean.parse_any if lean_types else ip_network
    texts, peer_text = FAMILIES[family]
    p1, p2, p3 = (parse(t) for t in texts)
    a, b, c = (ip_address(peer_text.format(i)) for i in (1, 2, 3))
    rib = Rib()
    v4_texts, v4_peer = FAMILIES["ipv4"]
    other = (
        []
        if family == "ipv4"
        else [mk(ip_network(t), ip_address(v4_peer.format(i))) for t in v4_texts for i in (1, 2, 3)]
    )
    for path in other:
        rib.add(path)
    base = len(rib)

    assert rib.add(mk(p1, a, lp=200))
    assert rib.add(mk(p1, b, as_path=(65001,)))
    assert not rib.add(mk(p1, a, lp=200))
    sel = rib.selection(p1)
    assert sel is not None and sel.best == mk(p1, a, lp=200) and sel.next_hops == (a,)
    assert rib.add(mk(p1, a, as_path=(65002,)))  # implicit withdraw: now equal to b's, ECMP
    sel = rib.selection(p1)
    assert sel is not None and sel.paths == (mk(p1, a, as_path=(65002,)), mk(p1, b, as_path=(65001,)))
    assert sel.next_hops == (a, b)
    rib.add(mk(p2, c))
    rib.add(mk(p3, c))
    assert rib.peer_prefixes(c) == {p2, p3}
    assert len(rib) == base + 4
    rib.suppress(p2, True)
    assert rib.selection(p2) is None and rib.paths(p2) == (mk(p2, c),)
    rib.suppress(p2, False)
    assert rib.selection(p2) == Selection(mk(p2, c), (mk(p2, c),))
    assert rib.remove(b, p1) and not rib.remove(b, p1)
    assert rib.drop_peer(c) == {p2, p3}
    assert set(rib.prefixes()) - {path.prefix for path in other} == {p1}
    assert len(rib) == base + 1
    for path in other:  # the IPv4 routes are untouched
        assert path in rib.paths(path.prefix)
    if other:
        assert rib.peer_prefixes(ip_address(v4_peer.format(3))) == {ip_network(t) for t in v4_texts}


# ------------------------------------------------------------------ against a model, in any order

_PREFIXES = [ip_network(t) for texts, _ in FAMILIES.values() for t in texts]
_PEERS = [ip_address(peer.format(i)) for _, peer in FAMILIES.values() for i in (1, 2, 3)]
_paths = st.builds(
    lambda prefix, peer, lp, as_path: mk(prefix, peer, lp=lp, as_path=as_path),
    st.sampled_from(_PREFIXES),
    st.sampled_from(_PEERS),
    st.sampled_from([None, 100, 200]),
    st.sampled_from([(), (65001,), (65002,), (65001, 65003)]),
)
# one event: (what, a path to add, a prefix and a peer to remove / drop / suppress, on or off)
Event = tuple[str, Path, Prefix, Address, bool]
_events = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "remove", "drop", "suppress"]),
        _paths,
        st.sampled_from(_PREFIXES),
        st.sampled_from(_PEERS),
        st.booleans(),
    ),
    max_size=50,
)


def _check(rib: Rib, model: dict[tuple[Prefix, Address], Path], suppressed: set[Prefix]) -> None:
    """The RIB against the model: the paths, the per-peer index and every selection from scratch."""
    assert len(rib) == len(model)
    assert set(rib.prefixes()) == {prefix for prefix, _ in model}
    for prefix in _PREFIXES:
        held = [path for (p, _), path in model.items() if p == prefix]
        assert sorted(rib.paths(prefix), key=repr) == sorted(held, key=repr)
        best = best_path(held)
        want = None if best is None or prefix in suppressed else Selection(best, multipath(held, best))
        assert rib.selection(prefix) == want
    for peer in _PEERS:
        assert rib.peer_prefixes(peer) == {prefix for prefix, p in model if p == peer}


@settings(max_examples=300, deadline=None)
@given(events=_events)
def test_random_event_sequences_match_a_model(events: list[Event]) -> None:
    rib = Rib()
    model: dict[tuple[Prefix, Address], Path] = {}
    suppressed: set[Prefix] = set()
    for op, path, prefix, peer, on in events:
        if op == "add":
            key = (path.prefix, path.peer.address)
            assert rib.add(path) is (model.get(key) != path)
            model[key] = path
        elif op == "remove":
            assert rib.remove(peer, prefix) is (model.pop((prefix, peer), None) is not None)
        elif op == "drop":
            assert rib.drop_peer(peer) == {p for p, q in model if q == peer}
            model = {k: v for k, v in model.items() if k[1] != peer}
        else:
            rib.suppress(prefix, on)
            (suppressed.add if on else suppressed.discard)(prefix)
        _check(rib, model, suppressed)


@settings(max_examples=200, deadline=None)
@given(
    paths=st.lists(_paths, max_size=30, unique_by=lambda p: (p.prefix, p.peer.address)),
    seed=st.randoms(use_true_random=False),
)
def test_loc_rib_is_independent_of_insertion_order(paths: list[Path], seed: random.Random) -> None:
    """The same paths added in any order (and with other paths added and withdrawn on the way) give the
    same Loc-RIB: the selection of every prefix, of both families, and its next hops."""
    forward, shuffled = Rib(), Rib()
    for path in paths:
        forward.add(path)
    order = list(paths)
    seed.shuffle(order)
    for path in order:
        shuffled.add(mk(path.prefix, path.peer.address, lp=1))  # replaced below: implicit withdraw
        shuffled.add(path)
    model = {(p.prefix, p.peer.address): p for p in paths}
    _check(forward, model, set())
    _check(shuffled, model, set())
    for prefix in _PREFIXES:
        a, b = forward.selection(prefix), shuffled.selection(prefix)
        assert a == b
        if a is not None and b is not None:
            assert a.next_hops == b.next_hops
            assert list(a.next_hops) == sorted(a.next_hops, key=lambda h: (h.version, int(h)))
