"""The changes 1 to 11 `bgpd.exabgp.launch` makes to ExaBGP keep its behaviour: checked against the
unpatched functions on the same inputs (what `apply` installs, 1 on real Adj-RIBs-Out and 2 across reactor
passes: in tests/unit/test_exabgp_equivalence.py; 9, which sends IPv6 routes in fewer UPDATEs: the same
routes, attributes and next hops, decoded back from the messages of patched and unpatched ExaBGP; 10, which
sets the keepalive interval of a session with a keepalive time: the very same timer and KEEPALIVE times as
ExaBGP's own for every other session, BIRD's interval for that one, on ExaBGP's real timer classes and a
hand-moved clock; 11, TTL security on the listening side: without a neighbor with TTL security not one
socket option is set, and the BPF program keeps exactly what it must, run by a classic-BPF interpreter here
and by the kernel in tests/e2e/test_session_security.py, which also runs the unpatched listener)."""

from __future__ import annotations

import contextlib
import ipaddress
import pathlib
import random
import tempfile
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from exabgp.bgp.message import Action
from exabgp.bgp.message.update import Update
from exabgp.bgp.message.update.nlri.inet import INET
from exabgp.bgp.neighbor import Neighbor
from exabgp.protocol.family import AFI, SAFI
from exabgp.protocol.ip import IP
from exabgp.reactor.asynchronous import ASYNC
from exabgp.reactor.loop import Reactor
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.exabgp import launch

launch.apply()
from exabgp.environment import getenv  # noqa: E402
from exabgp.logger import log as exabgp_log  # noqa: E402

exabgp_log.init(getenv())  # error paths log through ExaBGP's logger
ORIGINAL_REMOVE_SELF = launch._original_remove_self
ORIGINAL_TOKENS = launch._original_tokens
ORIGINAL_SPLIT_NLRIS = launch._original_split_nlris


class _NextHop:
    def __init__(self, is_self: bool) -> None:
        self.SELF = is_self


class _Change:
    def __init__(self, is_self: bool) -> None:
        self.nlri = type("N", (), {})()
        self.nlri.nexthop = _NextHop(is_self)


def test_explicit_next_hop_is_not_copied() -> None:
    change = _Change(is_self=False)
    assert launch._remove_self(object(), change) is change
    # the original returned an equal deep copy: same content, so sharing it is safe
    copy = ORIGINAL_REMOVE_SELF(object(), change)
    assert copy is not change and copy.nlri.nexthop.SELF is False


def test_next_hop_self_still_goes_through_the_original() -> None:
    calls: list[Any] = []

    def fake(self: Any, changes: Any) -> str:
        calls.append(changes)
        return "rewritten"

    change = _Change(is_self=True)
    saved = launch._original_remove_self
    launch._original_remove_self = fake
    try:
        assert launch._remove_self(object(), change) == "rewritten"
    finally:
        launch._original_remove_self = saved
    assert calls == [change]


def test_coroutines_still_go_through_the_original() -> None:
    ran: list[str] = []

    async def coro() -> None:
        ran.append("coroutine")

    a = ASYNC()
    a._async = deque([("c", coro())])
    launch._async_run(a)
    assert ran == ["coroutine"]


class _FakeAsync:
    def __init__(self, ready: bool) -> None:
        self._ready = ready

    def ready(self) -> bool:
        return self._ready


@pytest.mark.parametrize(("ready", "expected"), [(True, 10), (False, 0)])
def test_poll_does_not_sleep_while_api_work_is_queued(ready: bool, expected: int) -> None:
    seen: list[int] = []
    saved = launch._original_wait_for_io
    launch._original_wait_for_io = lambda self, sleeptime: seen.append(sleeptime) or iter(())
    try:
        reactor = type("R", (), {"asynchronous": _FakeAsync(ready)})()
        list(launch._wait_for_io(reactor, 10))
    finally:
        launch._original_wait_for_io = saved
    assert seen == [expected]


# ---------------------------------------------------------------- 4. command tokenizer fast path

_TOKEN_ALPHABET = st.sampled_from([*"ab1.:/- \t;{}[],", "nlri", "10.0.0.0/24", "\r", "\n", "é", "\x0b"])
_SLOW_ALPHABET = st.sampled_from([*"ab ;[]\"'#\\,", "nlri", "n"])


def _run_tokens(fn: Any, lines: list[str]) -> tuple[list[Any], str | None]:
    out: list[Any] = []
    try:
        for parsed in fn(iter(lines)):
            out.append(parsed)
    except ValueError as exc:
        return out, str(exc)
    return out, None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(_TOKEN_ALPHABET, max_size=20).map("".join), min_size=1, max_size=4))
def test_tokens_fast_path_gives_the_same_tokens_and_errors(lines: list[str]) -> None:
    assert _run_tokens(launch._tokens, lines) == _run_tokens(ORIGINAL_TOKENS, lines)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_SLOW_ALPHABET, max_size=16).map("".join), min_size=1, max_size=3))
def test_tokens_with_quotes_escapes_or_comments_match_the_original(lines: list[str]) -> None:
    assert _run_tokens(launch._tokens, lines) == _run_tokens(ORIGINAL_TOKENS, lines)


def test_tokens_of_a_bulk_command() -> None:
    line = (
        "neighbor 10.0.0.2 announce attributes next-hop 10.0.0.1 as-path [ 1 2 ] nlri 10.0.0.0/24 10.1.0.0/24"
    )
    got = _run_tokens(launch._tokens, [line + " ;"])
    assert got == _run_tokens(ORIGINAL_TOKENS, [line + " ;"])
    assert [w for _, _, w in got[0][0]][-3:] == ["10.0.0.0/24", "10.1.0.0/24", ";"]
    assert _run_tokens(launch._tokens, [line]) == _run_tokens(ORIGINAL_TOKENS, [line])  # open: same error


# ---------------------------------------------------------------- 5. NLRI order in an UPDATE


def _nlri(prefix: str, action: Any, path_id: int | None) -> Any:
    net = ipaddress.IPv4Network(prefix)
    raw = bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]
    if path_id is not None:
        raw = path_id.to_bytes(4, "big") + raw
    nlri, _ = INET.unpack_nlri(AFI.ipv4, SAFI.unicast, raw, action, path_id is not None)
    if action == Action.ANNOUNCE:
        nlri.nexthop = IP.create("192.0.2.1")
    return nlri


class _Negotiated:
    def __init__(self) -> None:
        self.families = [(AFI.ipv4, SAFI.unicast)]


