"""Following the datastore (`bgpd.datastore.follow`): `Records` kept per key (equal to a from-scratch
`resources.load` after any sequence of changes, one parse per put), `secrets_in`, and `Follower` driven by
scripted etcd sessions in asyncio: the first configuration, later derivations handed to the attached
apply (debounced, nothing when nothing changed), the datastore going away, this node's record going away,
a reread file, invalid records reported with their keys."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import config as bgpconfig
from bgpd.config import ClusterFile, Config
from bgpd.datastore import follow
from bgpd.datastore import resources as r
from bgpd.datastore.derive import derive
from bgpd.datastore.etcd import Change, DatastoreUnavailable, DatastoreWatcher, Session, Snapshot
from bgpd.datastore.follow import Follower, Records, secrets_in
from bgpd.datastore.resources import Problem, SecretRef
from tests.unit.calico_records import P, record


def node(name: str, ipv4: str, **bgp: Any) -> tuple[str, str]:
    return record("nodes", name, {"bgp": {"ipv4Address": ipv4, **bgp}})


HOST0 = node("host0", "192.168.100.10/24")
HOST1 = node("host1", "192.168.100.11/24")
HOST2 = node("host2", "192.168.100.12/24")
POOL = record("ippools", "default-ipv4-ippool", {"cidr": "10.244.0.0/16", "ipipMode": "CrossSubnet"})
BAD_POOL = record("ippools", "default-ipv4-ippool", {"cidr": "10.244.0.0/33"})
BAD_PEER = record("bgppeers", "tor", {"peerIP": "10.0.0.9", "asNumber": 65000, "color": "red"})

FILE = """\
node: {name: host0}
datastore:
  type: etcdv3
  endpoints: ["http://127.0.0.1:2379"]
