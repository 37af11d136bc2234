"""`bgpd.datastore.etcd` against a real etcd: list then watch in order, an outage reported and followed by a
fresh snapshot, a compacted watch revision recovered by a fresh list."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.datastore.conftest import PREFIX, Agent, AgentFactory, EtcdServer

pytestmark = pytest.mark.e2e

NODES = f"{PREFIX}nodes/"


def _node(name: str, address: str) -> str:
    """A Calico v3 Node record as Calico stores it (JSON of the full object)."""
    spec = {"bgp": {"ipv4Address": f"{address}/24"}}
    return json.dumps(
        {"kind": "Node", "apiVersion": "projectcalico.org/v3", "metadata": {"name": name}, "spec": spec}
    )


def _is(kind: str, **fields: Any) -> Any:
    return lambda e: e["event"] == kind and all(e.get(k) == v for k, v in fields.items())


def test_snapshot_then_changes_in_order(etcd: EtcdServer, agent: Agent) -> None:
    agent.put(f"{NODES}host0", _node("host0", "192.168.100.10"))
    listed = agent.put(f"{NODES}host1", _node("host1", "192.168.100.11"))
    agent.put("/calico/ipam/v2/assignment/ipv4/block/10.20.0.0-26", "{}")  # outside the prefix
    agent.command("start")

    _, snapshot = agent.wait_event(_is("snapshot"), "the first snapshot")
    assert snapshot["items"] == {
        f"{NODES}host0": _node("host0", "192.168.100.10"),
        f"{NODES}host1": _node("host1", "192.168.100.11"),
    }
    assert snapshot["revision"] == listed + 1  # the write outside the prefix moved the revision too

    added = agent.put(f"{NODES}host2", _node("host2", "192.168.100.12"))
    changed = agent.put(f"{NODES}host0", _node("host0", "192.168.100.20"))
    agent.put("/calico/ipam/v2/handle/x", "{}")
    deleted = agent.delete(f"{NODES}host1")
    last, _ = agent.wait_event(_is("delete"), "the delete")

    host2, host0 = _node("host2", "192.168.100.12"), _node("host0", "192.168.100.20")
    assert agent.events()[1 : last + 1] == [
        {"event": "put", "key": f"{NODES}host2", "value": host2, "revision": added},
        {"event": "put", "key": f"{NODES}host0", "value": host0, "revision": changed},
        {"event": "delete", "key": f"{NODES}host1", "value": None, "revision": deleted},
    ]


def test_outage_reported_then_fresh_snapshot_with_the_change_made_meanwhile(
    etcd: EtcdServer, agent: Agent
) -> None:
    agent.put(f"{NODES}host0", _node("host0", "192.168.100.10"))
    agent.command("start")
    agent.wait_event(_is("snapshot"), "the first snapshot")

    agent.command("hold")  # the watcher's retry waits after its backoff until released
    etcd.stop()
    down_at, down = agent.wait_event(_is("down"), "the outage to be reported")
    assert down["retry_in"] == 1.0
    assert etcd.client_url in down["reason"]

    etcd.start()  # same data: same revisions
    made = agent.put(f"{NODES}host3", _node("host3", "192.168.100.13"))
    agent.command("release")
    at, snapshot = agent.wait_event(_is("snapshot"), "a fresh snapshot", after=down_at)

    assert snapshot["revision"] == made
    assert snapshot["items"] == {
        f"{NODES}host0": _node("host0", "192.168.100.10"),
        f"{NODES}host3": _node("host3", "192.168.100.13"),
    }
    assert [e["event"] for e in agent.events()[down_at:at]] == ["down"]  # nothing else in between

    after = agent.put(f"{NODES}host0", _node("host0", "192.168.100.30"))
    _, change = agent.wait_event(_is("put", revision=after), "the watch to resume", after=at)
    assert change["key"] == f"{NODES}host0"


def test_compacted_watch_revision_resynchronises_with_a_fresh_list(etcd: EtcdServer, agent: Agent) -> None:
    agent.put(f"{NODES}host0", _node("host0", "192.168.100.10"))
    agent.command("compact_after_list")  # writes twice and compacts between the list and the watch
    agent.command("start")

    _, first = agent.wait_event(_is("snapshot"), "the first snapshot")
    down_at, down = agent.wait_event(_is("down"), "the compacted watch to be reported")
    assert f"from revision {first['revision'] + 1}: compacted" in down["reason"]
    assert down["retry_in"] == 1.0
    at, fresh = agent.wait_event(_is("snapshot"), "a fresh snapshot", after=down_at)

    assert fresh["revision"] == first["revision"] + 2
    assert fresh["items"] == {
        f"{NODES}host0": _node("host0", "192.168.100.10"),
        f"{PREFIX}compaction/marker": "2",
    }
    after = agent.delete(f"{NODES}host0")
    agent.wait_event(_is("delete", revision=after), "the watch to resume", after=at)


def test_an_endpoint_that_refuses_is_skipped(etcd: EtcdServer, make_agent: AgentFactory) -> None:
    agent = make_agent(etcd, "--endpoint-before", "http://127.0.0.2:2379")  # nothing listens there
    agent.put(f"{NODES}host0", _node("host0", "192.168.100.10"))
    agent.command("start")
    _, snapshot = agent.wait_event(_is("snapshot"), "a snapshot from the second endpoint")
    assert list(snapshot["items"]) == [f"{NODES}host0"]
    assert [e["event"] for e in agent.events()] == ["snapshot"]  # no outage reported


def test_tls_with_a_client_certificate(etcd_tls: EtcdServer, make_agent: AgentFactory) -> None:
    certs = etcd_tls.certs
    assert certs is not None and etcd_tls.client_url.startswith("https://")
    tls = ["--ca-file", str(certs / "ca.pem"), "--cert-file", str(certs / "client.pem")]
    agent = make_agent(etcd_tls, *tls, "--key-file", str(certs / "client.key"))
    agent.put(f"{NODES}host0", _node("host0", "192.168.100.10"))
    agent.command("start")
    _, snapshot = agent.wait_event(_is("snapshot"), "a snapshot over TLS")
    assert list(snapshot["items"]) == [f"{NODES}host0"]
    deleted = agent.delete(f"{NODES}host0")
    agent.wait_event(_is("delete", revision=deleted), "a change over TLS")

    # both ends are checked: a CA that did not sign etcd's certificate, or no client certificate -> down
    client = ["--cert-file", str(certs / "client.pem"), "--key-file", str(certs / "client.key")]
    for refused in (
        make_agent(etcd_tls, "--ca-file", str(certs / "client.pem"), *client),
        make_agent(etcd_tls, "--ca-file", str(certs / "ca.pem")),
    ):
        refused.command("start")
        _, down = refused.wait_event(_is("down"), "a refused TLS connection to be reported")
        assert etcd_tls.client_url in down["reason"]
        assert not [e for e in refused.events() if e["event"] == "snapshot"]


def test_username_and_password(etcd: EtcdServer, make_agent: AgentFactory) -> None:
    admin = make_agent(etcd)
    admin.put(f"{NODES}host0", _node("host0", "192.168.100.10"))
    admin.command("enable_auth", user="bgpd", password="s3cret", root_password="r00t")

    agent = make_agent(etcd, "--username", "bgpd", "--password", "s3cret", "--root-password", "r00t")
    agent.command("start")
    _, snapshot = agent.wait_event(_is("snapshot"), "a snapshot as user bgpd")
    assert list(snapshot["items"]) == [f"{NODES}host0"]
    added = agent.put(f"{NODES}host1", _node("host1", "192.168.100.11"))
    agent.wait_event(_is("put", revision=added), "a change as user bgpd")

    refused = make_agent(etcd, "--username", "bgpd", "--password", "wrong")
    refused.command("start")
    _, down = refused.wait_event(_is("down"), "a wrong password to be reported")
    assert "authenticate as bgpd" in down["reason"]
    assert not [e for e in refused.events() if e["event"] == "snapshot"]