_PREFIXES = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(
    lambda t: str(ipaddress.IPv4Network((t[0] >> (32 - t[1]) << (32 - t[1]) if t[1] else 0, t[1])))
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_PREFIXES, st.booleans(), st.one_of(st.none(), st.integers(0, 3))), min_size=0, max_size=60
    )
)
def test_nlris_are_split_in_the_same_order(routes: list[tuple[str, bool, int | None]]) -> None:
    nlris = [_nlri(p, Action.ANNOUNCE if a else Action.WITHDRAW, pid) for p, a, pid in routes]
    update = Update(list(nlris), None)
    patched = launch._split_nlris(update, _Negotiated())
    assert update.nlris == nlris and all(x is y for x, y in zip(update.nlris, nlris, strict=True))
    original = ORIGINAL_SPLIT_NLRIS(update, _Negotiated())

    def shape(split: Any) -> Any:
        native, mp = split
        ids = [id(n) for n in native]
        return ids, {k: {a: [id(n) for n in v] for a, v in d.items()} for k, d in mp.items()}

    assert shape(patched) == shape(original)


# ---------------------------------------------------------------- 6. AFI / SAFI lookups


@pytest.mark.parametrize("kind", ["afi", "safi"])
def test_cached_afi_safi_are_the_same_objects(kind: str) -> None:
    cls = AFI if kind == "afi" else SAFI
    original = launch._original_creates[kind]
    assert cls.create is not original
    for value in [*cls.cache, 0, 3, 77, 128, 255]:
        got, want = cls.create(value), original(value)
        assert got == want and type(got) is type(want)
        if value in cls.cache:
            assert got is cls.cache[value] is want


def test_split_nlris_outside_ipv4_unicast_goes_through_the_original() -> None:
    nlris = [_nlri("10.0.0.0/24", Action.ANNOUNCE, None), _nlri("10.0.1.0/24", Action.WITHDRAW, None)]
    update = Update(nlris, None)
    nothing = _Negotiated()
    nothing.families = []  # family not negotiated: the original drops every NLRI
    assert launch._split_nlris(update, nothing) == ORIGINAL_SPLIT_NLRIS(update, nothing) == ([], {})
    nlris[0].nexthop = IP.create("2001:db8::1")  # IPv4 route with an IPv6 next hop: MP_REACH (RFC 8950)
    got, want = launch._split_nlris(update, _Negotiated()), ORIGINAL_SPLIT_NLRIS(update, _Negotiated())
    assert got == want and got[1]


# ---------------------------------------------------------------- 7. neighbor selection


@pytest.mark.parametrize(
    ("description", "name"),
    [
        (["neighbor 10.0.0.2"], "neighbor 10.0.0.2 local-ip 10.0.0.1 local-as 64512 peer-as 64512"),
        (["neighbor 10.0.0.2"], "neighbor 10.0.0.20 local-ip 10.0.0.1 local-as 64512 peer-as 64512"),
        (["neighbor 10.0.0.2", "peer-as 64512"], "neighbor 10.0.0.2 local-as 1 peer-as 64512"),
        (["neighbor 10.0.0.2", "peer-as 6451"], "neighbor 10.0.0.2 local-as 1 peer-as 64512"),
        (["neighbor *"], "neighbor 10.0.0.9 peer-as 1"),
        ([], "neighbor 10.0.0.9"),
    ],
)
def test_neighbor_matching_is_remembered_with_the_same_answers(description: list[str], name: str) -> None:
    from exabgp.reactor.api.command import limit

    assert limit.match_neighbor is launch._match_neighbor
    want = launch._original_match_neighbor(description, name)
    assert launch._match_neighbor(description, name) == want
    assert launch._match_neighbor(list(description), name) == want  # second time: from memory


# ---------------------------------------------------------------- 8. routes handed to the targeted neighbors


def test_inject_change_reaches_the_same_neighbors() -> None:
    from exabgp.configuration.configuration import _Configuration

    added: list[tuple[str, Any]] = []

    class _Rib:
        def __init__(self, name: str) -> None:
            self.outgoing = type("O", (), {"add_to_rib": lambda _s, change: added.append((name, change))})()

    class _Neighbor:
        def __init__(self, name: str, families: list[Any]) -> None:
            self.rib, self._families = _Rib(name), families

        def families(self) -> list[Any]:
            return list(self._families)

        def remove_self(self, change: Any) -> Any:
            return change

    fam = (AFI.ipv4, SAFI.unicast)
    config = object.__new__(_Configuration)
    config.neighbors = {f"n{i}": _Neighbor(f"n{i}", [fam] if i != 3 else []) for i in range(6)}
    change = type("C", (), {})()
    change.nlri = _nlri("10.0.0.0/24", Action.ANNOUNCE, None)
    for peers in (["n1", "n2", "n3"], ["n5", "n0"], [], ["n9"]):
        added.clear()
        want = launch._original_inject_change(config, peers, change), list(added)
        added.clear()
        assert (_Configuration.inject_change(config, peers, change), list(added)) == want


# ---------------------------------------------------------------- 9. IPv6 unicast UPDATEs grouped

V4, V6 = (AFI.ipv4, SAFI.unicast), (AFI.ipv6, SAFI.unicast)
ORIGINAL_UPDATES = launch._original_updates
# next hops: IPv4 ones, IPv6 global ones and a 32-octet one (RFC 2545: global, then link-local)
_NEXT_HOPS4 = ["192.0.2.1", "192.0.2.2"]
_NEXT_HOPS6 = ["2001:db8::1", "2001:db8::2", "2001:db8::1 fe80::1"]


def _negotiated(addpath: bool, families: tuple[Any, ...] = (V4, V6)) -> Any:
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability.negotiated import Negotiated

    negotiated = Negotiated(Neighbor())
    negotiated.families = list(families)
    negotiated.local_as = negotiated.peer_as = ASN(64512)
    negotiated.asn4 = True
    if addpath:
        negotiated.addpath._send = dict.fromkeys(families, True)
        negotiated.addpath._receive = dict.fromkeys(families, True)
    return negotiated


def _next_hop(text: str) -> Any:
    """An ExaBGP next hop; "GLOBAL LINK-LOCAL" gives one of 32 octets (both addresses, as RFC 2545 packs)."""
    from exabgp.protocol.ip import IPv6

    if " " not in text:
        return IP.create(text)
    glob, link_local = text.split()
    return IPv6(glob, IP.pton(glob) + IP.pton(link_local))


def _attributes(kind: int, next_hop: str | None) -> Any:
    """Attribute set `kind` (0-2); with NEXT_HOP (its global address) as ExaBGP's API puts it, or without
    (then routes with different next hops share the set: one bucket, several MP_REACH_NLRI)."""
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.update.attribute import (
        MED,
        SEQUENCE,
        ASPath,
        Attributes,
        LocalPreference,
        NextHop,
        Origin,
    )

    attributes = Attributes()
    attributes.add(Origin(Origin.IGP if kind != 2 else Origin.INCOMPLETE))
    attributes.add(ASPath([SEQUENCE([ASN(65000 + n) for n in range(kind + 1)])]))
    attributes.add(LocalPreference(100 + kind))
    if kind:
        attributes.add(MED(kind * 10))
    if next_hop is not None:
        attributes.add(NextHop(next_hop.split()[0]))
    return attributes


