"""The datastore watcher's state machine and backoff (scripted sessions, injected sleep), and its config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bgpd.datastore.etcd import (
    Backoff,
    Change,
    DatastoreConfig,
    DatastoreConfigError,
    DatastoreEvent,
    DatastoreUnavailable,
    DatastoreWatcher,
    Down,
    Endpoint,
    Session,
    Snapshot,
    WatchCompacted,
    _prefix_end,
    connect_etcd,
    parse_endpoint,
)

P = "/calico/resources/v3/projectcalico.org/"


class Stop(Exception):
    """Raised by the fake sleep to end `run()` after a number of retries."""


@dataclass
class ScriptedSession:
    """One session: `listed` (or the error its list raises), then the watch's batches and the error that
    breaks it."""

    listed: Snapshot | DatastoreUnavailable
    batches: list[list[Change]] = field(default_factory=list)
    breaks: DatastoreUnavailable = field(default_factory=lambda: DatastoreUnavailable("broken"))
    watched_from: int | None = None
    closed: bool = False

    async def list_prefix(self, prefix: str) -> Snapshot:
        assert prefix == P
        if isinstance(self.listed, DatastoreUnavailable):
            raise self.listed
        return self.listed

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Change]]:
        self.watched_from = start_revision
        for batch in self.batches:
            yield batch
        raise self.breaks

    async def close(self) -> None:
        self.closed = True


class Script:
    """A session factory that hands out scripted sessions (or raises scripted connect errors) in order."""

    def __init__(self, *steps: ScriptedSession | DatastoreUnavailable) -> None:
        self.steps = list(steps)
        self.sessions: list[ScriptedSession] = []

    async def __call__(self) -> Session:
        step = self.steps.pop(0)
        if isinstance(step, DatastoreUnavailable):
            raise step
        self.sessions.append(step)
        return step


def run(script: Script, retries: int) -> tuple[list[DatastoreEvent], list[float], DatastoreWatcher]:
    """Run a watcher over `script` until its `retries`-th backoff sleep; returns (events, sleeps, watcher)."""
    events: list[DatastoreEvent] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == retries:
            raise Stop

    async def deliver(event: DatastoreEvent) -> None:
        events.append(event)

    watcher = DatastoreWatcher(script, P, sleep=sleep)
    with pytest.raises(Stop):
        asyncio.run(watcher.run(deliver))
    return events, sleeps, watcher


def put(key: str, revision: int) -> Change:
    return Change("put", P + key, b'{"kind":"Node"}', revision)


def test_backoff_doubles_from_1_to_10_seconds_and_resets() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    backoff.reset()
    assert backoff.next() == 1.0


def test_unreachable_datastore_is_reported_down_each_attempt_with_growing_delays() -> None:
    script = Script(*(DatastoreUnavailable(f"http://10.0.0.{i}:2379: refused") for i in range(7)))
    events, sleeps, watcher = run(script, retries=7)
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert events == [Down(f"http://10.0.0.{i}:2379: refused", d) for i, d in enumerate(sleeps)]
    assert (watcher.state, watcher.reason) == ("down", "http://10.0.0.6:2379: refused")


def test_snapshot_then_changes_in_order_from_the_listed_revision() -> None:
    listed = Snapshot(10, {P + "nodes/a": b"{}"})
    delete = Change("delete", P + "nodes/a", None, 13)
    session = ScriptedSession(listed, [[], [put("nodes/b", 11), put("nodes/c", 12)], [delete]])
    events, _, watcher = run(Script(session), retries=1)
    assert session.watched_from == 11
    assert events == [listed, put("nodes/b", 11), put("nodes/c", 12), delete, Down("broken", 1.0)]
    assert watcher.revision == 13
    assert session.closed


def test_compacted_watch_is_reported_then_a_fresh_snapshot_is_delivered() -> None:
    compacted = WatchCompacted("watch from revision 11: compacted")
    first = ScriptedSession(Snapshot(10, {P + "nodes/a": b"1"}), breaks=compacted)
    fresh = Snapshot(20, {P + "nodes/a": b"2", P + "nodes/b": b"1"})
    second = ScriptedSession(fresh, [[], [put("nodes/c", 21)]])
    events, _, watcher = run(Script(first, second), retries=2)
    assert events == [
        first.listed,
        Down("watch from revision 11: compacted", 1.0),
        fresh,
        put("nodes/c", 21),
        Down("broken", 1.0),  # the second watch was established: backoff back at 1 s
    ]
    assert (first.watched_from, second.watched_from) == (11, 21)
    assert first.closed and second.closed
    assert watcher.state == "down"


def test_backoff_resets_only_once_a_watch_is_established() -> None:
    never_established = [
        ScriptedSession(Snapshot(5, {}), breaks=WatchCompacted("compacted")) for _ in range(3)
    ]
    established = ScriptedSession(Snapshot(9, {}), [[]])
    script = Script(DatastoreUnavailable("refused"), *never_established, established)
    events, sleeps, _ = run(script, retries=5)
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 1.0]
    assert [e.reason for e in events if isinstance(e, Down)] == ["refused", *["compacted"] * 3, "broken"]
    assert sum(isinstance(e, Snapshot) for e in events) == 4  # every list is handed over, nothing held back


def test_a_failed_list_is_down_and_its_session_closed() -> None:
    session = ScriptedSession(DatastoreUnavailable("list: DEADLINE_EXCEEDED"))
    events, _, _ = run(Script(session), retries=1)
    assert events == [Down("list: DEADLINE_EXCEEDED", 1.0)]
    assert session.closed and session.watched_from is None


def test_state_is_up_while_watching() -> None:
    seen: list[str] = []

    class Observing(ScriptedSession):
        async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Change]]:
            seen.append(watcher.state)
            async for batch in super().watch(prefix, start_revision):
                yield batch

    events: list[DatastoreEvent] = []

    async def sleep(seconds: float) -> None:
        raise Stop

    async def deliver(event: DatastoreEvent) -> None:
        events.append(event)

    watcher = DatastoreWatcher(Script(Observing(Snapshot(3, {}))), P, sleep=sleep)
    with pytest.raises(Stop):
        asyncio.run(watcher.run(deliver))
    assert seen == ["up"]
    assert watcher.revision == 3


# --- config -----------------------------------------------------------------------------------------------


def test_endpoints_parse_with_the_default_port() -> None:
    assert parse_endpoint("https://etcd.example:2379") == Endpoint("https", "etcd.example", 2379)
    assert parse_endpoint("http://10.0.0.1") == Endpoint("http", "10.0.0.1", 2379)
    assert str(parse_endpoint("http://10.0.0.1/")) == "http://10.0.0.1:2379"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"endpoints": ()}, "at least one endpoint"),
        ({"endpoints": ("10.0.0.1:2379",)}, "is not http://HOST:PORT"),
        ({"endpoints": ("unix:///run/etcd.sock",)}, "is not http://HOST:PORT"),
        ({"endpoints": ("http://10.0.0.1:port",)}, "bad port"),
        ({"endpoints": ("http://[fd00::1]:2379",)}, "IPv6 endpoints are not supported"),
        ({"endpoints": ("http://a:2379", "https://b:2379"), "ca_file": "/ca"}, "mix of http:// and https://"),
        ({"endpoints": ("https://a:2379",)}, "datastore.ca_file: needed for https://"),
        ({"endpoints": ("http://a:2379",), "ca_file": "/ca"}, "need https:// endpoints"),
        ({"endpoints": ("https://a:2379",), "ca_file": "/ca", "cert_file": "/c"}, "cert_file and key_file"),
        ({"endpoints": ("http://a:2379",), "username": "bgpd"}, "username and password"),
        ({"endpoints": ("http://a:2379",), "prefix": "calico/"}, "does not start with '/'"),
    ],
)
def test_bad_config_is_one_clear_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(DatastoreConfigError, match=message) as info:
        DatastoreConfig(**settings)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_an_unreadable_certificate_file_is_a_config_error() -> None:
    config = DatastoreConfig(endpoints=("https://10.0.0.1:2379",), ca_file="/nonexistent/ca.pem")
    with pytest.raises(DatastoreConfigError, match=r"datastore.ca_file: /nonexistent/ca.pem: No such file"):
        connect_etcd(config)


def test_prefix_range_end() -> None:
    assert _prefix_end(P.encode()) == P[:-1].encode() + b"0"
    assert _prefix_end(b"a\xff") == b"b"
    assert _prefix_end(b"\xff") == b"\0"