"""


def cluster_file(text: str = FILE) -> ClusterFile:
    got = bgpconfig.parse_file(text, "host0.yaml")
    assert isinstance(got, ClusterFile)
    return got


def mesh(config: Config) -> list[str]:
    return [str(a) for a in config.bgp.mesh.nodes]


# ------------------------------------------------------------------------------------------- Records


def records(*items: tuple[str, str]) -> Records:
    rec = Records(P)
    rec.replace({k: v.encode() for k, v in items})
    return rec


def test_records_put_replace_and_delete() -> None:
    rec = records(HOST0, POOL)
    assert len(rec) == 2
    assert set(rec.resources().nodes) == {"host0"}
    assert set(rec.resources().pools) == {"default-ipv4-ippool"}
    rec.put(HOST1[0], HOST1[1].encode())
    assert set(rec.resources().nodes) == {"host0", "host1"}
    moved = node("host1", "192.168.100.21/24")
    rec.put(moved[0], moved[1].encode())  # a put replaces the key's record
    assert rec.resources().nodes["host1"].address == IPv4Address("192.168.100.21")
    rec.delete(HOST0[0])
    rec.delete(HOST0[0])  # deleting what is gone is nothing
    rec.delete(P + "nodes/never-there")
    assert set(rec.resources().nodes) == {"host1"}
    assert len(rec) == 2
    rec.replace({HOST2[0]: HOST2[1].encode()})  # a fresh list forgets everything before it
    assert set(rec.resources().nodes) == {"host2"}
    assert rec.resources().pools == {}
    assert len(rec) == 1
    assert rec.problems() == ()


def test_an_invalid_record_is_a_problem_with_its_key_and_its_old_version_is_gone() -> None:
    rec = records(HOST0, POOL)
    rec.put(BAD_POOL[0], BAD_POOL[1].encode())
    assert rec.resources().pools == {}
    assert len(rec) == 1
    assert rec.problems() == (Problem(BAD_POOL[0], "spec.cidr: invalid CIDR '10.244.0.0/33'"),)
    rec.put(POOL[0], b"{not json")
    ((problem,),) = [rec.problems()]
    assert problem.key == POOL[0] and problem.message.startswith("not JSON")
    rec.put(POOL[0], POOL[1].encode())  # fixed: the problem goes with the bad version
    assert set(rec.resources().pools) == {"default-ipv4-ippool"}
    assert rec.problems() == ()
    rec.put(BAD_POOL[0], BAD_POOL[1].encode())
    rec.delete(BAD_POOL[0])  # deleted: nothing left to report
    assert rec.problems() == ()


def test_a_record_with_an_unused_field_is_kept_and_noted() -> None:
    key, value = record(
        "bgpconfigurations", "default", {"asNumber": 64513, "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}]}
    )
    rec = records((key, value))
    assert rec.resources().configurations["default"].asn == 64513
    assert [str(p) for p in rec.problems()] == [f"{key}: spec.serviceClusterIPs: not used by bgpd (ignored)"]


def test_keys_of_other_kinds_and_outside_the_prefix_are_ignored() -> None:
    rec = records(HOST0)
    before = rec.resources()
    for key in (
        P + "networkpolicies/default.allow",
        P + "clusterinformations/default",
        "/calico/ipam/v2/assignment/ipv4/block/10.244.0.0-26",
        "/other/" + HOST1[0].removeprefix("/"),
        P.rstrip("/"),
    ):
        rec.put(key, b"{not json")
        rec.delete(key)
        rec.put(key, HOST1[1].encode())
    assert rec.resources() == before
    assert len(rec) == 1
    assert rec.problems() == ()


def test_a_put_parses_only_its_own_record(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting(key: str, value: str | bytes, prefix: str = r.DEFAULT_PREFIX) -> Any:
        parsed.append(key)
        return r.parse(key, value, prefix)

    monkeypatch.setattr(follow, "parse", counting)
    items = [node(f"host{i}", f"192.168.100.{i + 10}/24") for i in range(50)]
    rec = records(*items, POOL)
    assert sorted(parsed) == sorted(k for k, _ in [*items, POOL])  # the list: each record once
    parsed.clear()
    rec.put(HOST2[0], node("host2", "192.168.101.12/24")[1].encode())
    rec.delete(items[7][0])
    rec.put(P + "networkpolicies/default.x", b"{}")
    assert parsed == [HOST2[0]]
    assert len(rec) == 50


@pytest.mark.parametrize("key", [P + "nodes/rack1/host9", P + "nodes/"])
def test_a_malformed_key_of_a_known_kind_is_reported_as_load_reports_it(key: str) -> None:
    value = HOST1[1].encode()
    rec = Records(P)
    rec.put(key, value)
    assert rec.problems() == r.load([(key, value)])[1]


# the property: any sequence of changes gives what a fresh list of the final state gives


def _peer(**spec: Any) -> str:
    return record("bgppeers", "tor", {"peerIP": "10.0.0.9", "asNumber": 65000, **spec})[1]


def _configuration(**spec: Any) -> str:
    return record("bgpconfigurations", "default", spec)[1]


NOT_JSON = "{not json"
# per key, the values a put may write: valid versions, a version with an ignored field (a note), invalid
# ones (a bad field, not JSON, another kind, another name)
_VALUES: dict[str, list[str]] = {
    HOST0[0]: [HOST0[1], node("host0", "192.168.100.20/24")[1], node("host0", "10.0.0.300/24")[1], HOST1[1]],
    HOST1[0]: [HOST1[1], node("host1", "192.168.100.21/24")[1], POOL[1], NOT_JSON],
    POOL[0]: [
        POOL[1],
        record("ippools", POOL[0].rsplit("/", 1)[1], {"cidr": "10.96.0.0/16"})[1],
        BAD_POOL[1],
    ],
    BAD_PEER[0]: [_peer(), _peer(keepaliveTime="30s"), BAD_PEER[1], _peer(maxRestartTime="2m")],
    P + "bgpconfigurations/default": [
        _configuration(asNumber=64513),
        _configuration(asNumber=64513, serviceClusterIPs=[{"cidr": "10.96.0.0/12"}]),
        _configuration(asNumber="x"),
        "[]",
    ],
    P + "bgpfilters/f": [
        record(
            "bgpfilters",
            "f",
            {"exportV4": [{"action": "Accept", "matchOperator": "In", "cidr": "10.0.0.0/8"}]},
        )[1],
        record("bgpfilters", "f", {"exportV4": [{"action": "Maybe"}]})[1],
    ],
    P + "networkpolicies/default.x": [NOT_JSON, HOST0[1]],  # not bgpd's kind
    "/registry/nodes/host0": [NOT_JSON, HOST0[1]],  # outside the prefix
}
_ANY_VALUE = st.sampled_from(sorted({v for values in _VALUES.values() for v in values}))
_PUT = st.sampled_from(sorted(_VALUES)).flatmap(
    lambda k: st.tuples(st.just("put"), st.just(k), st.sampled_from(_VALUES[k]))
)
_DELETE = st.tuples(st.just("delete"), st.sampled_from(sorted(_VALUES)), st.just(""))
_REPLACE = st.tuples(
    st.just("replace"), st.just(""), st.dictionaries(st.sampled_from(sorted(_VALUES)), _ANY_VALUE, max_size=5)
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.one_of(_PUT, _PUT, _PUT, _DELETE, _REPLACE), max_size=16))
def test_records_after_any_changes_equal_a_fresh_load(ops: list[tuple[str, str, Any]]) -> None:
    rec = Records(P)
    model: dict[str, str] = {}
    for op, key, value in ops:
        if op == "put":
            rec.put(key, value.encode())
            model[key] = value
        elif op == "delete":
            rec.delete(key)
            model.pop(key, None)
        else:
            rec.replace({k: v.encode() for k, v in value.items()})
            model = dict(value)
    resources, problems = r.load(model.items(), P)
    assert rec.resources() == resources
    assert rec.problems() == problems
    valid = (resources.nodes, resources.configurations, resources.peers, resources.pools, resources.filters)
    assert len(rec) == sum(len(kind) for kind in valid)


# ------------------------------------------------------------------------------------------- secrets_in


def test_secrets_are_read_from_the_mounted_secret(tmp_path: Path) -> None:
    (tmp_path / "bgp-secrets").mkdir()
    (tmp_path / "bgp-secrets" / "mesh").write_text("s3cret\n")
    (tmp_path / "bgp-secrets" / "raw").write_text("no-newline")
    (tmp_path / "bgp-secrets" / "two").write_text("line\n\n")
    (tmp_path / "bgp-secrets" / "binary").write_bytes(b"\xff\xfe")
    lookup = secrets_in(str(tmp_path))
    assert lookup(SecretRef("bgp-secrets", "mesh")) == "s3cret"  # the trailing newline is not the key's
    assert lookup(SecretRef("bgp-secrets", "raw")) == "no-newline"
    assert lookup(SecretRef("bgp-secrets", "two")) == "line\n"  # only one newline is dropped
    assert lookup(SecretRef("bgp-secrets", "missing")) is None
    assert lookup(SecretRef("other", "mesh")) is None
    assert lookup(SecretRef("bgp-secrets", "binary")) is None
    assert lookup(SecretRef("bgp-secrets", "")) is None  # the directory itself
    assert secrets_in(None)(SecretRef("bgp-secrets", "mesh")) is None
    assert secrets_in(str(tmp_path / "nope"))(SecretRef("bgp-secrets", "mesh")) is None


def test_secret_names_cannot_leave_the_secrets_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "bgp").mkdir(parents=True)
    (secrets / "bgp" / "mesh").write_text("inside\n")
    (secrets / "mesh").write_text("one level up\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "mesh").write_text("outside\n")
    (tmp_path / "mesh").write_text("two levels up\n")
    lookup = secrets_in(str(secrets))
    assert lookup(SecretRef("bgp", "mesh")) == "inside"
    for name, key in [
        ("..", "mesh"),
        (".", "mesh"),
        ("", "mesh"),
        ("../outside", "mesh"),
        ("bgp/..", "mesh"),
        ("/", "mesh"),
        (str(tmp_path / "outside"), "mesh"),
        ("bgp", "../mesh"),
        ("bgp", "../../mesh"),
        ("bgp", str(tmp_path / "mesh")),
        ("bgp", ".."),
        ("bgp", "."),
    ]:
        assert lookup(SecretRef(name, key)) is None, (name, key)


# -------------------------------------------------------------------------------------------- Follower


class ScriptedSession:
    """One etcd session: `listed`, then the watch (established at once) yielding the batches the test
    pushes, or raising the `DatastoreUnavailable` pushed to break it."""

    def __init__(self, revision: int, *items: tuple[str, str]) -> None:
        self.listed = Snapshot(revision, {k: v.encode() for k, v in items})
        self.pushed: asyncio.Queue[list[Change] | DatastoreUnavailable] = asyncio.Queue()
        self.closed = False

    def push(self, *changes: Change) -> None:
        self.pushed.put_nowait(list(changes))

    def break_(self, reason: str) -> None:
        self.pushed.put_nowait(DatastoreUnavailable(reason))

    async def list_prefix(self, prefix: str) -> Snapshot:
        assert prefix == P
        return self.listed

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Change]]:
        assert start_revision == self.listed.revision + 1
        yield []
        while True:
            item = await self.pushed.get()
            if isinstance(item, DatastoreUnavailable):
                raise item
            yield item

    async def close(self) -> None:
        self.closed = True


class Sessions:
    """The session factory: hands out the scripted sessions in order while `reachable` is set; etcd does
    not answer (the connect waits) while it is clear or when the script is done."""

    def __init__(self, *sessions: ScriptedSession) -> None:
        self.pending = list(sessions)
        self.reachable = asyncio.Event()
        self.reachable.set()
        self.connects = 0

    async def __call__(self) -> Session:
        self.connects += 1
        await self.reachable.wait()
        if not self.pending:
            await asyncio.Event().wait()  # never answers; cancelled by Follower.close
        return self.pending.pop(0)


@dataclass
class Applied:
    """The attached apply: records each (config, what) and answers ``ok``."""

    calls: list[tuple[Config, str]] = field(default_factory=list)
    ok: bool = True

    def __call__(self, config: Config, what: str) -> dict[str, object]:
        self.calls.append((config, what))
        return {"ok": self.ok, "message": what}


@pytest.fixture(autouse=True)
def retry_at_once(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The watcher's backoff sleeps are recorded, not slept (the retry still goes through the loop)."""
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(follow, "DatastoreWatcher", functools.partial(DatastoreWatcher, sleep=sleep))
    return delays


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``predicate`` in the event loop until true; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.002)


