"""What `bgpd.exabgp.launch.apply` installs, and two of its changes run against ExaBGP's unpatched code on
real ExaBGP objects:

- the installation table: every attribute `apply` replaces, with its replacement and the original it kept,
  and a check, in a fresh interpreter, that `apply` replaces exactly these attributes of ExaBGP's modules
  and classes (a new change that is not listed here fails it);
- change 2 (`ASYNC.run` steps the API's generators directly, `STEPS_PER_PASS` a reactor pass): queues
  whose work spans several passes, with work arriving between passes, give after every pass the same
  steps in the same order, the same errors and log lines, the same queue and the same answer as
  ExaBGP's `ASYNC.run` run for as many steps (its passes are `ASYNC.LIMIT` steps);
- change 1 (a route whose next hop is not "self" is shared by the neighbors' Adj-RIBs-Out instead of
  deep-copied for each): bgpd's commands through ExaBGP's API parser and `_Configuration.inject_change`
  into the Adj-RIBs-Out of neighbors of several kinds (iBGP, eBGP, IPv4 and IPv6 sessions), then
  announcements, withdrawals, re-announcements, a route refresh and a cleared Adj-RIB-Out: every stored
  route stays byte for byte as it was stored (pickled, and packed for each neighbor), and every neighbor
  gets the very same UPDATE messages as from the unpatched, deep-copying path.
"""

from __future__ import annotations

import contextlib
import inspect
import ipaddress
import itertools
import json
import pathlib
import pickle
import random
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Literal

import pytest
from exabgp.bgp.neighbor import Neighbor
from exabgp.configuration.configuration import _Configuration
from exabgp.reactor.asynchronous import ASYNC

from bgpd.exabgp import collision, confgen, fanout, launch, poller, reload, teardown
from bgpd.exabgp.codec import announce_lines, withdraw_lines
from bgpd.model import Attributes, Origin

launch.apply()
from exabgp.environment import getenv  # noqa: E402
from exabgp.logger import log as exabgp_log  # noqa: E402

exabgp_log.init(getenv())  # the API and the error paths log through ExaBGP's logger

# ---------------------------------------------------------------- what apply() installs


# one replacement: (where, owner, name, replacement, original): `owner` (a module, a class, or a dict such
# as ExaBGP's table of API commands) holds `replacement` under `name` (attribute or key) where ExaBGP had
# `original`; `where` names the owner as the fresh-interpreter check below spells it
Installed = tuple[str, Any, str, Any, Any]


def _installed() -> list[Installed]:
    """Every replacement `launch.apply` installs, changes 1 to 18 (17 is not one)."""
    from exabgp.bgp.message.update import Update
    from exabgp.configuration.core import tokeniser
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.reactor import listener
    from exabgp.reactor.api.command import limit
    from exabgp.reactor.api.command.command import Command
    from exabgp.reactor.keepalive import KA
    from exabgp.reactor.loop import Reactor
    from exabgp.reactor.peer import Peer
    from exabgp.rib.outgoing import OutgoingRIB

    afi, safi = launch._original_creates["afi"], launch._original_creates["safi"]
    commands = fanout.original_callbacks()
    rows: list[tuple[Any, str, Any, Any]] = [
        (Neighbor, "remove_self", launch._remove_self, launch._original_remove_self),  # 1
        (ASYNC, "run", launch._async_run, launch._original_async_run),  # 2
        (Reactor, "_wait_for_io", launch._wait_for_io, launch._original_wait_for_io),  # 3
        (tokeniser, "tokens", launch._tokens, launch._original_tokens),  # 4
        (Update, "_split_nlris", launch._split_nlris, launch._original_split_nlris),  # 5
        (AFI, "create", launch._cached_create(afi), afi),  # 6
        (SAFI, "create", launch._cached_create(safi), safi),  # 6
        (limit, "match_neighbor", launch._match_neighbor, launch._original_match_neighbor),  # 7
        (_Configuration, "inject_change", launch._inject_change, launch._original_inject_change),  # 8
        (OutgoingRIB, "updates", launch._updates, launch._original_updates),  # 9
        (KA, "__init__", launch._ka_init, launch._original_ka_init),  # 10
        (Reactor, "reload", launch._reload, launch._original_reload),  # 11
        (Reactor, "restart", launch._restart, launch._original_restart),  # 11
        (listener, "set_accepted_ttl", launch._set_accepted_ttl, launch._original_set_accepted_ttl),  # 11
        (Peer, "teardown", teardown._teardown, teardown._original_teardown),  # 12
        (Peer, "_main", teardown._main, teardown._original_main),  # 12
        (Peer, "remove", teardown._remove, teardown._original_remove),  # 12
        (Reactor, "_pending_adjribout", reload._pending_adjribout, reload.original(Reactor)),  # 13
        (Update, "messages", fanout._messages, fanout._original_messages),  # 15
        (Reactor, "__init__", poller._init, poller.original_init(Reactor)),  # 16
        (Peer, "handle_connection", collision._handle_connection, collision.original(Peer)),  # 18
    ]
    installed = [(_owner_name(owner), owner, *row) for owner, *row in rows]
    text = Command.callback["text"]
    for name in ("announce attributes", "announce attribute", "withdraw attributes", "withdraw attribute"):
        route_command = fanout._route_command(name.startswith("announce"))  # 14
        installed.append(
            (f"{_owner_name(Command)}.callback['text']", text, name, route_command, commands[name])
        )
    return installed