# one operation on the Adj-RIB-Out: ("announce" | "withdraw", route, attribute set, next hop, fresh
# attributes object?, attributes carry NEXT_HOP?), or ("send",) for one updates() pass, or ("refresh",)
Op = tuple[Any, ...]


def _route(n: int, addpath: bool) -> tuple[str, int | None]:
    """Route n of a small pool: IPv6 prefixes (several lengths) and IPv4 ones; path ids with add-path."""
    prefix = f"2001:db8:{n % 7:x}::/{48 + (n % 3) * 16}" if n % 4 else f"10.{n % 5}.0.0/{16 + n % 9}"
    return prefix, (1 + n % 2 if addpath else None)


def _run(ops: list[Op], addpath: bool, patched: bool, grouped: bool = True) -> tuple[list[bytes], list[Any]]:
    """The UPDATE messages (and the Update objects) an Adj-RIB-Out gives for `ops`, patched or not."""
    from exabgp.rib.change import Change
    from exabgp.rib.outgoing import OutgoingRIB

    negotiated = _negotiated(addpath)
    rib = OutgoingRIB(True, [V4, V6])
    shared: dict[tuple[int, str | None], Any] = {}
    messages: list[bytes] = []
    updates: list[Any] = []
    for op in ops:
        if op[0] in ("send", "refresh"):
            if op[0] == "refresh":
                rib.resend(enhanced_refresh=True)
                continue
            batch = list(rib.updates(grouped) if patched else ORIGINAL_UPDATES(rib, grouped))
            updates.extend(batch)
            split = Update._split_nlris
            if not patched:
                Update._split_nlris = ORIGINAL_SPLIT_NLRIS
            try:
                messages.extend(m for u in batch for m in u.messages(negotiated, True))
            finally:
                Update._split_nlris = split
            continue
        action, n, kind, hop, fresh, with_hop = op
        prefix, path_id = _route(n, addpath)
        v6 = ":" in prefix
        hop_text = (_NEXT_HOPS6 if v6 else _NEXT_HOPS4)[hop % (3 if v6 else 2)]
        attr_hop = hop_text if with_hop or not v6 else None  # IPv4 routes always carry NEXT_HOP
        if fresh:
            attributes = _attributes(kind, attr_hop)
        else:
            attributes = shared.setdefault((kind, attr_hop), _attributes(kind, attr_hop))
        nlri = _nlri_any(prefix, Action.ANNOUNCE if action == "announce" else Action.WITHDRAW, path_id)
        nlri.nexthop = _next_hop(hop_text)
        change = Change(nlri, attributes)
        if action == "announce":
            rib.add_to_rib(change)
        else:
            rib.del_from_rib(change)
    return messages, updates


def _nlri_any(prefix: str, action: Any, path_id: int | None) -> Any:
    net = ipaddress.ip_network(prefix)
    afi = AFI.ipv4 if net.version == 4 else AFI.ipv6
    raw = bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]
    if path_id is not None:
        raw = path_id.to_bytes(4, "big") + raw
    nlri, _ = INET.unpack_nlri(afi, SAFI.unicast, raw, action, path_id is not None)
    return nlri


def _decode(message: bytes, negotiated: Any) -> list[tuple[str, bytes, tuple[str, ...], tuple[Any, ...]]]:
    """The routes one UPDATE carries, as ExaBGP parses it: (action, NLRI index, next hops, attributes).
    ExaBGP parses a 32-octet next hop as two NLRIs, one per address: they are one route here."""
    from exabgp.bgp.message.direction import Direction

    if message[18] != 2:  # a route refresh marker
        return [("message", message, (), ())]
    update = Update.unpack_message(message[19:], Direction.IN, negotiated)
    attributes = tuple(sorted((int(code), attr.pack(negotiated)) for code, attr in update.attributes.items()))
    hops: dict[tuple[str, bytes], list[str]] = {}
    for nlri in update.nlris:
        action = "announce" if nlri.action == Action.ANNOUNCE else "withdraw"
        hops.setdefault((action, nlri.index()), []).append(str(nlri.nexthop))
    return [(action, index, tuple(h), attributes) for (action, index), h in hops.items()]


def _received(messages: list[bytes], negotiated: Any) -> tuple[list[Any], dict[bytes, Any]]:
    """Every route carried (sorted), and the table a peer applying the messages in order ends with."""
    carried: list[Any] = []
    table: dict[bytes, Any] = {}
    for message in messages:
        routes = _decode(message, negotiated)
        carried.extend(routes)
        for action, index, hops, attributes in routes:
            if action == "message":
                continue
            if action == "withdraw":
                table.pop(index, None)
            else:
                table[index] = (hops, attributes)
    return sorted(carried), table


def _not_ipv6(message: bytes, negotiated: Any) -> bool:
    """An UPDATE of IPv4 routes, or a route refresh marker (INET.index(): the family first, b"0201" IPv6)."""
    return not any(index.startswith(b"0201") for _, index, _, _ in _decode(message, negotiated))


def _op(draw: tuple[int, str, int, int, int, bool, bool]) -> Op:
    """One in 16 an updates() pass, one in 32 a route refresh, else a route announced or withdrawn."""
    marker, *op = draw
    return ("send",) if marker < 2 else ("refresh",) if marker < 3 else tuple(op)


_OPS = st.lists(
    st.tuples(
        st.integers(0, 31),
        st.sampled_from(["announce", "announce", "withdraw"]),
        st.integers(0, 27),
        st.integers(0, 2),
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
    ).map(_op),
    min_size=12,
    max_size=80,
).map(lambda ops: [*ops, ("send",)])


@settings(max_examples=300, deadline=None)
@given(_OPS, st.booleans())
def test_ipv6_updates_carry_the_same_routes_in_fewer_messages(ops: list[Op], addpath: bool) -> None:
    negotiated = _negotiated(addpath)
    patched, _ = _run(ops, addpath, patched=True)
    unpatched, _ = _run(ops, addpath, patched=False)
    assert _received(patched, negotiated) == _received(unpatched, negotiated)
    assert len(patched) <= len(unpatched)
    assert all(len(m) <= negotiated.msg_size == 4096 for m in patched)
    # IPv4 unicast (and route refresh markers) go out exactly as before, and in the same order
    assert [m for m in patched if _not_ipv6(m, negotiated)] == [
        m for m in unpatched if _not_ipv6(m, negotiated)
    ]


@settings(max_examples=100, deadline=None)
@given(_OPS.map(lambda ops: [op for op in ops if len(op) == 1 or _route(op[1], False)[0][0] != "2"]))
def test_ipv4_only_updates_are_byte_identical(ops: list[Op]) -> None:
    patched, _ = _run(ops, addpath=False, patched=True)
    assert patched == _run(ops, addpath=False, patched=False)[0]


@settings(max_examples=100, deadline=None)
@given(_OPS, st.booleans())
def test_ungrouped_neighbors_get_the_original_updates(ops: list[Op], addpath: bool) -> None:
    patched, _ = _run(ops, addpath, patched=True, grouped=False)
    assert patched == _run(ops, addpath, patched=False, grouped=False)[0]


