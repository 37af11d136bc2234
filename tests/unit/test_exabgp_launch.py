"""The six changes `bgpd.exabgp.launch` makes to ExaBGP's reactor keep its behaviour: checked against
the unpatched functions on the same inputs."""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("exabgp")

from exabgp.bgp.message import Action
from exabgp.bgp.message.update import Update
from exabgp.bgp.message.update.nlri.inet import INET
from exabgp.bgp.neighbor import Neighbor
from exabgp.protocol.family import AFI, SAFI
from exabgp.protocol.ip import IP
from exabgp.reactor.asynchronous import ASYNC
from exabgp.reactor.loop import Reactor

from bgpd.exabgp import launch

launch.apply()
from exabgp.environment import getenv  # noqa: E402
from exabgp.logger import log as exabgp_log  # noqa: E402

exabgp_log.init(getenv())  # error paths log through ExaBGP's logger
ORIGINAL_REMOVE_SELF = launch._original_remove_self
ORIGINAL_ASYNC_RUN = launch._original_async_run
ORIGINAL_TOKENS = launch._original_tokens
ORIGINAL_SPLIT_NLRIS = launch._original_split_nlris


class _NextHop:
    def __init__(self, is_self: bool) -> None:
        self.SELF = is_self


class _Change:
    def __init__(self, is_self: bool) -> None:
        self.nlri = type("N", (), {})()
        self.nlri.nexthop = _NextHop(is_self)


def test_patches_are_installed() -> None:
    assert Neighbor.remove_self is launch._remove_self
    assert ASYNC.run is launch._async_run
    assert Reactor._wait_for_io is launch._wait_for_io


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


def _jobs(seed: int, log: list[tuple[int, int]]) -> list[tuple[str, Iterator[bool]]]:
    rng = random.Random(seed)

    def job(n: int, steps: int, fail_at: int | None) -> Iterator[bool]:
        for i in range(steps):
            if i == fail_at:
                raise ValueError(f"job {n} fails at {i}")
            log.append((n, i))
            yield False

    return [
        (f"uid{n}", job(n, rng.randint(0, 120), rng.choice([None, None, rng.randint(0, 60)])))
        for n in range(8)
    ]


def _drain(run: Any, seed: int) -> tuple[list[tuple[int, int]], list[str]]:
    log: list[tuple[int, int]] = []
    errors: list[str] = []
    a = ASYNC()
    a.set_error_handler(errors.append)
    a._async = deque(_jobs(seed, log))
    for _ in range(10_000):
        if not run(a):
            break
    return log, errors


@pytest.mark.parametrize("seed", range(25))
def test_api_work_runs_in_the_same_order_with_the_same_errors(seed: int) -> None:
    assert _drain(launch._async_run, seed) == _drain(ORIGINAL_ASYNC_RUN, seed)


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


def test_split_nlris_patch_is_installed() -> None:
    assert Update._split_nlris is launch._split_nlris


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
