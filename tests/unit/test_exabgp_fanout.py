"""Changes 14 and 15 of `bgpd.exabgp.launch` (`bgpd.exabgp.fanout`) against ExaBGP without them, on the same
inputs: random sequences of `announce attributes` / `withdraw attributes` commands for random sets of
neighbors with random capabilities (IPv4 / IPv6 unicast, add-path, iBGP / eBGP, grouped or not, Adj-RIB-Out
cache or not), through ExaBGP's own configuration parser, API parser and command callbacks, then the same
Adj-RIB-Out of every neighbor (content, order, pending changes, which route objects are shared) and the
very same UPDATE octets per neighbor, each session's parameters coming from ExaBGP's own OPEN negotiation."""

from __future__ import annotations

import contextlib
import inspect
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from exabgp.bgp.message.update import Update
from exabgp.reactor.api.command.command import Command
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.exabgp import fanout, launch

launch.apply()
from exabgp.environment import getenv  # noqa: E402
from exabgp.logger import log as exabgp_log  # noqa: E402

exabgp_log.init(getenv())

ORIGINAL_CALLBACKS = fanout.original_callbacks()
ORIGINAL_MESSAGES = fanout._original_messages

# one neighbor: (families "4" | "6" | "46", add-path, group-updates, eBGP, adj-rib-out)
Spec = tuple[str, bool, bool, bool, bool]
# one operation: ("command", announce?, family 4|6, targets (neighbor numbers, () = all), attribute set,
# prefixes (numbers), next hop) or ("send", ((neighbor number, include_withdraw), ...)): those neighbors send
# what they have queued
Op = tuple[Any, ...]

_ATTRIBUTES = [
    "origin igp local-preference 100",
    "origin igp as-path [ 65001 65002 ] local-preference 200 med 5",
    "origin incomplete local-preference 100 community [ 65000:1 ] originator-id 192.0.2.9"
    " cluster-list [ 1.1.1.1 ]",
]
_HOPS = {4: ["192.0.2.1", "192.0.2.2", "self"], 6: ["2001:db8::1", "2001:db8::2", "2001:db8::3"]}


def _prefix(family: int, n: int) -> str:
    if family == 4:
        return f"10.{n % 3}.{n}.0/{24 + n % 3}"
    return f"2001:db8:{n:x}::/{48 + (n % 2) * 16}"


def _address(n: int) -> str:
    return f"192.0.2.{10 + n}"