def _shape(updates: list[Any]) -> list[Any]:
    return [
        (type(u).__name__, [n.index() for n in getattr(u, "nlris", [])], str(getattr(u, "attributes", "")))
        for u in updates
    ]


def test_a_route_refresh_goes_out_as_before() -> None:
    """A call that carries a route refresh (markers, then the refreshed routes, then the queued changes)
    yields the original's Updates, one by one; the next call groups again."""
    routes = [("announce", n, 0, 0, False, True) for n in range(1, 28) if n % 4]
    ops = [
        *routes,
        ("send",),
        ("refresh",),
        *[("announce", n, 1, 1, False, True) for n in (1, 2, 3)],
        ("send",),
    ]
    _, patched = _run(ops, addpath=False, patched=True)
    _, unpatched = _run(ops, addpath=False, patched=False)
    first = [type(u).__name__ for u in unpatched].index("RouteRefresh")  # one Update per route before
    assert first > 10 and [type(u).__name__ for u in patched].index("RouteRefresh") == 1  # one Update here
    assert _shape(patched[1:]) == _shape(unpatched[first:])  # the refresh pass: as it was
    again, _ = _run([*ops, *[("withdraw", n, 1, 1, False, True) for n in (1, 2, 3)], ("send",)], False, True)
    assert len(again) == len(_run(ops, addpath=False, patched=True)[0]) + 1  # one MP_UNREACH_NLRI


@pytest.mark.parametrize("addpath", [False, True])
@pytest.mark.parametrize("hop", [0, 2])
@pytest.mark.parametrize("size", [4096, 65535])
def test_a_bulk_of_ipv6_routes_fills_whole_messages(addpath: bool, hop: int, size: int) -> None:
    """3000 /128s of one attribute set (distinct objects with equal attributes, as 500-prefix API
    commands give), then a withdrawal of every third: full messages (of 4096 octets, or 65535 with the
    extended message capability, which ExaBGP announces by default), not one per route."""
    from exabgp.rib.change import Change
    from exabgp.rib.outgoing import OutgoingRIB

    negotiated = _negotiated(addpath)
    negotiated.msg_size = size
    results = []
    for patched in (True, False):
        rib = OutgoingRIB(True, [V4, V6])
        messages: list[bytes] = []
        for withdraw in (False, True):
            attributes = _attributes(1, _NEXT_HOPS6[hop])
            for i in range(1, 3000, 3) if withdraw else range(3000):
                if i % 500 == 0:
                    attributes = _attributes(1, _NEXT_HOPS6[hop])  # one per command of 500 prefixes
                nlri = _nlri_any(f"2001:db8::{i:x}/128", Action.WITHDRAW if withdraw else Action.ANNOUNCE, 7)
                nlri.nexthop = _next_hop(_NEXT_HOPS6[hop])
                (rib.del_from_rib if withdraw else rib.add_to_rib)(Change(nlri, attributes))
            batch = list(rib.updates(True) if patched else ORIGINAL_UPDATES(rib, True))
            messages.extend(m for u in batch for m in u.messages(negotiated, True))
        results.append(messages)
    patched_messages, unpatched_messages = results
    assert len(unpatched_messages) == 4000
    assert _received(patched_messages, negotiated) == _received(unpatched_messages, negotiated)
    assert all(len(m) <= size for m in patched_messages)
    # full messages: one more /128 (17 octets, 21 with a path id) would not fit, but for the last of each
    # pass (the announcements, then the withdrawals)
    nlri_size = 21 if addpath else 17
    assert sum(len(m) + nlri_size <= size for m in patched_messages) <= 2
    assert len(patched_messages) <= (25 if size == 4096 else 3)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", ""),  # ExaBGP 5.0.15 as it is: accepted
        # a version grouping IPv6 unicast itself, or every family
        ("(AFI.ipv4, SAFI.unicast) and grouped", "(AFI.ipv6, SAFI.unicast) and grouped"),
        ("yield Update([change.nlri], attributes)", "yield Update([c.nlri for c in changes], attributes)"),
        # one whose Updates do not share their bucket's attributes object
        ("attributes = new_attr[attr_index]", "attributes = new_attr.get(attr_index)"),
        # one whose MP_REACH_NLRI does not split by next hop
        ("mpnlri.setdefault(nexthop, [])", "mpnlri.setdefault(b'', [])"),
        # one that packs withdrawals or announcements otherwise
        ("MPURNLRI(afi, safi, withdraws)", "MPURNLRI(afi, safi, withdraws[:])"),
        ("MPRNLRI(afi, safi, announces)", "MPURNLRI(afi, safi, withdraws)"),
    ],
)
def test_change_9_refuses_another_exabgp(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    import inspect
    import types

    from exabgp.bgp.message.update.attribute import MPRNLRI, Attributes

    real = inspect.getsource
    monkeypatch.setattr(launch.inspect, "getsource", lambda obj: real(obj).replace(old, new))
    rib = types.SimpleNamespace(updates=ORIGINAL_UPDATES)  # OutgoingRIB.updates is change 9's by now
    if not old:
        launch._check_ipv6_grouping(rib, Update, MPRNLRI, Attributes)
        return
    with pytest.raises(AssertionError):
        launch._check_ipv6_grouping(rib, Update, MPRNLRI, Attributes)


# IPv6 prefixes for the NLRI order test of change 5's fast path, now also taken by plain IPv6 UPDATEs
_PREFIXES6 = st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
    lambda t: str(ipaddress.IPv6Network((t[0] >> (128 - t[1]) << (128 - t[1]) if t[1] else 0, t[1])))
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_PREFIXES6, st.booleans(), st.one_of(st.none(), st.integers(0, 3)), st.integers(0, 2)),
        min_size=0,
        max_size=60,
    )
)
def test_ipv6_nlris_are_split_in_the_same_order(routes: list[tuple[str, bool, int | None, int]]) -> None:
    nlris = []
    for prefix, announce, path_id, hop in routes:
        nlri = _nlri_any(prefix, Action.ANNOUNCE if announce else Action.WITHDRAW, path_id)
        if announce:
            nlri.nexthop = _next_hop(_NEXT_HOPS6[hop])
        nlris.append(nlri)
    update = Update(list(nlris), None)
    negotiated = _negotiated(False)
    patched = launch._split_nlris(update, negotiated)
    original = ORIGINAL_SPLIT_NLRIS(update, negotiated)

    def shape(split: Any) -> Any:
        native, mp = split
        return [id(n) for n in native], [
            (family, [(action, [id(n) for n in v]) for action, v in by_action.items()])
            for family, by_action in mp.items()
        ]

    assert shape(patched) == shape(original)