def _owner_name(owner: Any) -> str:
    return (
        owner.__name__ if isinstance(owner, types.ModuleType) else f"{owner.__module__}.{owner.__qualname__}"
    )


def _held(owner: Any, name: str) -> Any:
    return owner[name] if isinstance(owner, dict) else vars(owner)[name]


def _same_function(installed: Any, replacement: Any) -> bool:
    """`installed` is `replacement`, or made by the same factory with equal arguments (change 6's
    classmethods around each class's original, change 14's command for announcements or withdrawals)."""
    if installed is replacement:
        return True
    installed, replacement = (
        f.__func__ if isinstance(f, classmethod) else f for f in (installed, replacement)
    )
    if not all(isinstance(f, types.FunctionType) for f in (installed, replacement)):
        return False
    cells = [[c.cell_contents for c in f.__closure__ or ()] for f in (installed, replacement)]
    return bool(installed.__code__ is replacement.__code__ and cells[0] == cells[1])


@pytest.mark.parametrize(
    ("where", "owner", "name", "replacement", "original"),
    _installed(),
    ids=[f"{where}.{name}" for where, _, name, _, _ in _installed()],
)
def test_every_change_is_installed(
    where: str, owner: Any, name: str, replacement: Any, original: Any
) -> None:
    installed = _held(owner, name)
    assert _same_function(installed, replacement)
    # the original kept is ExaBGP's own, not a replacement installed twice
    assert original is not None and not _same_function(original, replacement)
    assert getattr(original, "__module__", "").startswith("exabgp."), original
    launch.apply()  # idempotent: nothing replaced again
    assert _held(owner, name) is installed


@contextlib.contextmanager
def _unpatched(keep: frozenset[str] = frozenset()) -> Iterator[None]:
    """ExaBGP as it is: every replacement of the table but those named in `keep` undone, for the duration."""
    with pytest.MonkeyPatch.context() as mp:
        for where, owner, name, _, original in _installed():
            if f"{where}.{name}" in keep:
                continue
            if isinstance(owner, dict):
                mp.setitem(owner, name, original)
            else:
                mp.setattr(owner, name, original)
        yield


_REPLACED = """
import importlib, json, pkgutil, sys, types, warnings
warnings.simplefilter("ignore")
import exabgp
for info in pkgutil.walk_packages(exabgp.__path__, "exabgp."):
    try:
        importlib.import_module(info.name)
    except Exception:
        pass  # a module that needs what is not installed: nothing apply() can touch
def held(where, namespace, found, depth=0):
    for name, value in list(namespace.items()):
        found[(where, name)] = value
        if isinstance(value, dict) and depth < 2:  # tables of functions, such as the API's commands
            held(f"{where}.{name}" if depth == 0 else f"{where}[{name!r}]", value, found, depth + 1)
def everything():
    found = {}
    for module in list(sys.modules.values()):
        if not isinstance(module, types.ModuleType) or not module.__name__.startswith("exabgp"):
            continue
        held(module.__name__, vars(module), found)
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                held(module.__name__ + "." + value.__qualname__, vars(value), found)
    return found
before = everything()
from bgpd.exabgp import launch
launch.apply()
after = everything()
def function(value):
    return callable(value) or isinstance(value, (classmethod, staticmethod))
print(json.dumps(sorted(k for k in after if before.get(k) is not after[k] and function(after[k]))))
"""