def put(item: tuple[str, str], revision: int) -> Change:
    return Change("put", item[0], item[1].encode(), revision)


def delete(item: tuple[str, str], revision: int) -> Change:
    return Change("delete", item[0], None, revision)


@contextlib.asynccontextmanager
async def following(
    *sessions: ScriptedSession, file: ClusterFile | None = None, debounce: float = 0.01
) -> AsyncIterator[tuple[Follower, Config, Applied]]:
    """A started follower past its first configuration, with `Applied` attached; closed at the end."""
    follower = Follower(file or cluster_file(), Sessions(*sessions), debounce=debounce)
    try:
        first = await asyncio.wait_for(follower.first(), 5)
        applied = Applied()
        follower.attach(applied)
        yield follower, first, applied
    finally:
        await follower.close()


def test_first_is_this_nodes_derived_config() -> None:
    async def main() -> None:
        file = cluster_file(FILE + "bgp: {hold_time: 30}\nkernel: {table: 100}\n")
        async with following(ScriptedSession(10, HOST0, HOST1, POOL), file=file) as (follower, first, _):
            resources, _problems = r.load([HOST0, HOST1, POOL])
            assert first == derive(resources, "host0", file.local, source="host0.yaml").config
            assert first.node.name == "host0"
            assert first.node.address == IPv4Address("192.168.100.10")
            assert mesh(first) == ["192.168.100.10", "192.168.100.11"]
            assert [str(p.cidr) for p in first.pools] == ["10.244.0.0/16"]
            assert (first.bgp.hold_time, first.kernel.table) == (30, 100)  # the file's local sections
            st = follower.status
            assert (st.up, st.reason, st.revision, st.applied_revision, st.records) == (True, "", 10, 10, 3)
            assert (st.error, st.problems, st.resyncs) == ("", (), 0)

    asyncio.run(main())


