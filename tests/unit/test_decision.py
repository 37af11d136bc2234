"""Tests for bgpd.rib.decision: best path (RFC 4271 §9.1.2.2, RFC 4456 §9, deterministic MED) and ECMP, for
IPv4 and IPv6 (issue 11: peers and next hops of either family, even with colliding integers)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.model import Address, Attributes, Origin, Path, Peer, Prefix
from bgpd.rib.decision import best_path, multipath, next_hops

PREFIX: Prefix = IPv4Network("10.20.1.0/26")
PREFIX6: Prefix = IPv6Network("fd00:10:20::40/122")


def A(text: str) -> Address:
    return ip_address(text)


def family_key(address: Address) -> tuple[int, int]:
    """Addresses in order without bgpd's keys: IPv4 before IPv6, by value within a family."""
    return address.version, int(address)


def mk(
    peer: str,
    *,
    lp: int | None = None,
    as_path: tuple[int, ...] = (),
    origin: Origin = Origin.IGP,
    med: int | None = None,
    ebgp: bool = False,
    router_id: str | None = None,
    originator: str | None = None,
    cluster: tuple[str, ...] = (),
    next_hop: str | None = None,
    asn: int = 64512,
    prefix: Prefix = PREFIX,
) -> Path:
    """A path to PREFIX from `peer` (its next hop is the peer unless given)."""
    return Path(
        prefix=prefix,
        next_hop=A(next_hop or peer),
        peer=Peer(
            address=A(peer),
            asn=asn,
            router_id=None if router_id is None else A(router_id),
            ebgp=ebgp,
        ),
        attrs=Attributes(
            origin=origin,
            as_path=as_path,
            local_pref=lp,
            med=med,
            originator_id=None if originator is None else A(originator),
            cluster_list=tuple(A(c) for c in cluster),
        ),
    )


@dataclass(frozen=True)
class Case:
    name: str
    winner: Path
    losers: tuple[Path, ...]