def _config(specs: list[Spec]) -> str:
    lines = []
    for n, (families, addpath, grouped, ebgp, cached) in enumerate(specs):
        lines += [
            f"neighbor {_address(n)} {{",
            "    router-id 192.0.2.254;",
            "    local-address 192.0.2.254;",
            "    local-as 64512;",
            f"    peer-as {65000 + n if ebgp else 64512};",
            f"    adj-rib-out {'true' if cached else 'false'};",
            f"    group-updates {'true' if grouped else 'false'};",
            *(["    capability {", "        add-path send/receive;", "    }"] if addpath else []),
            "    family {",
            *(["        ipv4 unicast;"] if "4" in families else []),
            *(["        ipv6 unicast;"] if "6" in families else []),
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


class _Answers:
    """The `reactor.processes` a command answers to."""

    def __init__(self) -> None:
        self.answers: list[str] = []

    def answer_done(self, service: str, force: bool = False) -> None:
        self.answers.append("done")

    def answer_error(self, service: str) -> None:
        self.answers.append("error")


class _Reactor:
    """What an API command uses of ExaBGP's reactor: its peers (every neighbor of the configuration), the
    configuration, its ASYNC queue (ExaBGP's own) and the processes it answers."""

    def __init__(self, configuration: Any) -> None:
        from exabgp.reactor.asynchronous import ASYNC

        self.configuration = configuration
        self.asynchronous = ASYNC()
        self.processes = _Answers()

    def peers(self, service: str = "") -> list[str]:
        return list(self.configuration.neighbors)


def _negotiated(neighbor: Any) -> Any:
    """The session's parameters as ExaBGP negotiates them with a peer that offers what it offers."""
    from exabgp.bgp.message.open import Open, Version
    from exabgp.bgp.message.open.capability import Capabilities
    from exabgp.bgp.message.open.capability.negotiated import Negotiated

    negotiated = Negotiated(neighbor)
    ours = Open(
        Version(4), neighbor["local-as"], 90, neighbor["router-id"], Capabilities().new(neighbor, False)
    )
    theirs = Open(Version(4), neighbor["peer-as"], 90, "192.0.2.253", Capabilities().new(neighbor, False))
    negotiated.sent(ours)
    negotiated.received(theirs)
    return negotiated


@contextlib.contextmanager
def _unpatched() -> Iterator[None]:
    """ExaBGP without changes 14 and 15 (the other changes stay)."""
    text = Command.callback["text"]
    patched = {name: text[name] for name in ORIGINAL_CALLBACKS}
    text.update(ORIGINAL_CALLBACKS)
    Update.messages = ORIGINAL_MESSAGES
    try:
        yield
    finally:
        text.update(patched)
        Update.messages = fanout._messages


@contextlib.contextmanager
def _fresh_ribs() -> Iterator[None]:
    """ExaBGP keeps each neighbor's RIBs across configuration loads, by name, in a class attribute: every run
    starts with none (and leaves what was there as it was)."""
    from exabgp.rib import RIB

    saved = dict(RIB._cache)
    RIB._cache.clear()
    try:
        yield
    finally:
        RIB._cache.clear()
        RIB._cache.update(saved)


def _command(op: Op, names: list[str]) -> str:
    _, announce, family, targets, attributes, prefixes, hop = op
    target = " , ".join(f"neighbor {_address(n)}" for n in targets if n < len(names))
    nlri = " ".join(_prefix(family, n) for n in prefixes)
    next_hop = _HOPS[family][hop]
    if announce:
        return (
            f"{target} announce attributes next-hop {next_hop} {_ATTRIBUTES[attributes]} nlri {nlri}".strip()
        )
    return f"{target} withdraw attributes next-hop {next_hop} nlri {nlri}".strip()


def _change(change: Any, numbers: dict[int, int]) -> tuple[Any, ...]:
    """A queued or cached change by content, and which object it is (numbered in order of first sight)."""
    number = numbers.setdefault(id(change), len(numbers))
    nlri = change.nlri
    return (number, change.index(), int(nlri.action), change.attributes.index(), str(nlri.nexthop))


def _state(configuration: Any) -> list[Any]:
    """Every neighbor's Adj-RIB-Out: queued changes (by route, by attribute set and family, attribute sets),
    the cache of what was sent, in their orders, and which route objects are shared."""
    numbers: dict[int, int] = {}
    state = []
    for name, neighbor in configuration.neighbors.items():
        rib = neighbor.rib.outgoing
        state.append(
            (
                name,
                rib.pending(),
                [(index, _change(c, numbers)) for index, c in rib._new_nlri.items()],
                [
                    (
                        attr,
                        [
                            (str(fam), [(i, _change(c, numbers)) for i, c in ch.items()])
                            for fam, ch in f.items()
                        ],
                    )
                    for attr, f in rib._new_attr_af_nlri.items()
                ],
                [(attr, a.index()) for attr, a in rib._new_attribute.items()],
                [
                    (str(fam), [(i, _change(c, numbers)) for i, c in ch.items()])
                    for fam, ch in rib._seen.items()
                ],
            )
        )
    return state


def _run(
    specs: list[Spec], ops: list[Op], patched: bool
) -> tuple[list[Any], dict[str, list[bytes]], list[str]]:
    """(the final Adj-RIB-Out state, the UPDATE octets each neighbor sent, the commands' answers)."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.reactor.api import API

    fanout.forget()
    context = contextlib.nullcontext() if patched else _unpatched()
    with context, _fresh_ribs(), tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "exabgp.conf"
        path.write_text(_config(specs))
        configuration = Configuration([str(path)])
        assert configuration.reload() is True, str(configuration.error)
        neighbors = list(configuration.neighbors.values())
        names = list(configuration.neighbors)
        negotiated = {name: _negotiated(neighbor) for name, neighbor in zip(names, neighbors, strict=True)}
        reactor = _Reactor(configuration)
        api = API(reactor)
        sent: dict[str, list[bytes]] = {name: [] for name in names}
        states = []
        for op in [*ops, ("send", tuple((n, True) for n in range(len(specs))))]:
            if op[0] == "send":
                states.append(_state(configuration))  # with the changes queued since the last send
                for n, include_withdraw in op[1]:
                    if n >= len(names):
                        continue
                    neighbor = neighbors[n]
                    for update in neighbor.rib.outgoing.updates(neighbor["group-updates"]):
                        sent[names[n]].extend(update.messages(negotiated[names[n]], include_withdraw))
                continue
            api.process(reactor, "bgpd", _command(op, names))
            while reactor.asynchronous.run():
                pass
        states.append(_state(configuration))
        return states, sent, reactor.processes.answers


_SPECS = st.lists(
    st.tuples(
        st.sampled_from(["4", "6", "46", "46"]), st.booleans(), st.booleans(), st.booleans(), st.booleans()
    ),
    min_size=1,
    max_size=5,
)


def _ops(count: int) -> Any:
    command = st.tuples(
        st.just("command"),
        st.sampled_from([True, True, False]),
        st.sampled_from([4, 6]),
        st.lists(st.integers(0, count - 1), max_size=count, unique=True).map(tuple),
        st.integers(0, len(_ATTRIBUTES) - 1),
        st.lists(st.integers(0, 11), min_size=1, max_size=12),
        st.sampled_from([0, 0, 1, 1, 2]),
    )
    # include_withdraw False: what ExaBGP sends a peer after a route refresh
    send = st.tuples(
        st.just("send"),
        st.lists(
            st.tuples(st.integers(0, count - 1), st.sampled_from([True] * 4 + [False])),
            unique_by=lambda t: t[0],
        ).map(tuple),
    )
    return st.lists(st.one_of(command, command, command, send), min_size=1, max_size=25)


@contextlib.contextmanager
def _logging(kind: str) -> Iterator[None]:
    """ExaBGP's log as configured ("processes": the command log lines, as in the tests' environment),
    without the command lines ("quiet", as bgpd runs ExaBGP), or with the `rib` debug lines ("rib")."""
    from exabgp.logger import option

    enabled, logit = dict(option.enabled), dict(option.logit)
    option.enabled["processes"] = kind != "quiet"
    if kind == "rib":
        option.enabled["rib"] = option.logit["DEBUG"] = True
    try:
        yield
    finally:
        option.enabled.clear()
        option.enabled.update(enabled)
        option.logit.clear()
        option.logit.update(logit)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_same_adj_ribs_out_and_octets_as_exabgp(data: Any) -> None:
    specs = data.draw(_SPECS)
    ops = data.draw(_ops(len(specs)))
    with _logging(data.draw(st.sampled_from(["processes", "quiet", "quiet", "rib"]))):
        patched = _run(specs, ops, patched=True)
        unpatched = _run(specs, ops, patched=False)
    assert patched[2] == unpatched[2]  # the commands' answers
    assert patched[0] == unpatched[0]  # every Adj-RIB-Out, at every send and at the end
    assert patched[1] == unpatched[1]  # every neighbor's UPDATE octets, in order


def test_an_update_group_is_encoded_once() -> None:
    """Three neighbors alike (and one with add-path) receive one command of 50 routes: the three share one
    encoding, the fourth has its own; every one gets what ExaBGP would send it."""
    specs: list[Spec] = [("46", False, True, False, True)] * 3 + [("46", True, True, False, True)]
    ops: list[Op] = [
        ("command", True, 4, (), 1, list(range(12)), 0),
        ("command", True, 6, (), 2, [1, 2, 3], 1),
    ]
    fanout.stats.update(hits=0, misses=0)
    patched = _run(specs, ops, patched=True)
    assert fanout.stats == {"hits": 4, "misses": 4}  # per command: one per group, then the group's others
    assert patched[1] == _run(specs, ops, patched=False)[1]
    octets = list(patched[1].values())
    assert octets[0] == octets[1] == octets[2] != octets[3] and all(octets)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "MAX_NLRIS", 20)
    specs: list[Spec] = [("4", False, True, False, True)] * 2
    ops: list[Op] = [("command", True, 4, (), a, list(range(12)), 0) for a in range(3)]
    patched = _run(specs, [*ops, ("send", ((0, True), (1, True)))], patched=True)
    assert fanout._held <= 20 and len(fanout._remembered) == 1  # each 12 routes: only the last is kept
    assert patched[1] == _run(specs, ops, patched=False)[1]
    fanout.forget()


def test_changes_14_and_15_are_installed() -> None:
    text = Command.callback["text"]
    assert Update.messages is fanout._messages
    assert ORIGINAL_MESSAGES.__module__ == "exabgp.bgp.message.update"
    for name in ("announce attributes", "announce attribute", "withdraw attributes", "withdraw attribute"):
        assert text[name].__module__ == "bgpd.exabgp.fanout"
        assert ORIGINAL_CALLBACKS[name].__module__ == "exabgp.reactor.api.command.announce"


@pytest.mark.parametrize("unpatched", ["1", "0"])
def test_unpatched_environment_leaves_14_and_15_out(unpatched: str) -> None:
    """`BGPD_EXABGP_UNPATCHED=1`: ExaBGP's own route commands and `Update.messages`."""
    import os
    import subprocess
    import sys

    code = (
        "import exabgp.application.main as m\n"
        "m.main = lambda: None\n"
        "from bgpd.exabgp import launch\n"
        "launch.main()\n"
        "from exabgp.bgp.message.update import Update\n"
        "from exabgp.reactor.api.command.command import Command\n"
        "import exabgp.reactor.api.command.announce\n"
        "text = Command.callback['text']\n"
        "print(Update.messages.__module__, text['announce attributes'].__module__,"
        " text['withdraw attribute'].__module__)\n"
    )
    env = {**os.environ, "BGPD_EXABGP_UNPATCHED": unpatched}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if unpatched == "1":
        command = "exabgp.reactor.api.command.announce"
        assert out.stdout.split() == ["exabgp.bgp.message.update", command, command]
    else:
        assert out.stdout.split() == ["bgpd.exabgp.fanout"] * 3