def test_first_waits_until_this_node_has_a_record() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST1, POOL)
        follower = Follower(cluster_file(), Sessions(session), debounce=0.01)
        try:
            first = asyncio.ensure_future(follower.first())
            await until(lambda: follower.status.error != "", "the derive error")
            assert follower.status.error == "node 'host0': no Node record with spec.bgp in the datastore"
            assert not first.done()
            session.push(put(HOST0, 11))
            config = await asyncio.wait_for(first, 5)
            assert mesh(config) == ["192.168.100.10", "192.168.100.11"]
            assert (follower.status.error, follower.status.applied_revision) == ("", 11)
        finally:
            await follower.close()

    asyncio.run(main())


def test_a_new_node_and_a_removed_one_reach_apply() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST0, HOST1, POOL)
        async with following(session) as (follower, _, applied):
            session.push(put(HOST2, 11))
            await until(lambda: len(applied.calls) == 1, "the apply of the new node")
            config, what = applied.calls[0]
            assert mesh(config) == ["192.168.100.10", "192.168.100.11", "192.168.100.12"]
            assert what == "datastore revision 11"
            assert follower.status.applied_revision == 11
            session.push(delete(HOST1, 12))
            await until(lambda: len(applied.calls) == 2, "the apply of the removed node")
            assert mesh(applied.calls[1][0]) == ["192.168.100.10", "192.168.100.12"]
            assert follower.status.applied_revision == 12

    asyncio.run(main())


