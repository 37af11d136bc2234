"""reflector.adjout.AdjRibOut against a from-scratch model: one dict entry per (prefix, peer), what was
flushed and what is wanted, through random sequences of set / set_adverts / forget_peer / flush. Compared:
every flush's batches as (advert, peer, prefix) triples, `sent`, `count`, `prefixes` and `replay`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bgpd.model import Address, Attributes, Prefix
from bgpd.prefix import bits, host_key
from reflector.adjout import AdjRibOut, Advert, Batch

PEERS: tuple[Address, ...] = (
    IPv4Address("192.168.100.10"),
    IPv4Address("192.168.100.11"),
    IPv4Address("192.168.100.12"),
    IPv6Address("fd00:100::10"),
    IPv6Address("fd00:100::11"),
)
PREFIXES: tuple[Prefix, ...] = (
    IPv4Network("10.20.1.0/26"),
    IPv4Network("10.20.2.0/26"),
    IPv4Network("10.20.3.0/26"),
    IPv6Network("fd00:10:20::40/122"),
    IPv6Network("fd00:10:20::80/122"),
)
ADVERTS = (
    Advert(IPv4Address("192.168.100.10"), Attributes(originator_id=IPv4Address("192.168.100.10"))),
    Advert(IPv4Address("192.168.100.11"), Attributes()),
    Advert(IPv4Address("192.168.100.10"), Attributes(local_pref=200)),
    Advert(IPv6Address("fd00:100::10"), Attributes()),
)

Triple = tuple[Advert | None, Address, Prefix]


class Model:
    """The Adj-RIB-Out the obvious way: per (prefix, peer) what was flushed, and what each prefix set since
    the last flush wants."""

    def __init__(self) -> None:
        self.sent: dict[tuple[Prefix, Address], Advert] = {}
        self.wanted: dict[Prefix, dict[Address, Advert]] = {}

    def want(self, prefix: Prefix, wanted: dict[Address, Advert]) -> None:
        self.wanted[prefix] = dict(wanted)

    def forget_peer(self, peer: Address) -> None:
        self.sent = {(prefix, p): a for (prefix, p), a in self.sent.items() if p != peer}
        for wanted in self.wanted.values():
            wanted.pop(peer, None)

    def diff(self) -> set[Triple]:
        out: set[Triple] = set()
        for prefix, wanted in self.wanted.items():
            for peer in PEERS:
                before, after = self.sent.get((prefix, peer)), wanted.get(peer)
                if before != after:
                    out.add((after, peer, prefix))
        return out

    def flush(self) -> set[Triple]:
        out = self.diff()
        for advert, peer, prefix in out:
            if advert is None:
                del self.sent[(prefix, peer)]
            else:
                self.sent[(prefix, peer)] = advert
        self.wanted.clear()
        return out

    def of(self, peer: Address) -> dict[Prefix, Advert]:
        return {prefix: a for (prefix, p), a in self.sent.items() if p == peer}

    def prefixes(self) -> set[Prefix]:
        return {prefix for prefix, _ in self.sent} | {prefix for _, _, prefix in self.diff()}


def triples(batches: Iterable[Batch]) -> list[Triple]:
    return [(b.advert, peer, prefix) for b in batches for peer in b.peers for prefix in b.prefixes]


def check_batches(batches: list[Batch]) -> None:
    """Well formed: non-empty, sorted by key, one batch per (advert, peers), withdrawals first."""
    for b in batches:
        assert b.peers and b.prefixes, b
        assert list(b.peers) == sorted(b.peers, key=host_key), b
        assert list(b.prefixes) == sorted(b.prefixes, key=bits), b
    keys = [(b.advert, b.peers) for b in batches]
    assert len(keys) == len(set(keys)), batches
    kinds = [b.advert is not None for b in batches]
    assert kinds == sorted(kinds), batches


def check_state(r: AdjRibOut, model: Model) -> None:
    for peer in PEERS:
        assert dict(r.sent(peer)) == model.of(peer), peer
        assert r.count(peer) == len(model.of(peer)), peer
        one = r.replay(peer)
        assert all(b.peers == (peer,) and b.advert is not None for b in one)
        assert sorted(map(str, triples(one))) == sorted(
            str((a, peer, prefix)) for prefix, a in model.of(peer).items()
        )
    replayed = r.replay()
    assert all(len(b.peers) == 1 for b in replayed)
    check_batches(replayed)
    everything = triples(replayed)
    assert len(everything) == len(set(everything))
    assert set(everything) == {(a, peer, prefix) for (prefix, peer), a in model.sent.items()}
    assert r.prefixes() == model.prefixes()


# any mapping; or one advert to a set of peers (a reflected route: the common case, with its own code path)
_wanted = st.one_of(
    st.dictionaries(st.sampled_from(PEERS), st.sampled_from(ADVERTS), max_size=5),
    st.builds(dict.fromkeys, st.sets(st.sampled_from(PEERS)), st.sampled_from(ADVERTS)),
)
_op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PREFIXES), _wanted),
    st.tuples(st.just("set_adverts"), st.sampled_from(PREFIXES), _wanted),
    st.tuples(st.just("forget_peer"), st.sampled_from(PEERS)),
    st.tuples(st.just("flush")),
)


def grouped(wanted: dict[Address, Advert]) -> dict[Advert, frozenset[Address]]:
    by: dict[Advert, set[Address]] = defaultdict(set)
    for peer, advert in wanted.items():
        by[advert].add(peer)
    return {advert: frozenset(peers) for advert, peers in by.items()}


X, P, A = PREFIXES[0], PEERS[0], ADVERTS[0]


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(_op, max_size=40))
# a withdrawal pending when its only receiver is forgotten: nothing is left to send
@example([("set", X, {P: A}), ("flush",), ("set", X, {}), ("forget_peer", P), ("flush",)])
# one advert before and after, to fewer peers: the others get a withdrawal
@example([("set", X, {P: A, PEERS[1]: A}), ("flush",), ("set_adverts", X, {P: A}), ("flush",)])
def test_adjout_matches_a_per_prefix_and_peer_model(ops: list[tuple[Any, ...]]) -> None:
    r, model = AdjRibOut(), Model()
    for op in ops:
        kind = op[0]
        if kind == "set":
            r.set(op[1], op[2])
            model.want(op[1], op[2])
        elif kind == "set_adverts":
            r.set_adverts(op[1], grouped(op[2]))
            model.want(op[1], op[2])
        elif kind == "forget_peer":
            r.forget_peer(op[1])
            model.forget_peer(op[1])
        else:
            batches = r.flush()
            check_batches(batches)
            got = triples(batches)
            assert len(got) == len(set(got)), batches  # nothing sent twice
            assert set(got) == model.flush()
        check_state(r, model)
    check_batches(batches := r.flush())
    assert set(triples(batches)) == model.flush()
    assert r.flush() == []
    check_state(r, model)


def test_set_adverts_refuses_a_peer_with_two_adverts() -> None:
    r = AdjRibOut()
    a, b = ADVERTS[0], ADVERTS[1]
    with pytest.raises(ValueError, match="two adverts"):
        r.set_adverts(PREFIXES[0], {a: frozenset(PEERS[:2]), b: frozenset(PEERS[1:3])})
    assert r.flush() == []


def test_shared_receiver_sets_are_one_object() -> None:
    """Equal receiver sets given as distinct objects are stored once (memory: one set per source, not per
    route), and the flush of an unchanged set finds it by identity."""
    r = AdjRibOut()
    advert = ADVERTS[0]
    for prefix in PREFIXES[:3]:
        r.set_adverts(prefix, {advert: frozenset(PEERS[:3])})
    (batch,) = r.flush()
    assert batch.prefixes == PREFIXES[:3]
    stored = {id(peers) for groups in r._sent.values() for peers in groups.values()}
    assert len(stored) == 1