def test_ipv6_split_outside_plain_unicast_goes_through_the_original() -> None:
    nlris = [
        _nlri_any("2001:db8::/32", Action.ANNOUNCE, None),
        _nlri_any("2001:db9::/32", Action.WITHDRAW, None),
    ]
    update = Update(nlris, None)
    only4 = _negotiated(False, (V4,))  # family not negotiated: the original drops every NLRI
    assert launch._split_nlris(update, only4) == ORIGINAL_SPLIT_NLRIS(update, only4) == ([], {})
    with pytest.raises(ValueError, match="unexpected nlri"):  # an announcement without next hop
        ORIGINAL_SPLIT_NLRIS(update, _negotiated(False))
    with pytest.raises(ValueError, match="unexpected nlri"):
        launch._split_nlris(update, _negotiated(False))
    nlris[0].nexthop = IP.create("192.0.2.1")  # an IPv4 next hop: MP_REACH still, as the original
    assert launch._split_nlris(update, _negotiated(False)) == ORIGINAL_SPLIT_NLRIS(update, _negotiated(False))


@pytest.mark.parametrize("unpatched", ["1", "0"])
def test_unpatched_environment_starts_exabgp_unchanged(unpatched: str) -> None:
    """`BGPD_EXABGP_UNPATCHED=1`: launch.main() hands over to ExaBGP with none of the changes (and no
    handler for KEEPALIVE_SIGNAL, whose default is to ignore it)."""
    import os
    import subprocess
    import sys

    code = (
        "import exabgp.application.main as m\n"
        "m.main = lambda: None\n"
        "from bgpd.exabgp import launch\n"
        "launch.main()\n"
        "from exabgp.rib.outgoing import OutgoingRIB\n"
        "from exabgp.bgp.message.update import Update\n"
        "from exabgp.bgp.neighbor import Neighbor\n"
        "from exabgp.reactor.keepalive import KA\n"
        "from exabgp.reactor import listener\n"
        "from exabgp.reactor.loop import Reactor\n"
        "from exabgp.reactor.peer import Peer\n"
        "import signal\n"
        "handler = signal.getsignal(launch.KEEPALIVE_SIGNAL)\n"
        "print(OutgoingRIB.updates.__module__, Update._split_nlris.__module__,"
        " Neighbor.remove_self.__module__, KA.__init__.__module__,"
        " 'default' if handler is signal.SIG_DFL else handler.__module__,"
        " Reactor.reload.__module__, listener.set_accepted_ttl.__module__,"
        " Reactor._pending_adjribout.__module__, Reactor.__init__.__module__,"
        " Peer.handle_connection.__module__)\n"
    )
    env = {**os.environ, "BGPD_EXABGP_UNPATCHED": unpatched}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    modules = out.stdout.split()
    if unpatched == "1":
        assert modules == [
            "exabgp.rib.outgoing",
            "exabgp.bgp.message.update",
            "exabgp.bgp.neighbor",
            "exabgp.reactor.keepalive",
            "default",
            "exabgp.reactor.loop",
            "exabgp.reactor.listener",
            "exabgp.reactor.loop",
            "exabgp.reactor.loop",
            "exabgp.reactor.peer",
        ]
    else:
        assert modules == [
            *["bgpd.exabgp.launch"] * 7,
            "bgpd.exabgp.reload",
            "bgpd.exabgp.poller",
            "bgpd.exabgp.collision",
        ]


# ---------------------------------------------------------------- 10. the keepalive interval per session

ORIGINAL_KA_INIT = launch._original_ka_init
_PEER = "192.0.2.7"


