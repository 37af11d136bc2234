"""Tests for route reflection (RFC 4456): reflector.rules, reflector.adjout, the RFC 4456 §9 steps of
bgpd.rib.decision.best_path and the loop checks of bgpd.policy.importer.ImportPolicy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bgpd.config import Config
from bgpd.metrics import Latency
from bgpd.model import Address, Attributes, Origin, Path, Peer, Prefix
from bgpd.policy.importer import ImportPolicy, Reject
from bgpd.rib.decision import best_path
from bgpd.speaker import Speaker
from reflector.adjout import AdjRibOut, Advert, Batch
from reflector.rules import is_loop, reflected_attributes, targets


def A(text: str) -> Address:
    return IPv4Address(text)


def N(text: str) -> Prefix:
    return IPv4Network(text)


# -------------------------------------------------------------------------------------------- targets

C1, C2, C3 = A("192.168.100.10"), A("192.168.100.11"), A("192.168.100.12")
N1, N2 = A("192.168.100.2"), A("192.168.100.4")
CLIENTS = frozenset({C1, C2, C3})
NON_CLIENTS = frozenset({N1, N2})
PEERS: dict[Address, bool] = {C1: True, C2: True, C3: True, N1: False, N2: False}


@pytest.mark.parametrize(
    ("source", "source_is_client", "peers", "expected"),
    [
        # RFC 4456 §6: from a client -> every other client and every non-client
        (C1, True, PEERS, {C2, C3, N1, N2}),
        (C3, True, PEERS, {C1, C2, N1, N2}),
        # from a non-client -> clients only
        (N1, False, PEERS, {C1, C2, C3}),
        (N2, False, PEERS, {C1, C2, C3}),
        # lone client: nobody else to reflect to
        (C1, True, {C1: True}, set()),
        # non-client with only non-clients around (a plain iBGP mesh): nothing is reflected
        (N1, False, {N1: False, N2: False}, set()),
        # client with only non-clients around
        (C1, True, {C1: True, N1: False, N2: False}, {N1, N2}),
        # non-client with only clients around
        (N1, False, {N1: False, C1: True, C2: True}, {C1, C2}),
        # no peers at all
        (C1, True, {}, set()),
        # a source that is not in the peer map (still never itself, and the class rules hold)
        (A("192.168.100.99"), True, PEERS, {C1, C2, C3, N1, N2}),
        (A("192.168.100.99"), False, PEERS, {C1, C2, C3}),
    ],
    ids=[
        "client-c1",
        "client-c3",
        "nonclient-n1",
        "nonclient-n2",
        "lone-client",
        "nonclient-no-clients",
        "client-only-nonclients",
        "nonclient-only-clients",
        "no-peers",
        "unknown-client-source",
        "unknown-nonclient-source",
    ],
)
def test_targets_table(
    source: Address,
    source_is_client: bool,
    peers: Mapping[Address, bool],
    expected: set[Address],
) -> None:
    got = targets(source, source_is_client, peers)
    assert isinstance(got, frozenset)
    assert got == expected


@pytest.mark.parametrize("source", sorted(PEERS))
def test_targets_never_back_to_source_and_by_class(source: Address) -> None:
    is_client = PEERS[source]
    got = targets(source, is_client, PEERS)
    assert source not in got
    if is_client:
        assert got == (CLIENTS | NON_CLIENTS) - {source}
    else:
        assert got == CLIENTS
        assert not got & NON_CLIENTS


@given(
    st.dictionaries(st.integers(1, 30).map(lambda i: A(f"10.0.0.{i}")), st.booleans(), max_size=12),
    st.integers(1, 30).map(lambda i: A(f"10.0.0.{i}")),
)
def test_targets_property(peers: dict[Address, bool], source: Address) -> None:
    source_is_client = peers.get(source, False)
    got = targets(source, source_is_client, peers)
    assert source not in got
    assert got <= set(peers)
    clients = {p for p, c in peers.items() if c} - {source}
    non_clients = {p for p, c in peers.items() if not c} - {source}
    assert clients <= got  # every client except the source gets it, whichever side it came from
    assert (non_clients <= got) if source_is_client else not (got & non_clients)


# --------------------------------------------------------------------------- reflected attributes

CLUSTER = A("1.0.0.1")
SOURCE_RID = A("192.168.100.10")
FULL = Attributes(
    origin=Origin.INCOMPLETE,
    as_path=(65001, 65002),
    local_pref=200,
    med=50,
    communities=("64512:100", "64512:200"),
    large_communities=("64512:1:2",),
)


@pytest.mark.parametrize(
    ("attrs", "originator", "cluster_list"),
    [
        (FULL, SOURCE_RID, (CLUSTER,)),
        (Attributes(), SOURCE_RID, (CLUSTER,)),
        # already reflected once: ORIGINATOR_ID kept, our cluster id prepended
        (
            replace(FULL, originator_id=A("192.168.100.11"), cluster_list=(A("2.0.0.2"),)),
            A("192.168.100.11"),
            (CLUSTER, A("2.0.0.2")),
        ),
        (
            replace(FULL, originator_id=A("192.168.100.12"), cluster_list=(A("3.0.0.3"), A("2.0.0.2"))),
            A("192.168.100.12"),
            (CLUSTER, A("3.0.0.3"), A("2.0.0.2")),
        ),
        # an ORIGINATOR_ID equal to the source's router id is kept as is
        (replace(FULL, originator_id=SOURCE_RID), SOURCE_RID, (CLUSTER,)),
    ],
    ids=["fresh", "empty-attrs", "reflected-once", "reflected-twice", "originator-is-source"],
)
def test_reflected_attributes(
    attrs: Attributes, originator: Address, cluster_list: tuple[Address, ...]
) -> None:
    out = reflected_attributes(attrs, SOURCE_RID, CLUSTER)
    assert out.originator_id == originator
    assert out.cluster_list == cluster_list
    # everything else is untouched
    for name in ("origin", "as_path", "local_pref", "med", "communities", "large_communities"):
        assert getattr(out, name) == getattr(attrs, name), name
    assert replace(out, originator_id=attrs.originator_id, cluster_list=attrs.cluster_list) == attrs


def test_reflected_attributes_does_not_mutate_input() -> None:
    before = replace(FULL)
    reflected_attributes(FULL, SOURCE_RID, CLUSTER)
    assert before == FULL
    assert FULL.originator_id is None
    assert FULL.cluster_list == ()


def test_reflected_twice_by_two_clusters_is_a_loop_for_both() -> None:
    other = A("2.0.0.2")
    once = reflected_attributes(FULL, SOURCE_RID, CLUSTER)
    twice = reflected_attributes(once, A("192.168.100.2"), other)
    assert twice.originator_id == SOURCE_RID  # the first reflector's choice survives
    assert twice.cluster_list == (other, CLUSTER)
    assert is_loop(twice, A("9.9.9.9"), CLUSTER)
    assert is_loop(twice, A("9.9.9.9"), other)
    assert is_loop(twice, SOURCE_RID, A("7.7.7.7"))


# ------------------------------------------------------------------------------------------ is_loop

ROUTER_ID = A("192.168.100.2")


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (Attributes(), False),
        (Attributes(originator_id=ROUTER_ID), True),
        (Attributes(originator_id=A("192.168.100.10")), False),
        (Attributes(cluster_list=(CLUSTER,)), True),
        (Attributes(cluster_list=(A("2.0.0.2"), A("3.0.0.3"), CLUSTER)), True),  # any position
        (Attributes(cluster_list=(A("2.0.0.2"), A("3.0.0.3"))), False),
        (Attributes(originator_id=ROUTER_ID, cluster_list=(CLUSTER,)), True),
        (Attributes(originator_id=A("192.168.100.10"), cluster_list=(A("2.0.0.2"),)), False),
        # our router id inside CLUSTER_LIST is not our cluster id: not a loop
        (Attributes(cluster_list=(ROUTER_ID,)), False),
        # our cluster id as ORIGINATOR_ID is not our router id: not a loop
        (Attributes(originator_id=CLUSTER), False),
    ],
)
def test_is_loop(attrs: Attributes, expected: bool) -> None:
    assert is_loop(attrs, ROUTER_ID, CLUSTER) is expected


def test_is_loop_when_cluster_id_equals_router_id() -> None:
    # The common single-reflector default: cluster id = router id.
    assert is_loop(Attributes(cluster_list=(ROUTER_ID,)), ROUTER_ID, ROUTER_ID)
    assert is_loop(Attributes(originator_id=ROUTER_ID), ROUTER_ID, ROUTER_ID)
    assert not is_loop(Attributes(cluster_list=(CLUSTER,)), ROUTER_ID, ROUTER_ID)


# ------------------------------------------------------------------------------- best path (§9)

PREFIX = N("10.20.1.0/26")


def path(
    peer: str,
    *,
    router_id: str | None = None,
    originator: str | None = None,
    cluster: tuple[str, ...] = (),
    lp: int | None = None,
) -> Path:
    return Path(
        prefix=PREFIX,
        next_hop=A("192.168.100.50"),
        peer=Peer(address=A(peer), asn=64512, router_id=None if router_id is None else A(router_id)),
        attrs=Attributes(
            local_pref=lp,
            originator_id=None if originator is None else A(originator),
            cluster_list=tuple(A(c) for c in cluster),
        ),
    )


# Each case: candidates, and the index of the winner. Peer addresses are chosen so that the final
# tie-break (lowest peer address) would pick a different path than the step under test.
BEST_CASES: dict[str, tuple[list[Path], int]] = {
    "shortest-cluster-list-same-originator": (
        [
            path("192.168.100.2", originator="10.0.0.5", cluster=("1.0.0.1", "2.0.0.2", "3.0.0.3")),
            path("192.168.100.3", originator="10.0.0.5", cluster=("1.0.0.1", "2.0.0.2")),
            path("192.168.100.4", originator="10.0.0.5", cluster=("1.0.0.1",)),
        ],
        2,
    ),
    "lowest-originator-beats-shorter-cluster-list": (
        [
            path("192.168.100.2", originator="10.0.0.9", cluster=("1.0.0.1",)),
            path("192.168.100.3", originator="10.0.0.1", cluster=("1.0.0.1", "2.0.0.2", "3.0.0.3")),
            path("192.168.100.4", originator="10.0.0.5", cluster=("1.0.0.1", "2.0.0.2")),
        ],
        1,
    ),
    "originator-stands-in-for-peer-router-id": (
        [
            # peer's own BGP id is the lowest, but the route carries a high ORIGINATOR_ID
            path("192.168.100.2", router_id="1.1.1.1", originator="10.0.0.9", cluster=("1.0.0.1",)),
            path("192.168.100.3", router_id="10.0.0.5"),
            path("192.168.100.4", router_id="9.9.9.9", originator="10.0.0.7", cluster=("1.0.0.1",)),
        ],
        1,
    ),
    "direct-from-originator-beats-its-reflected-copies": (
        [
            path("192.168.100.2", router_id="192.168.100.2", originator="10.0.0.5", cluster=("1.0.0.1",)),
            path("192.168.100.4", router_id="192.168.100.4", originator="10.0.0.5", cluster=("2.0.0.2",)),
            path("192.168.100.9", router_id="10.0.0.5"),  # same "router id" 10.0.0.5, empty CLUSTER_LIST
        ],
        2,
    ),
    "equal-originator-and-length-lowest-peer-address": (
        [
            path("192.168.100.4", originator="10.0.0.5", cluster=("1.0.0.1",)),
            path("192.168.100.2", originator="10.0.0.5", cluster=("2.0.0.2",)),
            path("192.168.100.3", originator="10.0.0.5", cluster=("3.0.0.3",)),
        ],
        1,
    ),
    "cluster-list-contents-do-not-matter-only-length": (
        [
            path("192.168.100.2", originator="10.0.0.5", cluster=("0.0.0.1", "0.0.0.1")),
            path("192.168.100.3", originator="10.0.0.5", cluster=("255.255.255.254",)),
        ],
        1,
    ),
    "local-pref-still-beats-originator-and-cluster-list": (
        [
            path("192.168.100.2", originator="10.0.0.1"),
            path("192.168.100.3", originator="10.0.0.9", cluster=("1.0.0.1", "2.0.0.2"), lp=200),
            path("192.168.100.4", originator="10.0.0.2", cluster=("1.0.0.1",)),
        ],
        1,
    ),
    "four-way-mixed": (
        [
            path("192.168.100.2", originator="10.0.0.6", cluster=("1.0.0.1",)),
            path("192.168.100.3", originator="10.0.0.5", cluster=("1.0.0.1", "2.0.0.2")),
            path("192.168.100.4", router_id="10.0.0.7"),
            path("192.168.100.5", originator="10.0.0.5", cluster=("3.0.0.3",)),
        ],
        3,
    ),
}


@pytest.mark.parametrize("case", sorted(BEST_CASES))
def test_best_path_reflection_steps_in_every_order(case: str) -> None:
    candidates, winner = BEST_CASES[case]
    expected = candidates[winner]
    for order in permutations(candidates):
        assert best_path(order) == expected, [str(p.peer.address) for p in order]


def test_best_path_empty() -> None:
    assert best_path([]) is None


# ----------------------------------------------------------------------------------- import loops

HOST = A("192.168.100.2")
NH = A("192.168.100.10")
NH6 = IPv6Address("fd00:100::10")


def import_policy(cluster_id: Address | None) -> ImportPolicy:
    return ImportPolicy(
        pools=[N("10.20.0.0/16"), IPv6Network("fd00:10:20::/48")],
        node_addresses=[HOST, IPv6Address("fd00:100::2")],
        local_addresses=[],
        router_id=HOST,
        cluster_id=cluster_id,
    )


@pytest.mark.parametrize(
    ("cluster_id", "attrs", "expected"),
    [
        (CLUSTER, Attributes(), None),
        (CLUSTER, Attributes(originator_id=HOST), Reject.OWN_ORIGINATOR),
        (CLUSTER, Attributes(originator_id=HOST, cluster_list=(A("2.0.0.2"),)), Reject.OWN_ORIGINATOR),
        (CLUSTER, Attributes(originator_id=A("192.168.100.11")), None),
        (CLUSTER, Attributes(cluster_list=(CLUSTER,)), Reject.CLUSTER_LOOP),
        (CLUSTER, Attributes(cluster_list=(A("2.0.0.2"), CLUSTER)), Reject.CLUSTER_LOOP),
        (
            CLUSTER,
            Attributes(originator_id=A("192.168.100.11"), cluster_list=(CLUSTER,)),
            Reject.CLUSTER_LOOP,
        ),
        (CLUSTER, Attributes(originator_id=A("192.168.100.11"), cluster_list=(A("2.0.0.2"),)), None),
        # without a cluster id (a plain host): a CLUSTER_LIST never loops, ORIGINATOR_ID still does
        (None, Attributes(cluster_list=(CLUSTER,)), None),
        (None, Attributes(originator_id=HOST), Reject.OWN_ORIGINATOR),
    ],
)
@pytest.mark.parametrize(("prefix", "next_hop"), [("10.20.1.0/26", NH), ("fd00:10:20::40/122", NH6)])
def test_import_loop_checks(
    cluster_id: Address | None,
    attrs: Attributes,
    expected: Reject | None,
    prefix: str,
    next_hop: Address | IPv6Address,
) -> None:
    assert import_policy(cluster_id).check(ip_network(prefix), next_hop, attrs) == expected


def test_import_loop_checks_agree_with_is_loop() -> None:
    pol = import_policy(CLUSTER)
    for originator in (None, HOST, A("192.168.100.11")):
        for cl in ((), (CLUSTER,), (A("2.0.0.2"),), (A("2.0.0.2"), CLUSTER)):
            attrs = Attributes(originator_id=originator, cluster_list=cl)
            rejected = pol.check(N("10.20.1.0/26"), NH, attrs) is not None
            assert rejected == is_loop(attrs, HOST, CLUSTER), attrs


def test_reject_values_are_metric_labels() -> None:
    assert Reject.OWN_ORIGINATOR.value == "own_originator"
    assert Reject.CLUSTER_LOOP.value == "cluster_loop"


# ------------------------------------------------------------------------------------------ adjout

P1, P2, P3 = A("192.168.100.10"), A("192.168.100.11"), A("192.168.100.12")
X1, X2, X3 = N("10.20.1.0/26"), N("10.20.2.0/26"), N("10.20.3.0/26")
AD1 = Advert(A("192.168.100.10"), Attributes(originator_id=A("192.168.100.10"), cluster_list=(CLUSTER,)))
AD2 = Advert(A("192.168.100.11"), Attributes(originator_id=A("192.168.100.11"), cluster_list=(CLUSTER,)))
AD3 = Advert(A("192.168.100.10"), Attributes(local_pref=200))


def batch_set(batches: list[Batch]) -> set[Batch]:
    assert len(set(batches)) == len(batches), "duplicate batch"
    return set(batches)


def test_set_flush_one_batch_per_advert_and_peer_set() -> None:
    r = AdjRibOut()
    # 3 prefixes with the same advert to the same two peers: one batch
    for prefix in (X1, X2, X3):
        r.set(prefix, {P2: AD1, P3: AD1})
    assert r.flush() == [Batch(AD1, (P2, P3), (X1, X2, X3))]
    assert r.flush() == []


def test_flush_groups_by_advert_and_by_peer_set() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD2, P2: AD1, P3: AD1})
    r.set(X2, {P2: AD1, P3: AD1})
    r.set(X3, {P2: AD1})
    assert batch_set(r.flush()) == {
        Batch(AD1, (P2, P3), (X1, X2)),
        Batch(AD2, (P1,), (X1,)),
        Batch(AD1, (P2,), (X3,)),
    }


def test_flush_withdrawals_first() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P2: AD1})
    r.set(X2, {P1: AD1})
    r.flush()
    r.set(X3, {P1: AD2})  # new announcement before the withdrawals in set() order
    r.set(X1, {})
    r.set(X2, {P2: AD1})  # P1 loses X2, P2 gains it
    batches = r.flush()
    kinds = [b.advert is None for b in batches]
    assert kinds == sorted(kinds, reverse=True), batches  # all withdrawals, then all announcements
    assert batch_set(batches) == {
        Batch(None, (P1, P2), (X1,)),
        Batch(None, (P1,), (X2,)),
        Batch(AD2, (P1,), (X3,)),
        Batch(AD1, (P2,), (X2,)),
    }


def test_resetting_same_state_after_flush_gives_nothing() -> None:
    r = AdjRibOut()
    wanted = {X1: {P1: AD1, P2: AD1}, X2: {P2: AD2}, X3: {}}
    for prefix, w in wanted.items():
        r.set(prefix, w)
    assert r.flush()
    for prefix, w in wanted.items():
        r.set(prefix, w)
    assert r.flush() == []
    assert dict(r.sent(P1)) == {X1: AD1}
    assert dict(r.sent(P2)) == {X1: AD1, X2: AD2}


def test_changing_one_peer_advert_batches_that_peer_only() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P2: AD1, P3: AD1})
    r.flush()
    r.set(X1, {P1: AD1, P2: AD3, P3: AD1})
    assert r.flush() == [Batch(AD3, (P2,), (X1,))]
    assert r.sent(P2)[X1] == AD3
    assert r.sent(P1)[X1] == AD1


def test_removing_prefix_withdraws_from_exactly_the_holders() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P3: AD2})
    r.set(X2, {P2: AD1})
    r.flush()
    r.set(X1, {})
    assert r.flush() == [Batch(None, (P1, P3), (X1,))]
    assert X1 not in r.sent(P1)
    assert X1 not in r.sent(P3)
    assert dict(r.sent(P2)) == {X2: AD1}
    assert (r.count(P1), r.count(P2), r.count(P3)) == (0, 1, 0)


def test_removing_one_peer_withdraws_for_it_only() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P2: AD1})
    r.flush()
    r.set(X1, {P1: AD1})
    assert r.flush() == [Batch(None, (P2,), (X1,))]


def test_count_and_sent_of_unknown_peer() -> None:
    r = AdjRibOut()
    assert r.count(P1) == 0
    assert dict(r.sent(P1)) == {}
    r.set(X1, {P1: AD1})
    r.set(X2, {P1: AD2})
    assert r.count(P1) == 0  # nothing is sent before the flush
    r.flush()
    assert r.count(P1) == 2
    assert r.count(P2) == 0


def test_replay_everything_and_one_peer() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P2: AD1})
    r.set(X2, {P1: AD1, P2: AD2})
    r.set(X3, {P3: AD2})
    r.flush()
    r.set(X3, {})  # withdrawn: not replayed
    r.flush()
    assert batch_set(r.replay()) == {
        Batch(AD1, (P1,), (X1, X2)),
        Batch(AD1, (P2,), (X1,)),
        Batch(AD2, (P2,), (X2,)),
    }
    assert batch_set(r.replay(P1)) == {Batch(AD1, (P1,), (X1, X2))}
    assert batch_set(r.replay(P2)) == {Batch(AD1, (P2,), (X1,)), Batch(AD2, (P2,), (X2,))}
    assert r.replay(P3) == []
    assert r.replay(A("10.9.9.9")) == []
    # replay does not consume anything
    assert r.flush() == []
    assert len(r.replay()) == 3


def test_replay_rebuilds_sent_state() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P2: AD2})
    r.set(X2, {P1: AD1})
    r.flush()
    model: dict[Address, dict[Prefix, Advert]] = {}
    apply(model, r.replay())
    for peer in (P1, P2, P3):
        assert model.get(peer, {}) == dict(r.sent(peer))


def test_forget_peer_drops_pending_and_sent() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1, P2: AD1})
    r.flush()
    r.set(X2, {P1: AD2, P2: AD2})  # pending for both
    r.forget_peer(P1)
    assert r.count(P1) == 0
    assert dict(r.sent(P1)) == {}
    assert r.replay(P1) == []
    assert r.flush() == [Batch(AD2, (P2,), (X2,))]
    # forgetting a peer whose only pending work is for it leaves nothing pending
    r.set(X3, {P2: AD1})
    r.forget_peer(P2)
    assert r.flush() == []
    assert r.replay() == []
    r.forget_peer(A("10.9.9.9"))  # unknown: no error


def test_forgotten_peer_can_come_back() -> None:
    r = AdjRibOut()
    r.set(X1, {P1: AD1})
    r.flush()
    r.forget_peer(P1)
    r.set(X1, {P1: AD1})
    assert r.flush() == [Batch(AD1, (P1,), (X1,))]


def apply(model: dict[Address, dict[Prefix, Advert]], batches: list[Batch]) -> None:
    """What a peer ends up with when ExaBGP runs `batches` in order."""
    for b in batches:
        for peer in b.peers:
            table = model.setdefault(peer, {})
            for prefix in b.prefixes:
                if b.advert is None:
                    table.pop(prefix, None)
                else:
                    table[prefix] = b.advert


# IPv6 (issue 11): IPv6 peers, prefixes and next hops beside the IPv4 ones, in the same AdjRibOut
Q1, Q2 = IPv6Address("fd00:100::10"), IPv6Address("fd00:100::11")
Y1, Y2 = IPv6Network("fd00:10:20::40/122"), IPv6Network("fd00:10:20::80/122")
AD6 = Advert(Q1, Attributes(originator_id=A("192.168.100.10"), cluster_list=(CLUSTER,)))
AD7 = Advert(Q2, Attributes(local_pref=200))


def test_ipv6_prefixes_next_hops_and_peers() -> None:
    r = AdjRibOut()
    for prefix in (Y2, Y1):
        r.set(prefix, {Q2: AD6})
    r.set(X1, {P2: AD1})
    assert batch_set(r.flush()) == {Batch(AD6, (Q2,), (Y1, Y2)), Batch(AD1, (P2,), (X1,))}
    assert dict(r.sent(Q2)) == {Y1: AD6, Y2: AD6}
    assert r.sent(Q2)[Y1].next_hop == Q1  # the reflected next hop is passed through unchanged
    assert (r.count(Q2), r.count(P2), r.count(Q1)) == (2, 1, 0)
    r.set(Y1, {})
    assert r.flush() == [Batch(None, (Q2,), (Y1,))]
    assert batch_set(r.replay()) == {Batch(AD6, (Q2,), (Y2,)), Batch(AD1, (P2,), (X1,))}
    r.forget_peer(Q2)
    assert r.replay(Q2) == [] and r.count(Q2) == 0


def test_batches_of_both_families_list_ipv4_first() -> None:
    """A withdrawal of prefixes of both families to peers of both families is one batch; ipaddress cannot
    order the two families together, so they are listed by key: IPv4 first, each family in order."""
    r = AdjRibOut()
    for prefix in (Y2, X2, Y1, X1):
        r.set(prefix, {Q2: AD1, P2: AD1, Q1: AD1, P1: AD1})
    assert r.flush() == [Batch(AD1, (P1, P2, Q1, Q2), (X1, X2, Y1, Y2))]
    for prefix in (Y2, X2, Y1, X1):
        r.set(prefix, {})
    assert r.flush() == [Batch(None, (P1, P2, Q1, Q2), (X1, X2, Y1, Y2))]


def test_ipv4_and_ipv6_with_the_same_integers_are_distinct() -> None:
    r = AdjRibOut()
    twin_peer, twin_prefix = IPv6Address(int(P1)), IPv6Network((int(X1.network_address), 122))
    r.set(X1, {P1: AD1})
    r.set(twin_prefix, {twin_peer: AD6})
    r.flush()
    assert dict(r.sent(P1)) == {X1: AD1}
    assert dict(r.sent(twin_peer)) == {twin_prefix: AD6}


def test_targets_with_ipv6_peers() -> None:
    peers = {Q1: True, Q2: False, P1: True, IPv6Address(int(P1)): False}
    assert targets(Q1, True, peers) == {Q2, P1, IPv6Address(int(P1))}
    assert targets(Q2, False, peers) == {Q1, P1}
    assert targets(IPv6Address(int(P1)), False, peers) == {Q1, P1}  # P1 has its int, not its address


_PEERS = (P1, P2, P3, Q1, Q2)
_PREFIXES = (X1, X2, X3, Y1, Y2)
_ADVERTS = (AD1, AD2, AD3, AD6, AD7)
_wanted = st.dictionaries(st.sampled_from(_PEERS), st.sampled_from(_ADVERTS), max_size=4)
SetOp = tuple[Prefix, dict[Address, Advert]]
_set_op = st.tuples(st.sampled_from(_PREFIXES), _wanted)


def check_model(r: AdjRibOut, model: dict[Address, dict[Prefix, Advert]]) -> None:
    for peer in _PEERS:
        assert model.get(peer, {}) == dict(r.sent(peer)), peer


@settings(max_examples=300, deadline=None)
@given(st.lists(_set_op, max_size=25))
def test_property_flush_after_every_set_matches_sent(ops: list[SetOp]) -> None:
    r = AdjRibOut()
    model: dict[Address, dict[Prefix, Advert]] = {}
    for prefix, wanted in ops:
        r.set(prefix, wanted)
        apply(model, r.flush())
        check_model(r, model)
    assert r.flush() == []


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # the same state twice (e.g. two recomputations before the flush timer fires)
        ({P1: AD1}, {P1: AD1}, {Batch(AD1, (P1,), (X1,))}),
        # another peer's advert changes: P2's untouched announcement must still go out
        ({P1: AD1, P2: AD1}, {P1: AD2, P2: AD1}, {Batch(AD2, (P1,), (X1,)), Batch(AD1, (P2,), (X1,))}),
        # a new client comes up and gets the route too: P1's announcement must still go out
        ({P1: AD1}, {P1: AD1, P2: AD1}, {Batch(AD1, (P1, P2), (X1,))}),
    ],
    ids=["same-twice", "other-peer-changes", "peer-added"],
)
def test_second_set_before_flush_keeps_pending_work(
    first: dict[Address, Advert], second: dict[Address, Advert], expected: set[Batch]
) -> None:
    r = AdjRibOut()
    r.set(X1, first)
    r.set(X1, second)
    assert dict(r.sent(P1)) == {}  # nothing counts as sent before the flush ...
    assert batch_set(r.flush()) == expected  # ... which sends the final state to every peer
    assert dict(r.sent(P1)) == {X1: second[P1]}


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.one_of(_set_op, st.just(None)), max_size=25))
def test_property_any_sets_and_flushes_match_sent(ops: list[SetOp | None]) -> None:
    r = AdjRibOut()
    model: dict[Address, dict[Prefix, Advert]] = {}
    for op in ops:
        if op is None:
            apply(model, r.flush())
        else:
            r.set(*op)
    apply(model, r.flush())
    check_model(r, model)
    assert r.flush() == []


def _speaker(cfg: Config) -> Speaker:
    """The I/O shell around an engine, with its own metrics registry, never started."""
    return Speaker(cfg, Latency(CollectorRegistry()))


class _CapturingExaBGP:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def send(self, lines: list[str]) -> None:
        self.lines += lines


def test_reflected_commands_are_counted_per_line_and_peer() -> None:
    """A reflected batch of 700 prefixes becomes two command lines (500 a command) for each receiver."""
    from bgpd import config

    cfg = config.load("configs/reflector1.yaml")
    speaker = _speaker(cfg)
    capture = _CapturingExaBGP()
    speaker.exabgp = capture  # type: ignore[assignment]
    receivers = (A("192.168.100.10"), A("192.168.100.11"))
    advert = Advert(A("192.168.100.12"), Attributes(origin=Origin.IGP, local_pref=100))
    for i in range(700):
        prefix = N(f"10.20.{i // 256}.{i % 256}/32")
        speaker.engine.adjout.set(prefix, dict.fromkeys(receivers, advert))
    speaker.engine._reflect_pending = True  # what the engine's _reflect sets
    speaker._flush_out()
    assert len(capture.lines) == 2 and all("neighbor 192.168.100.10" in line for line in capture.lines)
    assert speaker.commands_sent["192.168.100.10"] == speaker.commands_sent["192.168.100.11"] == 2
    assert speaker.commands_sent["192.168.100.12"] == 0


def test_reload_with_a_new_cluster_id_reflects_with_it(tmp_path: object) -> None:
    """Reflected attributes are cached per source; a reload that changes the cluster id must not reuse
    them (RFC 4456 §8: the CLUSTER_LIST carries this reflector's cluster id)."""
    import asyncio
    from pathlib import Path as FsPath

    from bgpd import config
    from bgpd.model import Path as RibPath

    assert isinstance(tmp_path, FsPath)
    text = FsPath("configs/reflector1.yaml").read_text().replace("/run/bgpd/rr1", str(tmp_path / "run"))
    conf = tmp_path / "rr.yaml"
    conf.write_text(text)
    speaker = _speaker(config.load(str(conf)))
    speaker.exabgp = _CapturingExaBGP()  # type: ignore[assignment]
    source = Peer(A("192.168.100.10"), 64512, A("192.168.100.10"), ebgp=False)
    path = RibPath(N("10.20.1.0/26"), A("192.168.100.10"), source, Attributes(origin=Origin.IGP))

    def reflected_cluster_list() -> tuple[Address, ...]:
        speaker.engine._reflect(N("10.20.1.0/26"), path)
        (advert,) = speaker.engine.adjout._pending[N("10.20.1.0/26")]  # pending: {advert: receivers}
        return advert.attrs.cluster_list

    assert reflected_cluster_list() == (A("1.0.0.1"),)
    conf.write_text(text.replace("cluster_id: 1.0.0.1", "cluster_id: 2.2.2.2"))
    result = asyncio.run(speaker.reload())
    assert result["ok"] is True, result
    assert reflected_cluster_list() == (A("2.2.2.2"),)