# In every case the winner is better at the step under test and WORSE at every later step, so a step
# applied out of order would pick a loser.
CASES = [
    Case(
        "local_pref_highest",
        winner=mk(
            "192.168.1.9",
            lp=200,
            as_path=(65001, 65002, 65003),
            origin=Origin.INCOMPLETE,
            med=99,
            router_id="9.9.9.9",
            cluster=("1.0.0.1", "1.0.0.2"),
        ),
        losers=(
            mk("192.168.1.1", lp=100, as_path=(65001,), ebgp=True, router_id="1.1.1.1"),
            mk("192.168.1.2", lp=150, as_path=(65002,), router_id="1.1.1.2"),
        ),
    ),
    Case(
        "missing_local_pref_counts_as_100",
        winner=mk("192.168.1.9", lp=None, as_path=(65001, 65002), router_id="9.9.9.9"),
        losers=(mk("192.168.1.1", lp=99, as_path=(65001,), ebgp=True, router_id="1.1.1.1"),),
    ),
    Case(
        "as_path_shortest",
        winner=mk("192.168.1.9", as_path=(65001,), origin=Origin.INCOMPLETE, router_id="9.9.9.9"),
        losers=(
            mk("192.168.1.1", as_path=(65002, 65003), ebgp=True, router_id="1.1.1.1"),
            mk("192.168.1.2", as_path=(65001, 65002, 65003), router_id="1.1.1.2"),
        ),
    ),
    Case(
        "origin_igp_over_egp_over_incomplete",
        winner=mk("192.168.1.9", as_path=(65001,), origin=Origin.IGP, med=50, router_id="9.9.9.9"),
        losers=(
            mk("192.168.1.1", as_path=(65001,), origin=Origin.EGP, med=0, ebgp=True, router_id="1.1.1.1"),
            mk("192.168.1.2", as_path=(65002,), origin=Origin.INCOMPLETE, ebgp=True, router_id="1.1.1.2"),
        ),
    ),
    Case(
        "egp_over_incomplete",
        winner=mk("192.168.1.9", as_path=(65001,), origin=Origin.EGP, router_id="9.9.9.9"),
        losers=(mk("192.168.1.1", as_path=(65002,), origin=Origin.INCOMPLETE, ebgp=True),),
    ),
    Case(
        "med_lowest_within_same_neighbor_as",
        winner=mk("192.168.1.9", as_path=(65001, 65010), med=5, router_id="9.9.9.9"),
        losers=(mk("192.168.1.1", as_path=(65001, 65020), med=10, ebgp=True, router_id="1.1.1.1"),),
    ),
    Case(
        "missing_med_is_lowest",
        winner=mk("192.168.1.9", as_path=(65001,), med=None, router_id="9.9.9.9"),
        losers=(mk("192.168.1.1", as_path=(65001,), med=1, ebgp=True, router_id="1.1.1.1"),),
    ),
    Case(
        "med_ignored_between_different_neighbor_as",
        winner=mk("192.168.1.1", as_path=(65001,), med=100),
        losers=(mk("192.168.1.9", as_path=(65002,), med=1),),
    ),
    Case(
        # p1 and p3 share neighbor AS 65001: p3's lower MED removes p1 (§9.1.2.2 c), then p2 beats p3
        # on peer address. A pairwise, order-dependent comparison returns p3 or p1 for some orders.
        "deterministic_med",
        winner=mk("192.168.1.2", as_path=(65002,), med=10),
        losers=(
            mk("192.168.1.1", as_path=(65001,), med=20),
            mk("192.168.1.3", as_path=(65001,), med=10),
        ),
    ),
    Case(
        "ebgp_over_ibgp",
        winner=mk("192.168.1.9", as_path=(65001,), ebgp=True, router_id="9.9.9.9", cluster=("1.0.0.1",)),
        losers=(mk("192.168.1.1", as_path=(65002,), ebgp=False, router_id="1.1.1.1"),),
    ),
    Case(
        "lowest_router_id",
        winner=mk("192.168.1.9", router_id="1.1.1.1", cluster=("1.0.0.1", "1.0.0.2")),
        losers=(mk("192.168.1.1", router_id="2.2.2.2"),),
    ),
    Case(
        "router_id_compared_numerically",
        winner=mk("192.168.1.9", router_id="9.0.0.1"),
        losers=(mk("192.168.1.1", router_id="10.0.0.2"),),
    ),
    Case(
        "router_id_defaults_to_peer_address",
        winner=mk("192.168.1.5"),
        losers=(mk("192.168.1.1", router_id="192.168.1.6"),),
    ),
    Case(
        "originator_id_replaces_router_id",
        winner=mk("192.168.1.9", router_id="9.9.9.9", originator="1.1.1.1", cluster=("1.0.0.1",)),
        losers=(
            mk("192.168.1.1", router_id="2.2.2.2"),
            mk("192.168.1.2", router_id="1.1.1.0", originator="3.3.3.3"),
        ),
    ),
    Case(
        "cluster_list_shortest",
        winner=mk("192.168.1.9", router_id="9.9.9.9", originator="1.1.1.1", cluster=("1.0.0.1",)),
        losers=(
            mk("192.168.1.1", router_id="2.2.2.2", originator="1.1.1.1", cluster=("1.0.0.1", "1.0.0.2")),
        ),
    ),
    Case(
        "empty_cluster_list_shortest",
        winner=mk("192.168.1.9", router_id="1.1.1.1"),
        losers=(mk("192.168.1.1", router_id="1.1.1.1", cluster=("1.0.0.1",)),),
    ),
    Case(
        "lowest_peer_address",
        winner=mk("192.168.1.1", router_id="5.5.5.5", next_hop="192.168.1.200"),
        losers=(
            mk("192.168.1.2", router_id="5.5.5.5", next_hop="192.168.1.100"),
            mk("192.168.1.10", router_id="5.5.5.5", next_hop="192.168.1.50"),
        ),
    ),
    Case(
        "peer_address_compared_numerically",
        winner=mk("192.168.1.9", router_id="5.5.5.5"),
        losers=(mk("192.168.1.10", router_id="5.5.5.5"),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_step_same_winner_in_every_order(case: Case) -> None:
    paths = (case.winner, *case.losers)
    for order in permutations(paths):
        assert best_path(order) == case.winner, [p.peer.address for p in order]
        assert best_path(iter(order)) == case.winner  # any iterable, consumed once


def test_best_path_of_nothing_is_none() -> None:
    assert best_path([]) is None
    assert best_path(iter(())) is None


def test_single_path_is_best() -> None:
    p = mk("192.168.1.1", lp=1, origin=Origin.INCOMPLETE)
    assert best_path([p]) is p


# ------------------------------------------------------------------ properties

# IPv4 and IPv6 peers, some IPv6 ones with the integer of an IPv4 one (::192.168.2.1 is ::c0a8:201): a
# comparison of plain integers would tie them and make the result depend on the order of the paths
PEERS = [f"192.168.2.{i}" for i in range(1, 9)] + ["::c0a8:201", "::c0a8:202", "fd00::2:1", "fd00::2:a"]


@st.composite
def path_sets(draw: st.DrawFn) -> list[Path]:
    """Up to 7 paths from distinct peers, with attributes from small domains so that ties are common."""
    peers = draw(st.lists(st.sampled_from(PEERS), min_size=1, max_size=7, unique=True))
    paths = []
    for peer in peers:
        paths.append(
            mk(
                peer,
                lp=draw(st.sampled_from([None, 100, 200])),
                as_path=draw(st.sampled_from([(), (65001,), (65002,), (65001, 65003), (65002, 65001)])),
                origin=draw(st.sampled_from(list(Origin))),
                med=draw(st.sampled_from([None, 0, 5, 10])),
                ebgp=draw(st.booleans()),
                router_id=draw(st.sampled_from([None, "1.1.1.1", "2.2.2.2", "::101:101"])),
                originator=draw(st.sampled_from([None, None, "1.1.1.1", "3.3.3.3"])),
                cluster=draw(st.sampled_from([(), ("1.0.0.1",), ("1.0.0.1", "1.0.0.2")])),
                next_hop=draw(st.sampled_from([None, "192.168.2.100"])),
            )
        )
    return paths


def _rfc_best(paths: list[Path]) -> Path:
    """Reference: RFC 4271 §9.1.2.2 + RFC 4456 §9 as successive eliminations, exactly as written."""

    def keep_min(cands: list[Path], key: Callable[[Path], int | tuple[int, int]]) -> list[Path]:
        low = min(key(p) for p in cands)
        return [p for p in cands if key(p) == low]

    def lp(p: Path) -> int:
        return 100 if p.attrs.local_pref is None else p.attrs.local_pref

    def nas(p: Path) -> int:
        return p.attrs.as_path[0] if p.attrs.as_path else 0

    def med(p: Path) -> int:
        return 0 if p.attrs.med is None else p.attrs.med

    def rid(p: Path) -> tuple[int, int]:
        if p.attrs.originator_id is not None:
            return family_key(p.attrs.originator_id)
        return family_key(p.peer.router_id or p.peer.address)

    c = keep_min(paths, lambda p: -lp(p))
    c = keep_min(c, lambda p: len(p.attrs.as_path))
    c = keep_min(c, lambda p: int(p.attrs.origin))
    c = [p for p in c if med(p) == min(med(q) for q in c if nas(q) == nas(p))]
    if any(p.peer.ebgp for p in c):
        c = [p for p in c if p.peer.ebgp]
    c = keep_min(c, rid)
    c = keep_min(c, lambda p: len(p.attrs.cluster_list))
    c = keep_min(c, lambda p: family_key(p.peer.address))
    assert len(c) == 1
    return c[0]


@settings(max_examples=150, deadline=None)
@given(paths=path_sets(), seed=st.randoms(use_true_random=False))
def test_best_path_is_order_independent_and_an_input(paths: list[Path], seed: random.Random) -> None:
    best = best_path(paths)
    assert best is not None
    assert any(best is p for p in paths)
    shuffled = list(paths)
    seed.shuffle(shuffled)
    assert best_path(shuffled) == best
    assert best_path(reversed(paths)) == best


@settings(max_examples=150, deadline=None)
@given(paths=path_sets())
def test_best_path_matches_rfc_elimination_reference(paths: list[Path]) -> None:
    assert best_path(paths) == _rfc_best(paths)


@settings(max_examples=100, deadline=None)
@given(paths=path_sets(), seed=st.randoms(use_true_random=False))
def test_multipath_invariants(paths: list[Path], seed: random.Random) -> None:
    best = best_path(paths)
    assert best is not None
    ecmp = multipath(paths, best)
    assert best in ecmp
    assert [family_key(p.peer.address) for p in ecmp] == sorted(family_key(p.peer.address) for p in ecmp)
    for p in ecmp:
        assert p in paths
        assert (p.attrs.local_pref or 100) == (best.attrs.local_pref or 100)
        assert len(p.attrs.as_path) == len(best.attrs.as_path)
        assert p.attrs.origin == best.attrs.origin
        assert p.peer.ebgp == best.peer.ebgp
    shuffled = list(paths)
    seed.shuffle(shuffled)
    assert multipath(shuffled, best) == ecmp


# ------------------------------------------------------------------ multipath / ECMP examples


def test_equal_paths_from_different_peers_form_ecmp_set() -> None:
    a = mk("192.168.3.2", as_path=(65001,), ebgp=True)
    b = mk("192.168.3.1", as_path=(65002,), ebgp=True)
    best = best_path([a, b])
    assert best == b
    ecmp = multipath([a, b], best)
    assert ecmp == (b, a)  # ordered by peer address
    assert next_hops(ecmp) == (A("192.168.3.1"), A("192.168.3.2"))


def test_ecmp_same_neighbor_as_needs_same_med() -> None:
    a = mk("192.168.3.1", as_path=(65001,), med=5)
    b = mk("192.168.3.2", as_path=(65001,), med=5)
    c = mk("192.168.3.3", as_path=(65001,), med=6)
    best = best_path([a, b, c])
    assert best == a
    assert multipath([a, b, c], best) == (a, b)


def test_ecmp_ignores_med_across_neighbor_as() -> None:
    a = mk("192.168.3.1", as_path=(65001,), med=5)
    b = mk("192.168.3.2", as_path=(65002,), med=50)
    assert multipath([a, b], a) == (a, b)


@pytest.mark.parametrize(
    "worse",
    [
        mk("192.168.3.1", lp=50, as_path=(65002,), ebgp=True),
        mk("192.168.3.1", as_path=(65002, 65003), ebgp=True),
        mk("192.168.3.1", as_path=(65002,), origin=Origin.EGP, ebgp=True),
        mk("192.168.3.1", as_path=(65002,), ebgp=False),
    ],
    ids=["local_pref", "as_path_len", "origin", "ibgp"],
)
def test_worse_path_excluded_from_ecmp(worse: Path) -> None:
    good = mk("192.168.3.2", as_path=(65001,), ebgp=True)
    best = best_path([good, worse])
    assert best == good
    assert multipath([good, worse], best) == (good,)
    assert next_hops(multipath([good, worse], best)) == (A("192.168.3.2"),)


def test_ecmp_with_higher_router_id_still_included() -> None:
    a = mk("192.168.3.1", router_id="1.1.1.1")
    b = mk("192.168.3.2", router_id="9.9.9.9", cluster=("1.0.0.1",))
    assert multipath([b, a], a) == (a, b)


def test_next_hops_dedup_and_sorted_numerically() -> None:
    paths = [
        mk("192.168.3.3", next_hop="10.0.0.10"),
        mk("192.168.3.1", next_hop="10.0.0.9"),
        mk("192.168.3.2", next_hop="10.0.0.10"),
        mk("192.168.3.4", next_hop="10.0.0.9"),
    ]
    assert next_hops(paths) == (A("10.0.0.9"), A("10.0.0.10"))
    assert next_hops([]) == ()


# ------------------------------------------------------------------ IPv6 (issue 11)


def test_ipv6_ecmp_and_next_hops_sorted_by_value() -> None:
    # "fd00::a" sorts before "fd00::9" as text, after it as an address (the kernel's order)
    a = mk("fd00::a", as_path=(65001,), ebgp=True, prefix=PREFIX6)
    b = mk("fd00::9", as_path=(65002,), ebgp=True, prefix=PREFIX6)
    c = mk("fd00::1:0", lp=50, prefix=PREFIX6)
    best = best_path([a, c, b])
    assert best == b
    ecmp = multipath([a, c, b], best)
    assert ecmp == (b, a)
    assert next_hops(ecmp) == (A("fd00::9"), A("fd00::a"))


def test_ipv6_next_hops_dedup() -> None:
    paths = [mk(p, next_hop=h, prefix=PREFIX6) for p, h in [("fd00::3", "fd00::20"), ("fd00::1", "fd00::20")]]
    paths.append(mk("fd00::2", next_hop="fd00::1f", prefix=PREFIX6))
    assert next_hops(paths) == (A("fd00::1f"), A("fd00::20"))
    assert next_hops(paths) is next_hops(list(reversed(paths)))  # the same set: the same tuple


def test_next_hops_of_both_families_ipv4_first() -> None:
    paths = [mk("fd00::3", next_hop="fd00::1"), mk("192.168.3.9", next_hop="10.0.0.9")]
    paths.append(mk("192.168.3.1", next_hop="::a00:8"))  # the int of 10.0.0.8, as IPv6
    assert next_hops(paths) == (A("10.0.0.9"), A("::a00:8"), A("fd00::1"))


def test_final_tie_break_ipv4_peer_before_ipv6_peer_with_the_same_integer() -> None:
    v4 = mk("192.168.2.1")
    v6 = mk("::c0a8:201")  # ::192.168.2.1
    assert best_path([v4, v6]) == v4 and best_path([v6, v4]) == v4
    assert multipath([v6, v4], v4) == (v4, v6)
    # router ids too: an IPv6 "router id" (a peer without one) with the int of an IPv4 one loses to it
    low = mk("fd00::9", router_id="0.0.0.5")
    high = mk("192.168.2.2")  # its router id is its address
    twin = mk("fd00::8", router_id="::5")
    for order in permutations([low, high, twin]):
        assert best_path(order) == low