class _Clock:
    """`time` for ExaBGP's timers (`exabgp.bgp.timer` calls `time.time()`), moved by hand (in steps that
    binary floating point holds exactly)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


@contextlib.contextmanager
def _session_env(keepalives: str | None = "{}") -> Iterator[tuple[_Clock, pathlib.Path]]:
    """A hand-moved clock for ExaBGP's timers and the keepalive file, named where bgpd's supervisor names
    it and holding `keepalives` (None: no file). Hypothesis runs a test body many times: no fixtures."""
    import exabgp.bgp.timer

    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        path = pathlib.Path(tmp) / "exabgp.keepalive.json"
        if keepalives is not None:
            path.write_text(keepalives)
        mp.setattr(exabgp.bgp.timer, "time", clock)
        mp.setenv(launch.KEEPALIVE_ENV, str(path))
        yield clock, path


def _proto(offered: int, received: int, peer: str = _PEER) -> Any:
    """What `KA` reads of a session: its neighbor and what was negotiated, from two real OPENs."""
    import types

    from exabgp.bgp.message.open import Open, RouterID, Version
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability import Capabilities
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.message.open.holdtime import HoldTime

    neighbor = Neighbor()
    neighbor["peer-address"] = IP.create(peer)
    negotiated = Negotiated(neighbor)
    negotiated.sent(Open(Version(4), ASN(64512), HoldTime(offered), RouterID("192.0.2.1"), Capabilities()))
    negotiated.received(
        Open(Version(4), ASN(65001), HoldTime(received), RouterID("192.0.2.2"), Capabilities())
    )
    sent: list[float] = []

    def new_keepalive(comment: str = "") -> Iterator[None]:
        import exabgp.bgp.timer

        sent.append(exabgp.bgp.timer.time.time())  # the KEEPALIVE goes out: one step of the generator
        yield from ()

    return types.SimpleNamespace(
        neighbor=neighbor, negotiated=negotiated, new_keepalive=new_keepalive, sent=sent
    )


def _ka(init: Any, proto: Any) -> Any:
    """A real `KA`, built by `init` (the launcher's or ExaBGP's own `__init__`)."""
    from exabgp.reactor.keepalive import KA

    ka = object.__new__(KA)
    init(ka, lambda: "session", proto)
    return ka


def _keepalives(ka: Any, proto: Any, clock: _Clock, seconds: float, step: float = 0.125) -> list[float]:
    """Run the session's keepalive check every `step` seconds for `seconds`, as the peer's loop calls it;
    the times (from the start) at which KEEPALIVEs went out."""
    start, before = clock.now, len(proto.sent)
    for _ in range(round(seconds / step)):
        clock.now += step
        ka()
    return [t - start for t in proto.sent[before:]]


@pytest.mark.parametrize(
    ("wanted", "negotiated", "offered", "interval"),
    [
        (None, 9, 9, None),  # nothing configured: ExaBGP's hold time / 3
        (1, 9, 9, 1),
        (7, 90, 90, 7),
        (20, 90, 240, 7),  # BIRD 2.0.12 measured: `hold time 240; keepalive time 20`, peer's 90 -> 7
        (4, 15, 30, 2),  # the peer halves the hold time: so is the keepalive time
        (5, 9, 9, 5),  # as configured, even above hold / 3 (BIRD does not cap it)
        (1, 3, 9, 1),  # 1 * 3 / 9 rounds down to 0: at least 1 s (BIRD's "rounded down to zero")
        (5, 0, 9, None),  # the peer asked for no keepalives (hold time 0): none
        (21845, 65535, 65535, 21845),
    ],
)
def test_keepalive_interval_is_birds(
    wanted: int | None, negotiated: int, offered: int, interval: int | None
) -> None:
    assert launch.keepalive_interval(wanted, negotiated, offered) == interval


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 21844).flatmap(lambda k: st.tuples(st.just(k), st.integers(max(k + 1, 3), 65535))),
    st.data(),
)
def test_keepalive_interval_stays_below_the_negotiated_hold_time(
    wanted_offered: tuple[int, int], data: Any
) -> None:
    """BIRD's `keepalive * negotiated / offered`, in C's unsigned integer arithmetic: 1 <= it < negotiated
    (RFC 4271 §4.4), for every keepalive time bgpd's config accepts (below the offered hold time)."""
    wanted, offered = wanted_offered
    negotiated = data.draw(st.integers(3, offered))
    interval = launch.keepalive_interval(wanted, negotiated, offered)
    assert interval == max(1, (wanted * negotiated) // offered) and (wanted * negotiated) < 2**32
    assert 1 <= interval < negotiated and interval <= wanted


_HOLDS = st.one_of(st.just(0), st.integers(3, 300), st.just(65535))


@settings(max_examples=150, deadline=None)
@given(
    offered=_HOLDS,
    received=_HOLDS,
    others=st.dictionaries(st.sampled_from(["192.0.2.8", "2001:db8::7", "10.0.0.1"]), st.integers(1, 100)),
    written=st.sampled_from(["no file named", "a file", "no file"]),
)
def test_without_a_keepalive_time_the_timer_is_exabgps(
    offered: int, received: int, others: dict[str, int], written: str
) -> None:
    """A session without a keepalive time (no file named, a file without its peer, no file where one is
    named): the very same SendTimer state, and KEEPALIVEs at the very same times, as unpatched ExaBGP."""
    import json
    import os

    with _session_env(json.dumps(others) if written == "a file" else None) as (clock, _):
        if written == "no file named":
            del os.environ[launch.KEEPALIVE_ENV]
        patched_proto, original_proto = _proto(offered, received), _proto(offered, received)
        patched, original = _ka(launch._ka_init, patched_proto), _ka(ORIGINAL_KA_INIT, original_proto)
        state = {k: v for k, v in vars(patched.send_timer).items() if k != "session"}
        assert state == {k: v for k, v in vars(original.send_timer).items() if k != "session"}
        assert type(patched.send_timer.keepalive) is type(original.send_timer.keepalive)
        seconds = 3 * max(1, min(offered, received, 40))
        start = clock.now  # both timers started at this instant; run one, then the other from there
        times = _keepalives(patched, patched_proto, clock, seconds)
        clock.now = start
        assert times == _keepalives(original, original_proto, clock, seconds)
        assert len(times) == (seconds // (min(offered, received) // 3) if min(offered, received) else 0)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 60).flatmap(lambda k: st.tuples(st.just(k), st.integers(max(k + 1, 3), 180))),
    st.data(),
    st.sampled_from([_PEER, "2001:db8::7"]),
)
def test_with_a_keepalive_time_keepalives_go_at_birds_interval(
    wanted_offered: tuple[int, int], data: Any, peer: str
) -> None:
    import json

    wanted, offered = wanted_offered
    received = data.draw(st.integers(3, 200))
    with _session_env(json.dumps({peer: wanted, "192.0.2.99": 1})) as (clock, _):
        proto = _proto(offered, received, peer)
        ka = _ka(launch._ka_init, proto)
        interval = max(1, wanted * min(offered, received) // offered)
        assert ka.send_timer.keepalive == interval
        assert _keepalives(ka, proto, clock, 4 * interval) == [n * interval for n in range(1, 5)]


def test_the_peer_address_matches_however_exabgp_spells_it() -> None:
    """ExaBGP keeps the config's spelling of an address; bgpd writes `ipaddress`'s."""
    with _session_env('{"fd00:100::a": 2}'):
        assert _ka(launch._ka_init, _proto(9, 9, "fd00:100::0a")).send_timer.keepalive == 2
        assert _ka(launch._ka_init, _proto(9, 9, "FD00:100:0::A")).send_timer.keepalive == 2


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"192.0.2.7": "1"}', '{"192.0.2.7": 0}', '{"x": 1}']
)
def test_an_unusable_keepalive_file_leaves_exabgps_interval(text: str) -> None:
    with _session_env(text):
        assert _ka(launch._ka_init, _proto(9, 9)).send_timer.keepalive == 3


def test_a_refresh_applies_a_changed_file_to_live_sessions_at_once() -> None:
    """KEEPALIVE_SIGNAL after a reload: every live session takes its interval from the file as it is now
    (set, changed or gone back to ExaBGP's), from its next check on; nothing else of the timer changes."""
    with _session_env("{}") as (clock, path):
        proto, other = _proto(9, 9), _proto(30, 30, "192.0.2.8")
        ka, ka_other = _ka(launch._ka_init, proto), _ka(launch._ka_init, other)
        assert (ka.send_timer.keepalive, ka_other.send_timer.keepalive) == (3, 10)
        assert _keepalives(ka, proto, clock, 6) == [3, 6]
        path.write_text('{"192.0.2.7": 1}')
        last_sent = ka.send_timer.last_sent
        launch._refresh_keepalives()
        assert (ka.send_timer.keepalive, ka_other.send_timer.keepalive) == (1, 10)
        assert ka.send_timer.last_sent == last_sent
        assert _keepalives(ka, proto, clock, 3) == [1, 2, 3]
        path.write_text('{"192.0.2.8": 4}')
        launch._refresh_keepalives()
        assert (ka.send_timer.keepalive, ka_other.send_timer.keepalive) == (3, 4)
        assert ka.send_timer.keepalive == proto.negotiated.holdtime.keepalive()  # ExaBGP's own again
        assert _keepalives(ka, proto, clock, 6) == [3, 6]