def test_apply_replaces_nothing_but_the_table() -> None:
    """Every function held by an ExaBGP module or class (as an attribute, or in a dict of one, two levels
    deep), before and after `apply()` in a fresh interpreter: the ones that changed are exactly the
    table's, so a change that is not in the table (nor undone by `_unpatched`) fails here."""
    out = subprocess.run([sys.executable, "-c", _REPLACED], capture_output=True, text=True, check=True)
    replaced = {tuple(pair) for pair in json.loads(out.stdout)}
    assert replaced == {(where, name) for where, _, name, _, _ in _installed()}


# ---------------------------------------------------------------- 2. API work across reactor passes

# one job: (uid, steps it yields, step at which it raises, or None)
Job = tuple[str, int, int | None]


def _workload(seed: int, total: int) -> list[list[Job]]:
    """Jobs arriving before each pass (the first list: queued at the start) that together yield about
    `total` steps: some end at once, some fail part way, some arrive while others are half done."""
    rng = random.Random(seed)
    arrivals: list[list[Job]] = []
    left, n = total, 0
    while left > 0:
        batch: list[Job] = []
        for _ in range(rng.choice([0, 1, 1, 2, 5])):
            steps = rng.choice([0, 1, rng.randint(2, 60), rng.randint(50, total // 3 + 50)])
            fail_at = rng.choice([None, None, rng.randint(0, steps + 1)])
            batch.append((f"uid{n % 5}", steps, fail_at))  # uids repeat, as a service's do
            left -= steps
            n += 1
        arrivals.append(batch)
    return arrivals


class _World:
    """One `ASYNC` queue with its jobs, recording each step taken, each failure reported to the service
    and each line ExaBGP logs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.logged: list[str] = []
        self.queue = ASYNC()
        self.queue.set_error_handler(self.errors.append)
        self.jobs: dict[int, Iterator[bool]] = {}
        monkeypatch.setattr(exabgp_log, "error", lambda message, source="", *_: self.logged.append(message()))

    def schedule(self, jobs: list[Job]) -> None:
        for uid, steps, fail_at in jobs:
            number = len(self.jobs)
            self.jobs[number] = self._job(number, steps, fail_at)
            self.queue.schedule(uid, f"job {number}", self.jobs[number])

    def _job(self, number: int, steps: int, fail_at: int | None) -> Iterator[bool]:
        for i in range(steps):
            if i == fail_at:
                raise ValueError(f"job {number} fails at step {i}\nsecond line")
            self.steps.append((number, i))
            yield False

    def state(self) -> tuple[Any, ...]:
        """Everything a pass can change: steps, errors, log, the queue (by job) and each job's state."""
        number = {id(job): n for n, job in self.jobs.items()}
        queue = [(uid, number[id(job)]) for uid, job in self.queue._async]
        states = [inspect.getgeneratorstate(job) for job in self.jobs.values()]  # type: ignore[arg-type]
        return list(self.steps), list(self.errors), list(self.logged), queue, states


def _passes(
    monkeypatch: pytest.MonkeyPatch, arrivals: list[list[Job]], run_pass: Callable[[ASYNC], bool]
) -> list[tuple[bool, tuple[Any, ...]]]:
    """(answer, state) after each pass; the jobs of arrivals[i] are queued before pass i."""
    world = _World(monkeypatch)
    seen: list[tuple[bool, tuple[Any, ...]]] = []
    for i in range(10_000):
        if i < len(arrivals):
            world.schedule(arrivals[i])
        elif world.queue.ready():
            return seen
        seen.append((run_pass(world.queue), world.state()))
    raise AssertionError("the queue never emptied")


def _original_passes(queue: ASYNC) -> bool:
    """ExaBGP's `ASYNC.run` for as many steps as one patched pass: STEPS_PER_PASS / LIMIT of its passes,
    fewer when one says the queue is empty."""
    answer = False
    for _ in range(launch.STEPS_PER_PASS // ASYNC.LIMIT):
        answer = launch._original_async_run(queue)
        if not answer:
            break
    return bool(answer)


@pytest.mark.parametrize(
    ("steps_per_pass", "total", "seeds"),
    [(50, 600, range(12)), (150, 1200, range(12)), (launch.STEPS_PER_PASS, 6000, range(4))],
    ids=["50", "150", "1000"],
)
def test_api_work_resumed_across_passes_runs_as_exabgps(
    monkeypatch: pytest.MonkeyPatch, steps_per_pass: int, total: int, seeds: range
) -> None:
    """Work of several passes: after every pass the same steps in the same order, the same errors to the
    service, the same log lines, the same queue and the same answer as ExaBGP's own for those steps."""
    assert steps_per_pass % ASYNC.LIMIT == 0 and launch.STEPS_PER_PASS == 1000
    monkeypatch.setattr(launch, "STEPS_PER_PASS", steps_per_pass)
    failures = 0
    for seed in seeds:
        arrivals = _workload(seed, total)
        patched = _passes(monkeypatch, arrivals, launch._async_run)
        original = _passes(monkeypatch, arrivals, _original_passes)
        assert len(patched) == len(original)
        for n, (got, want) in enumerate(zip(patched, original, strict=True)):
            assert got == want, f"seed {seed}: pass {n} differs"
        # the work did span passes: jobs left part way at the end of a pass went on in the next
        assert len(patched) >= 3 and _resumed(patched) >= 2, f"seed {seed}: no work resumed"
        _, (steps, errors, logged, *_) = patched[-1]
        assert len(steps) > 2 * steps_per_pass, f"seed {seed}: less than two passes of work"
        assert len(logged) == 3 * len(errors)  # "problem with function", then the error's two lines
        failures += len(errors)
    assert failures >= len(seeds)  # and failing jobs among them


def _resumed(passes: list[tuple[bool, tuple[Any, ...]]]) -> int:
    """How many passes ended with the job at the head of the queue part way: stepped, and stepped again
    in the next pass."""
    resumed = 0
    for (more, (steps, _, _, queue, _)), (_, (later, *_)) in itertools.pairwise(passes):
        if more and queue:
            job = queue[0][1]
            if any(j == job for j, _ in steps) and any(j == job for j, _ in later[len(steps) :]):
                resumed += 1
    return resumed


# ---------------------------------------------------------------- 1. routes shared by the Adj-RIBs-Out

_LOCAL, _ROUTER_ID, _LOCAL6 = "10.0.0.1", "10.0.0.100", "2001:db8::1"
# the neighbors: iBGP, iBGP with IPv6 routes, eBGP, an IPv6 session (its "self" for IPv4 is the router id)
_SESSIONS: list[tuple[str, int, tuple[Literal[4, 6], ...]]] = [
    ("10.0.0.2", 64512, (4,)),
    ("10.0.0.3", 64512, (4, 6)),
    ("10.0.0.4", 65001, (4,)),
    ("2001:db8::5", 64512, (4, 6)),
]


def _exabgp_configuration(tmp_path: pathlib.Path) -> Any:
    """ExaBGP's parsed configuration of bgpd's sessions to the four neighbors, with fresh Adj-RIBs-Out."""
    from exabgp.configuration.configuration import Configuration

    speaker = confgen.Speaker(
        router_id=IPv4Address(_ROUTER_ID),
        local_address=IPv4Address(_LOCAL),
        local_address6=IPv6Address(_LOCAL6),
        asn=64512,
    )
    sessions = [
        confgen.Session(ipaddress.ip_address(a), asn, families=families) for a, asn, families in _SESSIONS
    ]
    path = tmp_path / "exabgp.conf"
    path.write_text(confgen.render(speaker, sessions, "/nonexistent", run="/bin/true"))
    conf = Configuration([str(path)])
    assert conf.reload(), conf.error
    return conf


def _negotiated(neighbor: Any) -> Any:
    """What the session with `neighbor` negotiated: its families, ASNs, 4-octet ASNs, 4096-octet messages."""
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability.negotiated import Negotiated

    negotiated = Negotiated(neighbor)
    negotiated.families = list(neighbor.families())
    negotiated.local_as, negotiated.peer_as = ASN(64512), ASN(int(neighbor["peer-as"]))
    negotiated.asn4 = True
    return negotiated


_ATTRS = Attributes(
    local_pref=100,
    communities=("64512:1",),
    originator_id=IPv4Address("10.0.0.7"),
    cluster_list=(IPv4Address("1.0.0.1"), IPv4Address("1.0.0.2")),
)
_OTHER_ATTRS = Attributes(origin=Origin.INCOMPLETE, as_path=(65010, 65011), local_pref=200, med=5)


def _v4(n: int) -> IPv4Network:
    return IPv4Network(f"10.20.{n}.0/26")


def _v6(n: int) -> IPv6Network:
    return IPv6Network(f"fd00:10:20:{n:x}::/64")


def _peers(*addresses: str) -> list[IPv4Address | IPv6Address]:
    return [ipaddress.ip_address(a) for a in addresses]


# The steps: bgpd's commands (what bgpd.exabgp.codec writes; one with `next-hop self`, which bgpd never
# sends, must still get each neighbor its own address), and what else touches an Adj-RIB-Out: "flush" (each
# neighbor's updates() packed into messages), "refresh N" (a route refresh from neighbor N), "clear N"
# (`clear adj-rib out`: every route withdrawn by ExaBGP itself).
_STEPS: list[str] = [
    *announce_lines([_v4(n) for n in range(6)], IPv4Address("10.0.0.9"), _ATTRS, per_command=4),
    *announce_lines([_v4(6), _v4(7)], IPv4Address("10.0.0.8"), _OTHER_ATTRS, _peers("10.0.0.2", "10.0.0.4")),
    *announce_lines([_v6(n) for n in range(5)], IPv6Address("2001:db8::9"), _ATTRS),
    "announce attributes next-hop self origin igp local-preference 100 nlri 10.20.9.0/24 10.20.10.0/24",
    "flush",
    *withdraw_lines([_v4(0), _v4(1), _v4(7)], IPv4Address("10.0.0.9")),
    *withdraw_lines([_v6(0)], IPv6Address("2001:db8::9"), _peers("10.0.0.3")),
    "flush",
    *announce_lines([_v4(0)], IPv4Address("10.0.0.9"), _ATTRS),  # as before
    *announce_lines([_v4(2)], IPv4Address("10.0.0.8"), _OTHER_ATTRS),  # changed
    *announce_lines([_v6(1), _v6(0)], IPv6Address("2001:db8::8"), _OTHER_ATTRS),
    "flush",
    "refresh 10.0.0.3",
    "refresh 2001:db8::5",
    *withdraw_lines([_v4(3)], IPv4Address("10.0.0.9"), _peers("10.0.0.3")),
    "flush",
    "clear 10.0.0.4",
    "flush",
    *announce_lines([_v4(1), _v4(4)], IPv4Address("10.0.0.9"), _ATTRS, _peers("10.0.0.4", "10.0.0.2")),
    "flush",
]


def _neighbor(conf: Any, address: str) -> Any:
    [neighbor] = [n for n in conf.neighbors.values() if str(n["peer-address"]) == address]
    return neighbor


def _warm(change: Any) -> None:
    """Fill the text and index caches ExaBGP fills lazily, so that a snapshot sees only real changes."""
    change.index()
    change.nlri.index()
    change.extensive()
    repr(change.attributes)
    change.attributes.index()
    change.attributes.json()
    change.attributes.as_dict()


def _snapshot(change: Any, conf: Any) -> tuple[bytes, dict[str, bytes]]:
    """A stored route, byte for byte: pickled (every field of the route, its NLRI, next hop and attributes),
    and its NLRI and attributes as packed for each neighbor."""
    packed = {}
    for name, neighbor in conf.neighbors.items():
        negotiated = _negotiated(neighbor)
        if change.nlri.family().afi_safi() in negotiated.families:
            packed[name] = change.nlri.pack_nlri(negotiated) + change.attributes.pack(negotiated)
    return pickle.dumps(change), packed


# change 9 sends IPv6 routes in fewer UPDATEs (tests/unit/test_exabgp_launch.py compares what they carry):
# kept in the unpatched runs here, so that every neighbor's messages can be compared octet for octet
_CHANGE_9 = frozenset({"exabgp.rib.outgoing.OutgoingRIB.updates"})


def _run_steps(tmp_path: pathlib.Path, patched: bool) -> tuple[list[Any], dict[int, int], list[str]]:
    """Run `_STEPS` with every change installed, or with ExaBGP's own code (but change 9): the messages of
    each flush for each neighbor, how many neighbors' Adj-RIBs-Out held each stored route object (by id),
    and the API's answers. Checks after every step that no route stored so far has changed."""
    from exabgp.reactor.api import API

    conf = _exabgp_configuration(tmp_path)
    answers: list[str] = []
    reactor = types.SimpleNamespace(
        configuration=conf,
        asynchronous=ASYNC(),
        processes=types.SimpleNamespace(
            answer_done=lambda service: answers.append("done"),
            answer_error=lambda service: answers.append("error"),
        ),
        peers=lambda service="": list(conf.neighbors),
    )
    api = API(reactor)
    with contextlib.nullcontext() if patched else _unpatched(keep=_CHANGE_9):
        stored: dict[int, Any] = {}  # id -> route, kept alive so that ids stay unique
        snapshots: dict[int, tuple[bytes, dict[str, bytes]]] = {}
        holders: dict[int, set[str]] = {}
        flushes: list[Any] = []
        try:
            for step in _STEPS:
                verb, _, arg = step.partition(" ")
                if verb == "flush":
                    flush = {}
                    for name, neighbor in conf.neighbors.items():
                        negotiated = _negotiated(neighbor)
                        updates = list(neighbor.rib.outgoing.updates(True))
                        flush[name] = [m for u in updates for m in u.messages(negotiated, True)]
                    flushes.append(flush)
                elif verb == "refresh":
                    _neighbor(conf, arg).rib.outgoing.resend(True)
                elif verb == "clear":
                    _neighbor(conf, arg).rib.outgoing.withdraw()
                else:
                    assert api.process(reactor, "bgpd", step)
                    while reactor.asynchronous.run():
                        pass
                for name, neighbor in conf.neighbors.items():
                    for change in neighbor.rib.outgoing.queued_changes():
                        if id(change) not in stored:
                            _warm(change)
                            stored[id(change)] = change
                            snapshots[id(change)] = _snapshot(change, conf)
                        holders.setdefault(id(change), set()).add(name)
                for key, change in stored.items():
                    assert _snapshot(change, conf) == snapshots[key], f"after {step!r}: {change} changed"
        finally:
            for neighbor in conf.neighbors.values():
                neighbor.rib.uncache()  # ExaBGP keeps Adj-RIBs-Out by neighbor name, across configurations
    return flushes, {key: len(names) for key, names in holders.items()}, answers


def _carried(flushes: list[dict[str, list[bytes]]]) -> set[str]:
    """What the messages carried: "ipv4 announce", "ipv6 withdraw", ..., "refresh" (a route refresh)."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.message.update import Update
    from exabgp.protocol.family import AFI, SAFI

    negotiated = Negotiated(Neighbor())
    negotiated.families = [(AFI.ipv4, SAFI.unicast), (AFI.ipv6, SAFI.unicast)]
    negotiated.local_as = negotiated.peer_as = ASN(64512)
    negotiated.asn4 = True
    carried = set()
    for flush in flushes:
        for message in (m for messages in flush.values() for m in messages):
            if message[18] != 2:  # not an UPDATE: a route refresh (marker)
                carried.add("refresh")
                continue
            for nlri in Update.unpack_message(message[19:], Direction.IN, negotiated).nlris:
                action = "announce" if nlri.action == Action.ANNOUNCE else "withdraw"
                carried.add(f"{nlri.afi} {action}")
    return carried


def test_shared_routes_stay_as_stored_and_give_the_unpatched_updates(tmp_path: pathlib.Path) -> None:
    patched, shared, answers = _run_steps(tmp_path, patched=True)
    unpatched, copied, unpatched_answers = _run_steps(tmp_path, patched=False)
    assert answers == unpatched_answers and set(answers) == {"done"}
    # the very same messages, neighbor by neighbor, flush by flush
    assert len(patched) == len(unpatched) == _STEPS.count("flush")
    for n, (got, want) in enumerate(zip(patched, unpatched, strict=True)):
        assert got == want, f"flush {n}"
    # ... which carried announcements and withdrawals of both families, and route refresh markers
    kinds = {f"ipv{v} {action}" for v in (4, 6) for action in ("announce", "withdraw")}
    assert _carried(patched) == {*kinds, "refresh"}
    # the patched routes were shared (by up to all four neighbors), the unpatched ones never
    assert max(shared.values()) == len(_SESSIONS) and max(copied.values()) == 1