def received(follower: Follower, revision: int) -> Callable[[], bool]:
    return lambda: follower.status.revision == revision


def test_a_burst_of_changes_within_the_debounce_is_one_apply() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST0, HOST1, POOL)
        async with following(session, debounce=0.5) as (follower, _, applied):
            await until(lambda: follower.status.applied_revision == 10, "attach settled")
            for i, revision in enumerate((11, 12, 13)):  # three watch responses, one after the other
                session.push(put(node(f"new{i}", f"192.168.100.{20 + i}/24"), revision))
                await until(received(follower, revision), f"revision {revision} received")
            await until(lambda: follower.status.applied_revision == 13, "the burst applied")
            assert len(applied.calls) == 1
            config, what = applied.calls[0]
            assert what == "datastore revision 13"
            assert mesh(config)[2:] == ["192.168.100.20", "192.168.100.21", "192.168.100.22"]

    asyncio.run(main())


def test_an_identical_derivation_applies_nothing() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST0, HOST1, POOL)
        async with following(session) as (follower, _, applied):
            session.push(put(HOST1, 11))  # the same record written again
            await until(lambda: follower.status.applied_revision == 11, "revision 11 derived")
            session.push(Change("put", P + "networkpolicies/default.x", b"{}", 12))  # not bgpd's
            await until(lambda: follower.status.applied_revision == 12, "revision 12 derived")
            other = record(
                "bgppeers", "other-node", {"peerIP": "10.0.0.9", "asNumber": 65000, "node": "host1"}
            )
            session.push(put(other, 13))  # a peering of another node
            await until(lambda: follower.status.applied_revision == 13, "revision 13 derived")
            assert applied.calls == []
            assert follower.status.records == 4

    asyncio.run(main())


def test_datastore_down_keeps_the_config_and_says_why(retry_at_once: list[float]) -> None:
    async def main() -> None:
        first = ScriptedSession(10, HOST0, HOST1, POOL)
        again = ScriptedSession(20, HOST0, HOST1, POOL, HOST2)  # HOST2 was added during the outage
        sessions = Sessions(first, again)
        follower = Follower(cluster_file(), sessions, debounce=0.01)
        try:
            await asyncio.wait_for(follower.first(), 5)
            applied = Applied()
            follower.attach(applied)
            up_since = follower.status.since
            sessions.reachable.clear()
            first.break_("etcd: all endpoints down")
            await until(lambda: not follower.status.up, "the datastore reported down")
            st = follower.status
            assert st.reason == "etcd: all endpoints down"
            assert st.since >= up_since
            assert (st.records, st.revision, st.applied_revision, st.error) == (3, 10, 10, "")
            assert first.closed
            await until(lambda: sessions.connects == 2, "the retry")
            assert retry_at_once == [1.0]
            assert applied.calls == []  # the Down itself applies nothing
            sessions.reachable.set()
            await until(lambda: follower.status.applied_revision == 20, "the fresh list applied")
            assert (st.up, st.reason, st.resyncs, st.records) == (True, "", 1, 4)
            ((config, what),) = applied.calls  # only the change made during the outage
            assert mesh(config) == ["192.168.100.10", "192.168.100.11", "192.168.100.12"]
            assert what == "datastore revision 20"
        finally:
            await follower.close()

    asyncio.run(main())