def test_a_refresh_during_a_sessions_start_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal may arrive while a session's timer is being built, between its read of the (old) file
    and setting the interval: the new file wins."""
    import os

    real = launch.read_keepalives
    reads: list[dict[str, int]] = []

    def read_then_signal(path: str | None = None) -> dict[str, int]:
        old = real(path)
        reads.append(old)
        if len(reads) == 1:  # bgpd rewrites the file and signals, right after the first read
            pathlib.Path(os.environ[launch.KEEPALIVE_ENV]).write_text('{"192.0.2.7": 1}')
            launch._refresh_keepalives()
        return old

    with _session_env('{"192.0.2.7": 2}'):
        monkeypatch.setattr(launch, "read_keepalives", read_then_signal)
        assert _ka(launch._ka_init, _proto(9, 9)).send_timer.keepalive == 1
    assert [r.get(_PEER) for r in reads] == [2, 1, 1]  # the session's read, the refresh's, its second


def test_timers_of_ended_sessions_are_forgotten() -> None:
    import gc

    with _session_env():
        gc.collect()
        before = len(launch._timers)
        ka = _ka(launch._ka_init, _proto(9, 9))
        assert len(launch._timers) == before + 1
        del ka
        gc.collect()  # KA and its generator hold each other
        assert len(launch._timers) == before


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", ""),  # ExaBGP 5.0.15 as it is: accepted
        # a timer built elsewhere, or more than once a session
        (
            "self.send_timer = SendTimer(session, proto.negotiated.holdtime)",
            "self.timer = SendTimer(session, 3)",
        ),
        ("send_ka = KA(self.proto.connection.session, self.proto)", "send_ka = None"),
        # an interval computed otherwise, or read once
        ("self.keepalive = holdtime.keepalive()", "self.keepalive = int(holdtime / 4)"),
        ("left = self.last_sent + self.keepalive - now", "left = self.last_sent + self._interval - now"),
        ("HoldTime(min(self.sent_open.hold_time, self.received_open.hold_time))", "HoldTime(90)"),
        # a version that uses the launcher's signal itself
        ("signal.signal(signal.SIGUSR2, self.sigusr2)", "signal.signal(signal.SIGWINCH, self.sigusr2)"),
    ],
)
def test_change_10_refuses_another_exabgp(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    import inspect
    import types

    real = inspect.getsource
    monkeypatch.setattr(launch.inspect, "getsource", lambda obj: real(obj).replace(old, new))
    ka = types.SimpleNamespace(__init__=ORIGINAL_KA_INIT)  # KA.__init__ is change 10's by now
    if not old:
        launch._check_keepalive(ka)
        return
    with pytest.raises(AssertionError):
        launch._check_keepalive(ka)


# ---------------------------------------------------------------- 11. TTL security on the listening side

ORIGINAL_RELOAD = launch._original_reload
ORIGINAL_SET_ACCEPTED_TTL = launch._original_set_accepted_ttl
_IP_MINTTL = 21  # linux/in.h (CPython does not export it)


def _bpf(program: list[tuple[int, int, int, int]], header: bytes) -> int:
    """Classic BPF as the kernel runs a TCP socket filter, for the instructions gtsm_program uses: loads at
    SKF_NET_OFF + k read the IP header (big-endian); a load past it drops the segment."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code in (0x20, 0x30):  # ld / ldb [net + off]
            size, off = (4 if code == 0x20 else 1), k - 0xFFF00000
            if not 0 <= off <= len(header) - size:
                return 0
            a = int.from_bytes(header[off : off + size], "big")
        elif code in (0x15, 0x35):  # jeq / jge #k
            pc += jt if (a == k if code == 0x15 else a >= k) else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"instruction {code:#x} is not one gtsm_program writes")


def _header(version: int, source: int, ttl: int) -> bytes:
    """The IP header of a TCP segment from `source` (an integer) with this TTL / hop limit."""
    if version == 4:
        return bytes([0x45, 0, 0, 40, 0, 0, 0x40, 0, ttl, 6, 0, 0]) + source.to_bytes(4, "big") + bytes(4)
    return bytes([0x60, 0, 0, 0, 0, 20, 6, ttl]) + source.to_bytes(16, "big") + bytes(16)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([4, 6]),
    st.dictionaries(st.integers(0, 15), st.integers(1, 255), max_size=8),
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 255)), max_size=30),
    st.randoms(),
)
def test_gtsm_program_drops_exactly_the_too_distant_segments_of_its_peers(
    version: int, table: dict[int, int], segments: list[tuple[int, int]], rnd: random.Random
) -> None:
    bits = 32 if version == 4 else 128
    # peers whose addresses share all but one word (IPv6) or one octet: a differing word must not match
    base = rnd.getrandbits(bits) & ~0xFF
    shift = rnd.choice([0, bits - 32]) if version == 6 else 0
    address = {i: base ^ (i << shift) for i in range(21)}
    minimums = {address[i]: minimum for i, minimum in table.items()}
    program = launch.gtsm_program(version, minimums)
    assert all(jt <= 255 and jf <= 255 for _, jt, jf, _ in program)
    for source, ttl in segments:
        verdict = _bpf(program, _header(version, address[source], ttl))
        wanted = minimums.get(address[source], 0)
        assert verdict == (0 if ttl < wanted else 0xFFFFFFFF), (source, ttl, wanted)


def test_gtsm_program_refuses_what_the_kernel_would() -> None:
    with pytest.raises(ValueError, match="minimum TTL 0"):
        launch.gtsm_program(4, {1: 0})
    assert len(launch.gtsm_program(4, dict.fromkeys(range(682), 255))) <= launch.BPF_MAXINSNS
    with pytest.raises(ValueError, match="683 peers"):
        launch.gtsm_program(4, dict.fromkeys(range(683), 255))
    assert len(launch.gtsm_program(6, dict.fromkeys(range(341), 255))) <= launch.BPF_MAXINSNS
    with pytest.raises(ValueError, match="342 peers"):
        launch.gtsm_program(6, dict.fromkeys(range(342), 255))