def _check() -> None:
    from exabgp.bgp.message.update.attribute import MPRNLRI, MPURNLRI
    from exabgp.bgp.message.update.nlri.inet import INET
    from exabgp.rib.cache import Cache
    from exabgp.rib.change import Change
    from exabgp.rib.outgoing import OutgoingRIB

    callbacks = {**Command.callback["text"], **ORIGINAL_CALLBACKS}
    fanout.check(
        callbacks,
        launch._original_inject_change,
        OutgoingRIB,
        Cache,
        Change,
        Update,
        (MPRNLRI, MPURNLRI, INET),
    )


@pytest.mark.parametrize(
    ("function", "old", "new"),
    [
        ("", "", ""),  # ExaBGP 5.0.15 as it is: accepted
        # change 14: a command, the injection or the Adj-RIB-Out done otherwise
        (
            "announce_attributes",
            "change.nlri.action = Action.ANNOUNCE",
            "change.nlri.action = Action.WITHDRAW",
        ),
        ("withdraw_attribute", "yield False", "yield True"),
        ("inject_change", "neighbor.remove_self(change)", "change"),
        ("add_to_rib", "if not force and self.in_cache(change)", "if self.in_cache(change)"),
        ("_update_rib", "new_attr[change_attr_index] = change.attributes", "pass"),
        ("in_cache", "return False", "return True"),
        ("update_cache", "self._seen[family].pop(index, None)", "pass"),
        ("index", "self.nlri.index()", "self.nlri.pack_nlri()"),
    ],
)
def test_change_14_refuses_another_exabgp(
    monkeypatch: pytest.MonkeyPatch, function: str, old: str, new: str
) -> None:
    _refuses(monkeypatch, function, old, new)