def test_this_nodes_record_deleted_keeps_the_last_config() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST0, HOST1, POOL)
        async with following(session) as (follower, _, applied):
            session.push(delete(HOST0, 11))
            await until(lambda: follower.status.error != "", "the derive error")
            assert follower.status.error == "node 'host0': no Node record with spec.bgp in the datastore"
            assert follower.status.applied_revision == 10
            assert follower.reread(cluster_file()) == {
                "ok": False,
                "message": "nothing changed: node 'host0': no Node record with spec.bgp in the datastore",
            }
            session.push(put(HOST0, 12))  # back as it was: the config kept is still right, nothing to do
            await until(lambda: follower.status.applied_revision == 12, "revision 12 derived")
            assert follower.status.error == ""
            assert applied.calls == []

    asyncio.run(main())


def test_reread_applies_the_new_local_sections_at_once() -> None:
    async def main() -> None:
        async with following(ScriptedSession(10, HOST0, HOST1, POOL)) as (follower, first, applied):
            assert (first.bgp.hold_time, first.kernel.table) == (90, 254)
            reloaded = cluster_file(FILE + "bgp: {hold_time: 30}\nkernel: {table: 100}\n")
            assert follower.reread(reloaded) == {"ok": True, "message": "config file reloaded"}
            ((config, _),) = applied.calls
            assert (config.bgp.hold_time, config.kernel.table) == (30, 100)
            assert mesh(config) == mesh(first)
            assert follower.file is reloaded
            assert follower.reread(reloaded) == {
                "ok": True,
                "message": "config file reloaded: no change for this node",
            }
            assert len(applied.calls) == 1

    asyncio.run(main())


def test_a_refused_apply_is_tried_again_with_the_next_derivation() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST0, HOST1, POOL)
        async with following(session) as (follower, _, applied):
            applied.ok = False  # e.g. a setting that needs a restart
            session.push(put(HOST2, 11))
            await until(lambda: len(applied.calls) == 1, "the refused apply")
            assert follower.status.applied_revision == 10
            applied.ok = True
            session.push(Change("put", P + "networkpolicies/default.x", b"{}", 12))
            await until(lambda: len(applied.calls) == 2, "the apply tried again")
            assert applied.calls[1][0] == applied.calls[0][0]
            assert follower.status.applied_revision == 12

    asyncio.run(main())


def test_invalid_records_are_reported_with_their_keys_and_the_rest_applies() -> None:
    async def main() -> None:
        session = ScriptedSession(10, HOST0, HOST1, BAD_POOL, BAD_PEER)
        async with following(session) as (follower, first, applied):
            assert mesh(first) == ["192.168.100.10", "192.168.100.11"]
            assert first.pools == () and first.bgp.peers == ()
            assert follower.status.problems == (
                f"{BAD_PEER[0]}: spec: unknown field 'color'",
                f"{BAD_POOL[0]}: spec.cidr: invalid CIDR '10.244.0.0/33'",
            )
            session.push(put(POOL, 11))  # the pool fixed
            await until(lambda: len(applied.calls) == 1, "the fixed pool applied")
            assert [str(p.cidr) for p in applied.calls[0][0].pools] == ["10.244.0.0/16"]
            assert list(follower.status.problems) == [f"{BAD_PEER[0]}: spec: unknown field 'color'"]
            session.push(put(BAD_POOL, 12))  # broken again: the valid version goes too
            await until(lambda: len(applied.calls) == 2, "the broken pool left out")
            assert applied.calls[1][0].pools == ()
            assert f"{BAD_POOL[0]}: spec.cidr: invalid CIDR '10.244.0.0/33'" in follower.status.problems
            assert follower.status.as_dict()["problems"] == list(follower.status.problems)

    asyncio.run(main())