class _Socket:
    """A socket that records the options set on it."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.calls: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append((level, option, value))


_LOCAL, _LOCAL6 = "127.0.0.1", "::1"


def _configuration(tmp_path: pathlib.Path, ttl: dict[str, int | None]) -> Any:
    """ExaBGP's parsed configuration of bgpd's sessions to these peers (address -> ttl_security)."""
    from exabgp.configuration.configuration import Configuration

    from bgpd.exabgp import confgen

    speaker = confgen.Speaker(
        router_id=ipaddress.IPv4Address(_LOCAL),
        local_address=ipaddress.IPv4Address(_LOCAL),
        local_address6=ipaddress.IPv6Address(_LOCAL6),
        asn=64512,
    )
    sessions = [
        confgen.Session(
            ipaddress.ip_address(a), 64512, passive=True, ttl_security=hops, families=(6 if ":" in a else 4,)
        )
        for a, hops in ttl.items()
    ]
    path = tmp_path / "exabgp.conf"
    path.write_text(confgen.render(speaker, sessions, "/nonexistent", run="/bin/true"))
    conf = Configuration([str(path)])
    assert conf.reload(), conf.error
    return conf


def _reactor(conf: Any, sockets: dict[Any, tuple[str, int]]) -> Any:
    import types

    listener = types.SimpleNamespace(_sockets={s: (a, p, "0.0.0.0", None) for s, (a, p) in sockets.items()})
    return types.SimpleNamespace(
        listener=listener, _ips=[IP.create(_LOCAL), IP.create(_LOCAL6)], _port=179, configuration=conf
    )


@pytest.fixture
def attached(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """The filters change 11 attaches, (socket, program), instead of attaching them; no socket guarded yet."""
    import weakref

    programs: list[tuple[Any, Any]] = []
    monkeypatch.setattr(launch, "_attach_filter", lambda sock, program: programs.append((sock, program)))
    monkeypatch.setattr(launch, "_guarded", weakref.WeakKeyDictionary())
    return programs


def test_without_ttl_security_no_socket_option_is_set(
    tmp_path: pathlib.Path, attached: list[tuple[Any, Any]]
) -> None:
    import socket

    conf = _configuration(tmp_path, {"127.0.0.2": None, "127.0.0.3": None, "::2": None})
    v4, v6 = _Socket(socket.AF_INET), _Socket(socket.AF_INET6)
    launch.protect_listeners(_reactor(conf, {v4: (_LOCAL, 179), v6: (_LOCAL6, 179)}))
    assert (v4.calls, v6.calls, attached) == ([], [], [])
    # an accepted connection: the very same options as unpatched ExaBGP sets (none)
    for neighbor in conf.neighbors.values():
        patched, original = (_Socket(socket.AF_INET) for _ in range(2))
        for fn, io in ((launch._set_accepted_ttl, patched), (ORIGINAL_SET_ACCEPTED_TTL, original)):
            fn(_connection(io), neighbor)
        assert patched.calls == original.calls == []


def _connection(io: _Socket) -> Any:
    import types

    return types.SimpleNamespace(io=io, afi=AFI.ipv4, peer=_LOCAL, name=lambda: "incoming-connection")


def test_the_listener_of_a_gtsm_neighbor_sends_255_and_filters_by_peer(
    tmp_path: pathlib.Path, attached: list[tuple[Any, Any]]
) -> None:
    import socket

    conf = _configuration(tmp_path, {"127.0.0.2": 1, "127.0.0.3": None, "127.0.0.4": 2, "::2": None})
    v4, v6, own_port = _Socket(socket.AF_INET), _Socket(socket.AF_INET6), _Socket(socket.AF_INET)
    reactor = _reactor(conf, {v4: (_LOCAL, 179), v6: (_LOCAL6, 179), own_port: (_LOCAL, 1790)})
    launch.protect_listeners(reactor)
    minimums = {int(ipaddress.ip_address("127.0.0.2")): 255, int(ipaddress.ip_address("127.0.0.4")): 254}
    assert attached == [(v4, launch.gtsm_program(4, minimums))]
    assert v4.calls == [(socket.IPPROTO_IP, socket.IP_TTL, 255)]
    assert v6.calls == own_port.calls == []  # no IPv6 neighbor with TTL security; not a main listener
    launch.protect_listeners(reactor)  # a reload that changes nothing: no system call
    assert len(attached) == 1 and len(v4.calls) == 1
    # without TTL security again: the filter goes and the kernel's default TTL comes back
    reactor.configuration = _configuration(tmp_path, {"127.0.0.2": None, "127.0.0.4": None})
    launch.protect_listeners(reactor)
    assert v4.calls[1:] == [
        (socket.SOL_SOCKET, launch.SO_DETACH_FILTER, 0),
        (socket.IPPROTO_IP, socket.IP_TTL, -1),
    ]
    assert v6.calls == []


def test_an_ipv6_gtsm_neighbor_guards_only_the_ipv6_listener(
    tmp_path: pathlib.Path, attached: list[tuple[Any, Any]]
) -> None:
    import socket

    conf = _configuration(tmp_path, {"127.0.0.2": None, "::2": 3})
    v4, v6 = _Socket(socket.AF_INET), _Socket(socket.AF_INET6)
    launch.protect_listeners(_reactor(conf, {v4: (_LOCAL, 179), v6: (_LOCAL6, 179)}))
    assert attached == [(v6, launch.gtsm_program(6, {2: 253}))]
    assert (v4.calls, v6.calls) == ([], [(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)])


def test_accepted_connections_get_their_neighbors_minimum_or_the_default_ttl(
    tmp_path: pathlib.Path, attached: list[tuple[Any, Any]]
) -> None:
    import socket

    conf = _configuration(tmp_path, {"127.0.0.2": 2, "127.0.0.3": None})
    neighbors = {str(n["peer-address"]): n for n in conf.neighbors.values()}
    launch.protect_listeners(_reactor(conf, {_Socket(socket.AF_INET): (_LOCAL, 179)}))

    def calls(fn: Any, peer: str) -> list[tuple[int, int, int]]:
        io = _Socket(socket.AF_INET)
        fn(_connection(io), neighbors[peer])
        return io.calls

    ttl255 = (socket.IPPROTO_IP, socket.IP_TTL, 255)
    assert calls(ORIGINAL_SET_ACCEPTED_TTL, "127.0.0.2") == [ttl255]  # ExaBGP: the sending TTL only
    assert calls(launch._set_accepted_ttl, "127.0.0.2") == [ttl255, (socket.IPPROTO_IP, _IP_MINTTL, 254)]
    # inherited 255 from the listener: a neighbor without TTL security sends with the default, as unpatched
    assert calls(ORIGINAL_SET_ACCEPTED_TTL, "127.0.0.3") == []
    assert calls(launch._set_accepted_ttl, "127.0.0.3") == [(socket.IPPROTO_IP, socket.IP_TTL, -1)]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", ""),  # ExaBGP 5.0.15 as it is: accepted
        # a version whose main listener gets a minimum TTL itself, or is bound elsewhere
        ("self.listener.listen_on(ip, None, self._port, None, False, None)", "self.listen_all()"),
        ("neighbor['md5-base64'],", "neighbor['md5-base64'], neighbor['incoming-ttl'],"),
        # one that keeps its sockets otherwise, or accepts elsewhere
        (
            "self._sockets[sock] = (local_ip.top(), local_port, peer_ip.top(), use_md5)",
            "self._sockets[sock] = 1",
        ),
        ("io, _ = sock.accept()", "io = sock.accept()[0]"),
        # one whose accepted connections do not all go through set_accepted_ttl, or that sets a minimum there
        ("set_accepted_ttl(connection, new_neighbor)", "pass"),
        ("value = sending_ttl(neighbor['outgoing-ttl'], neighbor['incoming-ttl'])", "value = 255"),
        ("    if value is None or connection.io is None:", "    set_minimum_ttl(1)\n    if value is None:"),
        # one whose outgoing connections lack the minimum
        ("set_minimum_ttl(self.io, self.afi, self.peer, self.incoming_ttl)", "pass"),
    ],
)
def test_change_11_refuses_another_exabgp(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    import inspect
    import types

    from exabgp.reactor import listener

    real = inspect.getsource
    monkeypatch.setattr(launch.inspect, "getsource", lambda obj: real(obj).replace(old, new))
    # Reactor.reload / restart and set_accepted_ttl are change 11's by now
    reactor = types.SimpleNamespace(run=Reactor.run, reload=ORIGINAL_RELOAD, restart=launch._original_restart)
    module = types.SimpleNamespace(Listener=listener.Listener, set_accepted_ttl=ORIGINAL_SET_ACCEPTED_TTL)
    if not old:
        launch._check_gtsm(reactor, module)
        return
    with pytest.raises(AssertionError):
        launch._check_gtsm(reactor, module)