@pytest.mark.parametrize(
    ("function", "old", "new"),
    [
        # change 15: UPDATEs built from something else than what the key holds
        ("messages", "self.attributes.pack(negotiated)", "self.attributes.pack(negotiated, False)"),
        ("_native_messages", "nlri.action == Action.WITHDRAW", "nlri.afi"),
        ("_packed_nlris", "packed = nlri.pack(negotiated)", "packed = nlri.pack()"),
        ("_mp_messages", "if include_withdraw else []", ""),
        ("_carries_attributes", "return True", "return False"),
        ("packed_attributes", "nlri.pack(negotiated)", "nlri.pack(None)"),
        ("pack_nlri", "negotiated.addpath.send(self.afi, self.safi)", "True"),
    ],
)
def test_change_15_refuses_another_exabgp(
    monkeypatch: pytest.MonkeyPatch, function: str, old: str, new: str
) -> None:
    _refuses(monkeypatch, function, old, new)


def _refuses(monkeypatch: pytest.MonkeyPatch, function: str, old: str, new: str) -> None:
    real = inspect.getsource

    def getsource(obj: Any) -> str:
        source = real(obj)
        if function and getattr(obj, "__name__", "") == function:
            assert old in source, (function, old)
            return source.replace(old, new)
        return source

    monkeypatch.setattr(inspect, "getsource", getsource)  # the module fanout reads sources with
    if not function:
        _check()
        return
    with pytest.raises(AssertionError, match="unexpected ExaBGP version"):
        _check()
